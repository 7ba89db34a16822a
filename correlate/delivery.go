package correlate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// maxListed bounds the calls and connections listed in one finding's
// evidence; the counts beside them stay exact. summaryListed bounds the
// call ids named in a summary.
const (
	maxListed     = 50
	summaryListed = 5
)

// listSome joins the first summaryListed items and says how many more.
func listSome(items []string, total int) string {
	if len(items) > summaryListed {
		items = items[:summaryListed]
	}
	s := strings.Join(items, ", ")
	if total > len(items) {
		s += fmt.Sprintf(" and %d more", total-len(items))
	}
	return s
}

// retryGap bounds the pause between two attempts to deliver one REFER:
// 64×T1 = 32 s (RFC 3261 Timer F), the lifetime of the non-INVITE
// transaction Microsoft is trying to deliver. A failed connection later
// than that after the previous one belongs to another delivery.
const retryGap = 32 * time.Second

// candidate is one dialog that fits a lost REFER.
type candidate struct {
	call     *sip.Call
	attempts []*tlsaudit.Conn // by FirstSeen
	delay    time.Duration    // from the last attempt to the dialog's end
	expects  bool             // the called number expects a transfer
	soon     bool             // ended within a quarter of the give-up window
	hadRefer bool             // a REFER reached it before the attempts
}

func (c candidate) first() time.Time { return c.attempts[0].FirstSeen }
func (c candidate) last() time.Time  { return c.attempts[len(c.attempts)-1].FirstSeen }

// failedInbound reports whether conn is a connection from Microsoft that
// failed before carrying application data.
func (a *analysis) failedInbound(conn *tlsaudit.Conn) bool {
	from := conn.FromMicrosoft || a.isMicrosoft(conn.Client)
	to := conn.ToMicrosoft || a.isMicrosoft(conn.Server)
	return from && !to && conn.Outcome != "" && conn.Failed() && !conn.AppData
}

// fit returns the candidate for call c, or false when c does not fit a
// lost REFER. A dialog fits when it is an answered Microsoft call that
// ended, failed inbound connections from Microsoft reached its SBC
// between its answer and its end, no REFER reached it from the first of
// those attempts on, and it ended within the give-up window after the
// last. The attempts are the run of failed connections before the end,
// each within retryGap of the next, after the answer and after any
// earlier REFER.
func (a *analysis) fit(c *sip.Call) (candidate, bool) {
	if c.Kind != "invite" || !c.Microsoft || !ended(c) {
		return candidate{}, false
	}
	var att []*tlsaudit.Conn
	i, _ := slices.BinarySearchFunc(a.failed, c.Answer, func(conn *tlsaudit.Conn, t time.Time) int {
		if conn.FirstSeen.After(t) {
			return 1
		}
		return -1 // land after every attempt at or before the answer
	})
	for _, conn := range a.failed[i:] {
		if conn.FirstSeen.After(c.End) {
			break
		}
		if a.toSBCOf(conn, c) {
			att = append(att, conn)
		}
	}
	if len(att) == 0 {
		return candidate{}, false
	}
	last := att[len(att)-1].FirstSeen
	if c.End.Sub(last) > a.cfg.GiveUpWindow.D() {
		return candidate{}, false
	}
	floor := c.Answer
	hadRefer := false
	for _, r := range c.Refers {
		if r == nil {
			continue
		}
		if !r.Time.Before(last) {
			return candidate{}, false // a REFER got through after all
		}
		hadRefer = true
		if r.Time.After(floor) {
			floor = r.Time
		}
	}
	i = len(att) - 1
	for i > 0 && att[i-1].FirstSeen.After(floor) && att[i].FirstSeen.Sub(att[i-1].FirstSeen) <= retryGap {
		i--
	}
	if a.recovered(att[len(att)-1]) {
		return candidate{}, false
	}
	delay := c.End.Sub(last)
	return candidate{
		call:     c,
		attempts: att[i:],
		delay:    delay,
		expects:  a.cfg.ExpectsTransfer(c.To),
		soon:     delay <= a.cfg.GiveUpWindow.D()/4,
		hadRefer: hadRefer,
	}, true
}

// recovered reports whether a REFER reached the failed connection's
// server within retryGap after it: Microsoft's retry got through, so the
// failed attempts were one delivery that succeeded in the end (for this
// call or another one) and blame no dialog. The TLS findings still stand.
func (a *analysis) recovered(conn *tlsaudit.Conn) bool {
	t0 := conn.FirstSeen
	srv := conn.Server.Addr().Unmap()
	i, _ := slices.BinarySearchFunc(a.refers, t0, func(r referAt, t time.Time) int {
		if r.time.After(t) {
			return 1
		}
		return -1
	})
	for _, r := range a.refers[i:] {
		if r.time.Sub(t0) > retryGap {
			break
		}
		if r.dst == srv {
			return true
		}
	}
	return false
}

