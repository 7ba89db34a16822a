-- sbcwatch schema, version 1.

create table sbcs (
    name        text primary key,
    fqdns       text[] not null default '{}',
    addresses   text[] not null default '{}',
    first_seen  timestamptz not null default now(),
    last_seen   timestamptz not null default now()
);

-- One row per stored capture or log (a file, a live stream segment).
create table ingests (
    id              bigserial primary key,
    sbc             text not null references sbcs(name),
    source          text not null,
    content_sha256  text not null,
    created_at      timestamptz not null default now(),
    stats           jsonb not null default '{}',
    unique (sbc, source, content_sha256)
);

-- One row per Call-ID per SBC and start time.
create table calls (
    id              bigserial primary key,
    sbc             text not null references sbcs(name),
    call_id         text not null,
    kind            text not null,
    from_number     text not null default '',
    to_number       text not null default '',
    from_digits     text not null default '',
    to_digits       text not null default '',
    from_uri        text not null default '',
    to_uri          text not null default '',
    request_uri     text not null default '',
    pai             text not null default '',
    caller          text not null default '',
    callee          text not null default '',
    start_time      timestamptz not null,
    answer_time     timestamptz,
    end_time        timestamptz,
    last_time       timestamptz,
    answered        boolean not null default false,
    final_status    int not null default 0,
    ended_by        text not null default '',
    end_reason      text not null default '',
    bye_reason      text not null default '',
    q850            int not null default 0,
    reason_text     text not null default '',
    refer_count     int not null default 0,
    invites         int not null default 0,
    message_count   int not null default 0,
    microsoft       boolean not null default false,
    microsoft_addr  text not null default '',
    sbc_side        text not null default '',
    sbc_contact     text not null default '',
    sbc_allow       text not null default '',
    truncated       boolean not null default false,
    user_agents     text[] not null default '{}',
    refers          jsonb not null default '[]',
    ingest_id       bigint references ingests(id) on delete set null,
    unique (sbc, call_id, start_time)
);
create index calls_start_idx on calls (start_time desc, id desc);
create index calls_from_digits_idx on calls (from_digits, start_time desc);
create index calls_to_digits_idx on calls (to_digits, start_time desc);
create index calls_call_id_idx on calls (call_id);

create table sip_messages (
    time         timestamptz not null,
    id           text not null,  -- sha256(sbc, time, src, dst, raw), hex
    sbc          text not null,
    frame        bigint not null default 0,
    src          text not null,
    dst          text not null,
    transport    text not null default '',
    origin       text not null default '',
    is_request   boolean not null,
    method       text not null default '',
    status       int not null default 0,
    reason       text not null default '',
    request_uri  text not null default '',
    call_id      text not null,
    cseq         bigint not null default 0,
    cseq_method  text not null default '',
    from_user    text not null default '',
    to_user      text not null default '',
    from_tag     text not null default '',
    to_tag       text not null default '',
    branch       text not null default '',
    contact      text not null default '',
    user_agent   text not null default '',
    refer_to     text not null default '',
    reason_hdr   text not null default '',
    q850         int not null default 0,
    raw          text not null default '',
    primary key (time, id)
) partition by range (time);
create index sip_messages_call_id_idx on sip_messages (call_id, time);

create table certificates (
    fingerprint  text primary key, -- sha256 of DER, lower-case hex
    der          bytea not null,
    subject      text not null,
    issuer       text not null,
    sans         text[] not null default '{}',
    not_before   timestamptz not null,
    not_after    timestamptz not null,
    self_signed  boolean not null default false,
    first_seen   timestamptz not null default now()
);
create index certificates_not_after_idx on certificates (not_after);

create table tls_connections (
    first_seen      timestamptz not null,
    id              text not null, -- sha256(sbc, conn id, first_seen), hex
    sbc             text not null,
    conn_id         text not null, -- "client->server"
    client          text not null,
    server          text not null,
    sni             text not null default '',
    version         text not null default '',
    cipher          text not null default '',
    outcome         text not null default '',
    alert           text not null default '',
    closed_by       text not null default '',
    duration_ms     double precision not null default 0,
    from_microsoft  boolean not null default false,
    to_microsoft    boolean not null default false,
    established     boolean not null default false,
    app_data        boolean not null default false,
    cert_encrypted  boolean not null default false,
    cert_requested  boolean not null default false,
    fingerprint     text not null default '',
    chain           text[] not null default '{}', -- certificate fingerprints, leaf first
    cert_subject    text not null default '',
    cert_issuer     text not null default '',
    ja3             text not null default '',
    ja4             text not null default '',
    bytes_c2s       bigint not null default 0,
    bytes_s2c       bigint not null default 0,
    last_seen       timestamptz,
    alerts          jsonb not null default '[]',
    cert_check      jsonb,
    anomalies       text[] not null default '{}',
    ingest_id       bigint,
    primary key (first_seen, id)
) partition by range (first_seen);
create index tls_connections_sbc_idx on tls_connections (sbc, first_seen);
create index tls_connections_fingerprint_idx on tls_connections (fingerprint);

create table findings (
    time             timestamptz not null,
    id               text not null, -- sha256(sbc, rule, call, connection, time, summary), 16 hex
    local_id         text not null default '',
    rule             text not null,
    severity         text not null,
    severity_rank    int not null,
    call_id          text not null default '',
    connection       text not null default '',
    sbc              text not null default '',
    summary          text not null,
    evidence         jsonb not null default '{}',
    cites            text[] not null default '{}',
    source           text not null default '',
    ingest_id        bigint,
    acknowledged     boolean not null default false,
    acknowledged_at  timestamptz,
    acknowledged_by  text not null default '',
    primary key (time, id)
) partition by range (time);
create index findings_id_idx on findings (id);
create index findings_rule_idx on findings (rule, time);
create index findings_call_id_idx on findings (call_id, sbc);

create table counter_samples (
    time     timestamptz not null,
    sbc      text not null,
    counter  text not null,
    scope    text not null default 'global', -- global, ipgroup:N, ...
    value    double precision not null,
    delta    double precision,
    rate     double precision,
    primary key (time, sbc, counter, scope)
) partition by range (time);
create index counter_samples_series_idx on counter_samples (sbc, counter, time);

create table audits (
    id           bigserial primary key,
    sbc          text not null default '',
    kind         text not null,
    started_at   timestamptz not null,
    finished_at  timestamptz not null,
    ok           boolean not null,
    summary      text not null default '',
    report       jsonb not null default '{}'
);
create index audits_started_idx on audits (started_at desc, id desc);

create table audit_results (
    id        bigserial primary key,
    audit_id  bigint not null references audits(id) on delete cascade,
    target    text not null,
    sni       text not null default '',
    ok        boolean not null,
    error     text not null default '',
    result    jsonb not null default '{}'
);
create index audit_results_audit_idx on audit_results (audit_id);

create table api_tokens (
    id          bigserial primary key,
    name        text not null,
    scope       text not null check (scope in ('read', 'admin')),
    hash        text not null unique, -- sha256 of the token, hex
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);
-- A name is unique among live tokens; a revoked name may be reused.
create unique index api_tokens_live_name_idx on api_tokens (name) where revoked_at is null;

---- create above / drop below ----

drop table api_tokens;
drop table audit_results;
drop table audits;
drop table counter_samples;
drop table findings;
drop table tls_connections;
drop table certificates;
drop table sip_messages;
drop table calls;
drop table ingests;
drop table sbcs;
