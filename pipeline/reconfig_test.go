package pipeline

import (
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

type callSink struct{ calls []*sip.Call }

func (s *callSink) Call(c *sip.Call)         { s.calls = append(s.calls, c) }
func (s *callSink) TLSConn(*tlsaudit.Conn)   {}
func (s *callSink) Finding(*finding.Finding) {}

// TestSetConfigReachesTheTracker: after SetConfig makes 198.51.100.0/24
// Microsoft's, a call from there is a Microsoft call (the tracker reads
// the engine's configuration); a trust store that does not load is an
// error and changes nothing.
func TestSetConfigReachesTheTracker(t *testing.T) {
	sink := &callSink{}
	e, err := New(Options{Sink: sink, ReceiveClock: true})
	if err != nil {
		t.Fatal(err)
	}
	p := sip.NewParser(0)
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	e.Message(invite(t, p, "before", t0))
	cfg := config.Default()
	cfg.MicrosoftRanges = []string{"198.51.100.0/24"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := e.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	e.Message(invite(t, p, "after", t0.Add(time.Second)))
	bad := *cfg
	bad.Trust = []string{"/nonexistent/ca.pem"}
	if err := e.SetConfig(&bad); err == nil || e.Config() != cfg {
		t.Fatalf("a broken trust store: err %v, config replaced %v", err, e.Config() != cfg)
	}
	e.Close()
	ms := map[string]bool{}
	for _, c := range sink.calls {
		ms[c.CallID] = c.Microsoft
	}
	if len(ms) != 2 || ms["before"] || !ms["after"] {
		t.Fatalf("Microsoft calls %v: want only the one after SetConfig", ms)
	}
}