// rank orders candidates best first: numbers that expect a transfer,
// then those that ended soon (within a quarter of the give-up window),
// then those that never had a REFER, then the shortest delay.
func rank(x, y candidate) int {
	return cmp.Or(
		boolFirst(x.expects, y.expects),
		boolFirst(x.soon, y.soon),
		boolFirst(!x.hadRefer, !y.hadRefer),
		cmp.Compare(x.delay, y.delay),
		x.call.Start.Compare(y.call.Start),
		cmp.Compare(x.call.CallID, y.call.CallID),
	)
}

func boolFirst(x, y bool) int {
	switch {
	case x == y:
		return 0
	case x:
		return -1
	}
	return 1
}

// clearlyAhead says whether the top candidate can be blamed over the
// runner-up, and why. "Clearly" means better on one of three facts while
// equal on the ones before it: it alone calls a number that expects a
// transfer; it alone ended within a quarter of the give-up window after
// the last attempt; it alone never had a REFER. A shorter delay inside
// the same quarter is not enough: two calls that both ended within
// seconds are a coincidence sbcwatch will not settle by guessing.
func (a *analysis) clearlyAhead(top, next candidate) (bool, string) {
	switch {
	case top.expects != next.expects:
		return top.expects, "it is the only one to a number that expects a transfer"
	case top.soon != next.soon:
		return top.soon, fmt.Sprintf("it alone ended within %s of the last attempt", humanDur(a.cfg.GiveUpWindow.D()/4))
	case top.hadRefer != next.hadRefer:
		return !top.hadRefer, "it alone had no REFER at all"
	}
	return false, ""
}

// delivery is the outcome of matching failed connections to dialogs.
type delivery struct {
	groups  [][]candidate // candidates sharing attempts, best first
	claimed map[*tlsaudit.Conn]bool
}

func (a *analysis) matchDeliveries() delivery { return a.matchAmong(a.calls) }

// matchAmong matches failed connections to the given calls only.
func (a *analysis) matchAmong(calls []*sip.Call) delivery {
	var fits []candidate
	for _, c := range calls {
		if cd, ok := a.fit(c); ok {
			fits = append(fits, cd)
		}
	}
	// Candidates that share a failed connection compete for it.
	parent := make([]int, len(fits))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	owner := map[*tlsaudit.Conn]int{}
	d := delivery{claimed: map[*tlsaudit.Conn]bool{}}
	for i, cd := range fits {
		for _, conn := range cd.attempts {
			d.claimed[conn] = true
			if j, ok := owner[conn]; ok {
				parent[find(i)] = find(j)
			} else {
				owner[conn] = i
			}
		}
	}
	byRoot := map[int][]candidate{}
	var roots []int
	for i, cd := range fits {
		r := find(i)
		if _, ok := byRoot[r]; !ok {
			roots = append(roots, r)
		}
		byRoot[r] = append(byRoot[r], cd)
	}
	for _, r := range roots {
		g := byRoot[r]
		slices.SortStableFunc(g, rank)
		d.groups = append(d.groups, g)
	}
	return d
}

// deliveryFailed builds the refer_delivery_failed findings: one per group
// of candidates, blaming the top one (critical, with its call id) when it
// is alone or clearly ahead, else a warning without call id that lists
// the candidates.
func (a *analysis) deliveryFailed() []*finding.Finding {
	var out []*finding.Finding
	for _, g := range a.matchDeliveries().groups {
		top := g[0]
		why := "it is the only call that fits"
		blame := len(g) == 1
		if !blame {
			blame, why = a.clearlyAhead(top, g[1])
		}
		if blame {
			out = append(out, a.blamed(top, g[1:], why))
		} else {
			out = append(out, a.ambiguous(g))
		}
	}
	return out
}

