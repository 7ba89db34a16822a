-- A cheaper ingest (issue 17: analyze --store at 150 000 SIP messages/s).

-- SIP message ids become 16 bytes: a uuid holding the first half of the
-- SHA-256 that names a message (sbc, time, source, destination, raw
-- text), which was the id's first 32 hex digits before. The primary key
-- stays (time, id) and every row keeps its identity, so a capture stored
-- before this migration and stored again after it adds nothing; the key
-- is a fixed 16-byte value instead of 64 characters of text.
alter table sip_messages alter column id type uuid using left(id, 32)::uuid;

-- A call's messages are found by Call-ID alone (then sbc, then sorted in
-- memory: a call has a handful): a hash index does it with one 4-byte
-- hash per row instead of a text B-tree entry.
drop index sip_messages_call_id_idx;
create index sip_messages_call_id_idx on sip_messages using hash (call_id);

-- calls: the unique key leads with call_id, so it also serves the
-- lookups by Call-ID and calls_call_id_idx goes (ON CONFLICT (sbc,
-- call_id, start_time) names the same key). The foreign keys to sbcs and
-- ingests go too: every save writes its sbcs and ingests rows first in
-- the same transaction and neither table is ever deleted from, so they
-- only cost two lookups per stored call (the partitioned tables never
-- had them; docs/scaling.md dropped them for Citus anyway).
alter table calls drop constraint calls_sbc_call_id_start_time_key;
alter table calls add constraint calls_call_id_sbc_start_time_key unique (call_id, sbc, start_time);
drop index calls_call_id_idx;
alter table calls drop constraint calls_sbc_fkey;
alter table calls drop constraint calls_ingest_id_fkey;

---- create above / drop below ----

alter table calls add constraint calls_ingest_id_fkey foreign key (ingest_id) references ingests(id) on delete set null;
alter table calls add constraint calls_sbc_fkey foreign key (sbc) references sbcs(name);
create index calls_call_id_idx on calls (call_id);
alter table calls drop constraint calls_call_id_sbc_start_time_key;
alter table calls add constraint calls_sbc_call_id_start_time_key unique (sbc, call_id, start_time);
drop index sip_messages_call_id_idx;
create index sip_messages_call_id_idx on sip_messages (call_id, time);
-- The down migration keeps the ids' 32 hex digits: an older sbcwatch
-- names messages by all 64, so it would store such messages again.
alter table sip_messages alter column id type text using replace(id::text, '-', '');
