package pipeline

import (
	"fmt"
	"sort"
	"time"

	"github.com/sbcwatch/sbcwatch/audiocodes/syslog"
	"github.com/sbcwatch/sbcwatch/correlate"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// correlator holds the records the rules still need and decides the
// findings: incrementally (correlate.Stream), or once at Close in batch
// mode.
type correlator struct {
	e       *Engine
	batch   bool
	stream  *correlate.Stream
	calls   []*sip.Call // batch only
	conns   []*tlsaudit.Conn
	sockets []*syslog.Socket
	nCalls  uint64 // streaming: calls and connections seen, for the hint
	nConns  uint64
}

func newCorrelator(e *Engine, batch bool) *correlator {
	c := &correlator{e: e, batch: batch}
	if !batch {
		c.stream = correlate.NewStream(correlate.StreamOptions{
			Config:         e.cfg,
			TeamsContextID: e.cfg.TeamsTLSContextID,
			Emit: func(f *finding.Finding) {
				e.sink.Finding(f)
			},
			Open:             func() []*sip.Call { return e.tracker.Open() },
			ProvisionalAfter: e.provisionalAfter,
		})
	}
	return c
}

func (c *correlator) addCall(call *sip.Call) {
	c.e.st.Calls++
	if c.batch {
		c.calls = append(c.calls, call)
		return
	}
	c.nCalls++
	c.stream.AddCall(call)
	c.e.sink.Call(call)
}

func (c *correlator) addConn(conn *tlsaudit.Conn) {
	c.e.st.Conns++
	if c.batch {
		c.conns = append(c.conns, conn)
		return
	}
	c.nConns++
	c.stream.AddConn(conn)
	c.e.sink.TLSConn(conn)
}

func (c *correlator) addSocket(s *syslog.Socket) {
	if c.batch {
		c.sockets = append(c.sockets, s)
		return
	}
	c.stream.AddSocket(s)
}

func (c *correlator) observe(m *sip.Message) {
	if !c.batch {
		c.stream.Observe(m)
	}
}

// advance moves the correlation's clock to the watermark (offline too:
// a packet that is no record still moves capture time on) and takes the
// decisions it allows.
func (c *correlator) advance(now time.Time) {
	if c.batch {
		return
	}
	c.stream.Advance(now)
	c.stream.Flush()
}

func (c *correlator) stats() correlate.StreamStats {
	if c.batch {
		return correlate.StreamStats{}
	}
	return c.stream.Stats()
}

// close decides everything still held and returns the hints.
func (c *correlator) close() []string {
	if !c.batch {
		hints := c.stream.Close()
		c.e.st.Findings = c.stream.Stats().Findings
		if c.nCalls == 0 && c.nConns > 0 {
			hints = append(hints, encryptedHint)
		}
		return hints
	}
	e := c.e
	sortConns(c.conns)
	tlsFindings := tlsaudit.Findings(c.conns, tlsaudit.FindingOptions{})
	sortFindings(tlsFindings)
	for i, f := range tlsFindings {
		f.ID = fmt.Sprintf("F%d", i+1)
	}
	in := correlate.Input{
		Calls:          c.calls,
		Conns:          c.conns,
		TLSFindings:    tlsFindings,
		Config:         e.cfg,
		SBCSockets:     c.sockets,
		TeamsContextID: e.cfg.TeamsTLSContextID,
	}
	callFindings := correlate.Run(in)
	all := append(append([]*finding.Finding{}, tlsFindings...), callFindings...)
	sortFindings(all)
	hints := correlate.Hints(in)
	if len(c.calls) == 0 && len(c.conns) > 0 {
		hints = append(hints, encryptedHint)
	}
	for _, call := range c.calls {
		e.sink.Call(call)
	}
	for _, conn := range c.conns {
		e.sink.TLSConn(conn)
	}
	for _, f := range all {
		f.Key = finding.KeyOf(f)
		e.st.Findings++
		e.sink.Finding(f)
	}
	c.calls, c.conns, c.sockets = nil, nil, nil
	return hints
}

const encryptedHint = "This capture holds TLS connections but no SIP: the signaling is encrypted. " +
	"Export the SBC's SIP as AudioCodes debug recording (ACDR) or HEP to the capture point to see the dialogs."

// sortFindings orders findings for the report (finding.Less).
func sortFindings(fs []*finding.Finding) {
	sort.SliceStable(fs, func(i, j int) bool { return finding.Less(fs[i], fs[j]) })
}

func sortConns(cs []*tlsaudit.Conn) {
	sort.SliceStable(cs, func(i, j int) bool {
		if !cs[i].FirstSeen.Equal(cs[j].FirstSeen) {
			return cs[i].FirstSeen.Before(cs[j].FirstSeen)
		}
		return cs[i].ID < cs[j].ID
	})
}