func (a *analysis) blamed(cd candidate, others []candidate, why string) *finding.Finding {
	c := cd.call
	end := endWords(a, c)
	f := finding.New(finding.ReferDeliveryFailed, finding.Critical, cd.first(),
		"%s: the transfer never arrived — %s. %s %s after the last attempt.",
		callLabel(c), a.attemptWords(cd.attempts, " during the call"), upperFirst(end), humanDur(cd.delay))
	f.CallID = c.CallID
	ev := f.Evidence
	ev["call_id"] = c.CallID
	ev["called_number"] = c.To
	ev["expects_transfer"] = cd.expects
	ev["answer_time"] = c.Answer.UTC()
	ev["failed_connections"] = a.connsEvidence(cd.attempts[:min(len(cd.attempts), maxListed)])
	ev["attempts"] = len(cd.attempts)
	ev["first_attempt"] = cd.first().UTC()
	ev["last_attempt"] = cd.last().UTC()
	ev["seconds_last_attempt_to_end"] = seconds(cd.delay)
	ev["dialog_end"] = a.endEvidence(c)
	ev["had_earlier_refer"] = cd.hadRefer
	ev["why_this_call"] = why
	ids := []string{}
	for _, o := range others[:min(len(others), maxListed)] {
		ids = append(ids, o.call.CallID)
	}
	ev["other_candidates"] = ids
	ev["other_candidates_total"] = len(others)
	ev["calls_up"] = a.callsUp(c, cd.first(), cd.last())
	f.Cites = a.citesFor(cd.attempts)
	return f
}

func (a *analysis) ambiguous(g []candidate) *finding.Finding {
	var conns []*tlsaudit.Conn
	seen := map[*tlsaudit.Conn]bool{}
	ids := []string{}
	var cands []map[string]any
	for i, cd := range g {
		for _, conn := range cd.attempts {
			if !seen[conn] {
				seen[conn] = true
				conns = append(conns, conn)
			}
		}
		if i >= maxListed {
			continue
		}
		ids = append(ids, cd.call.CallID)
		cands = append(cands, map[string]any{
			"call_id":                     cd.call.CallID,
			"called_number":               cd.call.To,
			"expects_transfer":            cd.expects,
			"had_earlier_refer":           cd.hadRefer,
			"seconds_last_attempt_to_end": seconds(cd.delay),
			"dialog_end":                  a.endEvidence(cd.call),
		})
	}
	slices.SortStableFunc(conns, func(x, y *tlsaudit.Conn) int {
		return cmp.Or(x.FirstSeen.Compare(y.FirstSeen), cmp.Compare(x.ID, y.ID))
	})
	first := conns[0].FirstSeen
	f := finding.New(finding.ReferDeliveryFailed, finding.Warning, first,
		"A transfer was probably lost — %s, but %d calls that ended soon after fit equally and none can be singled out: %s.",
		a.attemptWords(conns, span(first, conns[len(conns)-1].FirstSeen)),
		len(g), listSome(ids, len(g)))
	ev := f.Evidence
	ev["candidate_call_ids"] = ids
	ev["candidates"] = cands
	ev["candidates_total"] = len(g)
	ev["failed_connections"] = a.connsEvidence(conns[:min(len(conns), maxListed)])
	ev["attempts"] = len(conns)
	ev["first_attempt"] = first.UTC()
	ev["last_attempt"] = conns[len(conns)-1].FirstSeen.UTC()
	f.Cites = a.citesFor(conns)
	return f
}

// callsUp counts the Microsoft calls on the same SBC as c that were up
// (answered, not yet ended) during the attempts, c included.
func (a *analysis) callsUp(c *sip.Call, first, last time.Time) int {
	n := 0
	calls := a.calls
	if a.open != nil {
		calls = slices.Concat(calls, a.open())
	}
	for _, o := range calls {
		if o.Kind != "invite" || !o.Microsoft || !o.Answered || o.Answer.After(last) {
			continue
		}
		if !o.End.IsZero() && o.End.Before(first) {
			continue
		}
		if o != c && o.SBCSide.IsValid() && c.SBCSide.IsValid() && !a.sameSBC(o.SBCSide.Addr(), c.SBCSide.Addr()) {
			continue
		}
		n++
	}
	return n
}

