package poll

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
)

// fakeSBC is an HTTPS server answering like the AudioCodes REST API.
type fakeSBC struct {
	srv     *httptest.Server
	caFile  string
	noKPI   atomic.Bool  // /kpi answers 404 (7.2 firmware)
	noIPG   atomic.Bool  // /kpi/…/ipGroup answers 404
	slow    atomic.Bool  // every answer waits for the client to give up
	uptime  atomic.Int64 // systemUpTime, seconds
	short   atomic.Int64 // global shortCallsCounterTotal
	pmCalls atomic.Int64
	slowHit atomic.Int64
}

const (
	restUser = "monitor"
	restPass = "s3cret-pass"
)

func item(id string, v any) map[string]any {
	return map[string]any{"id": id, "name": id, "description": "test " + id,
		"url": "/api/v1/kpi/current/sbc/callStats/global/" + id, "value": v}
}

func newFakeSBC(t *testing.T) *fakeSBC {
	t.Helper()
	f := &fakeSBC{}
	f.uptime.Store(7200)
	f.short.Store(42)
	mux := http.NewServeMux()
	write := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		write(w, map[string]any{"productType": "M800C", "versionID": "7.40A.100.114", "systemUpTime": f.uptime.Load()})
	})
	mux.HandleFunc("GET /api/v1/kpi/current/sbc/callStats/global", func(w http.ResponseWriter, r *http.Request) {
		if f.noKPI.Load() {
			http.NotFound(w, r)
			return
		}
		write(w, map[string]any{"items": []any{
			item("averageCallDuration", 95),
			item("activeCallsIn", 3),
			item("attemptedCallsInTotal", 200),
			item("establishedCallsInTotal", 150),
			item("establishedCallsOutTotal", 40),
			item("notEstablishCallsInTotal", 11),
			item("abnormalTerminatedCallsInTotal", 76),
			item("answerSeizureRatio", 75),
			item("networkEffectivenessRatio", nil), // not supported
			item("postDialDelay", 1),
			item("shortCallsCounterTotal", f.short.Load()),
			item("activeSessions", nil),
			item("failedCallsInRatio", 2), // an id outside the MIB
		}})
	})
	mux.HandleFunc("GET /api/v1/kpi/current/sbc/callStats/ipGroup", func(w http.ResponseWriter, r *http.Request) {
		if f.noKPI.Load() || f.noIPG.Load() {
			http.NotFound(w, r)
			return
		}
		write(w, map[string]any{"items": []any{
			map[string]any{"id": 1, "name": "Teams", "url": "/api/v1/kpi/current/sbc/callStats/ipGroup/1"},
			map[string]any{"id": "2", "name": "Carrier", "url": "/api/v1/kpi/current/sbc/callStats/ipGroup/2"},
		}})
	})
	mux.HandleFunc("GET /api/v1/kpi/current/sbc/callStats/ipGroup/{id}", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("id") {
		case "1":
			write(w, map[string]any{"items": []any{
				item("shortCallsCounterTotal", 9), item("establishedCallsInTotal", 120),
				item("notEstablishCallsInTotal", 5), item("notEstablishCallsOutTotal", 6),
				item("averageCallDuration", nil)}})
		case "2":
			write(w, map[string]any{"items": []any{item("shortCallsCounterTotal", 0), item("activeCallsOut", -1)}})
		default:
			http.NotFound(w, r)
		}
	})
	mux.HandleFunc("GET /api/v1/performanceMonitoring", func(w http.ResponseWriter, r *http.Request) {
		write(w, map[string]any{"items": []string{"acPMSIPSBCEstablishedCallsTotal", "acPMSBCAsrVal", "acPMSBCAcdVal", "acPMSomethingElseVal"}})
	})
	mux.HandleFunc("GET /api/v1/performanceMonitoring/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.pmCalls.Add(1)
		if r.URL.Query().Get("index") == "" {
			write(w, map[string]any{"indexes": []int{0}})
			return
		}
		if r.URL.Query().Get("interval") != "0" {
			http.Error(w, "want realtime interval", http.StatusBadRequest)
			return
		}
		switch r.PathValue("name") {
		case "acPMSIPSBCEstablishedCallsTotal":
			write(w, map[string]any{"index": 0, "value": 3, "min": 0, "max": 9, "average": 2, "volume": 10, "total": 812})
		case "acPMSBCAsrVal":
			write(w, map[string]any{"index": 0, "value": 64, "total": 0})
		case "acPMSBCAcdVal":
			write(w, map[string]any{"index": 0, "value": nil, "total": nil})
		default:
			http.NotFound(w, r)
		}
	})
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.slow.Load() {
			f.slowHit.Add(1)
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		if u, p, ok := r.BasicAuth(); !ok || u != restUser || p != restPass {
			w.Header().Set("WWW-Authenticate", `Basic realm="SBC"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	f.caFile = filepath.Join(t.TempDir(), "device-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	if err := os.WriteFile(f.caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeSBC) poll(t *testing.T) *config.Poll {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(restPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &config.Poll{Method: "rest", Interval: config.Duration(time.Minute), Timeout: config.Duration(2 * time.Second),
		MissesBeforeFinding: 3, ShortCallRatio: 0.3,
		REST: config.REST{URL: f.srv.URL, User: restUser, PasswordFile: pw, CAFile: f.caFile}}
}

func TestRESTKPI(t *testing.T) {
	f := newFakeSBC(t)
	r, err := NewRESTReader("sbc1", f.poll(t))
	if err != nil {
		t.Fatal(err)
	}
	rd, err := r.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rd.Method != "rest" || rd.Uptime == nil || *rd.Uptime != 2*time.Hour {
		t.Errorf("method %q uptime %v", rd.Method, rd.Uptime)
	}
	want(t, rd.Global, ShortCalls, 42)
	want(t, rd.Global, EstablishedCallsIn, 150)
	want(t, rd.Global, "average_call_duration_s", 95)
	want(t, rd.Global, "abnormal_terminated_calls_in", 76)
	want(t, rd.Global, "not_established_calls_in", 11)
	want(t, rd.Global, "asr", 75)
	want(t, rd.Global, "post_dial_delay_s", 1)
	want(t, rd.Global, "failed_calls_in_ratio", 2)
	wantNil(t, rd.Global, "ner")
	wantNil(t, rd.Global, "active_sessions")
	want(t, rd.IPGroups["1"], ShortCalls, 9)
	want(t, rd.IPGroups["1"], "not_established_calls_in", 5)
	want(t, rd.IPGroups["1"], "not_established_calls_out", 6)
	wantNil(t, rd.IPGroups["1"], "average_call_duration_s")
	wantNil(t, rd.IPGroups["2"], "active_calls_out") // -1
	if rd.IPGroupNames["1"] != "Teams" || rd.IPGroupNames["2"] != "Carrier" {
		t.Errorf("names = %v", rd.IPGroupNames)
	}

	// The next poll differences against this one; uptime going down
	// marks the reset.
	var tr Tracker
	tr.Update(rd)
	f.short.Store(50)
	rd2, err := r.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rd2.Time = rd.Time.Add(time.Minute)
	ss, _ := tr.Update(rd2)
	if d := sampleOf(ss, ScopeGlobal, ShortCalls); d.Delta == nil || *d.Delta != 8 || d.Reset {
		t.Errorf("delta = %+v, want 8", d)
	}
	f.uptime.Store(30)
	f.short.Store(2)
	rd3, err := r.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rd3.Time = rd2.Time.Add(time.Minute)
	ss, _ = tr.Update(rd3)
	if d := sampleOf(ss, ScopeGlobal, ShortCalls); d.Delta == nil || *d.Delta != 2 || !d.Reset || d.Rate == nil || *d.Rate != 2.0/30 {
		t.Errorf("after restart = %+v, want delta 2 reset, rate over the 30s since restart", d)
	}
}

func sampleOf(ss []Sample, scope, name string) Sample {
	for _, s := range ss {
		if s.Scope == scope && s.Counter == name {
			return s
		}
	}
	return Sample{}
}

func TestRESTWithoutIPGroupKPIs(t *testing.T) {
	f := newFakeSBC(t)
	f.noIPG.Store(true)
	r, err := NewRESTReader("sbc1", f.poll(t))
	if err != nil {
		t.Fatal(err)
	}
	rd, err := r.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rd.Method != "rest" || len(rd.IPGroups) != 0 {
		t.Errorf("method %q, ip groups %v", rd.Method, rd.IPGroups)
	}
	want(t, rd.Global, ShortCalls, 42)
}

func TestRESTBadCredentials(t *testing.T) {
	f := newFakeSBC(t)
	p := f.poll(t)
	p.REST.PasswordFile, p.REST.Password = "", "wrong"
	p.Retries = 3
	r, err := NewRESTReader("sbc1", p)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = ReadOnce(context.Background(), r, Retry{Timeout: time.Second, Retries: 3, Backoff: time.Second})
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	if time.Since(start) > 500*time.Millisecond {
		t.Errorf("a 401 was retried (took %s)", time.Since(start))
	}
	if !strings.Contains(err.Error(), "401") {
		t.Errorf("error does not name the status: %v", err)
	}
}

func TestRESTPerformanceMonitoringFallback(t *testing.T) {
	f := newFakeSBC(t)
	f.noKPI.Store(true)
	r, err := NewRESTReader("sbc1", f.poll(t))
	if err != nil {
		t.Fatal(err)
	}
	rd, err := r.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rd.Method != "rest-pm" {
		t.Errorf("method = %q, want rest-pm", rd.Method)
	}
	want(t, rd.Global, EstablishedCallsLegacy, 812)
	want(t, rd.Global, "asr", 64)
	wantNil(t, rd.Global, "average_call_duration_s")
	if _, ok := rd.Global["something_else"]; ok || len(rd.Global) != 3 {
		t.Errorf("global = %v, want exactly the three known names", rd.Global)
	}
	if len(rd.IPGroups) != 0 {
		t.Errorf("ip groups = %v", rd.IPGroups)
	}
	if f.pmCalls.Load() != 6 {
		t.Errorf("pm requests = %d, want 6 (indexes + value for 3 names)", f.pmCalls.Load())
	}
}

func TestRESTSlowTimesOut(t *testing.T) {
	f := newFakeSBC(t)
	f.slow.Store(true)
	p := f.poll(t)
	p.Timeout = config.Duration(200 * time.Millisecond)
	r, err := NewRESTReader("sbc1", p)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = ReadOnce(context.Background(), r, Retry{Timeout: p.Timeout.D(), Retries: 2, Backoff: 50 * time.Millisecond})
	if err == nil {
		t.Fatal("slow SBC read succeeded")
	}
	if n := f.slowHit.Load(); n != 3 {
		t.Errorf("attempts = %d, want 3 (1 + 2 retries)", n)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a deadline", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("took %s, want about 200ms × (1 + retries) + backoff", el)
	}
}

func TestRESTCertificateChecked(t *testing.T) {
	f := newFakeSBC(t)
	p := f.poll(t)
	p.REST.CAFile = "" // the test server's self-signed certificate is not in the system roots
	r, err := NewRESTReader("sbc1", p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Read(context.Background())
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err = %v, want a certificate verification error", err)
	}

	p.REST.URL = strings.Replace(f.srv.URL, "https://", "http://", 1)
	if _, err := NewRESTReader("sbc1", p); err == nil {
		t.Error("plain http accepted")
	}
	p.REST.URL = f.srv.URL
	p.REST.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := NewRESTReader("sbc1", p); err == nil {
		t.Error("missing CA file accepted")
	}
}

func TestNameForRESTID(t *testing.T) {
	for id, want := range map[string]string{
		"shortCallsCounterTotal":           ShortCalls,
		"establishedCallsInTotal":          EstablishedCallsIn,
		"networkEffectivenessRatio":        "ner",
		"mediaBrokenConnectionCalls":       "media_broken_connection_calls",
		"notEstablishCallsOutTotal":        "not_established_calls_out",
		"averageCallDuration":              "average_call_duration_s",
		"someNewKpi":                       "some_new_kpi",
		"minutesOfUsageTotal":              MinutesOfUsage,
		"classificationFailedCallsInTotal": "classification_failed_calls_in",
	} {
		if got := NameForRESTID(id); got != want {
			t.Errorf("NameForRESTID(%q) = %q, want %q", id, got, want)
		}
	}
	if KindOf(NameForRESTID("fooCallsTotal")) != Counter || KindOf(NameForRESTID("failedCallsInRatio")) != Gauge {
		t.Error("unknown REST ids: *Total should be counters, others gauges")
	}
}

// TestRESTRefusesRedirect: a device (or something in front of it) that
// redirects to plain HTTP never receives the Basic credentials there.
func TestRESTRefusesRedirect(t *testing.T) {
	var leaked atomic.Bool
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Store(true)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+r.URL.Path, http.StatusFound)
	}))
	defer tlsSrv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &config.Poll{Method: "rest", Timeout: config.Duration(2 * time.Second),
		REST: config.REST{URL: tlsSrv.URL, User: "admin", Password: "s3cret", CAFile: ca}}
	r, err := NewRESTReader("sbc1", p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("err = %v, want a refused redirect", err)
	}
	if leaked.Load() {
		t.Fatal("credentials reached the plain-HTTP server")
	}
}
