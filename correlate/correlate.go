package correlate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/audiocodes/syslog"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// Input is everything one analysis saw.
type Input struct {
	Calls []*sip.Call
	Conns []*tlsaudit.Conn
	// TLSFindings are the findings tlsaudit already produced, with IDs
	// ("F1".."Fn") set and Connection = the conn's ID. The call findings
	// cite them and take IDs after the highest of them.
	TLSFindings []*finding.Finding
	// Config gives thresholds, Microsoft ranges, SBC names and the
	// numbers that expect a transfer; nil means config.Default().
	Config *config.Config
	// SBCSockets are the connections the SBC's own log shows it accepted
	// (audiocodes/syslog), for tls_context_wrong. Optional.
	SBCSockets []*syslog.Socket
	// TeamsContextID is the SBC's TLS context for the Teams proxy set
	// when known; nil means inferred from the log: the context the SBC
	// chose most often for Microsoft peers that matched a proxy set.
	TeamsContextID *int
}

// Run applies every call rule (and tls_context_wrong when the SBC's log
// is given) and returns the new findings, sorted by severity, then time,
// then rule and call id, with IDs continuing after the highest "F<n>"
// among in.TLSFindings. It never modifies its input.
func Run(in Input) []*finding.Finding {
	a := newAnalysis(in)
	var out []*finding.Finding
	for _, c := range a.calls {
		out = append(out, a.callRules(c)...)
		out = append(out, a.referRules(c)...)
	}
	delivered := a.deliveryFailed()
	out = append(out, delivered...)
	out = append(out, a.tlsContextWrong(in.TeamsContextID)...)

	slices.SortStableFunc(out, compareFindings)
	next := maxID(in.TLSFindings) + 1
	for _, f := range out {
		f.ID = "F" + strconv.Itoa(next)
		next++
	}
	a.link(delivered, out)
	return out
}

func compareFindings(x, y *finding.Finding) int {
	return cmp.Or(
		cmp.Compare(x.Severity.Rank(), y.Severity.Rank()),
		x.Time.Compare(y.Time),
		cmp.Compare(x.Rule, y.Rule),
		cmp.Compare(x.CallID, y.CallID),
		cmp.Compare(x.Connection, y.Connection),
		cmp.Compare(x.Summary, y.Summary),
	)
}

// maxID returns the highest n of IDs "F<n>", 0 when none.
func maxID(fs []*finding.Finding) int {
	n := 0
	for _, f := range fs {
		if f == nil || !strings.HasPrefix(f.ID, "F") {
			continue
		}
		if v, err := strconv.Atoi(f.ID[1:]); err == nil && v > n {
			n = v
		}
	}
	return n
}

// analysis is the input sorted and indexed once.
type analysis struct {
	cfg   *config.Config
	calls []*sip.Call      // by Start, then Call-ID
	conns []*tlsaudit.Conn // by FirstSeen, then ID
	tls   []*finding.Finding
	// sockets are the SBC's logged sockets, by accept time.
	sockets []*syslog.Socket
	// byClient indexes conns by client address and port.
	byClient map[netip.AddrPort][]*tlsaudit.Conn
	// fromLog marks the conns that stand in for logged sockets.
	fromLog map[*tlsaudit.Conn]bool
	now     time.Time // latest time seen in the records
	// invites are every INVITE request seen, for refer_not_followed.
	invites []inviteSent
	// refers are the times REFERs reached an SBC address, sorted, to tell
	// a failed delivery that was recovered by a retry.
	refers []referAt
	// sbcAddrs are the addresses known to be an SBC: configured ones and
	// the SBC side of every Microsoft call.
	sbcAddrs map[netip.Addr]bool
	// failed are the inbound connections from Microsoft that failed
	// before carrying application data, by FirstSeen.
	failed []*tlsaudit.Conn
	// certsByServer are the distinct certificates served on completed
	// handshakes, per server address, in first-seen order.
	certsByServer map[netip.Addr][]servedCert
	servers       []netip.Addr // keys of certsByServer, sorted
	// ctxCount, when set, counts the TLS contexts chosen for Microsoft
	// peers that matched a proxy set (the stream's seen-so-far tally);
	// nil means count a.sockets.
	ctxCount map[int]int
	// open, when set, returns the calls still tracked (the stream's),
	// which callsUp counts besides calls.
	open func() []*sip.Call
}

