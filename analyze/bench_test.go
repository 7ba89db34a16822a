package analyze

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sbcwatch/sbcwatch/config"
)

// BenchmarkAnalyze measures the whole offline job on a synthetic capture
// made by tools/gencap (2000 calls, TLS handshakes every 10th call).
func BenchmarkAnalyze(b *testing.B) {
	dir := b.TempDir()
	file := filepath.Join(dir, "bench.pcap")
	cmd := exec.Command("go", "run", "../tools/gencap", "-calls", "2000", "-o", file)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("gencap: %v", err)
	}
	st, err := os.Stat(file)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := Files(context.Background(), []string{file}, Options{Config: config.Default()})
		if err != nil {
			b.Fatal(err)
		}
		if len(rep.Calls) < 2000 {
			b.Fatalf("calls = %d", len(rep.Calls))
		}
	}
}
