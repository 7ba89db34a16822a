package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

// tableCount is the number of tables in the database's public schema.
func tableCount(t *testing.T, dsn string) int {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, `select count(*) from information_schema.tables where table_schema = 'public'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Only migrate (or serve --migrate) creates the schema; the other
// commands refuse an unmigrated database in one line.
func TestCommandsNeverCreateTheSchema(t *testing.T) {
	dsn := emptyDatabase(t)
	sample := filepath.Join("..", "..", "testdata", "lab", "transfer_works.pcap")
	for _, args := range [][]string{
		{"token", "list", "--db", dsn},
		{"token", "create", "--db", dsn, "--name", "x"},
		{"serve", "--db", dsn, "--listen", freeAddr(t)},
		{"analyze", "--store", "--db", dsn, sample},
	} {
		code, _, errOut := runCLI(args...)
		if code != exitUsage {
			t.Errorf("%s on an empty database: exit %d, want %d: %s", args[:2], code, exitUsage, errOut)
		}
		if lines := strings.Split(strings.TrimSpace(errOut), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "run sbcwatch migrate") {
			t.Errorf("%s: stderr %q, want one line saying to run sbcwatch migrate", args[:2], errOut)
		}
		if n := tableCount(t, dsn); n != 0 {
			t.Fatalf("%s created %d tables", args[:2], n)
		}
	}
	// serve --migrate migrates explicitly.
	out := startServe(t, "--db", dsn, "--listen", freeAddr(t), "--migrate")
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(out.String(), "listening on"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("serve --migrate: %s", out.String())
		}
	}
	if code, _, errOut := runCLI("token", "list", "--db", dsn); code != exitOK {
		t.Errorf("token list after serve --migrate: %s", errOut)
	}
}

// A capture dated 90 days ago, stored today, survives serve's retention
// of 30 days.
func TestServeKeepsOldCaptureStoredToday(t *testing.T) {
	dsn := testDatabase(t)
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	old := time.Now().UTC().Add(-90 * 24 * time.Hour)
	if err := st.SaveReport(ctx, "sbc1", "old.pcap", storetest.FieldCase(old, "old-call")); err != nil {
		t.Fatal(err)
	}
	before, err := store.TableCounts(ctx, st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	out := startServe(t, "--db", dsn, "--listen", freeAddr(t), "--retention-days", "30")
	// Retention runs at start, then creates the coming days' partitions:
	// once those exist, it has run.
	day := time.Now().UTC().Add(48 * time.Hour).Format("20060102")
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		parts, err := store.Partitions(ctx, st.Pool())
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range parts {
			if p.Day.Format("20060102") == day {
				n++
			}
		}
		if n == len(store.PartitionedTables) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retention did not run: %s", out.String())
		}
	}
	after, err := store.TableCounts(ctx, st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"calls", "sip_messages", "tls_connections", "findings", "problems"} {
		if after[k] != before[k] || after[k] == 0 {
			t.Errorf("%s: %d before serve, %d after", k, before[k], after[k])
		}
	}
}
