package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
