//go:build unix

package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHelperMain is the sbcwatch binary for the tests below: with
// SBCWATCH_HELPER_MAIN=1 it runs main with the arguments after "--"
// and exits; otherwise it does nothing.
func TestHelperMain(t *testing.T) {
	if os.Getenv("SBCWATCH_HELPER_MAIN") != "1" {
		return
	}
	os.Args = append([]string{"sbcwatch"}, flag.Args()...)
	main()
}

// helperArgs run the test binary as sbcwatch (see TestHelperMain).
var helperArgs = []string{"-test.run=^TestHelperMain$", "--"}

// sbcwatch is the test binary run as sbcwatch with args.
func sbcwatch(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], append(append([]string(nil), helperArgs...), args...)...)
	cmd.Env = append(os.Environ(), "SBCWATCH_HELPER_MAIN=1")
	return cmd
}

func TestAnalyzeReadsStdinAndFIFO(t *testing.T) {
	t.Parallel()
	code, want, errOut := runCLI("analyze", "--format", "json", labPcap)
	if code != exitOK {
		t.Fatalf("file: exit %d: %s", code, errOut)
	}

	// analyze - < file
	f, err := os.Open(labPcap)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := sbcwatch(t, "analyze", "--format", "json", "-")
	cmd.Stdin = f
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("analyze -: %v: %s", err, stderr.String())
	}
	if out.String() != want {
		t.Errorf("analyze - differs from analyze FILE")
	}

	// analyze FIFO, written by another process as <(cat file) would be.
	fifo := filepath.Join(t.TempDir(), "capture.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	writer := exec.Command("sh", "-c", `cat "$1" > "$2"`, "sh", labPcap, fifo)
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	defer writer.Wait()
	cmd = sbcwatch(t, "analyze", "--format", "json", fifo)
	out.Reset()
	stderr.Reset()
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("analyze FIFO: %v: %s", err, stderr.String())
	}
	if out.String() != want {
		t.Errorf("analyze FIFO differs from analyze FILE")
	}

	// /dev/stdin fed by a pipe, and bash's process substitution.
	for name, script := range map[string]string{
		"/dev/stdin":           `cat "$1" | "$0" "$2" "$3" analyze --format json /dev/stdin`,
		"process substitution": `"$0" "$2" "$3" analyze --format json <(cat "$1")`,
	} {
		cmd := exec.Command("bash", "-c", script, os.Args[0], labPcap, helperArgs[0], helperArgs[1])
		cmd.Env = append(os.Environ(), "SBCWATCH_HELPER_MAIN=1")
		out.Reset()
		stderr.Reset()
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v: %s", name, err, stderr.String())
		}
		if out.String() != want {
			t.Errorf("%s differs from analyze FILE", name)
		}
	}

	// An empty standard input is one line, exit 2.
	cmd = sbcwatch(t, "analyze", "-")
	cmd.Stdin = strings.NewReader("")
	stderr.Reset()
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitUsage || !strings.Contains(stderr.String(), "standard input is empty") {
		t.Errorf("empty stdin: %v, %q", err, stderr.String())
	}
}

// SIGINT ends analyze while it waits for a FIFO's writer or for more
// standard input.
func TestAnalyzeInterruptedWhileWaiting(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "never.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, setup := range map[string]func() (*exec.Cmd, func()){
		"fifo without writer": func() (*exec.Cmd, func()) {
			return sbcwatch(t, "analyze", fifo), func() {}
		},
		"stdin left open": func() (*exec.Cmd, func()) {
			cmd := sbcwatch(t, "analyze", "-")
			w, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			return cmd, func() { w.Close() }
		},
	} {
		cmd, done := setup()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // let it block
		start := time.Now()
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != exitInterrupted || !strings.Contains(stderr.String(), "interrupted") {
				t.Errorf("%s: %v, stderr %q", name, err, stderr.String())
			}
			t.Logf("%s: exited %v after SIGINT", name, time.Since(start).Round(time.Millisecond))
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("%s: still running 10 s after SIGINT", name)
		}
		done()
	}
}
