package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sbcwatch/sbcwatch/alert"
)

// hookCounter is a signed-webhook receiver: it counts the deliveries per
// finding key whose HMAC verifies (bad ones apart), and answers 503 while
// refuse is set.
type hookCounter struct {
	srv    *httptest.Server
	refuse atomic.Bool

	mu       sync.Mutex
	got      map[string]int
	rules    map[string]int
	badSig   int
	attempts int
}

func newHookCounter(t *testing.T, secret string) *hookCounter {
	h := &hookCounter{got: map[string]int{}, rules: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.attempts++
		if h.refuse.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if !alert.Verify(secret, r.Header.Get("X-Sbcwatch-Timestamp"), body, r.Header.Get("X-Sbcwatch-Signature")) {
			h.badSig++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p struct {
			Key     string `json:"key"`
			Finding struct {
				Rule string `json:"rule"`
			} `json:"finding"`
		}
		_ = json.Unmarshal(body, &p)
		h.got[p.Key]++
		h.rules[p.Finding.Rule]++
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookCounter) snapshot() (got, rules map[string]int, bad, attempts int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	got, rules = map[string]int{}, map[string]int{}
	for k, v := range h.got {
		got[k] = v
	}
	for k, v := range h.rules {
		rules[k] = v
	}
	return got, rules, h.badSig, h.attempts
}

// sendFieldCaseSyslog sends the field case's AudioCodes log lines to a
// syslog listener over UDP, each in RFC 5424 framing.
func sendFieldCaseSyslog(t *testing.T, addr string) {
	t.Helper()
	f, err := os.Open("../../audiocodes/syslog/testdata/field-evidence.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if _, err := fmt.Fprintf(c, `<134>1 2026-04-01T09:55:05Z sbc sbc - - - %s`, sc.Text()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
}

// apiGet GETs path with a token and decodes a 200 answer into v.
func apiGet(t *testing.T, addr, tok, path string, v any) (int, string) {
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode, string(b)
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, out *syncBuffer) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out; daemon said:\n%s", what, out.String())
		}
	}
}

// callStored reports whether the API lists callID.
func callStored(t *testing.T, addr, tok, callID string) bool {
	var list struct {
		Items []struct {
			CallID string `json:"call_id"`
		} `json:"items"`
	}
	code, _ := apiGet(t, addr, tok, "/api/v1/calls?call_id="+url.QueryEscape(callID), &list)
	return code == 200 && len(list.Items) > 0
}

