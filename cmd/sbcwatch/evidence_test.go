package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/internal/testtool"
)

// TestEvidenceBundleOfLabCapture: the failing-transfer lab capture,
// stored with `analyze --store --keep-packets`, served by `serve`, gives
// an evidence bundle for the blamed call that names the failed TLS
// connections from Microsoft and leads with refer_delivery_failed; its
// pcap reads in tshark and, analysed again, gives the same verdict.
func TestEvidenceBundleOfLabCapture(t *testing.T) {
	dsn := testDatabase(t)
	dir := filepath.Join("..", "..", "testdata", "lab")
	const callID = "752b01c65f7d53cc77ff@192.0.2.10" // testdata/lab/transfer_fails_default_cert.expect.json
	if code, _, e := runCLI("analyze", "--config", filepath.Join(dir, "sbcwatch.yaml"), "--store", "--keep-packets", "--db", dsn, "--sbc", "lab",
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
		Pcap struct {
			Available bool   `json:"available"`
			Packets   int    `json:"packets"`
			Link      string `json:"link"`
		} `json:"pcap"`
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

	// The call's frames as a capture: the Link the bundle gives.
	if !ev.Pcap.Available || ev.Pcap.Packets < 4*5 || !strings.HasSuffix(ev.Pcap.Link, "/evidence?format=pcap") {
		t.Fatalf("pcap = %+v", ev.Pcap)
	}
	status, body = get(ev.Pcap.Link)
	if status != 200 || len(body) < 24 || string(body[:4]) != "\x4d\x3c\xb2\xa1" {
		t.Fatalf("pcap: %d, %d bytes, magic %x", status, len(body), body[:min(4, len(body))])
	}
	file := filepath.Join(t.TempDir(), "evidence.pcap")
	if err := os.WriteFile(file, body, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(testtool.Need(t, "tshark"), "-r", file, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	if n := len(strings.Fields(string(b))); n != ev.Pcap.Packets {
		t.Fatalf("tshark reads %d frames, the bundle says %d", n, ev.Pcap.Packets)
	}
	code, js, e := runCLI("analyze", "--config", filepath.Join(dir, "sbcwatch.yaml"), "--format", "json", file)
	if code != exitOK {
		t.Fatalf("analyze evidence.pcap: %s", e)
	}
	var again struct {
		Findings []struct {
			Rule   string `json:"rule"`
			CallID string `json:"call_id"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(js), &again); err != nil {
		t.Fatal(err)
	}
	blamed := false
	for _, f := range again.Findings {
		blamed = blamed || (f.Rule == "refer_delivery_failed" && f.CallID == callID)
	}
	if !blamed {
		t.Fatalf("the evidence pcap, analysed again, does not blame %s: %s", callID, js)
	}
}
