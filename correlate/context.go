package correlate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/audiocodes/syslog"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// syslogMatchWindow is how far apart the SBC's log clock and the capture
// clock may be for a logged socket and a captured connection with the
// same peer address and port to be taken as one connection.
const syslogMatchWindow = 10 * time.Minute

// teamsContext returns the TLS context of the Teams proxy set: the given
// one, else the context the SBC chose most often for Microsoft peers
// that matched a proxy set (lowest on a tie). ok is false when neither
// is known.
func (a *analysis) teamsContext(given *int) (id int, inferred, ok bool) {
	if given != nil {
		return *given, false, true
	}
	count := a.ctxCount
	if count == nil {
		count = map[int]int{}
		for _, s := range a.sockets {
			a.countContext(count, s)
		}
	}
	best, n := 0, 0
	for id, k := range count {
		if k > n || k == n && id < best {
			best, n = id, k
		}
	}
	return best, true, n > 0
}

// countContext counts the context the SBC chose for a Microsoft peer
// that matched a proxy set, for teamsContext.
func (a *analysis) countContext(count map[int]int, s *syslog.Socket) {
	if c := s.Context; c != nil && c.ProxySetID >= 0 && a.isMicrosoft(s.Peer) {
		count[c.ContextID]++
	}
}

// contextWrong reports whether the SBC chose the wrong TLS context for a
// socket from Microsoft: the address matched no proxy set (ProxySetId
// -1) unless the context it fell back to is the Teams one anyway, or it
// matched a proxy set whose context is not the Teams one.
func contextWrong(c *syslog.ContextLookup, teams int, known bool) bool {
	if c.ProxySetID < 0 {
		return !known || c.ContextID != teams
	}
	return known && c.ContextID != teams
}

// tlsContextWrong builds one tls_context_wrong finding per run of
// sockets from one Microsoft address with the same wrong choice, each
// within retryGap of the previous one.
func (a *analysis) tlsContextWrong(given *int) []*finding.Finding {
	teams, inferred, known := a.teamsContext(given)
	type key struct {
		peer           netip.Addr
		proxySet, ctxt int
	}
	var runs [][]*syslog.Socket
	open := map[key]int{} // index into runs of the run under way
	for _, s := range a.sockets {
		c := s.Context
		if c == nil || !a.isMicrosoft(s.Peer) || !contextWrong(c, teams, known) {
			continue
		}
		k := key{s.Peer.Addr(), c.ProxySetID, c.ContextID}
		if i, ok := open[k]; ok {
			prev := runs[i][len(runs[i])-1]
			if s.Accepted.Sub(prev.Accepted) <= retryGap {
				runs[i] = append(runs[i], s)
				continue
			}
		}
		open[k] = len(runs)
		runs = append(runs, []*syslog.Socket{s})
	}
	var out []*finding.Finding
	for _, run := range runs {
		out = append(out, a.contextFinding(run, teams, inferred, known))
	}
	return out
}

