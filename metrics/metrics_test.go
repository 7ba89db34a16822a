package metrics_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sbcwatch/sbcwatch/metrics"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
	"github.com/sbcwatch/sbcwatch/tlsaudit/audit"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestSourcesAndHTTP(t *testing.T) {
	t.Parallel()
	r := metrics.New("1.0.0", "abc123", "2026-12-06T10:00:00Z")
	s := r.Source("pcap", "eth0")
	if r.Source("pcap", "eth0") != s {
		t.Fatal("the same kind and name must give the same Source")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				s.Received(1)
			}
			s.Dropped(2)
			s.Malformed(1)
			s.Malformed(-5) // ignored
		})
	}
	wg.Wait()
	s.KernelDrops(40)
	s.KernelDrops(12) // a stale total never lowers the counter
	s.QueueDepth(7)
	s.SpoolBytes(4096)
	var none *metrics.Source
	none.Received(1) // a nil Source ignores reports
	metrics.Discard.KernelDrops(1)

	r.ObserveHTTP("/api/v1/calls", "GET", 200, 30*time.Millisecond)
	r.ObserveHTTP("/api/v1/calls", "GET", 200, 3*time.Second)
	r.ObserveHTTP("unmatched", "BREW", 404, time.Millisecond)

	want := `
# HELP sbcwatch_source_dropped_total Items a live input dropped itself (queue full, database too slow).
# TYPE sbcwatch_source_dropped_total counter
sbcwatch_source_dropped_total{kind="pcap",source="eth0"} 16
# HELP sbcwatch_source_kernel_drops_total Packets the kernel dropped before sbcwatch read them (pcap/PACKET_STATISTICS).
# TYPE sbcwatch_source_kernel_drops_total counter
sbcwatch_source_kernel_drops_total{kind="pcap",source="eth0"} 40
# HELP sbcwatch_source_malformed_total Items a live input could not parse and skipped.
# TYPE sbcwatch_source_malformed_total counter
sbcwatch_source_malformed_total{kind="pcap",source="eth0"} 8
# HELP sbcwatch_source_queue_depth Items waiting to be processed.
# TYPE sbcwatch_source_queue_depth gauge
sbcwatch_source_queue_depth{kind="pcap",source="eth0"} 7
# HELP sbcwatch_source_received_total Packets or datagrams read from a live input.
# TYPE sbcwatch_source_received_total counter
sbcwatch_source_received_total{kind="pcap",source="eth0"} 8000
# HELP sbcwatch_source_spool_bytes Bytes held in the on-disk spool.
# TYPE sbcwatch_source_spool_bytes gauge
sbcwatch_source_spool_bytes{kind="pcap",source="eth0"} 4096
`
	if err := testutil.GatherAndCompare(r.Gatherer(), strings.NewReader(want),
		"sbcwatch_source_received_total", "sbcwatch_source_dropped_total", "sbcwatch_source_malformed_total",
		"sbcwatch_source_kernel_drops_total", "sbcwatch_source_queue_depth", "sbcwatch_source_spool_bytes"); err != nil {
		t.Error(err)
	}

	srv := httptest.NewServer(r.Handler(quiet()))
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := string(body)
	for _, w := range []string{
		`sbcwatch_http_request_duration_seconds_bucket{code="200",method="GET",route="/api/v1/calls",le="0.05"} 1`,
		`sbcwatch_http_request_duration_seconds_bucket{code="200",method="GET",route="/api/v1/calls",le="5"} 2`,
		`sbcwatch_http_request_duration_seconds_count{code="404",method="other",route="unmatched"} 1`,
		`sbcwatch_build_info{build_date="2026-12-06T10:00:00Z",goversion="go`,
		`revision="abc123",version="1.0.0"} 1`,
		"go_goroutines ", "process_cpu_seconds_total ", "process_resident_memory_bytes ",
	} {
		if !strings.Contains(m, w) {
			t.Errorf("/metrics lacks %q", w)
		}
	}
	if strings.Contains(m, "BREW") {
		t.Error("a made-up method became a label value")
	}
}

