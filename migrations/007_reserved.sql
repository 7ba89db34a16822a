-- Reserved: migration 007 belongs to another branch (issue 16, the
-- provisional findings). tern needs the numbers without a gap, so this
-- placeholder keeps 008 applicable until that branch lands; delete this
-- file when 007 is merged (two files numbered 007 stop migrate).
select 1;

---- create above / drop below ----

select 1;
