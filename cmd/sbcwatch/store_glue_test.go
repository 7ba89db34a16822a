package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sbcwatch/sbcwatch/analyze"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/store"
)

// testDatabase creates a fresh, migrated database on the test server and
// returns its URL; it is dropped when the test ends.
func testDatabase(t *testing.T) string {
	t.Helper()
	dsn := emptyDatabase(t)
	if code, _, errOut := runCLI("migrate", "--db", dsn); code != exitOK {
		t.Fatalf("migrate: %s", errOut)
	}
	return dsn
}

// emptyDatabase creates a fresh database without the sbcwatch schema and
// returns its URL; it is dropped when the test ends.
func emptyDatabase(t *testing.T) string {
	t.Helper()
	base := os.Getenv("SBCWATCH_TEST_DB")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL unreachable under CI: %v", err)
		}
		t.Skipf("PostgreSQL unreachable (%v); set SBCWATCH_TEST_DB", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("sbcwatch_cli_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "create database "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err == nil {
			_, _ = c.Exec(ctx, "drop database if exists "+name+" with (force)")
			c.Close(ctx)
		}
	})
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
}

// TestAnalyzeStoreIdempotent stores the bundled lab sample twice: the
// second run adds nothing.
func TestAnalyzeStoreIdempotent(t *testing.T) {
	dsn := testDatabase(t)
	sample := filepath.Join("..", "..", "testdata", "lab", "transfer_fails_default_cert.pcap")
	cfg := filepath.Join("..", "..", "testdata", "lab", "sbcwatch.yaml")
	code, _, errOut := runCLI("analyze", "--config", cfg, "--store", "--db", dsn, "--sbc", "lab", "--format", "json", sample)
	if code != exitOK {
		t.Fatalf("first store: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "stored under SBC \"lab\"") || strings.Contains(errOut, " 0 new calls") ||
		!strings.Contains(errOut, "kept for 30 days from now") {
		t.Fatalf("first store: %s", errOut)
	}
	code, _, errOut = runCLI("analyze", "--config", cfg, "--store", "--db", dsn, "--sbc", "lab", sample)
	if code != exitOK {
		t.Fatalf("second store: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "0 new calls, 0 SIP messages, 0 TLS connections, 0 certificates, 0 findings") {
		t.Fatalf("second store added rows: %s", errOut)
	}
	// An unreachable database is a one-line error and exit 3; the report
	// is still written.
	code, out, errOut := runCLI("analyze", "--store", "--db", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", sample)
	if code != exitInternal || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "--store: ") {
		t.Fatalf("unreachable db: exit %d %q", code, errOut)
	}
	if !strings.Contains(out, "findings: ") {
		t.Fatalf("the report is lost when the store fails: %q", out)
	}
	// No database named at all is a usage error.
	t.Setenv("DATABASE_URL", "")
	if code, _, errOut := runCLI("analyze", "--store", sample); code != exitUsage {
		t.Fatalf("no DSN: exit %d %q", code, errOut)
	}
}

// TestAnalyzeStoreStreamsLikeOneSave: `analyze --store` writes calls and
// connections in batches as the engine decides them and the findings at
// the end; with --keep-packets the frames behind each call go with it.
// Forced into batches of 3 records, it stores the same calls, messages,
// connections, findings (with the same references between them) and
// packets as one save of the whole report held in memory — on lab
// captures and shared public ones, with and without --keep-packets.
func TestAnalyzeStoreStreamsLikeOneSave(t *testing.T) {
	old := storeBatch
	storeBatch = 3
	t.Cleanup(func() { storeBatch = old })
	lab := filepath.Join("..", "..", "testdata", "lab")
	cfgPath := filepath.Join(lab, "sbcwatch.yaml")
	shared := filepath.Join("..", "..", "..", "shared", "captures")
	type input struct {
		path, cfg string
		keep      bool
		cites     bool // some stored finding cites another
	}
	inputs := []input{
		{filepath.Join(lab, "busy_sbc.pcap"), cfgPath, false, true},
		{filepath.Join(lab, "busy_sbc.pcap"), cfgPath, true, true},
		{filepath.Join(lab, "transfer_fails_default_cert.pcap"), cfgPath, true, true},
		{filepath.Join(lab, "refer_not_followed.pcap"), cfgPath, true, false},
	}
	for _, name := range []string{"sip_ipv6.pcap", "FAX-Call-t38-CA-TDM-SIP-FB-1.pcap", "aaa.pcap", "sip_tcp_websocket.pcap"} {
		matches, _ := filepath.Glob(filepath.Join(shared, "*", name))
		if len(matches) == 0 {
			if os.Getenv("CI") == "true" {
				t.Fatalf("shared capture %s not found under %s", name, shared)
			}
			continue
		}
		inputs = append(inputs, input{matches[0], "", true, false})
	}
	for _, in := range inputs {
		t.Run(fmt.Sprintf("%s keep=%v", filepath.Base(in.path), in.keep), func(t *testing.T) {
			testStoreStreamsLikeOneSave(t, in.path, in.cfg, in.keep, in.cites)
		})
	}
}

func testStoreStreamsLikeOneSave(t *testing.T, sample, cfgPath string, keep, cites bool) {
	streamed := testDatabase(t)
	args := []string{"analyze", "--store", "--db", streamed, "--sbc", "lab"}
	if cfgPath != "" {
		args = append(args, "--config", cfgPath)
	}
	if keep {
		args = append(args, "--keep-packets")
	}
	if code, _, errOut := runCLI(append(args, sample)...); code != exitOK {
		t.Fatalf("analyze --store: exit %d: %s", code, errOut)
	}
	whole := testDatabase(t)
	ctx := context.Background()
	cfg := config.Default()
	if cfgPath != "" {
		var err error
		if cfg, err = config.Load(cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	opt := analyze.Options{Config: cfg}
	if keep {
		opt.KeepPackets = &analyze.PacketLimits{}
	}
	rep, err := analyze.Files(ctx, []string{sample}, opt)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, whole)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.SaveReportResult(ctx, "lab", sample, rep); err != nil {
		t.Fatal(err)
	}
	// What each database holds, in a form that does not depend on ids
	// or on how many saves wrote it.
	dump := func(dsn string) []string {
		t.Helper()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var out []string
		for _, q := range []string{
			`select 'call ' || call_id || ' ' || start_time || ' ' || message_count || ' ' || answered from calls`,
			`select 'msg ' || time || ' ' || call_id from sip_messages`,
			`select 'tls ' || client || '->' || server || ' ' || first_seen || ' ' || outcome from tls_connections`,
			`select 'finding ' || f.local_id || ' ' || f.rule || ' ' || f.call_id || ' ' || f.connection || ' cites ' ||
			   coalesce((select string_agg(g.local_id, ',' order by g.local_id) from findings g where g.id = any(f.cites)), '')
			 from findings f`,
			`select 'packet ' || time || ' ' || frame || ' ' || link_type || ' ' || call_id || ' ' || tls_id || ' ' || md5(data) from packets`,
		} {
			rows, err := conn.Query(ctx, q)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			got, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, got...)
		}
		slices.Sort(out)
		return out
	}
	a, b := dump(streamed), dump(whole)
	if cites && !slices.ContainsFunc(a, func(r string) bool { return strings.HasPrefix(r, "finding ") && strings.Contains(r, " cites F") }) {
		t.Fatalf("no stored finding cites another: the test would not see broken references\n%s", strings.Join(a, "\n"))
	}
	packets := 0
	for _, r := range a {
		if strings.HasPrefix(r, "packet ") {
			packets++
		}
	}
	if keep && (packets == 0 || packets != len(rep.Packets)) {
		t.Fatalf("%d packets stored, the report kept %d", packets, len(rep.Packets))
	}
	if len(a) == 0 || !slices.Equal(a, b) {
		t.Fatalf("streamed store differs from one save:\nstreamed %d rows, one save %d rows\nfirst difference: %s", len(a), len(b), firstDiff(a, b))
	}
	t.Logf("%d rows, %d packets", len(a), packets)
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%q vs %q", a[i], b[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(a), len(b))
}
