-- Browser sessions of the pages: the cookie holds a random session id,
-- never the API token; the row keeps only the id's hash, the token that
-- signed in, and when the session ends (expiry, sign-out, or the token's
-- revocation, checked on every request through the join).
create table web_sessions (
    hash        text primary key,    -- sha256 of the session id, hex
    token_id    bigint not null references api_tokens (id) on delete cascade,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    revoked_at  timestamptz
);
create index web_sessions_expires_idx on web_sessions (expires_at);

---- create above / drop below ----

drop table web_sessions;
