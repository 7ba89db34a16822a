package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/internal/malformed"
)

// TestAnalyzeMalformedCorpus runs `sbcwatch analyze` on every damaged
// capture of the generated corpus: a file that ends early is exit 0 with
// the report and exactly one warning line on stderr naming the file; a
// file with nothing readable is exit 2 with one error line and no report.
func TestAnalyzeMalformedCorpus(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("..", "..", "testdata", "lab", "transfer_fails_default_cert.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	cases, err := malformed.Corpus(base)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			path := filepath.Join(dir, c.Name)
			if err := os.WriteFile(path, c.Data, 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := runCLI("analyze", "--format", "json", path)
			lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
			switch {
			case c.Fatal:
				if code != exitUsage || out != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "sbcwatch analyze: bad input: "+path+": ") {
					t.Fatalf("exit %d, stderr %q, stdout %d bytes; want exit 2 and one line", code, errOut, len(out))
				}
			case c.Warn:
				if code != exitOK || len(lines) != 1 || !strings.HasPrefix(lines[0], "sbcwatch analyze: warning: "+path+": ") {
					t.Fatalf("exit %d, stderr %q; want exit 0 and one warning", code, errOut)
				}
				if !strings.Contains(out, `"damaged_files": 1`) || !strings.Contains(out, path+": ") {
					t.Fatalf("the report does not carry the damage:\n%s", out)
				}
			default:
				if code != exitOK || errOut != "" {
					t.Fatalf("exit %d, stderr %q", code, errOut)
				}
			}
		})
	}
}

// TestAnalyzeOddInputs: a directory with a note, junk and a FIFO beside a
// capture is exit 0 with one warning line per skipped file, and no wait
// on the FIFO. (A FIFO named on the command line is read: stdin_test.go.)
func TestAnalyzeOddInputs(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "lab", "transfer_fails_default_cert.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"a.pcap": b, "notes.txt": []byte("see ticket 42\n"), "junk.bin": {0, 1, 2, 3, 0xff, 0xfe, 0, 0}} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fifo := filepath.Join(dir, "live.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	var code int
	var out, errOut string
	done := make(chan struct{})
	go func() {
		defer close(done)
		code, out, errOut = runCLI("analyze", dir)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("analyze waited on the FIFO in the directory")
	}
	lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
	if code != exitOK || len(lines) != 3 || !strings.Contains(out, "findings: ") {
		t.Fatalf("directory: exit %d, stderr %q", code, errOut)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "sbcwatch analyze: warning: "+dir) || !strings.Contains(l, "skipped") {
			t.Errorf("warning line %q", l)
		}
	}
}
