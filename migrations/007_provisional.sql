-- Provisional findings (serve): a refer_delivery_failed reported on the
-- evidence so far, about a minute after the call, and settled at the
-- correlation lag under the same key: confirmed (provisional false) or
-- retracted. A provisional or retracted finding is no sighting of its
-- problem; the confirmation is. Retracted findings stay, hidden from
-- the lists by default.
alter table findings add column provisional boolean not null default false;
alter table findings add column settles_at timestamptz;
alter table findings add column retracted boolean not null default false;

---- create above / drop below ----

alter table findings drop column retracted;
alter table findings drop column settles_at;
alter table findings drop column provisional;