// referAt is one REFER request: when, and to which address.
type referAt struct {
	time time.Time
	dst  netip.Addr
}

// inviteSent is one INVITE request seen in any call.
type inviteSent struct {
	callID   string
	time     time.Time
	src, dst netip.AddrPort
	ruri     string
}

func newAnalysis(in Input) *analysis {
	cfg := in.Config
	if cfg == nil {
		cfg = config.Default()
	}
	a := &analysis{cfg: cfg, sbcAddrs: map[netip.Addr]bool{}, fromLog: map[*tlsaudit.Conn]bool{}}
	for _, c := range in.Calls {
		if c != nil {
			a.calls = append(a.calls, c)
		}
	}
	slices.SortStableFunc(a.calls, func(x, y *sip.Call) int {
		return cmp.Or(x.Start.Compare(y.Start), cmp.Compare(x.CallID, y.CallID))
	})
	for _, c := range in.Conns {
		if c != nil {
			a.conns = append(a.conns, c)
		}
	}
	slices.SortStableFunc(a.conns, func(x, y *tlsaudit.Conn) int {
		return cmp.Or(x.FirstSeen.Compare(y.FirstSeen), cmp.Compare(x.ID, y.ID))
	})
	for _, s := range in.SBCSockets {
		if s != nil {
			a.sockets = append(a.sockets, s)
		}
	}
	sortSockets(a.sockets)
	a.byClient = map[netip.AddrPort][]*tlsaudit.Conn{}
	for _, c := range a.conns {
		a.byClient[c.Client] = append(a.byClient[c.Client], c)
	}
	for _, f := range in.TLSFindings {
		if f != nil {
			a.tls = append(a.tls, f)
		}
	}

	for _, s := range cfg.SBCs {
		for _, s := range s.Addresses {
			if p, err := netip.ParseAddr(s); err == nil {
				a.sbcAddrs[p.Unmap()] = true
			}
		}
	}
	seen := map[string]bool{}
	addInvite := func(v inviteSent) {
		k := v.callID + "\x00" + v.time.String() + "\x00" + v.src.String() + "\x00" + v.ruri
		if v.ruri == "" || seen[k] {
			return
		}
		seen[k] = true
		a.invites = append(a.invites, v)
	}
	for _, c := range a.calls {
		if c.Microsoft && c.SBCSide.IsValid() {
			a.sbcAddrs[c.SBCSide.Addr().Unmap()] = true
		}
		a.see(c.Start, c.Answer, c.End, c.Last)
		for _, r := range c.Refers {
			if r == nil {
				continue
			}
			a.refers = append(a.refers, referAt{r.Time, r.Dst.Addr().Unmap()})
			a.see(r.Time, r.ResponseTime)
			for _, n := range r.Notifies {
				a.see(n.Time)
			}
		}
		if c.Kind == "invite" {
			addInvite(inviteSent{c.CallID, c.Start, c.Caller, c.Callee, c.RequestURI})
		}
		for _, m := range c.Messages {
			if m == nil {
				continue
			}
			a.see(m.Time)
			if m.IsRequest && m.Method == "INVITE" {
				addInvite(inviteSent{c.CallID, m.Time, m.Src, m.Dst, m.RequestURI})
			}
		}
	}
	slices.SortStableFunc(a.refers, func(x, y referAt) int { return x.time.Compare(y.time) })
	slices.SortStableFunc(a.invites, func(x, y inviteSent) int {
		return cmp.Or(x.time.Compare(y.time), cmp.Compare(x.callID, y.callID))
	})
	for _, s := range a.sockets {
		if c := a.logConn(s); c != nil {
			a.fromLog[c] = true
			a.conns = append(a.conns, c)
			a.byClient[c.Client] = append(a.byClient[c.Client], c)
		}
	}
	slices.SortStableFunc(a.conns, compareConns)
	a.certsByServer = map[netip.Addr][]servedCert{}
	for _, c := range a.conns {
		a.see(c.FirstSeen, c.LastSeen)
		if a.failedInbound(c) {
			a.failed = append(a.failed, c)
		}
		a.servedBy(c, 0)
	}
	slices.SortFunc(a.servers, netip.Addr.Compare)
	return a
}

func compareConns(x, y *tlsaudit.Conn) int {
	return cmp.Or(x.FirstSeen.Compare(y.FirstSeen), cmp.Compare(x.ID, y.ID))
}