// The store collector reads findings, certificates, audits, polls and
// KPIs from the store, reuses a result within MinInterval and reports
// store_up 0 when the database is gone.
func TestStoreCollector(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)

	// Passive: the field case 30 minutes ago (four failed handshakes that
	// served the self-signed default certificate, six findings).
	r := storetest.FieldCase(now.Add(-30*time.Minute), "m1@x")
	if err := st.SaveReport(ctx, "sbc1", "field.pcap", r); err != nil {
		t.Fatal(err)
	}
	// An older run of it, two hours ago: open problems, not in the last hour.
	if err := st.SaveReport(ctx, "sbc1", "old.pcap", storetest.FieldCase(now.Add(-2*time.Hour), "m0@x")); err != nil {
		t.Fatal(err)
	}
	// The older call's transfer problem is acknowledged: still open.
	old, err := store.ListFindings(ctx, st.Pool(), store.FindingQuery{CallID: "m0@x", Rule: "refer_delivery_failed", Limit: 1})
	if err != nil || len(old.Items) != 1 {
		t.Fatalf("refer finding of m0@x: %v %d", err, len(old.Items))
	}
	if _, err := store.AckFinding(ctx, st.Pool(), old.Items[0].ID, "alice"); err != nil {
		t.Fatal(err)
	}
	// An audit of sbc1's listener, clean, served a certificate expiring in 20 days.
	expiry := now.Add(20 * 24 * time.Hour)
	rep := &audit.Report{Target: "sbc.example.com:5061", Certificates: []audit.CertSeen{
		{Address: "192.0.2.10:5061", Probe: "default", SNI: "sbc.example.com", Fingerprint: "aa", Check: &certcheck.Result{NotAfter: expiry}},
		{Address: "192.0.2.10:5061", Probe: "tls12", SNI: "sbc.example.com", Fingerprint: "bb", Check: &certcheck.Result{NotAfter: expiry.Add(time.Hour)}},
	}}
	if _, err := st.SaveAudit(ctx, store.AuditRecord{SBC: "sbc1", Kind: "tls", StartedAt: now.Add(-time.Hour),
		FinishedAt: now.Add(-time.Hour + 1500*time.Millisecond), OK: false, Report: &audit.Report{Target: "sbc.example.com:5061"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SaveAudit(ctx, store.AuditRecord{SBC: "sbc1", Kind: "tls", StartedAt: now.Add(-time.Minute),
		FinishedAt: now.Add(-time.Minute + 2500*time.Millisecond), OK: true, Report: rep}); err != nil {
		t.Fatal(err)
	}
	// Polls: up, up, then down; KPIs of the last interval.
	var samples []store.CounterSample
	for i, v := range []float64{1, 1, 0} {
		samples = append(samples, store.CounterSample{SBC: "sbc1", Counter: "poll_up", Scope: "global", Time: now.Add(time.Duration(i-3) * time.Minute), Value: v})
	}
	samples = append(samples,
		store.CounterSample{SBC: "sbc1", Counter: "ner_interval", Scope: "global", Time: now.Add(-5 * time.Minute), Value: 90},
		store.CounterSample{SBC: "sbc1", Counter: "ner_interval", Scope: "global", Time: now.Add(-4 * time.Minute), Value: 97.5},
		store.CounterSample{SBC: "sbc1", Counter: "average_call_duration_interval_s", Scope: "global", Time: now.Add(-4 * time.Minute), Value: 123},
		store.CounterSample{SBC: "sbc1", Counter: "short_call_ratio", Scope: "ipgroup:2", Time: now.Add(-4 * time.Minute), Value: 0.25},
	)
	if err := st.SaveCounterSamples(ctx, samples); err != nil {
		t.Fatal(err)
	}

	clock := now
	c := metrics.NewStoreCollector(st.Pool(), metrics.StoreOptions{Logger: quiet(), MinInterval: time.Minute, Now: func() time.Time { return clock }})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	notAfter := float64(storetest.SelfSigned().NotAfter.Unix())
	want := fmt.Sprintf(`
# HELP sbcwatch_audit_duration_seconds Duration of the last TLS audit of the target.
# TYPE sbcwatch_audit_duration_seconds gauge
sbcwatch_audit_duration_seconds{sbc="sbc1",target="sbc.example.com:5061"} 2.5
# HELP sbcwatch_audit_last_run_timestamp_seconds Start (Unix seconds) of the last TLS audit of the target.
# TYPE sbcwatch_audit_last_run_timestamp_seconds gauge
sbcwatch_audit_last_run_timestamp_seconds{sbc="sbc1",target="sbc.example.com:5061"} %d
# HELP sbcwatch_audit_success 1 when the last TLS audit of the target was clean, else 0.
# TYPE sbcwatch_audit_success gauge
sbcwatch_audit_success{sbc="sbc1",target="sbc.example.com:5061"} 1
# HELP sbcwatch_cert_not_after_timestamp_seconds Earliest not_after (Unix seconds) of the certificate chain last served per SBC, listener (ip:port) and SNI, seen passively (source="passive") or by an audit (source="audit"); like blackbox_exporter's probe_ssl_earliest_cert_expiry.
# TYPE sbcwatch_cert_not_after_timestamp_seconds gauge
sbcwatch_cert_not_after_timestamp_seconds{listener="192.0.2.10:5061",sbc="sbc1",sni="sbc.example.com",source="audit"} %d
sbcwatch_cert_not_after_timestamp_seconds{listener="%s",sbc="sbc1",sni="sbc.example.com",source="passive"} %g
# HELP sbcwatch_findings_last_hour Findings stored with a time in the last hour, by SBC, rule and severity.
# TYPE sbcwatch_findings_last_hour gauge
sbcwatch_findings_last_hour{rule="refer_delivery_failed",sbc="sbc1",severity="critical"} 1
sbcwatch_findings_last_hour{rule="tls_cert_untrusted",sbc="sbc1",severity="critical"} 1
sbcwatch_findings_last_hour{rule="tls_handshake_failed",sbc="sbc1",severity="critical"} 4
# HELP sbcwatch_open_problems Open problems (one per rule and subject on an SBC: see docs/findings.md), by SBC, rule and severity.
# TYPE sbcwatch_open_problems gauge
sbcwatch_open_problems{rule="refer_delivery_failed",sbc="sbc1",severity="critical"} 2
sbcwatch_open_problems{rule="tls_cert_untrusted",sbc="sbc1",severity="critical"} 1
sbcwatch_open_problems{rule="tls_handshake_failed",sbc="sbc1",severity="critical"} 1
# HELP sbcwatch_open_problems_unacknowledged Open problems nobody acknowledged yet, by SBC, rule and severity.
# TYPE sbcwatch_open_problems_unacknowledged gauge
sbcwatch_open_problems_unacknowledged{rule="refer_delivery_failed",sbc="sbc1",severity="critical"} 1
sbcwatch_open_problems_unacknowledged{rule="tls_cert_untrusted",sbc="sbc1",severity="critical"} 1
sbcwatch_open_problems_unacknowledged{rule="tls_handshake_failed",sbc="sbc1",severity="critical"} 1
# HELP sbcwatch_kpi_average_call_duration_seconds Average call duration of the last poll interval.
# TYPE sbcwatch_kpi_average_call_duration_seconds gauge
sbcwatch_kpi_average_call_duration_seconds{sbc="sbc1",scope="global"} 123
# HELP sbcwatch_kpi_ner_percent Network effectiveness ratio of the last poll interval, percent.
# TYPE sbcwatch_kpi_ner_percent gauge
sbcwatch_kpi_ner_percent{sbc="sbc1",scope="global"} 97.5
# HELP sbcwatch_kpi_short_call_ratio Short calls per established call in the last poll interval.
# TYPE sbcwatch_kpi_short_call_ratio gauge
sbcwatch_kpi_short_call_ratio{sbc="sbc1",scope="ipgroup:2"} 0.25
# HELP sbcwatch_poll_last_success_timestamp_seconds Time (Unix seconds) of the SBC's last successful counter poll.
# TYPE sbcwatch_poll_last_success_timestamp_seconds gauge
sbcwatch_poll_last_success_timestamp_seconds{sbc="sbc1"} %d
# HELP sbcwatch_poll_up 1 when the last counter poll of the SBC succeeded, else 0.
# TYPE sbcwatch_poll_up gauge
sbcwatch_poll_up{sbc="sbc1"} 0
# HELP sbcwatch_store_up 1 when every store query of the last scrape succeeded, else 0 (see store_query_up for which failed).
# TYPE sbcwatch_store_up gauge
sbcwatch_store_up 1
`, now.Add(-time.Minute).Unix(), expiry.Unix(), storetest.SBCAddr, notAfter, now.Add(-2*time.Minute).Unix())
	names := []string{"sbcwatch_audit_duration_seconds", "sbcwatch_audit_last_run_timestamp_seconds", "sbcwatch_audit_success",
		"sbcwatch_cert_not_after_timestamp_seconds", "sbcwatch_findings_last_hour", "sbcwatch_open_problems", "sbcwatch_open_problems_unacknowledged",
		"sbcwatch_kpi_average_call_duration_seconds", "sbcwatch_kpi_ner_percent", "sbcwatch_kpi_short_call_ratio",
		"sbcwatch_poll_last_success_timestamp_seconds", "sbcwatch_poll_up", "sbcwatch_store_up"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}

	// Within MinInterval a scrape reuses the result: a new poll is not seen yet.
	if err := st.SaveCounterSamples(ctx, []store.CounterSample{{SBC: "sbc1", Counter: "poll_up", Scope: "global", Time: now, Value: 1}}); err != nil {
		t.Fatal(err)
	}
	clock = now.Add(30 * time.Second)
	if v := gauge(t, reg, "sbcwatch_poll_up"); v != 0 {
		t.Errorf("poll_up within MinInterval = %v, want the cached 0", v)
	}
	clock = now.Add(61 * time.Second)
	if v := gauge(t, reg, "sbcwatch_poll_up"); v != 1 {
		t.Errorf("poll_up after MinInterval = %v, want 1", v)
	}

	// One query failing leaves only its own metrics out.
	if _, err := st.Pool().Exec(ctx, "alter table problems rename column state to state_gone"); err != nil {
		t.Fatal(err)
	}
	clock = now.Add(3 * time.Minute)
	if v := gauge(t, reg, "sbcwatch_store_up"); v != 0 {
		t.Errorf("store_up with a failing query = %v", v)
	}
	if n, err := testutil.GatherAndCount(reg, "sbcwatch_open_problems", "sbcwatch_poll_up", "sbcwatch_findings_last_hour"); err != nil || n != 4 {
		t.Errorf("with the problems query failing: %d series (%v), want poll_up and 3 findings_last_hour", n, err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP sbcwatch_store_query_up 1 when the named store query of the last scrape succeeded, else 0 (its metrics are then left out).
# TYPE sbcwatch_store_query_up gauge
sbcwatch_store_query_up{query="audits"} 1
sbcwatch_store_query_up{query="certificates"} 1
sbcwatch_store_query_up{query="findings"} 1
sbcwatch_store_query_up{query="kpis"} 1
sbcwatch_store_query_up{query="polls"} 1
sbcwatch_store_query_up{query="problems"} 0
`), "sbcwatch_store_query_up"); err != nil {
		t.Error(err)
	}

	// The database gone: store_up 0, no domain metrics, pool metrics stay.
	st.Close()
	clock = now.Add(5 * time.Minute)
	if v := gauge(t, reg, "sbcwatch_store_up"); v != 0 {
		t.Errorf("store_up with the pool closed = %v", v)
	}
	if n, err := testutil.GatherAndCount(reg, "sbcwatch_poll_up", "sbcwatch_db_pool_max_conns"); err != nil || n != 1 {
		t.Errorf("with the pool closed: %d series (%v), want only the pool's", n, err)
	}
}

func gauge(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single series %s", name)
	return 0
}

// A scrape waits at most QueryTimeout for the store: past it, store_up
// is 0 and the scrape still answers.
func TestStoreCollectorTimeout(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	c := metrics.NewStoreCollector(st.Pool(), metrics.StoreOptions{Logger: quiet(), QueryTimeout: time.Nanosecond})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	start := time.Now()
	if v := gauge(t, reg, "sbcwatch_store_up"); v != 0 {
		t.Errorf("store_up = %v with a 1 ns budget", v)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the scrape took %s", d)
	}
}
