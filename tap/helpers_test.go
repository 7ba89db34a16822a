package tap

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// capturesDir finds the shared test captures: $SBCWATCH_CAPTURES, or
// ../shared/captures relative to the module root. Missing: fail under
// CI=true, skip otherwise.
func capturesDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SBCWATCH_CAPTURES")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(d, "..", "shared", "captures")
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if st, err := os.Stat(dir); dir == "" || err != nil || !st.IsDir() {
		if os.Getenv("CI") == "true" {
			t.Fatalf("test captures not found (set SBCWATCH_CAPTURES): %q", dir)
		}
		t.Skipf("test captures not found at %q (set SBCWATCH_CAPTURES)", dir)
	}
	return dir
}

// captureFiles lists every capture under the shared directory.
func captureFiles(t testing.TB) []string {
	t.Helper()
	root := capturesDir(t)
	var out []string
	err := filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.Type().IsRegular() && !strings.HasSuffix(p, ".md") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	if len(out) == 0 {
		t.Fatalf("no captures under %s", root)
	}
	return out
}

// oracleFiles lists the shared captures plus this package's testdata
// captures, for the comparisons with tshark.
func oracleFiles(t testing.TB) []string {
	t.Helper()
	own, err := filepath.Glob(filepath.Join("testdata", "*.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	return append(captureFiles(t), own...)
}

// fileName names a capture in subtests.
func fileName(t testing.TB, file string) string {
	if rel, err := filepath.Rel(capturesDir(t), file); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return file
}

// tshark runs tshark (the oracle); it is required under CI=true.
func tshark(t testing.TB, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("tshark")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("tshark is required under CI: %v", err)
		}
		t.Skip("tshark not installed")
	}
	cmd := exec.Command(path, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		// tshark exits 2 on a truncated last packet but prints the rest.
		if !errors.As(err, &ee) || out.Len() == 0 {
			t.Fatalf("tshark %v: %v: %s", args, err, stderr.String())
		}
	}
	return out.String()
}

// tsharkCount counts the lines tshark prints for a display filter.
func tsharkCount(t testing.TB, file, filter string, fields ...string) int {
	t.Helper()
	args := []string{"-n", "-r", file, "-T", "fields", "-e", "frame.number"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	if filter != "" {
		args = append(args, "-Y", filter)
	}
	out := strings.TrimSpace(tshark(t, args...))
	if out == "" {
		return 0
	}
	return len(strings.Split(out, "\n"))
}

// rec is a Handler recording everything.
type rec struct {
	datagrams []recDatagram
	streams   []*recStream
}

type recDatagram struct {
	m Meta
	p []byte
}

func (r *rec) Datagram(m Meta, p []byte) {
	r.datagrams = append(r.datagrams, recDatagram{m, append([]byte(nil), p...)})
}

func (r *rec) Stream(c ConnInfo) StreamConsumer {
	s := &recStream{info: c}
	r.streams = append(r.streams, s)
	return s
}

type recStream struct {
	info    ConnInfo
	data    [2]bytes.Buffer
	gaps    [2]int
	events  []Event
	closes  int
	reason  CloseReason
	closeAt time.Time
	// times of each Data call
	times []time.Time
}

func (s *recStream) Data(dir Dir, b []byte, t time.Time) {
	if s.closes > 0 {
		panic("data after close")
	}
	s.data[dir].Write(b)
	s.times = append(s.times, t)
}
func (s *recStream) Gap(dir Dir, n int, _ time.Time) { s.gaps[dir] += n }
func (s *recStream) Event(e Event)                   { s.events = append(s.events, e) }
func (s *recStream) Close(t time.Time, r CloseReason) {
	s.closes++
	s.reason, s.closeAt = r, t
}

func (s *recStream) kinds() []EventKind {
	var k []EventKind
	for _, e := range s.events {
		k = append(k, e.Kind)
	}
	return k
}

// decodeAll reads files through Open and a Decoder.
func decodeAll(t testing.TB, opt Options, files ...string) (*rec, Stats) {
	t.Helper()
	src, err := Open(files...)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	r := &rec{}
	d := NewDecoder(r, opt)
	for {
		p, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		d.Decode(p)
	}
	d.Close()
	return r, d.Stats()
}
