package analyze

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
)

const labPcap = "../testdata/lab/transfer_fails_default_cert.pcap"

// TestCaptureDirectoryOddFiles: in a capture directory, a text file and a
// binary file that are neither capture nor log, a FIFO and a dangling link
// are skipped with one warning each; a symbolic link to a capture is
// followed; a file named twice is read once, with a warning.
func TestCaptureDirectoryOddFiles(t *testing.T) {
	good, err := Files(context.Background(), []string{labPcap}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	elsewhere := t.TempDir()
	b, err := os.ReadFile(labPcap)
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(elsewhere, "real.pcap")
	must(t, os.WriteFile(target, b, 0o600))
	must(t, os.Symlink(target, filepath.Join(dir, "a-link.pcap")))
	must(t, os.Symlink(filepath.Join(elsewhere, "gone.pcap"), filepath.Join(dir, "b-dangling.pcap")))
	must(t, os.WriteFile(filepath.Join(dir, "c-notes.txt"), []byte("capture taken on the SBC, see ticket 42\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "d-junk.bin"), bytes.Repeat([]byte{0, 0xff, 0x13, 0x88}, 64), 0o600))
	must(t, syscall.Mkfifo(filepath.Join(dir, "e-fifo"), 0o600))
	must(t, os.Mkdir(filepath.Join(dir, "f-subdir"), 0o700))

	rep, err := Files(context.Background(), []string{dir, target}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stats.Packets != good.Stats.Packets {
		t.Errorf("packets %d, want %d (the linked capture once)", rep.Stats.Packets, good.Stats.Packets)
	}
	want := []string{
		"b-dangling.pcap: skipped: no such file or directory",
		"e-fifo: skipped: not a regular file (a named pipe)",
		"real.pcap: the same file as " + filepath.Join(dir, "a-link.pcap") + "; read once",
		"d-junk.bin: skipped: not a capture or an SBC log",
		"c-notes.txt: skipped: not a capture, and no AudioCodes log lines in it",
	}
	if len(rep.Warnings) != len(want) {
		t.Fatalf("warnings %q", rep.Warnings)
	}
	for i, w := range want {
		if !strings.HasSuffix(rep.Warnings[i], w) {
			t.Errorf("warning %d = %q, want …%q", i, rep.Warnings[i], w)
		}
	}
}

// TestNamedFIFO: a named pipe given as input fails at once with one line
// (opening it would block until a writer came, deaf to SIGINT/SIGTERM).
func TestNamedFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "live")
	must(t, syscall.Mkfifo(fifo, 0o600))
	done := make(chan error, 1)
	go func() {
		_, err := Files(context.Background(), []string{fifo}, Options{})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "not a regular file (a named pipe)") {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("analyze blocked on a FIFO")
	}
}

// TestLogOddLines: a log line over 1 MiB is skipped and counted (the rest
// of the log still counts), and a NUL in the first 512 bytes of a log
// does not make it binary.
func TestLogOddLines(t *testing.T) {
	orig, err := os.ReadFile(filepath.Join("..", "audiocodes", "syslog", "testdata", "field-evidence.log"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.LogYear = 2026
	nl := bytes.IndexByte(orig, '\n') + 1
	var long []byte
	long = append(long, orig[:nl]...)
	long = append(long, bytes.Repeat([]byte("x"), 40<<20)...)
	long = append(long, '\n')
	long = append(long, orig[nl:]...)
	nul := append([]byte(nil), orig...)
	nul[nl/2] = 0
	dir := t.TempDir()
	for name, data := range map[string][]byte{"long.log": long, "nul.log": nul} {
		path := filepath.Join(dir, name)
		must(t, os.WriteFile(path, data, 0o600))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rep, err := Files(context.Background(), []string{path}, Options{Config: cfg})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		runtime.ReadMemStats(&after)
		if a := after.TotalAlloc - before.TotalAlloc; a > 16<<20 {
			t.Errorf("%s: allocated %d MB reading a %d MB log", name, a>>20, len(data)>>20)
		}
		if len(rep.Findings) != 1 {
			t.Errorf("%s: %d findings, want the one of the field log", name, len(rep.Findings))
		}
		switch name {
		case "long.log":
			if rep.Stats.Extra["log_lines_too_long"] != 1 || rep.Stats.Extra["log_lines"] != 19 ||
				len(rep.Warnings) != 1 || !strings.HasSuffix(rep.Warnings[0], "long.log: 1 lines longer than 1 MiB skipped") {
				t.Errorf("long line: stats %v, warnings %q", rep.Stats.Extra, rep.Warnings)
			}
		case "nul.log":
			if rep.Stats.Extra["log_lines"] != 19 || len(rep.Warnings) != 0 {
				t.Errorf("NUL: stats %v, warnings %q", rep.Stats.Extra, rep.Warnings)
			}
		}
	}
}

func TestIsText(t *testing.T) {
	rnd := make([]byte, 512)
	x := uint32(1)
	for i := range rnd {
		x = x*1664525 + 1013904223
		rnd[i] = byte(x >> 24)
	}
	for _, c := range []struct {
		b    []byte
		want bool
	}{
		{[]byte("17:04:01.123 SIP/2.0 200 OK\r\nVia: x\r\n"), true},
		{[]byte("Größe: überprüft — ok\n"), true},
		{append([]byte("line one\x00 and two\n"), bytes.Repeat([]byte("abc "), 100)...), true},
		{rnd, false},
		{bytes.Repeat([]byte{0, 1, 2, 3}, 128), false},
	} {
		if got := isText(c.b); got != c.want {
			t.Errorf("isText(%q…) = %v", c.b[:16], got)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestLogReadStopsOnSignal: reading a long log ends when the context does
// (SIGINT/SIGTERM in the CLI), with the context's error, not an input error.
func TestLogReadStopsOnSignal(t *testing.T) {
	orig, err := os.ReadFile(filepath.Join("..", "audiocodes", "syslog", "testdata", "field-evidence.log"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "big.log")
	must(t, os.WriteFile(path, bytes.Repeat(orig, 2000), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := config.Default()
	cfg.LogYear = 2026
	_, err = Files(ctx, []string{path}, Options{Config: cfg})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrInput) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
