package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/alert"
	"github.com/sbcwatch/sbcwatch/internal/testtool"
)

// freeUDPTCPPort returns a loopback address whose port is free for both
// UDP and TCP (a syslog listener binds both).
func freeUDPTCPPort(t *testing.T) string {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return ""
}

// TestServeSyslogFromLogger: util-linux logger sends the field case's
// AudioCodes log lines to --syslog-listen over UDP (RFC 5424) and TCP
// (RFC 3164, octet counting); serve finds tls_context_wrong, the API
// lists it, and a signed webhook receives each finding once with a valid
// signature.
func TestServeSyslogFromLogger(t *testing.T) {
	logger := testtool.Need(t, "logger")
	dsn := testDatabase(t)
	tok := newToken(t, dsn, "syslog", "read")
	const secret = "hook-secret"
	t.Setenv("SBCWATCH_TEST_HOOK_SECRET", secret)
	var mu sync.Mutex
	delivered := map[string]int{}
	rules := map[string]bool{}
	badSig := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if !alert.Verify(secret, r.Header.Get("X-Sbcwatch-Timestamp"), body, r.Header.Get("X-Sbcwatch-Signature")) {
			badSig++
		}
		var p struct {
			Key     string `json:"key"`
			Finding struct {
				Rule string `json:"rule"`
			} `json:"finding"`
		}
		_ = json.Unmarshal(body, &p)
		delivered[p.Key]++
		rules[p.Finding.Rule] = true
	}))
	defer hook.Close()

	dir := t.TempDir()
	cfg := filepath.Join(dir, "sbcwatch.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`serve:
  retention_days: 3650   # the log's device dates are months back
  spool: {dir: spool}
  alerts:
    webhooks:
      - {name: soc, kind: json, url: %q, secret_env: SBCWATCH_TEST_HOOK_SECRET}
`, hook.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	sl := freeUDPTCPPort(t)
	out := startServe(t, "--db", dsn, "--listen", addr, "--config", cfg, "--syslog-listen", sl)
	waitListening(t, out)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "api listening"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("API not up: %s", out.String())
		}
	}
	host, port, _ := net.SplitHostPort(sl)
	log := "../../audiocodes/syslog/testdata/field-evidence.log"
	for _, args := range [][]string{
		{"--udp", "--rfc5424"},
		{"--tcp", "--rfc3164", "--octet-count"},
	} {
		cmd := exec.Command(logger, append(args, "-n", host, "-P", port, "-t", "sbc", "-f", log)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("logger %v: %v: %s", args, err, b)
		}
	}

	get := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var page struct {
		Items []struct {
			Rule     string `json:"rule"`
			Severity string `json:"severity"`
			Summary  string `json:"summary"`
		} `json:"items"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		code, body := get("/api/v1/findings?rule=tls_context_wrong&from=2000-01-01T00:00:00Z")
		if code == 200 {
			if err := json.Unmarshal([]byte(body), &page); err != nil {
				t.Fatal(err)
			}
			if len(page.Items) > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no tls_context_wrong stored: %d %s\ndaemon: %s", code, body, out.String())
		}
	}
	if f := page.Items[0]; f.Severity != "critical" || !strings.Contains(f.Summary, "52.114.75.24") {
		t.Fatalf("finding %+v", f)
	}
	// Both transports carried the 19 lines.
	_, m := get("/metrics")
	for _, src := range []string{"syslog-udp", "syslog-tcp"} {
		want := fmt.Sprintf(`sbcwatch_source_received_total{kind="syslog",source=%q} 19`, src)
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		ok := rules["tls_context_wrong"]
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook got no tls_context_wrong: %v", delivered)
		}
	}
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if badSig != 0 {
		t.Fatalf("%d deliveries with a bad signature", badSig)
	}
	for k, n := range delivered {
		if n != 1 {
			t.Errorf("finding %s delivered %d times", k, n)
		}
	}
}