// TestServeSIGHUPReloads: the real SIGHUP moves the ACDR, HEP and syslog
// listeners (the old ports close, the new ones receive), raises the short_call threshold (the next call is short),
// points the webhook at a new URL (the next alert goes there, signed);
// a new address already taken keeps the old one (and the metric says
// 0 until a clean reload); then a broken file on SIGHUP keeps everything running and
// sbcwatch_config_last_reload_successful says 0.
func TestServeSIGHUPReloads(t *testing.T) {
	dsn := testDatabase(t)
	tok := newToken(t, dsn, "reload", "read")
	const secret = "reload-secret"
	t.Setenv("SBCWATCH_TEST_RELOAD_SECRET", secret)
	hook1, hook2 := newHookCounter(t, secret), newHookCounter(t, secret)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sbcwatch.yaml")
	acdr1, acdr2 := freeUDPTCPPort(t), freeUDPTCPPort(t)
	sys1, sys2 := freeUDPTCPPort(t), freeUDPTCPPort(t)
	hep1, hep2 := freeUDPTCPPort(t), freeUDPTCPPort(t)
	write := func(acdr, sys, hepAddr, shortCall, hookURL string) {
		t.Helper()
		extra := fmt.Sprintf("  hep_listen: %q\n", hepAddr)
		// No SBC configured: the syslog exporter is then taken as the
		// SBC, as in the field case.
		if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`dialog_timeout: 2s
short_call: %s
serve:
  retention_days: 3650
  acdr_listen: %q
  syslog_listen: %q
%s  alerts:
    webhooks:
      - {name: soc, kind: json, url: %q, secret_env: SBCWATCH_TEST_RELOAD_SECRET}
`, shortCall, acdr, sys, extra, hookURL)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(acdr1, sys1, hep1, "1ms", hook1.srv.URL)
	addr := freeAddr(t)
	out, stop := runServe(t, "--db", dsn, "--listen", addr, "--config", cfgPath)
	waitListening(t, out)
	waitFor(t, 10*time.Second, "API up", func() bool { return strings.Contains(out.String(), "api listening") }, out)

	// sendACDR sends a call's dialog; a write refused (an ICMP error
	// for an earlier datagram of the socket, as when the machine is
	// busy with other tests binding ports) sends the dialog again on a
	// new socket, at most three times: whether the call is stored is
	// what the test checks.
	sendACDR := func(to, callID string) {
		t.Helper()
		var err error
		for range 3 {
			if err = sendDialog(to, liveDialog(t, callID)); err == nil {
				return
			}
			t.Logf("sending %s to %s: %v; again", callID, to, err)
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatal(err)
	}
	sendACDR(acdr1, "reload-before@ms")
	waitFor(t, 30*time.Second, "call before the reload stored", func() bool { return callStored(t, addr, tok, "reload-before@ms") }, out)

	write(acdr2, sys2, hep2, "1m", hook2.srv.URL)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "reload applied", func() bool { return strings.Contains(out.String(), "reload: configuration applied") }, out)
	for _, old := range []string{acdr1, sys1, hep1} {
		if c, err := net.DialTimeout("tcp", old, time.Second); err == nil {
			c.Close()
			t.Fatalf("the old listener %s still accepts", old)
		}
	}
	_, m := apiGet(t, addr, tok, "/metrics", nil)
	if !strings.Contains(m, "sbcwatch_config_last_reload_successful 1") {
		t.Fatalf("metrics after a good reload:\n%s", grepLines(m, "reload"))
	}
	sendACDR(acdr2, "reload-after@ms")
	waitFor(t, 30*time.Second, "call on the new ACDR address stored", func() bool { return callStored(t, addr, tok, "reload-after@ms") }, out)
	// HEP on its new address.
	hc, err := net.Dial("udp", hep2)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range liveMessages("reload-hep@ms") {
		if _, err := hc.Write(hepPacket(msg)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	hc.Close()
	waitFor(t, 30*time.Second, "call on the new HEP address stored", func() bool { return callStored(t, addr, tok, "reload-hep@ms") }, out)
	// Syslog on the new address: the alert goes to the new URL.
	sendFieldCaseSyslog(t, sys2)
	waitFor(t, 90*time.Second, "tls_context_wrong delivered to the new URL", func() bool {
		_, rules, _, _ := hook2.snapshot()
		return rules["tls_context_wrong"] == 1
	}, out)
	if _, _, _, n := hook1.snapshot(); n != 0 {
		t.Fatalf("the old webhook URL got %d requests", n)
	}
	if _, _, bad, _ := hook2.snapshot(); bad != 0 {
		t.Fatalf("%d deliveries with a bad signature", bad)
	}

	// A new address that cannot be bound (taken) keeps the old one, and
	// the rest of the file applies.
	taken := freeUDPTCPPort(t)
	tl, err := net.Listen("tcp", taken)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	write(taken, sys2, hep2, "1m", hook2.srv.URL)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "reload with a taken port", func() bool { return strings.Contains(out.String(), "reload: applied except: serve.acdr_listen") }, out)
	_, m = apiGet(t, addr, tok, "/metrics", nil)
	if !strings.Contains(m, "sbcwatch_config_last_reload_successful 0") {
		t.Fatalf("metrics after a reload that could not bind:\n%s", grepLines(m, "reload"))
	}
	sendACDR(acdr2, "reload-bindfail@ms")
	waitFor(t, 30*time.Second, "call on the kept ACDR address", func() bool { return callStored(t, addr, tok, "reload-bindfail@ms") }, out)
	write(acdr2, sys2, hep2, "1m", hook2.srv.URL)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a clean reload again", func() bool {
		_, m := apiGet(t, addr, tok, "/metrics", nil)
		return strings.Contains(m, "sbcwatch_config_last_reload_successful 1")
	}, out)

	// A broken file keeps the running configuration.
	if err := os.WriteFile(cfgPath, []byte("serve: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "reload refused", func() bool { return strings.Contains(out.String(), "configuration refused") }, out)
	_, m = apiGet(t, addr, tok, "/metrics", nil)
	if !strings.Contains(m, "sbcwatch_config_last_reload_successful 0") || !strings.Contains(m, "sbcwatch_config_last_reload_success_timestamp_seconds ") {
		t.Fatalf("metrics after a refused reload:\n%s", grepLines(m, "reload"))
	}
	if promtool, err := exec.LookPath("promtool"); err == nil || os.Getenv("CI") == "true" {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(m)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool check metrics on serve's /metrics: %v\n%s", err, b)
		}
	}
	sendACDR(acdr2, "reload-kept@ms")
	waitFor(t, 30*time.Second, "call after a refused reload stored", func() bool { return callStored(t, addr, tok, "reload-kept@ms") }, out)

	// The calls are judged a correlation lag (minutes) after they end, or
	// when serve stops: here all after the reload, so under the new 1m
	// threshold (under the old 1ms none of these calls is short), the
	// one received before the reload too (held state is judged with the
	// settings of when its time comes).
	stop()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	short := map[string]int{}
	rows, err := conn.Query(context.Background(), "select call_id from findings where rule = 'short_call'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		short[id]++
	}
	if short["reload-before@ms"] != 1 || short["reload-after@ms"] != 1 || short["reload-hep@ms"] != 1 || short["reload-kept@ms"] != 1 || short["reload-bindfail@ms"] != 1 {
		t.Fatalf("short_call findings %v: the threshold did not follow the reload", short)
	}
}