// span says when attempts happened: " at 09:55:04 UTC" or " between
// 09:55:04 and 09:55:17 UTC".
func span(first, last time.Time) string {
	f, l := first.UTC().Format("15:04:05"), last.UTC().Format("15:04:05")
	if f == l {
		return " at " + f + " UTC"
	}
	return " between " + f + " and " + l + " UTC"
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// endEvidence is the "dialog_end" evidence of a call.
func (a *analysis) endEvidence(c *sip.Call) map[string]any {
	cause := c.Q850Cause
	if cause == 0 {
		cause = q850Cause(c.ByeReason)
	}
	return map[string]any{
		"ended_by":    c.EndedBy,
		"by":          byWhom(a, c),
		"by_addr":     addrString(c.EndedByAddr),
		"end_reason":  c.EndReason,
		"reason":      c.ByeReason,
		"q850_cause":  cause,
		"reason_text": c.ReasonText,
		"time":        timeOrNil(c.End),
	}
}

// connsEvidence lists failed connections for the evidence.
func (a *analysis) connsEvidence(conns []*tlsaudit.Conn) []map[string]any {
	out := make([]map[string]any, 0, len(conns))
	for _, c := range conns {
		m := map[string]any{
			"connection":  c.ID,
			"uid":         c.UID(),
			"peer":        addrString(c.Client),
			"server":      addrString(c.Server),
			"sni":         c.SNI,
			"outcome":     c.Outcome,
			"alert":       alertName(c),
			"closed_by":   c.ClosedBy,
			"duration_ms": millis(c.Duration),
			"time":        c.FirstSeen.UTC(),
		}
		if sc, ok := certOf(c); ok {
			m["cert_subject"] = sc.subject
			m["cert_issuer"] = sc.issuer
			m["cert_fingerprint_sha256"] = sc.fingerprint
		} else {
			m["cert_subject"], m["cert_issuer"], m["cert_fingerprint_sha256"] = "", "", ""
		}
		m["cert_encrypted"] = c.CertEncrypted
		m["source"] = "capture"
		if a.fromLog[c] {
			m["source"] = "sbc_log"
		}
		out = append(out, m)
	}
	return out
}

// alertName is the first alert on a connection, "" when none.
func alertName(c *tlsaudit.Conn) string {
	for _, al := range c.Alerts {
		if al.Encrypted {
			return "encrypted alert from " + al.From
		}
		if al.Name != "" {
			return al.Name
		}
		return fmt.Sprintf("alert %d from %s", al.Description, al.From)
	}
	return ""
}

// attemptWords describes failed attempts in one clause: "Microsoft
// (52.114.75.24) tried 4 new TLS connections to the SBC (192.0.2.10)<when>; the
// SBC served CN=default.sbc.local (self-signed, not valid for
// sbc.contoso.example) and Microsoft aborted each within 20 ms".
func (a *analysis) attemptWords(conns []*tlsaudit.Conn, when string) string {
	var peers, servers []string
	var maxDur time.Duration
	closedBy := map[string]int{}
	var alerts []string
	for _, c := range conns {
		peers = appendNew(peers, addrOnly(c.Client))
		servers = appendNew(servers, addrOnly(c.Server))
		maxDur = max(maxDur, c.Duration)
		closedBy[c.ClosedBy]++
		for _, al := range c.Alerts {
			if al.From == "client" && al.Name != "" {
				alerts = appendNew(alerts, al.Name)
			}
		}
	}
	n := len(conns)
	var b strings.Builder
	fmt.Fprintf(&b, "Microsoft (%s) tried %s to the SBC (%s)%s",
		strings.Join(peers, ", "), plural(n, "new TLS connection", "new TLS connections"), strings.Join(servers, ", "), when)
	allLog := !slices.ContainsFunc(conns, func(c *tlsaudit.Conn) bool { return !a.fromLog[c] })
	switch certs := a.certWords(conns); {
	case certs != "":
		b.WriteString("; the SBC served " + certs + " and")
	case allLog:
		b.WriteString(" (as the SBC's log shows);")
	default:
		b.WriteString("; no server certificate was seen and")
	}
	each := "each"
	if n == 1 {
		each = "it"
	}
	switch {
	case closedBy["client"] == n:
		fmt.Fprintf(&b, " Microsoft aborted %s", each)
	case closedBy["server"] == n:
		fmt.Fprintf(&b, " the SBC closed %s", each)
	default:
		fmt.Fprintf(&b, " %s failed", each)
	}
	if len(alerts) > 0 {
		fmt.Fprintf(&b, " with alert %s", strings.Join(alerts, ", "))
	}
	if maxDur > 0 {
		ms := (maxDur + time.Millisecond - 1) / time.Millisecond
		fmt.Fprintf(&b, " within %d ms", ms)
	}
	b.WriteString(" before any SIP was carried")
	return b.String()
}

// certWords describes the distinct certificates served on conns, ""
// when none was seen.
func (a *analysis) certWords(conns []*tlsaudit.Conn) string {
	var parts []string
	seen := map[string]bool{}
	encrypted := false
	for _, c := range conns {
		sc, ok := certOf(c)
		if !ok {
			encrypted = encrypted || c.CertEncrypted
			continue
		}
		if seen[sc.fingerprint] {
			continue
		}
		seen[sc.fingerprint] = true
		name := sc.subject
		if cn := commonName(sc.subject); cn != "" {
			name = "CN=" + cn
		}
		var q []string
		r := c.Check
		switch {
		case r != nil && r.SelfSigned, r == nil && sc.leaf != nil && certcheck.SelfSigned(sc.leaf):
			q = append(q, "self-signed")
		case r != nil && r.Expired:
			q = append(q, "expired "+r.NotAfter.UTC().Format("2006-01-02"))
		case r != nil && r.NotYetValid:
			q = append(q, "not valid before "+r.NotBefore.UTC().Format("2006-01-02"))
		case r != nil && !r.Trusted:
			q = append(q, "not trusted")
		}
		if bad := a.uncovered(c, sc); bad != "" {
			q = append(q, "not valid for "+bad)
		}
		if len(q) > 0 {
			name += " (" + strings.Join(q, ", ") + ")"
		}
		parts = append(parts, name)
	}
	if len(parts) == 0 && encrypted {
		return "a certificate hidden by TLS 1.3"
	}
	return strings.Join(parts, " or ")
}

// uncovered returns the name the certificate should have covered and did
// not (the SNI, else the configured SBC FQDN), "" when it is fine or
// unknown.
func (a *analysis) uncovered(c *tlsaudit.Conn, sc servedCert) string {
	if r := c.Check; r != nil {
		if r.NameChecked && !r.NameOK {
			return r.Name
		}
		if r.NameChecked {
			return ""
		}
	}
	names := a.cfg.SBCFQDNs()
	if c.SNI != "" {
		names = []string{c.SNI}
	}
	if len(names) == 0 {
		return ""
	}
	for _, n := range names {
		if sc.covers(n) {
			return ""
		}
	}
	return names[0]
}

func addrOnly(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return "unknown"
	}
	return ap.Addr().String()
}

