//go:build unix

package main

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"
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

	// Text that is no log either: the error names standard input, not the
	// temporary copy.
	cmd = sbcwatch(t, "analyze", "-")
	cmd.Stdin = strings.NewReader("this is not a capture\n")
	stderr.Reset()
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitUsage ||
		!strings.Contains(stderr.String(), "standard input: not a capture") || strings.Contains(stderr.String(), "sbcwatch-input-") {
		t.Errorf("text on stdin: %v, %q", err, stderr.String())
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
		interrupt(t, name, cmd, &stderr)
		done()
	}
}

// A capture on standard input is analysed as it arrives: with
// --format ndjson the first findings come out while the writer still holds
// the pipe open (nothing waits for the end of the input, nothing is
// copied to disk), and SIGINT then ends it with exit 130.
func TestAnalyzeStreamsStdin(t *testing.T) {
	t.Parallel()
	// The lab capture 50 times, an hour apart: the first copies' failed
	// transfers are over long before the input ends, and the engine moves its
	// clock on every few thousand packets (pipeline's expireEvery).
	raw, err := os.ReadFile(labPcap)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	type frame struct {
		ci   gopacket.CaptureInfo
		data []byte
	}
	var frames []frame
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		frames = append(frames, frame{ci, data})
	}
	var capture bytes.Buffer
	w := pcapgo.NewWriter(&capture)
	if err := w.WriteFileHeader(r.Snaplen(), r.LinkType()); err != nil {
		t.Fatal(err)
	}
	for k := range 50 {
		for _, f := range frames {
			ci := f.ci
			ci.Timestamp = ci.Timestamp.Add(time.Duration(k) * time.Hour)
			if err := w.WritePacket(ci, f.data); err != nil {
				t.Fatal(err)
			}
		}
	}

	cmd := sbcwatch(t, "analyze", "--format", "ndjson", "--config", labConfig, "-")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Written from its own goroutine: the process writes records while it
	// reads, and the test reads them below.
	wrote := make(chan error, 1)
	go func() {
		_, err := stdin.Write(capture.Bytes())
		wrote <- err
	}()
	// stdin stays open: the first copies' findings must come out anyway.
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(20 * time.Second)
	findings, seen := 0, 0
	for findings == 0 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended before any finding, stderr %q", stderr.String())
			}
			seen++
			if strings.HasPrefix(l, `{"type":"finding"`) {
				findings++
			}
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("no finding within 20 s while the input is open (%d lines); stderr %q", seen, stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	defer func() { <-wrote }() // ends when the process closes its stdin
	interrupt(t, "streaming stdin", cmd, &stderr)
}

// interrupt sends SIGINT to the started cmd and checks that it exits
// 130 saying it was interrupted, within 10 s.
func interrupt(t *testing.T, name string, cmd *exec.Cmd, stderr *bytes.Buffer) {
	t.Helper()
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
}