func (a *analysis) contextFinding(run []*syslog.Socket, teams int, inferred, known bool) *finding.Finding {
	first := run[0]
	c := first.Context
	n := len(run)
	var why string
	switch {
	case c.ProxySetID < 0 && known:
		why = fmt.Sprintf("because the address matched no proxy set (ProxySetId = -1), instead of the Teams context %d", teams)
	case c.ProxySetID < 0:
		why = "because the address matched no proxy set (ProxySetId = -1), so it did not get the Teams proxy set's context"
	default:
		why = fmt.Sprintf("through proxy set %d, but the Teams context is %d", c.ProxySetID, teams)
	}
	var maxDur time.Duration
	byPeer, noSIP := 0, 0
	var ids []int
	var sockets []map[string]any
	var connIDs []string
	for i, s := range run {
		if i < maxListed {
			ids = append(ids, s.SocketID)
		}
		d := time.Duration(0)
		if !s.Closed.IsZero() && !s.Accepted.IsZero() {
			d = s.Closed.Sub(s.Accepted)
			maxDur = max(maxDur, d)
		}
		if s.ClosedByPeer {
			byPeer++
		}
		if s.SIPMessages == 0 {
			noSIP++
		}
		if i < maxListed {
			sockets = append(sockets, map[string]any{
				"socket_id":      s.SocketID,
				"peer":           addrString(s.Peer),
				"local_port":     s.LocalPort,
				"accepted":       timeOrNil(s.Accepted),
				"closed":         timeOrNil(s.Closed),
				"closed_by_peer": s.ClosedByPeer,
				"duration_ms":    millis(d),
				"sip_messages":   s.SIPMessages,
			})
		}
		for _, conn := range a.connsOf(s) {
			connIDs = appendNew(connIDs, conn.ID)
		}
	}
	what := plural(n, "inbound connection", "inbound connections")
	noun := "sockets"
	if n == 1 {
		noun = "socket"
	}
	tail := ""
	if byPeer == n && noSIP == n && maxDur > 0 {
		each := "each"
		if n == 1 {
			each = "it"
		}
		tail = fmt.Sprintf("; Microsoft closed %s within %d ms without sending any SIP", each, (maxDur+time.Millisecond-1)/time.Millisecond)
	}
	f := finding.New(finding.TLSContextWrong, finding.Critical, first.Accepted,
		"The SBC's log shows it chose TLS context %d for %s from Microsoft (%s, %s %s) %s%s.",
		c.ContextID, what, first.Peer.Addr(), noun, listSome(intStrings(ids), n), why, tail)
	ev := f.Evidence
	ev["peer"] = addrString(first.Peer)
	ev["socket_id"] = first.SocketID
	ev["socket_ids"] = ids
	ev["proxy_set_id"] = c.ProxySetID
	ev["context_id"] = c.ContextID
	ev["sip_interface"] = c.SIPInterface
	ev["teams_context_id"] = nil
	if known {
		ev["teams_context_id"] = teams
		ev["teams_context_inferred"] = inferred
	}
	ev["sockets"] = sockets
	ev["connections"] = n
	ev["log_lines"] = slices.Clone(first.Lines)
	ev["connection_ids"] = connIDs
	if len(connIDs) > 0 {
		f.Connection = connIDs[0]
	}
	return f
}

// connsOf returns the captured connections that are the logged socket:
// same peer address and port, the SBC's port when logged, and close in
// time given the two clocks.
func (a *analysis) connsOf(s *syslog.Socket) []*tlsaudit.Conn {
	var out []*tlsaudit.Conn
	for _, c := range a.byClient[s.Peer] {
		if s.LocalPort != 0 && int(c.Server.Port()) != s.LocalPort {
			continue
		}
		if !s.Accepted.IsZero() && !c.FirstSeen.IsZero() {
			if d := c.FirstSeen.Sub(s.Accepted); d > syslogMatchWindow || d < -syslogMatchWindow {
				continue
			}
		}
		out = append(out, c)
	}
	return out
}

// logConn stands a logged socket in for a captured connection the input
// lacks: a TLS socket from Microsoft that closed without carrying any SIP
// message is how a failed handshake shows in the SBC's log. The server
// is the socket's local address, else the one SBC address known; nil
// when the socket does not qualify or a capture has the connection.
func (a *analysis) logConn(s *syslog.Socket) *tlsaudit.Conn {
	if !s.TLS || !a.isMicrosoft(s.Peer) || s.Accepted.IsZero() || s.Closed.IsZero() || s.SIPMessages > 0 || len(a.connsOf(s)) > 0 {
		return nil
	}
	server := s.Local
	if !server.IsValid() {
		if len(a.sbcAddrs) != 1 {
			return nil
		}
		for addr := range a.sbcAddrs {
			server = netip.AddrPortFrom(addr, uint16(s.LocalPort))
		}
	}
	c := &tlsaudit.Conn{
		ID:            s.Peer.String() + "->" + server.String(),
		Client:        s.Peer,
		Server:        server,
		FirstSeen:     s.Accepted,
		LastSeen:      s.Closed,
		Outcome:       tlsaudit.OutcomeClosed,
		ClosedBy:      "server",
		Duration:      s.Closed.Sub(s.Accepted),
		FromMicrosoft: true,
		Anomalies:     []string{fmt.Sprintf("from the SBC's log: socket %d", s.SocketID)},
	}
	if s.ClosedByPeer {
		c.ClosedBy = "client"
	}
	return c
}

func intStrings(v []int) []string {
	out := make([]string, len(v))
	for i, n := range v {
		out[i] = fmt.Sprint(n)
	}
	return out
}

// sortSockets orders sockets by accept time, then SocketID.
func sortSockets(s []*syslog.Socket) {
	slices.SortStableFunc(s, func(x, y *syslog.Socket) int {
		return cmp.Or(x.Accepted.Compare(y.Accepted), cmp.Compare(x.SocketID, y.SocketID),
			strings.Compare(x.Peer.String(), y.Peer.String()))
	})
}
