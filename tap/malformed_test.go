package tap

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/internal/malformed"
)

// TestMalformedCorpus: every early end of a capture keeps the packets
// before the damage and leaves exactly one warning naming the file; a file
// with nothing readable fails to open or warns with no packets; no case
// allocates anywhere near what a corrupt length asks for.
func TestMalformedCorpus(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("..", "testdata", "lab", "transfer_fails_default_cert.pcap"))
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
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			src, err := Open(path)
			if err != nil {
				if !c.Fatal {
					t.Fatalf("open: %v", err)
				}
				if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), path) {
					t.Fatalf("error %q: not one line naming the file", err)
				}
				return
			}
			defer src.Close()
			got := 0
			for {
				_, err := src.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("Next: %v", err)
				}
				got++
			}
			runtime.ReadMemStats(&after)
			if a := after.TotalAlloc - before.TotalAlloc; a > 32<<20 {
				t.Errorf("allocated %d MB for a %d-byte file", a>>20, len(c.Data))
			}
			w := src.Warnings()
			if c.Fatal {
				if got != 0 || len(w) != 1 || !strings.Contains(w[0], "no packet could be read") {
					t.Fatalf("nothing readable: %d packets, warnings %q", got, w)
				}
				return
			}
			switch {
			case c.Packets >= 0 && got != c.Packets:
				t.Errorf("%d packets, want %d", got, c.Packets)
			case c.Packets < 0 && (got == 0 || got >= 121):
				t.Errorf("%d packets, want some but not all", got)
			}
			if !c.Warn {
				if len(w) != 0 {
					t.Fatalf("warnings on a good file: %q", w)
				}
				return
			}
			if len(w) != 1 || !strings.HasPrefix(w[0], path+": ") || strings.Contains(w[0], "\n") {
				t.Fatalf("warnings %q, want one line naming %s", w, path)
			}
			t.Log(w[0])
		})
	}
}