// servedBy records the certificate an established connection served, at
// most limit distinct ones per server (0: no limit); it reports whether
// a new certificate was recorded. Servers are appended unsorted.
func (a *analysis) servedBy(c *tlsaudit.Conn, limit int) bool {
	if !c.Established || !c.Server.IsValid() {
		return false
	}
	sc, ok := certOf(c)
	srv := c.Server.Addr().Unmap()
	if !ok || slices.ContainsFunc(a.certsByServer[srv], func(x servedCert) bool { return x.fingerprint == sc.fingerprint }) {
		return false
	}
	if limit > 0 && len(a.certsByServer[srv]) >= limit {
		return false
	}
	if _, known := a.certsByServer[srv]; !known {
		a.servers = append(a.servers, srv)
	}
	a.certsByServer[srv] = append(a.certsByServer[srv], sc)
	return true
}

// see moves "now" forward.
func (a *analysis) see(ts ...time.Time) {
	for _, t := range ts {
		if t.After(a.now) {
			a.now = t
		}
	}
}

// isMicrosoft reports whether an endpoint is a Microsoft address.
func (a *analysis) isMicrosoft(ap netip.AddrPort) bool {
	return ap.IsValid() && a.cfg.IsMicrosoft(ap.Addr())
}

// sameSBC reports whether two addresses are the same SBC: equal, or both
// among the configured addresses of one SBC (inside and outside of NAT).
func (a *analysis) sameSBC(x, y netip.Addr) bool {
	x, y = x.Unmap(), y.Unmap()
	if x == y {
		return true
	}
	for _, s := range a.cfg.SBCs {
		var hx, hy bool
		for _, v := range s.Addresses {
			p, err := netip.ParseAddr(v)
			if err != nil {
				continue
			}
			hx = hx || p.Unmap() == x
			hy = hy || p.Unmap() == y
		}
		if hx && hy {
			return true
		}
	}
	return false
}

// isSBCName reports whether a host name is a configured SBC FQDN.
func (a *analysis) isSBCName(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return false
	}
	for _, n := range a.cfg.SBCFQDNs() {
		if strings.ToLower(strings.TrimSuffix(n, ".")) == host {
			return true
		}
	}
	return false
}

// citesFor returns the IDs of the TLS findings about the given
// connections, in ID order.
func (a *analysis) citesFor(conns []*tlsaudit.Conn) []string {
	var ids []string
	for _, f := range a.tls {
		for _, c := range conns {
			if f.ID != "" && about(f, c) {
				ids = append(ids, f.ID)
				break
			}
		}
	}
	slices.SortFunc(ids, compareIDs)
	return slices.Compact(ids)
}

// about reports whether a TLS finding is about connection c. tlsaudit
// emits one finding per failed connection (Connection = its ID) and
// groups certificate findings per listener and certificate (Connection =
// the first connection, evidence "connection_ids" = the first few,
// "listener" and "fingerprint_sha256"), and tls_cert_inconsistent per
// listener and SNI with the "fingerprints" served.
func about(f *finding.Finding, c *tlsaudit.Conn) bool {
	if ids, ok := strs(f.Evidence["connection_ids"]); ok && slices.Contains(ids, c.ID) {
		return true
	}
	if f.Connection != "" && f.Connection == c.ID {
		if _, grouped := f.Evidence["connection_ids"]; grouped {
			return true
		}
		// A connection ID repeats when a port is reused: the finding
		// must also fall within the connection's time.
		if f.Time.IsZero() || c.FirstSeen.IsZero() {
			return true
		}
		last := c.LastSeen
		if last.Before(c.FirstSeen) {
			last = c.FirstSeen
		}
		return !f.Time.Before(c.FirstSeen.Add(-time.Second)) && !f.Time.After(last.Add(time.Second))
	}
	listener, _ := f.Evidence["listener"].(string)
	if listener == "" || listener != c.Server.String() {
		return false
	}
	sc, ok := certOf(c)
	if !ok {
		return false
	}
	if fp, _ := f.Evidence["fingerprint_sha256"].(string); fp != "" {
		if !strings.EqualFold(fp, sc.fingerprint) {
			return false
		}
		name, _ := f.Evidence["name"].(string)
		return name == "" || c.Check == nil || !c.Check.NameChecked || strings.EqualFold(name, c.Check.Name)
	}
	if fps, ok := maps(f.Evidence["fingerprints"]); ok {
		if sni, ok := f.Evidence["sni"].(string); ok && !strings.EqualFold(sni, c.SNI) {
			return false
		}
		for _, e := range fps {
			if fp, _ := e["fingerprint_sha256"].(string); strings.EqualFold(fp, sc.fingerprint) {
				return true
			}
		}
	}
	return false
}

