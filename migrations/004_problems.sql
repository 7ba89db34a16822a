-- Findings with a lifecycle, retention from the time data was stored,
-- and number search by suffix.

-- One row per problem: a rule about one subject (a certificate, a
-- listener and SNI, a call, an audit target …) on one SBC. Every stored
-- sighting (a save of a capture, an audit run, a poll) that shows it
-- counts once; a passing audit or days without recurrence resolve it and
-- a recurrence re-opens it. The acknowledgement belongs to the problem.
create table problems (
    id               bigserial primary key,
    sbc              text not null default '',
    rule             text not null,
    subject          text not null default '',
    severity         text not null,
    severity_rank    int not null,
    state            text not null default 'open' check (state in ('open', 'resolved')),
    first_seen       timestamptz not null,
    last_seen        timestamptz not null,
    count            bigint not null default 1,
    summary          text not null default '',
    last_finding_id  text not null default '',
    source           text not null default '',
    audit_target     text not null default '',
    updated_at       timestamptz not null default now(),
    resolved_at      timestamptz,
    resolved_by      text not null default '',
    acknowledged     boolean not null default false,
    acknowledged_at  timestamptz,
    acknowledged_by  text not null default '',
    unique (sbc, rule, subject)
);
create index problems_state_idx on problems (state, last_seen desc, id desc);
create index problems_target_idx on problems (sbc, audit_target) where audit_target <> '';

-- The problem a finding is a sighting of is (sbc, rule, subject).
alter table findings add column subject text not null default '';
create index findings_problem_idx on findings (sbc, rule, subject);

-- Retention counts from when rows were stored: the last time a save wrote
-- into each daily partition, and the time each call was stored.
create table stored_days (
    table_name   text not null,
    day          date not null,
    last_stored  timestamptz not null default now(),
    primary key (table_name, day)
);
alter table calls add column stored_at timestamptz not null default now();
alter table audits add column target text not null default '';

-- Number search by suffix: "12345600", "069 12345600" and "+49 69 12345600"
-- all end the stored digits "496912345600". The reversed digits in byte
-- order ("C") make a suffix a range of this index, whatever the database's
-- collation, and let a search list the distinct numbers in it one index
-- probe each.
create index calls_from_digits_rev_idx on calls ((reverse(from_digits) collate "C"));
create index calls_to_digits_rev_idx on calls ((reverse(to_digits) collate "C"));

---- create above / drop below ----

drop index calls_to_digits_rev_idx;
drop index calls_from_digits_rev_idx;
alter table audits drop column target;
alter table calls drop column stored_at;
drop table stored_days;
drop index findings_problem_idx;
alter table findings drop column subject;
drop table problems;
