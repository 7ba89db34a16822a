-- Several serve instances (one per site or SBC pair) may share one
-- database: every row names the instance that stored it. The name comes
-- from the session setting sbcwatch.instance, which serve sets on each of
-- its connections (serve.instance, default the host name); rows stored
-- by other writers (analyze --store, migrations) get ''. Keys are
-- unchanged: two instances that see the same call store it once.
-- (Numbered 006 after 005_call_search; renumber at merge if needed.)
alter table ingests add column instance text not null default coalesce(current_setting('sbcwatch.instance', true), '');
alter table calls add column instance text not null default coalesce(current_setting('sbcwatch.instance', true), '');
alter table sip_messages add column instance text not null default coalesce(current_setting('sbcwatch.instance', true), '');
alter table tls_connections add column instance text not null default coalesce(current_setting('sbcwatch.instance', true), '');
alter table findings add column instance text not null default coalesce(current_setting('sbcwatch.instance', true), '');
alter table counter_samples add column instance text not null default coalesce(current_setting('sbcwatch.instance', true), '');
alter table audits add column instance text not null default coalesce(current_setting('sbcwatch.instance', true), '');
alter table packets add column instance text not null default coalesce(current_setting('sbcwatch.instance', true), '');

---- create above / drop below ----

alter table packets drop column instance;
alter table audits drop column instance;
alter table counter_samples drop column instance;
alter table findings drop column instance;
alter table tls_connections drop column instance;
alter table sip_messages drop column instance;
alter table calls drop column instance;
alter table ingests drop column instance;
