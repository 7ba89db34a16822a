-- Reserved: migration 008 belongs to another branch (issue 16, the
-- alert deliveries). tern needs the numbers without a gap, so this
-- placeholder keeps 009 applicable until that branch lands; delete this
-- file when 008 is merged (two files numbered 008 stop migrate).
select 1;

---- create above / drop below ----

select 1;
