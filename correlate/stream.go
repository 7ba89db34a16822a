package correlate

import (
	"cmp"
	"encoding/binary"
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

// StreamOptions configure a Stream.
type StreamOptions struct {
	// Config gives thresholds, Microsoft ranges, SBC names and the
	// window limits (limits.max_window_*); nil means config.Default().
	Config *config.Config
	// TeamsContextID is the Teams TLS context when configured; nil means
	// inferred from the SBC log's sockets seen so far.
	TeamsContextID *int
	// Emit receives every finding as it is decided, and again (same ID
	// and Key) each time it is updated. Required.
	Emit func(*finding.Finding)
	// Open, when set, returns the calls still tracked (not yet handed
	// to AddCall), for the "calls_up" evidence and, with
	// ProvisionalAfter, as competing candidates of an early judgement.
	Open func() []*sip.Call
	// ProvisionalAfter, when positive, judges refer_delivery_failed
	// early: once a call's last message is that old on the stream's
	// clock (and it was handed over), it is judged on the evidence so
	// far, with the ended calls Open returns as competitors; a call it
	// blames gets the finding at once, marked Provisional with SettlesAt.
	// At the normal decision (the lag) the same finding (same ID and Key)
	// is emitted again, confirmed, or a copy marked Retracted when the
	// final verdict does not hold it. Zero (analyze) changes nothing.
	ProvisionalAfter time.Duration
}

// StreamStats count what a Stream held and let go.
type StreamStats struct {
	// Flushes counts decision rounds; Postponed the calls whose
	// refer_delivery_failed group still waited for another call.
	Flushes, Postponed uint64
	// Evicted* count records dropped from a full window before their
	// time: a rule that needed them may have missed.
	EvictedCalls, EvictedConns, EvictedSockets, EvictedEvents uint64
	// PeakCalls, PeakConns, PeakSockets are the most records held at once.
	PeakCalls, PeakConns, PeakSockets int
	// Findings counts the findings decided (an update counts once).
	Findings uint64
	// Provisional counts the findings emitted early (ProvisionalAfter);
	// Confirmed and Retracted how they were settled.
	Provisional, Confirmed, Retracted uint64
}

// Default window bounds (limits.max_window_calls, max_window_conns,
// max_window_events).
const (
	DefaultMaxWindowCalls  = 100000
	DefaultMaxWindowConns  = 100000
	DefaultMaxWindowEvents = 200000
	// maxGroups bounds the grouped TLS findings and served-certificate
	// tallies kept to merge later connections into.
	maxGroups = 4096
	// maxCertsPerServer bounds the distinct certificates remembered per
	// server for contact_not_fqdn.
	maxCertsPerServer = 16
)

// Stream is the incremental correlation: it takes calls as the tracker
// lets them go, TLS connections as they end, the SIP requests as they
// are seen and the SBC log's sockets, and decides each rule once its
// windows have passed on the stream's clock (see README.md, "Streaming").
// Not safe for concurrent use.
type Stream struct {
	o   StreamOptions
	cfg *config.Config
	a   *analysis // the persistent part: sbcAddrs, certsByServer, fromLog, ctxCount

	lag, connKeep time.Duration
	maxCalls      int
	maxConns      int
	maxEvents     int

	pending []*sip.Call // handed over, not yet judged
	// pendingAt is callTime of each pending call, in the same order: a
	// round reads it instead of every call.
	pendingAt []time.Time
	decided   []*sip.Call      // judged, kept as context
	conns     []*tlsaudit.Conn // by FirstSeen
	fresh     []*tlsaudit.Conn // not yet through the TLS checks
	sockets   []*syslog.Socket // not yet judged
	invites   []inviteSent
	refers    []referAt
	seenInv   map[string]bool // by inviteKey
	keyBuf    []byte
	// openRefers is the first REFER seen in each call not yet judged:
	// the INVITEs from then on stay, however long the call lasts, for
	// refer_not_followed.
	openRefers map[string]time.Time

	connFindings map[*tlsaudit.Conn][]*finding.Finding
	groups       map[string]*finding.Finding
	served       map[listenerSNI]*servedTally
	servedOrder  []listenerSNI
	claimed      map[*tlsaudit.Conn]bool
	delivered    []*finding.Finding // recent refer_delivery_failed, to link later tls_context_wrong
	ctxWrong     []*finding.Finding // recent tls_context_wrong

	// provQ holds the calls waiting for their early judgement, by
	// callTime; provOf the provisional findings not yet settled, by the
	// call they blame.
	provQ  []*sip.Call
	provOf map[*sip.Call]*finding.Finding

	unexplained unexplainedSum
	msCalls     int
	now         time.Time
	lastFlush   time.Time
	nextID      int
	closed      bool
	st          StreamStats
}

// NewStream returns a Stream.
func NewStream(o StreamOptions) *Stream {
	cfg := o.Config
	if cfg == nil {
		cfg = config.Default()
	}
	s := &Stream{o: o, cfg: cfg, seenInv: map[string]bool{}, openRefers: map[string]time.Time{},
		connFindings: map[*tlsaudit.Conn][]*finding.Finding{}, groups: map[string]*finding.Finding{},
		served: map[listenerSNI]*servedTally{}, claimed: map[*tlsaudit.Conn]bool{},
		provOf: map[*sip.Call]*finding.Finding{}}
	s.a = &analysis{cfg: cfg, sbcAddrs: map[netip.Addr]bool{}, fromLog: map[*tlsaudit.Conn]bool{},
		certsByServer: map[netip.Addr][]servedCert{}, ctxCount: map[int]int{}}
	for _, sb := range cfg.SBCs {
		for _, v := range sb.Addresses {
			if p, err := netip.ParseAddr(v); err == nil {
				s.a.sbcAddrs[p.Unmap()] = true
			}
		}
	}
	// A call is judged once everything that can still change its
	// verdict is in: the other calls that ended within the give-up
	// window after it (let go by the tracker a linger later), the INVITE
	// that follows a REFER, a REFER retried within Timer F.
	s.lag = max(cfg.GiveUpWindow.D(), cfg.ReferWindow.D(), retryGap) + 32*time.Second + 2*retryGap
	// Connections stay for the calls judged a lag after their end: back
	// over the give-up window and a run of retries before it.
	s.connKeep = 2*s.lag + cfg.GiveUpWindow.D() + 4*retryGap
	s.maxCalls = pick(cfg.Limits.MaxWindowCalls, DefaultMaxWindowCalls)
	s.maxConns = pick(cfg.Limits.MaxWindowConns, DefaultMaxWindowConns)
	s.maxEvents = pick(cfg.Limits.MaxWindowEvents, DefaultMaxWindowEvents)
	return s
}

func pick(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// Stats returns the counters so far.
func (s *Stream) Stats() StreamStats { return s.st }

// see moves the stream's clock forward.
func (s *Stream) see(ts ...time.Time) {
	for _, t := range ts {
		if t.After(s.now) {
			s.now = t
		}
	}
}

// Advance moves the clock to now (the live wall clock); offline the
// records' own times move it.
func (s *Stream) Advance(now time.Time) { s.see(now) }

// Observe takes one SIP message as it is seen (before its call is let
// go): INVITEs for refer_not_followed, REFERs for the retries that
// recover a failed delivery.
func (s *Stream) Observe(m *sip.Message) {
	if m == nil {
		return
	}
	s.see(m.Time)
	if !m.IsRequest {
		return
	}
	switch m.Method {
	case "INVITE":
		s.addInvite(inviteSent{m.CallID, m.Time, m.Src, m.Dst, m.RequestURI})
	case "REFER":
		if _, ok := s.openRefers[m.CallID]; !ok && len(s.openRefers) < s.maxEvents {
			s.openRefers[m.CallID] = m.Time
		}
		if len(s.refers) >= s.maxEvents {
			s.refers = s.refers[1:]
			s.st.EvictedEvents++
		}
		r := referAt{m.Time, m.Dst.Addr().Unmap()}
		i := len(s.refers)
		for i > 0 && s.refers[i-1].time.After(r.time) {
			i--
		}
		s.refers = slices.Insert(s.refers, i, r)
	}
}

// inviteKey writes into the stream's buffer the key that identifies an
// INVITE among the window's duplicates: what newAnalysis's key holds
// (Call-ID, time with its location, source, Request-URI), in binary
// instead of formatted. The map is read through string(key) without an
// allocation; only a new key is copied.
func (s *Stream) inviteKey(v inviteSent) []byte {
	b := append(s.keyBuf[:0], v.callID...)
	b = append(b, 0)
	b = binary.AppendVarint(b, v.time.Unix())
	b = binary.AppendUvarint(b, uint64(v.time.Nanosecond()))
	b = append(b, v.time.Location().String()...)
	b = append(b, 0)
	b, _ = v.src.AppendBinary(b)
	b = append(b, v.ruri...)
	s.keyBuf = b
	return b
}

func (s *Stream) addInvite(v inviteSent) {
	if v.ruri == "" {
		return
	}
	k := s.inviteKey(v)
	if s.seenInv[string(k)] {
		return
	}
	if len(s.invites) >= s.maxEvents {
		s.dropInvite()
		s.st.EvictedEvents++
		k = s.inviteKey(v) // dropInvite wrote its own key into the buffer
	}
	s.seenInv[string(k)] = true
	i := len(s.invites)
	for i > 0 && cmp.Or(s.invites[i-1].time.Compare(v.time), cmp.Compare(s.invites[i-1].callID, v.callID)) > 0 {
		i--
	}
	s.invites = slices.Insert(s.invites, i, v)
}

func (s *Stream) dropInvite() {
	v := s.invites[0]
	delete(s.seenInv, string(s.inviteKey(v)))
	s.invites = s.invites[1:]
}

// AddCall takes a call the tracker let go.
func (s *Stream) AddCall(c *sip.Call) {
	if c == nil {
		return
	}
	s.see(c.Start, c.Answer, c.End, c.Last)
	for _, r := range c.Refers {
		if r != nil {
			s.see(r.Time, r.ResponseTime)
			for _, n := range r.Notifies {
				s.see(n.Time)
			}
		}
	}
	if c.Kind == "invite" {
		s.addInvite(inviteSent{c.CallID, c.Start, c.Caller, c.Callee, c.RequestURI})
		if c.Microsoft {
			s.msCalls++
		}
	}
	if c.Microsoft && c.SBCSide.IsValid() {
		s.a.sbcAddrs[c.SBCSide.Addr().Unmap()] = true
	}
	// The rules read the call's summary, never its messages: hold a
	// copy without them, so the sink can let the ladder go.
	cc := *c
	cc.Messages = nil
	if len(s.pending)+len(s.decided) >= s.maxCalls {
		s.evictCall()
	}
	s.addPending(&cc)
	s.st.PeakCalls = max(s.st.PeakCalls, len(s.pending)+len(s.decided))
	if s.o.ProvisionalAfter > 0 && cc.Kind == "invite" && cc.Microsoft && ended(&cc) {
		i := len(s.provQ)
		for i > 0 && callTime(s.provQ[i-1]).After(callTime(&cc)) {
			i--
		}
		s.provQ = slices.Insert(s.provQ, i, &cc)
	}
}

// evictCall makes room: the oldest context call, else the oldest call
// not yet judged is judged now.
func (s *Stream) evictCall() {
	s.st.EvictedCalls++
	if len(s.decided) > 0 {
		s.decided = s.decided[1:]
		return
	}
	c := s.pending[0]
	s.decide([]*sip.Call{c}, true)
	s.decided = slices.DeleteFunc(s.decided, func(x *sip.Call) bool { return x == c })
}

// AddConn takes a TLS connection that ended.
func (s *Stream) AddConn(c *tlsaudit.Conn) {
	if c == nil {
		return
	}
	s.see(c.FirstSeen, c.LastSeen)
	s.fresh = append(s.fresh, c)
	s.insertConn(c)
}

func (s *Stream) insertConn(c *tlsaudit.Conn) {
	if len(s.conns) >= s.maxConns {
		s.st.EvictedConns++
		s.dropConn()
	}
	i := len(s.conns)
	for i > 0 && compareConns(s.conns[i-1], c) > 0 {
		i--
	}
	s.conns = slices.Insert(s.conns, i, c)
	s.st.PeakConns = max(s.st.PeakConns, len(s.conns))
}

// dropConn lets the oldest connection go; a failed one no call claimed
// goes into the hint.
func (s *Stream) dropConn() {
	c := s.conns[0]
	s.conns = s.conns[1:]
	if !s.claimed[c] && s.a.failedInbound(c) {
		s.unexplained.add(c)
	}
	delete(s.claimed, c)
	delete(s.connFindings, c)
	delete(s.a.fromLog, c)
}

// AddSocket takes a socket from the SBC's own log.
func (s *Stream) AddSocket(sk *syslog.Socket) {
	if sk == nil {
		return
	}
	if len(s.sockets) >= s.maxEvents {
		s.st.EvictedSockets++
		s.sockets = s.sockets[1:]
	}
	s.a.countContext(s.a.ctxCount, sk)
	i := len(s.sockets)
	for i > 0 && s.sockets[i-1].Accepted.After(sk.Accepted) {
		i--
	}
	s.sockets = slices.Insert(s.sockets, i, sk)
	s.st.PeakSockets = max(s.st.PeakSockets, len(s.sockets))
	// With the SBC's log, a call waits for the sockets around its end to
	// be matched with the capture (syslogMatchWindow).
	s.lag = max(s.lag, syslogMatchWindow+2*retryGap+cmpLag(s.cfg))
	s.connKeep = max(s.connKeep, 2*s.lag+s.cfg.GiveUpWindow.D()+4*retryGap, s.lag+syslogMatchWindow)
}

func cmpLag(cfg *config.Config) time.Duration {
	return max(cfg.GiveUpWindow.D(), cfg.ReferWindow.D(), retryGap) + 32*time.Second
}

// Flush takes the decisions the clock allows; cheap when nothing is due.
func (s *Stream) Flush() {
	if s.closed {
		return
	}
	// A round every sixteenth of the lag: decisions come at most that
	// much after their windows passed, and rounds stay cheap.
	if s.now.After(s.lastFlush.Add(max(time.Second, s.lag/16))) {
		s.lastFlush = s.now
		s.round(false)
	}
	// Early judgements as soon as they are due (one comparison when none
	// is).
	if len(s.provQ) > 0 && callTime(s.provQ[0]).Before(s.now.Add(-s.o.ProvisionalAfter)) {
		s.provisional()
	}
}

// provisional judges the calls whose early judgement is due: among the
// calls handed over and not yet judged, and the ended calls still
// tracked, a due call that its group of candidates clearly blames gets a
// provisional refer_delivery_failed. The rest waits for the lag.
func (s *Stream) provisional() {
	cut := s.now.Add(-s.o.ProvisionalAfter)
	due := map[*sip.Call]bool{}
	for len(s.provQ) > 0 && callTime(s.provQ[0]).Before(cut) {
		// A call no failed connection reached during it cannot be in a
		// group: most calls cost this one look.
		if c := s.provQ[0]; s.failedDuring(c) {
			due[c] = true
		}
		s.provQ = s.provQ[1:]
	}
	if len(due) == 0 {
		return
	}
	a := s.view()
	a.open = s.o.Open
	slices.SortStableFunc(a.calls, func(x, y *sip.Call) int {
		return cmp.Or(x.Start.Compare(y.Start), cmp.Compare(x.CallID, y.CallID))
	})
	pending := map[*sip.Call]bool{}
	for _, c := range s.pending {
		pending[c] = true
	}
	among := slices.Clone(s.pending)
	if s.o.Open != nil {
		for _, c := range s.o.Open() {
			if c.Kind == "invite" && c.Microsoft && ended(c) {
				among = append(among, c)
			}
		}
	}
	for _, g := range a.matchAmong(among).groups {
		if !slices.ContainsFunc(g, func(cd candidate) bool { return due[cd.call] }) {
			continue
		}
		top := g[0]
		if !pending[top.call] || !callTime(top.call).Before(cut) || s.provOf[top.call] != nil {
			continue // not handed over or not due yet: judged when it is
		}
		why := "it is the only call that fits"
		blame := len(g) == 1
		if !blame {
			blame, why = a.clearlyAhead(top, g[1])
		}
		if !blame {
			continue // a warning without call id: decided at the lag
		}
		f := a.blamed(top, g[1:], why)
		f.Provisional = true
		f.SettlesAt = s.settlesAt(top.call)
		s.assign(f)
		s.st.Provisional++
		s.provOf[top.call] = f
		s.emit(f)
	}
}

// failedDuring reports whether a failed inbound connection from
// Microsoft began between c's answer and its end.
func (s *Stream) failedDuring(c *sip.Call) bool {
	i, _ := slices.BinarySearchFunc(s.conns, c.Answer, func(x *tlsaudit.Conn, t time.Time) int { return x.FirstSeen.Compare(t) })
	for _, x := range s.conns[i:] {
		if x.FirstSeen.After(c.End) {
			break
		}
		if s.a.failedInbound(x) {
			return true
		}
	}
	return false
}

// settlesAt is when a call's normal decision is expected: the lag after
// its last message, plus a round's interval, to the next second. A group
// that still waits for another call settles later.
func (s *Stream) settlesAt(c *sip.Call) time.Time {
	return callTime(c).Add(s.lag + max(time.Second, s.lag/16)).Truncate(time.Second).Add(time.Second)
}

// settle matches the provisional findings of the calls decided now with
// the final verdict: a final finding with the same key takes the
// provisional one's ID (emitted confirmed); otherwise a retraction of the
// provisional one is returned.
func (s *Stream) settle(decidedNow []*sip.Call, delivered []*finding.Finding) []*finding.Finding {
	var byKey map[string]*finding.Finding
	var out []*finding.Finding
	for _, c := range decidedNow {
		p := s.provOf[c]
		if p == nil {
			continue
		}
		delete(s.provOf, c)
		if byKey == nil {
			byKey = map[string]*finding.Finding{}
			for _, f := range delivered {
				byKey[finding.KeyOf(f)] = f
			}
		}
		if f := byKey[p.Key]; f != nil && f.ID == "" {
			f.ID = p.ID
			s.st.Confirmed++
			continue
		}
		r := *p
		r.Provisional, r.Retracted, r.SettlesAt = false, true, s.now
		s.st.Retracted++
		out = append(out, &r)
	}
	return out
}

// Close decides everything still held, as if every window had passed,
// and returns the hints for what the input could not settle.
func (s *Stream) Close() []string {
	if s.closed {
		return nil
	}
	s.round(true)
	s.closed = true
	for len(s.conns) > 0 {
		s.dropConn()
	}
	return s.unexplained.hints(s.msCalls, s.cfg.GiveUpWindow.D())
}

// round is one decision round: TLS checks on the connections that
// ended, log sockets whose matching window passed, calls whose windows
// passed, then the windows are trimmed.
func (s *Stream) round(all bool) {
	s.st.Flushes++
	cut := s.now.Add(-s.lag)
	s.tlsChecks()

	var ripeSockets []*syslog.Socket
	for len(s.sockets) > 0 && (all || s.sockets[0].Accepted.Before(cut)) {
		ripeSockets = append(ripeSockets, s.sockets[0])
		s.sockets = s.sockets[1:]
	}
	if len(ripeSockets) > 0 {
		a := s.view()
		for _, sk := range ripeSockets {
			if c := a.logConn(sk); c != nil {
				s.a.fromLog[c] = true
				s.insertConn(c)
			}
		}
	}

	var ripe []*sip.Call
	keep, keepAt := s.pending[:0], s.pendingAt[:0]
	for i, c := range s.pending {
		if t := s.pendingAt[i]; all || t.Before(cut) {
			ripe = append(ripe, c)
		} else {
			keep, keepAt = append(keep, c), append(keepAt, t)
		}
	}
	clear(s.pending[len(keep):])
	s.pending, s.pendingAt = keep, keepAt
	if len(ripe) > 0 || len(ripeSockets) > 0 {
		s.decideWith(ripe, ripeSockets, all)
	}
	s.trim(cut)
}

// callTime is the last thing known of a call.
func callTime(c *sip.Call) time.Time {
	if c.End.After(c.Last) {
		return c.End
	}
	return c.Last
}

// trim lets go of context calls, connections and events no rule can
// still need.
func (s *Stream) trim(cut time.Time) {
	ctxCut := cut.Add(-s.lag)
	i := 0
	for i < len(s.decided) && callTime(s.decided[i]).Before(ctxCut) {
		i++
	}
	s.decided = slices.Delete(s.decided, 0, i)
	connCut := s.now.Add(-s.connKeep)
	for len(s.conns) > 0 && s.conns[0].FirstSeen.Before(connCut) {
		s.dropConn()
	}
	invCut := ctxCut
	stale := s.now.Add(-s.cfg.DialogTimeout.D() - 2*s.lag)
	for id, t := range s.openRefers {
		switch {
		case t.Before(stale):
			delete(s.openRefers, id) // its call was let go unjudged
		case t.Before(invCut):
			invCut = t
		}
	}
	for len(s.invites) > 0 && s.invites[0].time.Before(invCut) {
		s.dropInvite()
	}
	for len(s.refers) > 0 && s.refers[0].time.Before(ctxCut) {
		s.refers = s.refers[1:]
	}
	s.delivered = slices.DeleteFunc(s.delivered, func(f *finding.Finding) bool { return f.Time.Before(connCut) })
	s.ctxWrong = slices.DeleteFunc(s.ctxWrong, func(f *finding.Finding) bool { return f.Time.Before(connCut) })
}

// view is an analysis over the windows.
func (s *Stream) view() *analysis {
	p := s.a
	a := &analysis{cfg: s.cfg, sbcAddrs: p.sbcAddrs, fromLog: p.fromLog, now: s.now,
		certsByServer: p.certsByServer, servers: slices.Clone(p.servers), ctxCount: p.ctxCount,
		conns: s.conns, invites: s.invites, refers: s.refers}
	slices.SortFunc(a.servers, netip.Addr.Compare)
	a.calls = slices.Concat(s.decided, s.pending)
	a.byClient = map[netip.AddrPort][]*tlsaudit.Conn{}
	for _, c := range s.conns {
		a.byClient[c.Client] = append(a.byClient[c.Client], c)
		if a.failedInbound(c) {
			a.failed = append(a.failed, c)
		}
	}
	for _, fs := range s.connFindings {
		a.tls = append(a.tls, fs...)
	}
	for _, f := range s.groups {
		a.tls = append(a.tls, f)
	}
	return a
}

// decide judges calls alone (a window full).
func (s *Stream) decide(calls []*sip.Call, force bool) {
	keep, keepAt := s.pending[:0], s.pendingAt[:0]
	for i, c := range s.pending {
		if !slices.Contains(calls, c) {
			keep, keepAt = append(keep, c), append(keepAt, s.pendingAt[i])
		}
	}
	clear(s.pending[len(keep):])
	s.pending, s.pendingAt = keep, keepAt
	s.decideWith(calls, nil, force)
}

// addPending adds a call handed over to those not yet judged.
func (s *Stream) addPending(c *sip.Call) {
	s.pending = append(s.pending, c)
	s.pendingAt = append(s.pendingAt, callTime(c))
}

// decideWith applies the call rules to ripe calls and tls_context_wrong
// to ripe sockets, emits the findings and links them.
func (s *Stream) decideWith(ripe []*sip.Call, sockets []*syslog.Socket, force bool) {
	a := s.view()
	// The rules only count over a.calls (callsUp): unlike the batch
	// analysis, the window needs no order, and sorting it every round
	// cost more than the rules.
	a.calls = append(a.calls, ripe...)
	a.open = s.o.Open
	// refer_delivery_failed first: a group of candidates that still
	// waits for a call not yet ripe holds its ripe members back.
	isRipe := map[*sip.Call]bool{}
	for _, c := range ripe {
		isRipe[c] = true
	}
	among := ripe
	if !force {
		among = slices.Concat(ripe, s.pending)
	}
	d := a.matchAmong(among)
	var out, delivered []*finding.Finding
	held := map[*sip.Call]bool{}
	for _, g := range d.groups {
		whole := force || !slices.ContainsFunc(g, func(cd candidate) bool { return !isRipe[cd.call] })
		if !whole {
			for _, cd := range g {
				if isRipe[cd.call] {
					held[cd.call] = true
				}
			}
			continue
		}
		for _, cd := range g {
			for _, conn := range cd.attempts {
				s.claimed[conn] = true
			}
		}
		top := g[0]
		why := "it is the only call that fits"
		blame := len(g) == 1
		if !blame {
			blame, why = a.clearlyAhead(top, g[1])
		}
		if blame {
			delivered = append(delivered, a.blamed(top, g[1:], why))
		} else {
			delivered = append(delivered, a.ambiguous(g))
		}
	}
	nDecided := len(s.decided)
	var decidedNow []*sip.Call
	for _, c := range ripe {
		if held[c] {
			s.st.Postponed++
			s.addPending(c)
			continue
		}
		out = append(out, a.callRules(c)...)
		out = append(out, a.referRules(c)...)
		s.decided = append(s.decided, c)
		decidedNow = append(decidedNow, c)
		delete(s.openRefers, c.CallID)
	}
	var retracted []*finding.Finding
	if len(s.provQ) > 0 || len(s.provOf) > 0 {
		judged := map[*sip.Call]bool{}
		for _, c := range decidedNow {
			judged[c] = true
		}
		s.provQ = slices.DeleteFunc(s.provQ, func(c *sip.Call) bool { return judged[c] })
		retracted = s.settle(decidedNow, delivered)
	}
	s.decided = mergeDecided(s.decided, nDecided)
	out = append(out, delivered...)
	var ctx []*finding.Finding
	if len(sockets) > 0 {
		a.sockets = sockets
		ctx = a.tlsContextWrong(s.o.TeamsContextID)
		out = append(out, ctx...)
	}
	slices.SortStableFunc(out, compareFindings)
	for _, f := range out {
		s.assign(f)
	}
	a.link(delivered, slices.Concat(out, s.ctxWrong))
	// tls_context_wrong decided after the delivery it explains.
	for _, d := range s.delivered {
		if s.linkContext(d, ctx) {
			s.emit(d)
		}
	}
	s.delivered = append(s.delivered, delivered...)
	s.ctxWrong = append(s.ctxWrong, ctx...)
	for _, f := range retracted {
		s.emit(f)
	}
	for _, f := range out {
		s.emit(f)
	}
}

// mergeDecided returns decided, whose first n calls are in callTime
// order, with the calls after them merged in: what a stable sort of all
// of them by callTime gives (on a tie the earlier one first), in linear
// time instead of a sort of the whole window every round.
func mergeDecided(decided []*sip.Call, n int) []*sip.Call {
	added := decided[n:]
	if len(added) == 0 {
		return decided
	}
	cmpTime := func(x, y *sip.Call) int { return callTime(x).Compare(callTime(y)) }
	slices.SortStableFunc(added, cmpTime)
	if n == 0 || cmpTime(decided[n-1], added[0]) <= 0 {
		return decided // already in order: the usual case
	}
	old, add := decided[:n], slices.Clone(added)
	out := make([]*sip.Call, 0, cap(decided))
	i, j := 0, 0
	for i < len(old) && j < len(add) {
		if cmpTime(add[j], old[i]) < 0 {
			out = append(out, add[j])
			j++
		} else {
			out = append(out, old[i])
			i++
		}
	}
	out = append(out, old[i:]...)
	return append(out, add[j:]...)
}

// linkContext adds to an earlier refer_delivery_failed the
// tls_context_wrong findings about its connections.
func (s *Stream) linkContext(d *finding.Finding, ctx []*finding.Finding) bool {
	var conns []string
	if fc, ok := maps(d.Evidence["failed_connections"]); ok {
		for _, c := range fc {
			if id, ok := c["connection"].(string); ok {
				conns = append(conns, id)
			}
		}
	}
	changed := false
	for _, f := range ctx {
		if cids, ok := strs(f.Evidence["connection_ids"]); ok && slices.ContainsFunc(cids, func(id string) bool { return slices.Contains(conns, id) }) {
			d.Cites = append(d.Cites, f.ID)
			changed = true
		}
	}
	if changed {
		slices.SortFunc(d.Cites, compareIDs)
		d.Cites = slices.Compact(d.Cites)
	}
	return changed
}

func (s *Stream) assign(f *finding.Finding) {
	if f.ID == "" {
		s.st.Findings++
		s.nextID++
		f.ID = "F" + strconv.Itoa(s.nextID)
	}
}

func (s *Stream) emit(f *finding.Finding) {
	if f.Key == "" {
		f.Key = finding.KeyOf(f)
	}
	s.o.Emit(f)
}

// tlsChecks runs the TLS findings over the connections that ended since
// the last round and merges the grouped ones into those already out.
func (s *Stream) tlsChecks() {
	if len(s.fresh) == 0 {
		return
	}
	conns := s.fresh
	s.fresh = nil
	slices.SortStableFunc(conns, compareConns)
	var out []*finding.Finding
	for _, c := range conns {
		s.a.servedBy(c, maxCertsPerServer)
	}
	byID := map[string]*tlsaudit.Conn{}
	for _, c := range conns {
		byID[c.ID] = c
	}
	for _, f := range tlsaudit.Findings(conns, tlsaudit.FindingOptions{}) {
		switch {
		case f.Rule == finding.TLSCertInconsistent:
			continue // tallied below, over every connection so far
		case f.Evidence["connection_ids"] != nil:
			k := groupKey(f)
			if g, ok := s.groups[k]; ok {
				mergeGroup(g, f)
				out = append(out, g)
				continue
			}
			if len(s.groups) >= maxGroups {
				continue
			}
			s.groups[k] = f
			s.assign(f)
			out = append(out, f)
		default:
			s.assign(f)
			if c := byID[f.Connection]; c != nil {
				s.connFindings[c] = append(s.connFindings[c], f)
			}
			out = append(out, f)
		}
	}
	out = append(out, s.inconsistent(conns)...)
	for _, f := range slices.Compact(out) {
		s.emit(f)
	}
}

// groupKey names a grouped TLS finding: its rule, listener and what it
// groups by (certificate and name, or version).
func groupKey(f *finding.Finding) string {
	str := func(k string) string { v, _ := f.Evidence[k].(string); return v }
	return strings.Join([]string{f.Rule, str("listener"), str("fingerprint_sha256"), str("name"), str("version")}, "|")
}

// mergeGroup adds a later batch's grouped finding to the one already out.
func mergeGroup(g, f *finding.Finding) {
	n, _ := g.Evidence["connections"].(int)
	m, _ := f.Evidence["connections"].(int)
	g.Evidence["connections"] = n + m
	ids, _ := strs(g.Evidence["connection_ids"])
	more, _ := strs(f.Evidence["connection_ids"])
	for _, id := range more {
		if len(ids) >= 20 {
			break
		}
		ids = append(ids, id)
	}
	g.Evidence["connection_ids"] = ids
	if v, ok := f.Evidence["last_seen"]; ok {
		g.Evidence["last_seen"] = v
	}
	if f.Evidence["from_microsoft"] == true {
		g.Evidence["from_microsoft"] = true
	}
}

// listenerSNI is one listener and SNI, for tls_cert_inconsistent.
type listenerSNI struct{ server, sni string }

// servedTally counts the certificates one listener served for one SNI.
type servedTally struct {
	first *finding.Finding // the finding once two certificates were seen
	fps   []*tlsaudit.ServedCert
}

// maxFingerprints bounds the distinct certificates tallied per listener
// and SNI.
const maxFingerprints = 64

// inconsistent tallies the served certificates of conns per listener and
// SNI (over every connection so far, as tlsaudit does over one batch) and
// returns the tls_cert_inconsistent findings that are new or changed.
func (s *Stream) inconsistent(conns []*tlsaudit.Conn) []*finding.Finding {
	var touched []listenerSNI
	for _, c := range conns {
		leaf := c.Leaf()
		if leaf == nil {
			continue
		}
		k := listenerSNI{c.Server.String(), c.SNI}
		t, ok := s.served[k]
		if !ok {
			if len(s.served) >= maxGroups {
				continue
			}
			t = &servedTally{}
			s.served[k] = t
			s.servedOrder = append(s.servedOrder, k)
		}
		t.fps = tlsaudit.CountServed(t.fps, leaf, c.ID, c.FirstSeen, maxFingerprints)
		if !slices.Contains(touched, k) {
			touched = append(touched, k)
		}
	}
	var out []*finding.Finding
	for _, k := range touched {
		t := s.served[k]
		if len(t.fps) < 2 {
			continue
		}
		f := tlsaudit.InconsistentFinding(k.server, k.sni, t.fps)
		if t.first != nil {
			f.ID = t.first.ID
			*t.first = *f
			f = t.first
		} else {
			s.assign(f)
			t.first = f
			s.groups["inconsistent|"+k.server+"|"+k.sni] = f
		}
		out = append(out, f)
	}
	return out
}
