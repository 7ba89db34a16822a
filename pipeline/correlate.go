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
// findings.
type correlator struct {
	e       *Engine
	batch   bool
	calls   []*sip.Call
	conns   []*tlsaudit.Conn
	sockets []*syslog.Socket
}

func newCorrelator(e *Engine, batch bool) *correlator {
	return &correlator{e: e, batch: batch}
}

func (c *correlator) addCall(call *sip.Call)      { c.calls = append(c.calls, call) }
func (c *correlator) addConn(conn *tlsaudit.Conn) { c.conns = append(c.conns, conn) }
func (c *correlator) addSocket(s *syslog.Socket)  { c.sockets = append(c.sockets, s) }
func (c *correlator) advance(watermark time.Time) {}

// close decides everything still held and returns the hints.
func (c *correlator) close() []string {
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
		hints = append(hints, "This capture holds TLS connections but no SIP: the signaling is encrypted. "+
			"Export the SBC's SIP as AudioCodes debug recording (ACDR) or HEP to the capture point to see the dialogs.")
	}
	for _, call := range c.calls {
		e.st.Calls++
		e.sink.Call(call)
	}
	for _, conn := range c.conns {
		e.st.Conns++
		e.sink.TLSConn(conn)
	}
	for _, f := range all {
		e.st.Findings++
		e.sink.Finding(f)
	}
	c.calls, c.conns, c.sockets = nil, nil, nil
	return hints
}

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
