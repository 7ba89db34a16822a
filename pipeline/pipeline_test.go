package pipeline

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// panicSink panics on every call it is given.
type panicSink struct{ calls int }

var _ Sink = (*panicSink)(nil)

func (s *panicSink) Call(*sip.Call)           { s.calls++; panic("sink bug") }
func (s *panicSink) TLSConn(*tlsaudit.Conn)   {}
func (s *panicSink) Finding(*finding.Finding) {}

func invite(t *testing.T, p *sip.Parser, callID string, at time.Time) *sip.Message {
	t.Helper()
	raw := "INVITE sip:+4969987654@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK" + callID +
		"\r\nFrom: <sip:+493012345@198.51.100.7>;tag=a\r\nTo: <sip:+4969987654@192.0.2.10>\r\nCall-ID: " + callID +
		"\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	m, err := p.ParseDatagram(sip.MessageMeta{Time: at, Src: netip.MustParseAddrPort("198.51.100.7:5060"),
		Dst: netip.MustParseAddrPort("192.0.2.10:5060"), Transport: "udp", Origin: "wire"}, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDownstreamPanicIsABug: a panic after decoding (here in the sink)
// is counted as an internal error, not as a malformed packet, logged
// once with its stack, and the input goes on.
func TestDownstreamPanicIsABug(t *testing.T) {
	var logs bytes.Buffer
	sink := &panicSink{}
	e, err := New(Options{Sink: sink, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	e.Message(invite(t, e.Parser(), "a@x", at))
	e.Message(invite(t, e.Parser(), "b@x", at.Add(time.Second)))
	st, _ := e.Close()
	if sink.calls != 2 || st.Panics != 2 {
		t.Fatalf("sink saw %d calls, %d panics counted; want 2 and 2", sink.calls, st.Panics)
	}
	if st.Decoder.Malformed != 0 || st.SIPErrors != 0 {
		t.Fatalf("a downstream panic counted as bad input: %+v", st)
	}
	if n := strings.Count(logs.String(), "internal error"); n != 1 || !strings.Contains(logs.String(), "goroutine") {
		t.Fatalf("want one log line with a stack, got %d:\n%s", n, logs.String())
	}
}

// collect keeps what leaves the engine.
type collect struct {
	calls []*sip.Call
	fs    map[string]*finding.Finding
}

func (c *collect) Call(x *sip.Call)       { c.calls = append(c.calls, x) }
func (c *collect) TLSConn(*tlsaudit.Conn) {}
func (c *collect) Finding(f *finding.Finding) {
	if c.fs == nil {
		c.fs = map[string]*finding.Finding{}
	}
	c.fs[f.ID] = f
}

// TestCallsLeaveOnTheLiveClock: with the receive clock, a call leaves
// through the sink once Advance passes its idle timeout, before Close.
func TestCallsLeaveOnTheLiveClock(t *testing.T) {
	sink := &collect{}
	e, err := New(Options{Sink: sink, ReceiveClock: true})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	e.Message(invite(t, e.Parser(), "a@x", at))
	e.Advance(at.Add(time.Minute))
	if len(sink.calls) != 0 {
		t.Fatal("a call left before its timeout")
	}
	e.Advance(at.Add(e.Config().DialogTimeout.D() + time.Minute))
	if len(sink.calls) != 1 || sink.calls[0].EndReason != "timeout" {
		t.Fatalf("calls out after the timeout: %d", len(sink.calls))
	}
	if !e.Watermark().Equal(at.Add(e.Config().DialogTimeout.D() + time.Minute)) {
		t.Fatalf("watermark %v", e.Watermark())
	}
	e.Close()
}
