package analyze

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/report"
)

// jsonOf analyses paths and returns the report's JSON (or the error).
func jsonOf(t *testing.T, paths []string, opt Options) ([]byte, error) {
	t.Helper()
	rep, err := Files(context.Background(), paths, opt)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), nil
}

// sameWithAndWithoutReadAhead fails unless the JSON report (or the error)
// is byte for byte the same with the read-ahead goroutine and without.
func sameWithAndWithoutReadAhead(t *testing.T, paths []string, cfg *config.Config) {
	t.Helper()
	seq, err1 := jsonOf(t, paths, Options{Config: cfg, Sequential: true})
	par, err2 := jsonOf(t, paths, Options{Config: cfg})
	if (err1 == nil) != (err2 == nil) || (err1 != nil && err1.Error() != err2.Error()) {
		t.Fatalf("errors differ: sequential %v, read-ahead %v", err1, err2)
	}
	if !bytes.Equal(seq, par) {
		i := 0
		for i < len(seq) && i < len(par) && seq[i] == par[i] {
			i++
		}
		lo := max(0, i-200)
		t.Fatalf("reports differ at byte %d:\nsequential: %s\nread-ahead: %s", i,
			seq[lo:min(len(seq), i+200)], par[lo:min(len(par), i+200)])
	}
}

// TestReadAheadSameReport: the lab captures, the shared public captures
// (every link type, tunnels, fragments, TCP, HEP, ACDR, SCTP) and a busy
// generated capture give the same report with the read-ahead as without.
func TestReadAheadSameReport(t *testing.T) {
	if !useReadAhead(Options{}) {
		t.Skip("GOMAXPROCS is 1: the read-ahead is never used")
	}
	dir := filepath.Join("..", "testdata", "lab")
	cfg, err := config.Load(filepath.Join(dir, "sbcwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	caps, _ := filepath.Glob(filepath.Join(dir, "*.pcap"))
	if len(caps) == 0 {
		t.Fatalf("no lab captures in %s", dir)
	}
	for _, c := range caps {
		t.Run("lab/"+filepath.Base(c), func(t *testing.T) { sameWithAndWithoutReadAhead(t, []string{c}, cfg) })
	}
	t.Run("lab/all", func(t *testing.T) { sameWithAndWithoutReadAhead(t, caps, cfg) })
	t.Run("lab/keep-packets", func(t *testing.T) {
		var kept [2][]report.Packet
		for i, seq := range []bool{true, false} {
			rep, err := Files(context.Background(), caps, Options{Config: cfg, Sequential: seq, KeepPackets: &PacketLimits{}})
			if err != nil {
				t.Fatal(err)
			}
			kept[i] = rep.Packets
		}
		if len(kept[0]) == 0 || !reflect.DeepEqual(kept[0], kept[1]) {
			t.Fatalf("kept packets differ: %d sequential, %d with read-ahead", len(kept[0]), len(kept[1]))
		}
	})
	t.Run("busy", func(t *testing.T) {
		sameWithAndWithoutReadAhead(t, []string{genBusy(t)}, nil)
	})
	t.Run("shared", func(t *testing.T) {
		for _, c := range allCaptures(t, capturesDir(t)) {
			t.Run(filepath.Base(c), func(t *testing.T) { sameWithAndWithoutReadAhead(t, []string{c}, nil) })
		}
	})
}

// TestReadAheadCancel: an analysis cancelled while the read-ahead runs
// returns the context's error, not a bad-input error.
func TestReadAheadCancel(t *testing.T) {
	pcap := genBusy(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	_, err := Files(ctx, []string{pcap}, Options{Progress: func(done, total int64) {
		if calls++; calls == 1 {
			cancel() // after the first batches were read ahead
		}
	}})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrInput) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// genBusy writes a gencap capture of 3000 short calls, 500 interleaved.
func genBusy(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "busy.pcap")
	cmd := exec.Command("go", "run", "../tools/gencap", "-calls", "3000", "-concurrent", "500", "-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gencap: %v\n%s", err, b)
	}
	return out
}
