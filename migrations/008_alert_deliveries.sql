-- Alert deliveries, one row per receiver (webhook name) and finding key:
-- the de-duplication of alerts survives a restart and is shared by every
-- serve instance on this database. A finding updated later (same key)
-- finds its row and is not delivered again; two instances that decide
-- the same finding insert one row, and only the one whose insert won
-- delivers it. A row stays 'pending' until the webhook answered 2xx
-- ('delivered') or refused it for good ('failed'); a pending row is
-- claimed by one process (claimed_by, claimed_until) while it delivers,
-- and pending rows of an instance are delivered again by its next start.
create table alert_deliveries (
    receiver      text        not null,
    finding_key   text        not null,
    instance      text        not null default coalesce(current_setting('sbcwatch.instance', true), ''),
    rule          text        not null,
    severity      text        not null,
    finding       jsonb       not null,
    state         text        not null default 'pending' check (state in ('pending', 'delivered', 'failed')),
    claimed_by    text,
    claimed_until timestamptz,
    error         text        not null default '',
    created_at    timestamptz not null default now(),
    finished_at   timestamptz,
    primary key (receiver, finding_key)
);
create index alert_deliveries_pending on alert_deliveries (instance, receiver, created_at) where state = 'pending';
create index alert_deliveries_finished on alert_deliveries (finished_at) where state <> 'pending';

---- create above / drop below ----

drop table alert_deliveries;
