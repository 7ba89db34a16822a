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
// twice. Calls and SIP messages, the bulk of an ingest, are copied
// straight into their tables (COPY; the messages as binary rows encoded
// without pgx's per-value boxing) under a savepoint: a new capture has
// nothing stored yet, so nothing conflicts. When a row is already stored
// (a unique violation) the copy is undone and the rows go the careful
// way, as the other tables always do: COPY into a temporary table, then
// INSERT … ON CONFLICT. The keys:
//
//   - calls: (sbc, call_id, start); a later view of the same call (more
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
