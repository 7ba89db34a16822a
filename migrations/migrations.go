// Package migrations holds sbcwatch's Postgres schema as plain numbered SQL
// files (tern format: NNN_name.sql, the down part after
// "---- create above / drop below ----"), embedded in FS. store.Migrate
// applies them under tern's advisory lock, so two instances never race.
//
// The time-partitioned tables (sip_messages, tls_connections,
// counter_samples, findings, packets) are declared here without partitions; the
// store creates one partition per UTC day on demand and drops whole days
// for retention.
package migrations

import "embed"

// FS holds the migration files at its root.
//
//go:embed *.sql
var FS embed.FS
