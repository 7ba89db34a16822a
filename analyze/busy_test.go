package analyze

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// busyCapture writes a tools/gencap capture of calls with up of them up
// at once (60 s each) and a TLS handshake from Microsoft every 10 calls,
// half of them aborted: 11 minutes of capture for 1500 calls and 150 up,
// longer than every correlation window.
func busyCapture(t *testing.T, calls, up string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "busy.pcap")
	cmd := exec.Command("go", "run", "../tools/gencap", "-calls", calls, "-up", up, "-hold", "60s", "-tls-every", "10", "-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gencap: %v\n%s", err, b)
	}
	return out
}

// counter counts what leaves the engine and keeps nothing.
type counter struct {
	calls, conns int
	findings     map[string]bool
}

func (c *counter) Call(*sip.Call)         { c.calls++ }
func (c *counter) TLSConn(*tlsaudit.Conn) { c.conns++ }
func (c *counter) Finding(f *finding.Finding) {
	if c.findings == nil {
		c.findings = map[string]bool{}
	}
	c.findings[f.ID] = true
}

// TestTinyLimits runs a busy capture with limits far below what it
// needs: it completes, counts every eviction in the stats, and the
// windows never hold more than their limits.
func TestTinyLimits(t *testing.T) {
	pcap := busyCapture(t, "1500", "150")
	cfg := config.Default()
	cfg.Limits.MaxDialogs = 50
	cfg.Limits.MaxKeptMessages = 100
	cfg.Limits.MaxMessagesPerCall = 4 // each call carries 7: every ladder is cut
	cfg.Limits.MaxWindowCalls = 60
	cfg.Limits.MaxWindowConns = 20
	cfg.Limits.MaxWindowEvents = 100
	var c counter
	sum, err := Stream(context.Background(), []string{pcap}, Options{Config: cfg}, &c)
	if err != nil {
		t.Fatal(err)
	}
	x := sum.Stats.Extra
	t.Logf("calls out %d, conns %d, findings %d, stats %v", c.calls, c.conns, len(c.findings), x)
	if x["dialogs_evicted"] == 0 || x["window_calls_evicted"] == 0 || x["window_events_evicted"] == 0 || x["calls_truncated"] == 0 {
		t.Fatalf("evictions not counted: %v", x)
	}
	if x["window_calls_peak"] > 60 || x["window_conns_peak"] > 20 {
		t.Fatalf("windows over their limits: %v", x)
	}
	if c.calls < 1500 || c.conns != 150 || sum.Stats.SIPMessages != 1500*7 {
		t.Fatalf("calls %d (want at least 1500: evicted dialogs come back as new calls), conns %d, messages %d",
			c.calls, c.conns, sum.Stats.SIPMessages)
	}
	if x["internal_errors"] != 0 {
		t.Fatalf("internal errors: %d", x["internal_errors"])
	}
}