// compareIDs orders "F2" before "F10".
func compareIDs(x, y string) int {
	nx, ex := strconv.Atoi(strings.TrimPrefix(x, "F"))
	ny, ey := strconv.Atoi(strings.TrimPrefix(y, "F"))
	if ex == nil && ey == nil {
		return cmp.Compare(nx, ny)
	}
	return cmp.Compare(x, y)
}

// seconds rounds a duration to milliseconds and returns it in seconds.
func seconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}

// millis returns a duration in milliseconds with 0.1 ms precision.
func millis(d time.Duration) float64 {
	return float64(d.Round(100*time.Microsecond)) / float64(time.Millisecond)
}

// humanDur writes a duration the way an admin reads it: "850 ms", "3 s",
// "2.5 s", "1 min 5 s".
func humanDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
	case d < time.Minute:
		s := strconv.FormatFloat(d.Round(100*time.Millisecond).Seconds(), 'f', -1, 64)
		return s + " s"
	default:
		d = d.Round(time.Second)
		m := int(d / time.Minute)
		s := int((d % time.Minute) / time.Second)
		if s == 0 {
			return fmt.Sprintf("%d min", m)
		}
		return fmt.Sprintf("%d min %d s", m, s)
	}
}

// callLabel is how a summary names a call: "Call <id> to <number>".
func callLabel(c *sip.Call) string {
	if c.To != "" {
		return fmt.Sprintf("Call %s to %s", c.CallID, c.To)
	}
	return "Call " + c.CallID
}

// addrString writes an address, "" when unknown.
func addrString(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	return ap.String()
}

// timeOrNil keeps zero times out of the evidence.
func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// link writes the cross references between findings once IDs are set:
// refer_delivery_failed cites the transfer_missing finding of the call it
// blames (or of its candidates), which names it in evidence
// "explained_by", and the tls_context_wrong findings about the same
// connections.
func (a *analysis) link(delivered, all []*finding.Finding) {
	missing := map[string]*finding.Finding{}
	var ctxWrong []*finding.Finding
	for _, f := range all {
		switch f.Rule {
		case finding.TransferMissing:
			missing[f.CallID] = f
		case finding.TLSContextWrong:
			ctxWrong = append(ctxWrong, f)
		}
	}
	for _, d := range delivered {
		ids := d.Cites
		var conns []string
		if fc, ok := maps(d.Evidence["failed_connections"]); ok {
			for _, c := range fc {
				if id, ok := c["connection"].(string); ok {
					conns = append(conns, id)
				}
			}
		}
		for _, f := range ctxWrong {
			if cids, ok := strs(f.Evidence["connection_ids"]); ok && slices.ContainsFunc(cids, func(id string) bool { return slices.Contains(conns, id) }) {
				ids = append(ids, f.ID)
			}
		}
		var calls []string
		if d.CallID != "" {
			calls = []string{d.CallID}
		} else if cs, ok := strs(d.Evidence["candidate_call_ids"]); ok {
			calls = cs
		}
		for _, id := range calls {
			if m := missing[id]; m != nil {
				ids = append(ids, m.ID)
				if d.CallID != "" {
					m.Evidence["explained_by"] = d.ID
					m.Summary += fmt.Sprintf(" %s (%s) says why.", d.ID, d.Rule)
				} else {
					m.Evidence["possibly_explained_by"] = d.ID
				}
			}
		}
		slices.SortFunc(ids, compareIDs)
		d.Cites = slices.Compact(ids)
	}
}

// strs reads a list of strings from evidence, as built ([]string) or
// after a JSON round trip ([]any).
func strs(v any) ([]string, bool) {
	switch x := v.(type) {
	case []string:
		return x, true
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out, true
	}
	return nil, false
}

// maps reads a list of objects from evidence, as built
// ([]map[string]any) or after a JSON round trip ([]any).
func maps(v any) ([]map[string]any, bool) {
	switch x := v.(type) {
	case []map[string]any:
		return x, true
	case []any:
		out := make([]map[string]any, 0, len(x))
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				out = append(out, m)
			}
		}
		return out, true
	}
	return nil, false
}
