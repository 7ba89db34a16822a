package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/internal/testtool"
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

// TestServeWithoutCapNetRaw: capturing without CAP_NET_RAW stops serve
// with one line saying so. As root the test runs the binary as nobody
// (setpriv); otherwise this process already lacks the capability.
func TestServeWithoutCapNetRaw(t *testing.T) {
	dsn := testDatabase(t)
	if c, _, e := runCLI("migrate", "--db", dsn); c != exitOK {
		t.Fatalf("migrate: %s", e)
	}
	args := []string{"serve", "--db", dsn, "--listen", freeAddr(t), "--interface", "lo"}
	var code int
	var errOut string
	if os.Geteuid() != 0 {
		code, _, errOut = runCLI(args...)
	} else {
		setpriv := testtool.Need(t, "setpriv")
		bin := filepath.Join(t.TempDir(), "sbcwatch")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v: %s", err, out)
		}
		if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("serve as nobody: %v: %s", err, stderr.String())
		}
		code, errOut = ee.ExitCode(), stderr.String()
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	last := lines[len(lines)-1]
	if code != exitUsage || !strings.HasPrefix(last, "sbcwatch serve: live: capture-lo: capturing needs CAP_NET_RAW") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}
