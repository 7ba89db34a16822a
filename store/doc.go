// Package store keeps everything sbcwatch sees in Postgres: calls, SIP
// messages (with their raw text), TLS connections, certificates, findings,
// counter samples, audits and API tokens, and answers the lookups the REST
// API needs ("what happened to the call from +49… at 09:55?").
//
// Open a pool with Open, apply the schema with Migrate (embedded SQL from
// package migrations, run by tern under an advisory lock), write an
// analysis with SaveReport, stream with a Batcher, and read with the query
// functions, which take a DBTX so they run on the pool or inside a
// transaction.
//
// # Idempotence
//
// Each save is one transaction. Every row has a natural or
// content-derived key, so saving the same capture twice stores nothing
// twice (see Ingest for how the rows get in). The keys:
//
//   - calls: (call_id, sbc, start); a later view of the same call (more
//     messages, an end) updates the row in place;
//   - sip_messages: (time, id), id a uuid holding the first 16 bytes of
//     the SHA-256 of sbc, time, src, dst and raw (before schema version
//     9 the whole hash in hex, of which migration 009 keeps that half);
//   - tls_connections: (first_seen, sha256 of sbc, client->server, first_seen);
//   - certificates: SHA-256 of the DER;
//   - findings: (time, FindingID), a hash of sbc, rule, call, connection,
//     time and the finding's stable key (finding.KeyOf; its summary when
//     it has none, as audit and poll findings): a later version of the
//     same finding (the engine's update, a new summary or evidence)
//     updates its row and is no new sighting of its problem; Cites are
//     rewritten from the analysis-local ids ("F3") to these;
//   - counter_samples: (time, sbc, counter, scope);
//   - ingests: (sbc, source, digest of the content keys);
//   - problems: (sbc, rule, subject) with finding.Subject — one row per
//     problem however often it is seen, counted once per save that
//     newly stores a sighting of it, with state open/resolved and an
//     acknowledgement that lasts while it is open (see problems.go).
//
// # Ingest
//
// Calls and SIP messages are the bulk of a save (a busy SBC: seven
// messages a call). They are copied straight into their tables (COPY in
// binary format, rows encoded by hand in copybin.go: no per-value boxing,
// the raw text goes from the parsed message into the buffer) under a
// savepoint: a new capture has nothing stored yet, so nothing conflicts.
// When a row is already stored (a unique violation: the same capture
// again, an overlapping one, a spool replayed after a write that did
// commit, another instance that saw the same call) the copy is undone
// and the rows go the careful way, as the other tables always do: COPY
// into a temporary table, then INSERT … ON CONFLICT (a call seen again
// updates its row when the new view is later, whichever save commits
// last). The rows every save updates — the SBC's last_seen, stored_days —
// are written just before the commit, so saves of different batches run
// side by side and wait for each other only there (`analyze --store`
// runs two writers).
//
// Each index of the hot tables serves a query (migration 009 dropped the
// rest, and the calls foreign keys, which cost two lookups per call):
//
//   - sip_messages: the primary key (time, id), which makes a message
//     stored once; a hash index on call_id for a call's messages
//     (CallMessages);
//   - calls: the primary key id (cursors, joins); the unique key
//     (call_id, sbc, start_time) for ON CONFLICT and the lookups by
//     Call-ID (GetCall); (start_time desc, id desc) for the newest calls
//     and time windows; from_digits and to_digits with (start_time desc,
//     id desc) for a number's page; the reversed digits for suffix search
//     (TestCallSearchPlanOnABusyNumber and TestCallLookupPlans check the
//     plans).
//
// The commit waits for the WAL as usual (synchronous_commit is left on):
// what a save reports stored survives a crash of the database server.
//
// # Partitions and retention
//
// sip_messages, tls_connections, counter_samples and findings are range
// partitioned by UTC day of the event time (capture clock). Partitions are
// created on demand for the times that arrive (EnsurePartitions, under an
// advisory lock) and ahead of time by EnsureUpcoming. Retention counts
// from when data was stored: each save notes, per table, the days it
// wrote into (stored_days), and DropOlderThan drops a whole day only once
// it ended before the cut-off and nothing was stored into it since; calls
// go by their stored_at as well. A capture from two months ago stored
// today is kept for the full retention.
//
// # Schema
//
// Only Migrate creates or changes the schema; CheckSchema tells a command
// that needs it to ask for `sbcwatch migrate` instead.
package store
