package main

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPollRESTOnce runs `sbcwatch poll --rest` against an HTTPS server
// serving the documented KPI JSON (with a null value) and checks the
// snake_case JSON, null for "not supported", and the exit codes.
func TestPollRESTOnce(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != "monitor" || p != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/api/v1/kpi/current/sbc/callStats/global":
			_, _ = w.Write([]byte(`{"items":[
				{"id":"shortCallsCounterTotal","value":42},
				{"id":"establishedCallsInTotal","value":1000},
				{"id":"activeCallsIn","value":7},
				{"id":"averageCallDuration","value":null}]}`))
		case "/api/v1/kpi/current/sbc/callStats/ipGroup":
			_, _ = w.Write([]byte(`{"items":[]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("poll", "--rest", srv.URL, "--user", "monitor", "--password-file", pw, "--ca", ca, "--format", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var doc struct {
		Global map[string]*float64 `json:"global"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if v := doc.Global["short_calls"]; v == nil || *v != 42 {
		t.Fatalf("short_calls = %v in %s", v, out)
	}
	if v := doc.Global["established_calls_in"]; v == nil || *v != 1000 {
		t.Fatalf("established_calls_in = %v", v)
	}
	if v, ok := doc.Global["average_call_duration_s"]; !ok || v != nil {
		t.Fatalf("average_call_duration_s should be present and null: %s", out)
	}
	// Wrong password: a one-line error and exit 2.
	if err := os.WriteFile(pw, []byte("wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI("poll", "--rest", srv.URL, "--user", "monitor", "--password-file", pw, "--ca", ca)
	if code != exitUsage || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("bad password: exit %d %q", code, errOut)
	}
	// Untrusted server certificate (no --ca): refused, never silently accepted.
	code, _, _ = runCLI("poll", "--rest", srv.URL, "--user", "monitor", "--password-file", pw)
	if code != exitUsage {
		t.Fatalf("untrusted certificate accepted: exit %d", code)
	}
}
