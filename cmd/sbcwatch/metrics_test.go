package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/api"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/daemon"
	"github.com/sbcwatch/sbcwatch/internal/testtool"
	"github.com/sbcwatch/sbcwatch/metrics"
	"github.com/sbcwatch/sbcwatch/store"
)

// TestMetricsAfterAnalysisAndPoll stores a lab analysis (the field case)
// and one REST poll through the daemon's poller wiring, then scrapes the
// API's /metrics: promtool check metrics accepts it, and it carries the
// stored state — the refer_delivery_failed finding, the certificate the
// SBC's listener served, poll_up — next to the HTTP histograms and the
// Go and process metrics.
func TestMetricsAfterAnalysisAndPoll(t *testing.T) {
	promtool := testtool.Need(t, "promtool")
	dsn := testDatabase(t)
	if c, _, e := runCLI("migrate", "--db", dsn); c != exitOK {
		t.Fatalf("migrate: %s", e)
	}
	pcap := "../../testdata/lab/transfer_fails_default_cert.pcap"
	if c, _, e := runCLI("analyze", "--config", "../../testdata/lab/sbcwatch.yaml", "--store", "--db", dsn, "--sbc", "lab-sbc", pcap); c != exitOK && c != exitFinding {
		t.Fatalf("analyze --store: exit %d: %s", c, e)
	}

	kpi := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/kpi/current/sbc/callStats/global":
			fmt.Fprint(w, `{"items":[{"id":"shortCallsCounterTotal","value":3},{"id":"establishedCallsInTotal","value":40}]}`)
		case "/api/v1/kpi/current/sbc/callStats/ipGroup":
			fmt.Fprint(w, `{"items":[]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer kpi.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kpi.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "sbcwatch.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`sbcs:
  - name: m800
    poll:
      method: rest
      interval: 1s
      rest: {url: "%s", ca_file: ca.pem}
`, kpi.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- daemon.RunPollers(pctx, cfg, st, log) }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var n int
		if err := st.Pool().QueryRow(ctx, `select count(*) from counter_samples where sbc = 'm800' and counter = 'poll_up' and value = 1`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the poller stored no poll_up sample")
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The lab capture is from 2026-11-21: look back far enough to see it
	// whatever day the test runs.
	var first time.Time
	if err := st.Pool().QueryRow(ctx, `select min(first_seen) from tls_connections`).Scan(&first); err != nil {
		t.Fatal(err)
	}
	back := time.Since(first) + 24*time.Hour
	reg := metrics.New("test", "abc", "")
	if err := reg.Register(metrics.NewStoreCollector(st.Pool(), metrics.StoreOptions{Lookback: back, Logger: log})); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewServer(st, api.Options{Metrics: reg, Logger: log}))
	defer srv.Close()
	if _, err := http.Get(srv.URL + "/healthz"); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := string(body)

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(m)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n%s", err, out, m)
	}
	for _, want := range []string{
		`sbcwatch_open_problems{rule="refer_delivery_failed",sbc="lab-sbc",severity="critical"} 1`,
		`sbcwatch_cert_not_after_timestamp_seconds{listener="192.0.2.10:5061",sbc="lab-sbc",sni="sbc.contoso.example",source="passive"} `,
		`sbcwatch_poll_up{sbc="m800"} 1`,
		`sbcwatch_poll_last_success_timestamp_seconds{sbc="m800"} `,
		`sbcwatch_http_request_duration_seconds_count{code="200",method="GET",route="/healthz"} 1`,
		"sbcwatch_store_up 1",
		"go_goroutines ",
		"process_start_time_seconds ",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(m)
	}
}
