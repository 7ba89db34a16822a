package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeCheckConfig: the shipped example passes; a broken file gets
// every problem listed at once (file and flags), one per line, exit 2; a
// key that does nothing (unknown) is an error.
func TestServeCheckConfig(t *testing.T) {
	code, out, errOut := runCLI("serve", "--check-config", "--config", "../../sbcwatch.example.yaml")
	if code != exitOK || !strings.Contains(out, "configuration OK") {
		t.Fatalf("example: exit %d: %s%s", code, out, errOut)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`sbcs:
  - name: a
    addresses: [not-an-ip]
serve:
  listen: nowhere
  queue_size: -1
  capture: {ports: [70000]}
  alerts:
    min_severity: info
    webhooks:
      - {name: x, kind: json, url: "ftp://x"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI("serve", "--check-config", "--config", bad, "--acdr-listen", "10.0.0.5", "--interface", "nosuchif9")
	if code != exitUsage {
		t.Fatalf("broken: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"9 problem(s)", "sbcs[0].addresses", "serve.listen", "serve.acdr_listen", "serve.queue_size",
		"serve.capture.ports[0]", "min_severity", `url "ftp://x"`, "needs secret_file or secret_env", `"nosuchif9"`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check-config output lacks %q:\n%s", want, errOut)
		}
	}
	unknown := filepath.Join(dir, "unknown.yaml")
	if err := os.WriteFile(unknown, []byte("serve:\n  syslog_lisen: 127.0.0.1:514\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI("serve", "--check-config", "--config", unknown)
	if code != exitUsage || !strings.Contains(errOut, "syslog_lisen") {
		t.Fatalf("unknown key: exit %d: %s", code, errOut)
	}
}

// TestServeSourceCannotStart: a syslog port taken by another program
// stops serve at once with one line naming the source and the address.
func TestServeSourceCannotStart(t *testing.T) {
	dsn := testDatabase(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, errOut := runCLI("serve", "--db", dsn, "--listen", freeAddr(t), "--syslog-listen", ln.Addr().String())
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	last := lines[len(lines)-1]
	if code != exitUsage || !strings.HasPrefix(last, "sbcwatch serve: live: syslog-tcp: ") || !strings.Contains(last, ln.Addr().String()) {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}
