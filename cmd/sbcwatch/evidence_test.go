package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEvidenceBundleOfLabCapture: the failing-transfer lab capture,
// stored with `analyze --store`, served by `serve`, gives an evidence
// bundle for the blamed call that names the failed TLS connections from
// Microsoft and leads with refer_delivery_failed.
func TestEvidenceBundleOfLabCapture(t *testing.T) {
	dsn := testDatabase(t)
	dir := filepath.Join("..", "..", "testdata", "lab")
	const callID = "752b01c65f7d53cc77ff@192.0.2.10" // testdata/lab/transfer_fails_default_cert.expect.json
	if code, _, e := runCLI("analyze", "--config", filepath.Join(dir, "sbcwatch.yaml"), "--store", "--db", dsn, "--sbc", "lab",
		filepath.Join(dir, "transfer_fails_default_cert.pcap")); code != exitOK {
		t.Fatalf("analyze --store: %s", e)
	}
	tok := newToken(t, dsn, "ticketing", "read")
	addr := freeAddr(t)
	out := startServe(t, "--db", dsn, "--listen", addr)
	get := func(path string) (int, []byte) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	var status int
	var body []byte
	for deadline := time.Now().Add(20 * time.Second); ; {
		status, body = get("/api/v1/calls/" + url.PathEscape(callID) + "/evidence")
		if status == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if status != 200 {
		t.Fatalf("evidence: %d %s (daemon: %s)", status, body, out.String())
	}
	var ev struct {
		Verdict   string   `json:"verdict"`
		FailedTLS []string `json:"failed_tls"`
		Findings  []struct {
			Rule string `json:"rule"`
		} `json:"findings"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	if len(ev.FailedTLS) != 4 {
		t.Fatalf("failed_tls = %v, want the 4 attempts", ev.FailedTLS)
	}
	for _, c := range ev.FailedTLS {
		if !strings.HasPrefix(c, "52.114.75.24:") {
			t.Errorf("failed connection %q is not from Microsoft's REFER address", c)
		}
	}
	if len(ev.Findings) == 0 || ev.Findings[0].Rule != "refer_delivery_failed" || !strings.Contains(ev.Verdict, "transfer never arrived") {
		t.Fatalf("verdict %q, findings %v", ev.Verdict, ev.Findings)
	}
	// The plain-text bundle for a ticket says the same.
	if status, body = get("/api/v1/calls/" + url.PathEscape(callID) + "/evidence?format=text"); status != 200 || !strings.Contains(string(body), "default.sbc.local") {
		t.Fatalf("text evidence: %d %s", status, body)
	}
}