// runServe runs `sbcwatch serve ARGS...`; stop ends it (once) and checks
// it exited cleanly. The test's end stops it too.
func runServe(t *testing.T, args ...string) (*syncBuffer, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"serve"}, args...), out, out) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case code := <-done:
				if code != exitOK {
					t.Errorf("serve exited %d: %s", code, out.String())
				}
			case <-time.After(20 * time.Second):
				t.Error("serve did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return out, stop
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestServeAlertsSurviveRestart: a finding whose webhook answers 503 is
// still pending when serve stops; the next serve (same instance and
// database) delivers it; the same finding decided again by the new run
// is not delivered a second time; a second instance on the same
// database that decides the same finding does not deliver it either.
func TestServeAlertsSurviveRestart(t *testing.T) {
	dsn := testDatabase(t)
	const secret = "restart-secret"
	t.Setenv("SBCWATCH_TEST_RESTART_SECRET", secret)
	hook := newHookCounter(t, secret)
	hook.refuse.Store(true)
	dir := t.TempDir()
	sys := freeUDPTCPPort(t)
	cfgFor := func(instance string) string {
		p := filepath.Join(dir, instance+".yaml")
		if err := os.WriteFile(p, []byte(fmt.Sprintf(`serve:
  instance: %s
  retention_days: 3650
  shutdown_timeout: 1s
  syslog_listen: %q
  spool: {dir: %q}
  alerts:
    webhooks:
      - {name: soc, kind: json, url: %q, secret_env: SBCWATCH_TEST_RESTART_SECRET}
`, instance, sys, filepath.Join(dir, "spool-"+instance), hook.srv.URL)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(instance string) (*syncBuffer, string, func()) {
		addr := freeAddr(t)
		out, stop := runServe(t, "--db", dsn, "--listen", addr, "--config", cfgFor(instance))
		waitListening(t, out)
		return out, addr, stop
	}
	duplicates := func(addr string) bool {
		_, m := apiGet(t, addr, "", "/metrics", nil)
		return strings.Contains(m, `sbcwatch_alert_ledger_events_total{counter="duplicates"} `) &&
			!strings.Contains(m, `sbcwatch_alert_ledger_events_total{counter="duplicates"} 0`)
	}
	states := func() map[string]int {
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		rows, err := conn.Query(context.Background(), "select state, count(*) from alert_deliveries group by state")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for rows.Next() {
			var s string
			var n int
			if err := rows.Scan(&s, &n); err != nil {
				t.Fatal(err)
			}
			out[s] = n
		}
		return out
	}

	out1, _, stop1 := run("site-a")
	sendFieldCaseSyslog(t, sys)
	waitFor(t, 30*time.Second, "a delivery attempted and refused", func() bool {
		_, _, _, n := hook.snapshot()
		return n > 0
	}, out1)
	stop1()
	if st := states(); st["pending"] == 0 || st["delivered"] != 0 {
		t.Fatalf("after the first run: %v", st)
	}
	pending := states()["pending"]

	hook.refuse.Store(false)
	out2, addr2, stop2 := run("site-a")
	waitFor(t, 30*time.Second, "the pending delivery made by the next run", func() bool {
		got, _, _, _ := hook.snapshot()
		return len(got) == pending
	}, out2)
	// The same finding decided again by this run: nothing new.
	sendFieldCaseSyslog(t, sys)
	waitFor(t, 60*time.Second, "the finding decided again and found in the ledger", func() bool { return duplicates(addr2) }, out2)
	time.Sleep(time.Second) // a second delivery, were there one, would be under way
	stop2()

	// Another instance sharing the database decides it too.
	out3, addr3, stop3 := run("site-b")
	sendFieldCaseSyslog(t, sys)
	waitFor(t, 60*time.Second, "the other instance finds the finding in the ledger", func() bool { return duplicates(addr3) }, out3)
	time.Sleep(time.Second)
	stop3()
	got, _, bad, _ := hook.snapshot()
	for k, n := range got {
		if n != 1 {
			t.Errorf("finding %s delivered %d times", k, n)
		}
	}
	if bad != 0 || len(got) != pending {
		t.Fatalf("deliveries %v (%d bad), want %d findings once", got, bad, pending)
	}
	if st := states(); st["delivered"] != pending || st["pending"] != 0 {
		t.Fatalf("ledger at the end: %v", st)
	}
	t.Logf("%d findings delivered once each, after a restart, across two runs and two instances: %v", pending, got)
}

// sendDialog writes the datagrams to addr over one UDP socket, 20 ms
// apart.
func sendDialog(addr string, dgrams [][]byte) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, p := range dgrams {
		if _, err := c.Write(p); err != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