func appendNew(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// UnexplainedFailures returns the inbound TLS connections from Microsoft
// that failed before carrying SIP and that no call in the input explains
// (no dialog fits them as a lost REFER), by time. They are left to the
// TLS findings; Hints turns them into advice.
func UnexplainedFailures(in Input) []*tlsaudit.Conn {
	return newAnalysis(in).unexplained()
}

func (a *analysis) unexplained() []*tlsaudit.Conn {
	d := a.matchDeliveries()
	var out []*tlsaudit.Conn
	for _, c := range a.failed {
		if !d.claimed[c] {
			out = append(out, c)
		}
	}
	return out
}

// Hints returns advice sentences for the report about what the input
// could not settle: today, failed inbound TLS connections from Microsoft
// that no call explains. Empty when there is nothing to say.
func Hints(in Input) []string {
	a := newAnalysis(in)
	var u unexplainedSum
	for _, c := range a.unexplained() {
		u.add(c)
	}
	msCalls := 0
	for _, c := range a.calls {
		if c.Kind == "invite" && c.Microsoft {
			msCalls++
		}
	}
	return u.hints(msCalls, a.cfg.GiveUpWindow.D())
}

// maxHintAddrs bounds the addresses one hint lists.
const maxHintAddrs = 20

// unexplainedSum sums up failed inbound connections no call explains,
// in time order, for the hint.
type unexplainedSum struct {
	n              int
	peers, servers []string
	first, last    time.Time
}

func (u *unexplainedSum) add(c *tlsaudit.Conn) {
	if u.n == 0 {
		u.first = c.FirstSeen
	}
	u.n++
	u.last = c.FirstSeen
	if len(u.peers) < maxHintAddrs {
		u.peers = appendNew(u.peers, addrOnly(c.Client))
	}
	if len(u.servers) < maxHintAddrs {
		u.servers = appendNew(u.servers, addrOnly(c.Server))
	}
}

func (u *unexplainedSum) hints(msCalls int, giveUp time.Duration) []string {
	if u.n == 0 {
		return nil
	}
	why := "the input holds no call with Microsoft to tie them to"
	if msCalls > 0 {
		why = fmt.Sprintf("none of the %s with Microsoft in the input fits them (up at the time, no REFER, ended within %s after)",
			plural(msCalls, "call", "calls"), humanDur(giveUp))
	}
	return []string{fmt.Sprintf(
		"%s from Microsoft (%s) to %s failed before carrying any SIP between %s and %s UTC, and %s. "+
			"That is how a REFER (a Teams transfer) or an OPTIONS from Microsoft looks when the SBC serves the wrong certificate on new inbound connections; "+
			"add the SBC's SIP for that time (a capture with the calls, its debug recording or syslog) to see which calls they hurt.",
		upperFirst(plural(u.n, "inbound TLS connection", "inbound TLS connections")),
		strings.Join(u.peers, ", "), strings.Join(u.servers, ", "),
		u.first.UTC().Format(time.DateTime), u.last.UTC().Format(time.DateTime), why)}
}
