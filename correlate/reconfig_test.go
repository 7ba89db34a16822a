package correlate

import (
	"net/netip"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
)

// TestStreamSetConfigKeepsHeldState: a call handed over before a new
// configuration and not yet judged is kept and judged with the new
// short_call threshold; the configured SBC address moves (the new one
// known, the old one forgotten unless learned from a call); the lag
// follows the new give-up window.
func TestStreamSetConfigKeepsHeldState(t *testing.T) {
	cfg := testConfig()
	cfg.ShortCall = config.Duration(time.Second)
	var got []*finding.Finding
	s := NewStream(StreamOptions{Config: cfg, Emit: func(f *finding.Finding) { got = append(got, f) }})
	s.AddCall(msCall("held", "+4930999", 100, 105)) // 5 s: not short under 1 s
	s.Advance(at(110))
	s.Flush()
	if len(s.pending) != 1 {
		t.Fatalf("the call is not held (pending %d): the test needs it undecided", len(s.pending))
	}
	lag := s.lag
	next := testConfig()
	next.ShortCall = config.Duration(time.Minute)
	next.GiveUpWindow = config.Duration(5 * time.Minute)
	other := netip.MustParseAddr("198.51.100.7")
	next.SBCs[0].Addresses = []string{other.String()}
	if err := next.Validate(); err != nil {
		t.Fatal(err)
	}
	s.SetConfig(next)
	if !s.a.sbcAddrs[other] {
		t.Error("the new SBC address is not known")
	}
	if !s.a.sbcAddrs[sbc.Addr()] {
		t.Error("an address learned from a call (the SBC side) was forgotten")
	}
	if s.lag <= lag {
		t.Errorf("lag %s after a longer give-up window, was %s", s.lag, lag)
	}
	s.Close()
	if n := len(byRule(got, finding.ShortCall)); n != 1 {
		t.Fatalf("short_call findings %d, want 1 under the new 1m threshold: %v", n, rules(got))
	}
}
