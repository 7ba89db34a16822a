-- Raw captured frames kept as evidence (analyze --store --keep-packets):
-- the frames that carried a call's SIP messages (call_id set) and the
-- frames of the TLS connections on its ladder (tls_id = tls_connections.id).
-- Partitioned by UTC day like sip_messages, so retention drops them too.
create table packets (
    time       timestamptz not null,
    id         text not null,  -- sha256(sbc, time, frame, data), hex
    sbc        text not null,
    frame      bigint not null default 0,
    link_type  int not null,
    call_id    text not null default '',
    tls_id     text not null default '',
    data       bytea not null,
    primary key (time, id)
) partition by range (time);
create index packets_call_idx on packets (sbc, call_id, time) where call_id <> '';
create index packets_tls_idx on packets (tls_id) where tls_id <> '';

---- create above / drop below ----

drop table packets;
