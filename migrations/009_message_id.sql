-- SIP message ids become 16 bytes: a uuid holding the first half of the
-- SHA-256 that names a message (sbc, time, source, destination, raw text),
-- which was the id's first 32 hex digits before. The primary key
-- (time, id) and every row's identity are unchanged, so a capture stored
-- before this migration and stored again after it adds nothing; the
-- key is a fixed 16-byte value instead of 64 characters of text, which
-- makes the primary key half the size and cheaper to insert into.
-- (Numbered 009 after 007 and 008 of other branches; renumber at merge
-- if needed.)
alter table sip_messages alter column id type uuid using left(id, 32)::uuid;

---- create above / drop below ----

-- The down migration keeps the 32 hex digits: an older sbcwatch names
-- messages by all 64, so it would store such messages again.
alter table sip_messages alter column id type text using replace(id::text, '-', '');
