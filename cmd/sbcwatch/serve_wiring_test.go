package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
	"github.com/sbcwatch/sbcwatch/tlsaudit/audit/audittest"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck/certtest"
)

// syncBuffer is a goroutine-safe writer for the daemon's output.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeRunsScheduledAudit starts `serve` with a config whose SBC has
// a TLS audit against a fake SBC serving its default self-signed context
// for no SNI; the audit runs at start, is stored, and the API serves it
// with its findings.
func TestServeRunsScheduledAudit(t *testing.T) {
	dsn := testDatabase(t)
	dir := t.TempDir()
	ca := certtest.New(t, certtest.Spec{CN: "Lab Root", CA: true}, nil)
	good := certtest.New(t, certtest.Spec{CN: "sbc.contoso.example", DNS: []string{"sbc.contoso.example"}}, ca)
	def := certtest.New(t, certtest.Spec{CN: "default.sbc.local"}, nil)
	sbc := audittest.Start(t, audittest.Config{
		ByName:  map[string]tls.Certificate{"sbc.contoso.example": good.TLS()},
		Default: def.TLS(),
	})
	caFile, _ := ca.WritePEM(t, dir, "ca")
	addr := freeAddr(t)
	// A Teams webhook receives the audit's findings too.
	var hookMu sync.Mutex
	var cards []string
	teams := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hookMu.Lock()
		cards = append(cards, string(b))
		hookMu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer teams.Close()
	cfg := filepath.Join(dir, "sbcwatch.yaml")
	yaml := fmt.Sprintf(`sbcs:
  - name: lab
    fqdns: [sbc.contoso.example]
    audit:
      targets: ["%s"]
      count: 2
      interval: 1h
trust: ["%s"]
no_system_roots: true
serve:
  alerts:
    webhooks: [{name: teams, kind: teams, url: "%s"}]
`, sbc.Addr, caFile, teams.URL)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := newToken(t, dsn, "ci", "read")

	out := startServe(t, "--db", dsn, "--listen", addr, "--config", cfg)

	var audits struct {
		Items []struct {
			ID       int64           `json:"id"`
			SBC      string          `json:"sbc"`
			OK       bool            `json:"ok"`
			Findings json.RawMessage `json:"findings"`
		} `json:"items"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/audits", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && json.Unmarshal(b, &audits) == nil && len(audits.Items) > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit stored in time; daemon said: %s", out.String())
		}
		time.Sleep(300 * time.Millisecond)
	}
	a := audits.Items[0]
	if a.SBC != "lab" || a.OK {
		t.Fatalf("audit = %+v", a)
	}
	// The default context served without SNI is untrusted: the findings
	// list names it.
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/api/v1/audits/%d", addr, a.ID), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "tls_cert_untrusted") || !strings.Contains(string(b), "default.sbc.local") {
		t.Fatalf("audit detail lacks the untrusted default certificate: %s", b)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		hookMu.Lock()
		got := strings.Join(cards, "\n")
		hookMu.Unlock()
		if strings.Contains(got, "sbcwatch: tls_cert_untrusted (critical)") && strings.Contains(got, "AdaptiveCard") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Teams webhook got no tls_cert_untrusted card: %s", got)
		}
	}

	// POST /api/v1/audits/run (admin): targets are limited to what the SBC
	// is known by; a valid run is stored and its id returned.
	admin := newToken(t, dsn, "ops", "admin")
	post := func(body string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/audits/run", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(admin))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for body, want := range map[string]int{
		`{"target":"` + sbc.Addr + `"}`:              http.StatusBadRequest, // no sbc
		`{"sbc":"nope"}`:                             http.StatusNotFound,
		`{"sbc":"lab","target":"scanme.example:22"}`: http.StatusBadRequest,
		`{"sbc":"lab","target":"` + sbc.Addr + `"}`:  http.StatusOK,
	} {
		if code, got := post(body); code != want {
			t.Errorf("POST %s: %d %s, want %d", body, code, got, want)
		} else if want == http.StatusOK && !strings.Contains(got, "audit_ids") {
			t.Errorf("POST %s: %s", body, got)
		}
	}
}

// TestCleanAuditWhileLiveHandshakesFail: the audit finds the SBC clean,
// but the store holds a failed handshake from Microsoft to the same SBC
// an hour ago: the audit says so (audit_passes_live_fails).
func TestCleanAuditWhileLiveHandshakesFail(t *testing.T) {
	dsn := testDatabase(t)
	dir := t.TempDir()
	ca := certtest.New(t, certtest.Spec{CN: "Lab Root", CA: true, RSABits: 2048}, nil)
	good := certtest.New(t, certtest.Spec{CN: "sbc.contoso.example", DNS: []string{"sbc.contoso.example"}, RSABits: 2048}, ca)
	sbc := audittest.Start(t, audittest.Config{
		ByName:  map[string]tls.Certificate{"sbc.contoso.example": good.TLS()},
		Default: good.TLS(),
	})
	caFile, _ := ca.WritePEM(t, dir, "ca")
	if c, _, e := runCLI("migrate", "--db", dsn); c != exitOK {
		t.Fatalf("migrate: %s", e)
	}
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	when := time.Now().Add(-time.Hour).UTC()
	live := &tlsaudit.Conn{
		ID:     "52.114.75.24:8576->192.0.2.10:5061",
		Client: netip.MustParseAddrPort("52.114.75.24:8576"), Server: netip.MustParseAddrPort("192.0.2.10:5061"),
		FirstSeen: when, LastSeen: when.Add(16 * time.Millisecond), Duration: 16 * time.Millisecond,
		SNI: "sbc.contoso.example", Outcome: tlsaudit.OutcomeReset, ClosedBy: "client", FromMicrosoft: true,
	}
	if err := st.SaveReport(context.Background(), "lab", "live", report.Build(nil, []*tlsaudit.Conn{live}, nil)); err != nil {
		t.Fatal(err)
	}
	st.Close()

	addr := freeAddr(t)
	cfg := filepath.Join(dir, "sbcwatch.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`sbcs:
  - name: lab
    fqdns: [sbc.contoso.example]
    audit: {targets: ["%s"], count: 1, interval: 1h}
trust: ["%s"]
no_system_roots: true
`, sbc.Addr, caFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := newToken(t, dsn, "ci", "read")
	out := startServe(t, "--db", dsn, "--listen", addr, "--config", cfg)
	var body string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/findings?rule=audit_passes_live_fails", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if body = string(b); strings.Contains(body, "audit_passes_live_fails") {
			break
		}
	}
	if !strings.Contains(body, "audit_passes_live_fails") || !strings.Contains(body, "52.114.75.24") {
		t.Fatalf("no audit_passes_live_fails finding: %s\ndaemon: %s", body, out.String())
	}
}

// TestServeStoresPolledCounters: serve polls an SBC's REST KPIs (HTTPS,
// device CA trusted from the config) every second and the counter series
// with deltas comes back from the API.
func TestServeStoresPolledCounters(t *testing.T) {
	dsn := testDatabase(t)
	dir := t.TempDir()
	var mu sync.Mutex
	short := 10
	kpi := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "monitor" || p != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/api/v1/kpi/current/sbc/callStats/global":
			mu.Lock()
			short += 3
			v := short
			mu.Unlock()
			fmt.Fprintf(w, `{"items":[{"id":"shortCallsCounterTotal","value":%d},{"id":"establishedCallsInTotal","value":%d}]}`, v, 100+v)
		case "/api/v1/kpi/current/sbc/callStats/ipGroup":
			fmt.Fprint(w, `{"items":[]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer kpi.Close()
	caFile := filepath.Join(dir, "device-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kpi.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("pw"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sbcwatch.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`sbcs:
  - name: m800
    poll:
      method: rest
      interval: 1s
      rest: {url: "%s", user: monitor, password_file: pw, ca_file: device-ca.pem}
`, kpi.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := newToken(t, dsn, "ci", "read")
	addr := freeAddr(t)
	out := startServe(t, "--db", dsn, "--listen", addr, "--config", cfg)
	var page struct {
		Items []struct {
			Counter string   `json:"counter"`
			Value   float64  `json:"value"`
			Delta   *float64 `json:"delta"`
		} `json:"items"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/counters?sbc=m800&counter=short_calls", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_ = json.Unmarshal(b, &page)
			withDelta := 0
			for _, it := range page.Items {
				if it.Delta != nil {
					withDelta++
				}
			}
			if withDelta > 0 {
				for _, it := range page.Items {
					if it.Delta != nil && *it.Delta != 3 {
						t.Fatalf("delta = %v, want 3 per poll: %s", *it.Delta, b)
					}
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no short_calls samples with a delta: %+v\ndaemon: %s", page, out.String())
		}
	}
}

// freeAddr returns a loopback address with a port free at the moment.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe runs `sbcwatch serve ARGS...` until the test ends, then
// stops it and checks it exited cleanly; it returns the daemon's output.
func startServe(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"serve"}, args...), out, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("serve exited %d: %s", code, out.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	})
	return out
}

// newToken migrates the database (a no-op when current) and returns a new
// API token from `sbcwatch token create`.
func newToken(t *testing.T, dsn, name, scope string) string {
	t.Helper()
	if c, _, e := runCLI("migrate", "--db", dsn); c != exitOK {
		t.Fatalf("migrate: %s", e)
	}
	code, tok, errOut := runCLI("token", "create", "--db", dsn, "--name", name, "--scope", scope)
	if code != exitOK {
		t.Fatalf("token create: %s", errOut)
	}
	return strings.TrimSpace(tok)
}
