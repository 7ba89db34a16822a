package sip

import (
	"bytes"
	"hash/maphash"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TrackerOptions bound and inform a Tracker. Zero values take defaults.
type TrackerOptions struct {
	// MaxDialogs bounds the Call-IDs tracked at once (default 200000).
	// When full, the least recently active ended call is let go first,
	// else the least recently active open one.
	MaxDialogs int
	// MaxMessagesPerCall bounds Call.Messages (default 500); the count
	// stays exact.
	MaxMessagesPerCall int
	// DialogTimeout ends an open call idle this long (default 4h).
	DialogTimeout time.Duration
	// MaxRawBytes bounds Message.Raw of kept messages (default 8192).
	MaxRawBytes int
	// MaxKeptMessages bounds the messages kept across all calls not yet
	// handed to OnDone (0: no bound). Past it, each call still keeps its
	// first LadderFloor messages — so a call late in a big capture has a
	// ladder too — and then only its exact counts and summaries
	// (Truncated, per call): memory grows with the number of calls times
	// LadderFloor, not with the messages.
	MaxKeptMessages int
	// MessagesOwned says the caller hands each Message over with Observe
	// and never touches it again (as a parser's output): the tracker then
	// keeps it for the ladder as it is instead of keeping a copy, which
	// saves an allocation of a Message per message.
	MessagesOwned bool
	// LadderFloor is how many messages every call keeps however far past
	// MaxKeptMessages (default 16, never above MaxMessagesPerCall).
	LadderFloor int
	// IsMicrosoft reports whether an address is a Microsoft proxy.
	IsMicrosoft func(netip.Addr) bool
	// IsMicrosoftHost reports whether a SIP host is Microsoft's proxy.
	IsMicrosoftHost func(string) bool
	// IsSBC reports whether an address is a watched SBC; may be nil.
	IsSBC func(netip.Addr) bool
	// Linger is how long an ended call stays tracked for late messages
	// (ACK, 200 to BYE, retransmissions) before it is let go (default
	// 32s, never above DialogTimeout).
	Linger time.Duration
	// ReferFollowWindow is how long after a REFER an INVITE may follow it
	// (default 60s).
	ReferFollowWindow time.Duration
	// OnDone, when set, receives every Call the tracker lets go (linger
	// over, timeout, eviction), which Close then no longer returns. When
	// nil, let-go calls are kept (without their transaction state) for
	// Close, and a Call-ID seen again is resumed, so Close has one Call
	// per Call-ID.
	OnDone func(*Call)
}

// Tracker turns messages, observed in capture order, into Calls. It
// uses no clock but the messages' timestamps. Not safe for concurrent
// use.
type Tracker struct {
	o       TrackerOptions
	active  map[string]*callState
	open    lru // calls not ended, least recently active first
	ended   lru // ended calls lingering
	done    map[string]*callState
	pending []pendingRefer
	kept    int // messages kept in calls not handed to OnDone

	seed    maphash.Seed // for retransmission keys
	keyBuf  []byte       // reused to hash a retransmission key
	names   interner     // User-Agents, Allow, Contact and SDP addresses
	evicted uint64
}

// pendingRefer is a REFER still waiting for the INVITE that follows it.
type pendingRefer struct {
	r      *Refer
	callID string
}

const (
	maxSeen       = 1024 // retransmission keys per call
	maxDialogKeys = 16
	maxRefers     = 64
	maxNotifies   = 32
	maxUAs        = 8
	maxSDPAddrs   = 16
	maxPending    = 1024
)

// callState is a Call plus what the tracker needs to follow it.
type callState struct {
	c          *Call
	prev, next *callState
	list       *lru

	haveInit  bool
	initCSeq  uint32
	callerTag string
	openCSeq  uint32 // opening transaction of a non-INVITE Call-ID
	openMeth  string
	// seen holds hashes of retransmission keys (see retransmission).
	seen map[uint64]struct{}
}

// NewTracker returns a Tracker with o's defaults applied.
func NewTracker(o TrackerOptions) *Tracker {
	if o.MaxDialogs <= 0 {
		o.MaxDialogs = 200000
	}
	if o.MaxMessagesPerCall <= 0 {
		o.MaxMessagesPerCall = 500
	}
	if o.LadderFloor <= 0 {
		o.LadderFloor = 16
	}
	o.LadderFloor = min(o.LadderFloor, o.MaxMessagesPerCall)
	if o.DialogTimeout <= 0 {
		o.DialogTimeout = 4 * time.Hour
	}
	if o.MaxRawBytes <= 0 {
		o.MaxRawBytes = 8192
	}
	if o.Linger <= 0 {
		o.Linger = 32 * time.Second
	}
	o.Linger = min(o.Linger, o.DialogTimeout)
	if o.ReferFollowWindow <= 0 {
		o.ReferFollowWindow = 60 * time.Second
	}
	if o.IsMicrosoft == nil {
		o.IsMicrosoft = func(netip.Addr) bool { return false }
	}
	if o.IsMicrosoftHost == nil {
		o.IsMicrosoftHost = func(string) bool { return false }
	}
	return &Tracker{o: o, active: make(map[string]*callState), done: make(map[string]*callState),
		seed: maphash.MakeSeed()}
}

// Active is the number of Call-IDs currently tracked.
func (t *Tracker) Active() int { return len(t.active) }

// Open returns the calls still tracked (open or lingering after their
// end), in no order. They are still the tracker's: read, do not keep.
func (t *Tracker) Open() []*Call {
	out := make([]*Call, 0, len(t.active))
	for _, cs := range t.active {
		out = append(out, cs.c)
	}
	return out
}

// Observe takes the next message in capture order.
func (t *Tracker) Observe(m *Message) {
	if m == nil || m.CallID == "" {
		return
	}
	cs := t.lookup(m)
	c := cs.c
	c.MessageCount++
	if m.Time.After(c.Last) {
		c.Last = m.Time
	}
	if m.Time.Before(c.Start) {
		c.Start = m.Time
	}
	t.keep(c, m)
	for _, a := range m.SDPAddrs {
		if len(c.SDPAddrs) < maxSDPAddrs && !slices.Contains(c.SDPAddrs, a) {
			if c.SDPAddrs == nil {
				c.SDPAddrs = make([]string, 0, 2) // offer and answer
			}
			c.SDPAddrs = append(c.SDPAddrs, t.names.get(a))
		}
	}
	if ua := m.UserAgent; ua != "" && len(c.UserAgents) < maxUAs && !slices.Contains(c.UserAgents, ua) {
		c.UserAgents = append(c.UserAgents, t.names.get(ua))
	}
	t.microsoft(c, m)
	if m.FromTag != "" && m.ToTag != "" && len(c.Dialogs) < maxDialogKeys && formsDialogs(c.Kind) {
		if !hasDialog(c.Dialogs, m.CallID, m.FromTag, m.ToTag) {
			c.Dialogs = append(c.Dialogs, DialogKey(m.CallID, m.FromTag, m.ToTag))
		}
	}
	if t.retransmission(cs, m) {
		c.Retransmissions++
	} else if m.IsRequest {
		t.request(cs, m)
	} else {
		t.response(cs, m)
	}
	t.sbcHeaders(c, m)
	if c.End.IsZero() {
		t.open.moveToBack(cs)
	} else {
		t.ended.moveToBack(cs)
	}
}

// formsDialogs reports whether a Call-ID of that kind makes dialogs;
// REGISTER, OPTIONS and MESSAGE answers carry To tags but no dialog.
func formsDialogs(kind string) bool {
	switch kind {
	case "register", "options", "message":
		return false
	}
	return true
}

// DialogKey is the observer's dialog identifier: the Call-ID and both
// tags, sorted, so both directions give the same key.
func DialogKey(callID, tag1, tag2 string) string {
	if tag2 < tag1 {
		tag1, tag2 = tag2, tag1
	}
	return callID + ";" + tag1 + ";" + tag2
}

// hasDialog reports whether keys holds DialogKey(callID, tag1, tag2),
// without building it.
func hasDialog(keys []string, callID, tag1, tag2 string) bool {
	if tag2 < tag1 {
		tag1, tag2 = tag2, tag1
	}
	n := len(callID) + len(tag1) + len(tag2) + 2
	for _, k := range keys {
		if len(k) == n && k[:len(callID)] == callID && k[len(callID)] == ';' &&
			k[len(callID)+1:len(callID)+1+len(tag1)] == tag1 && k[len(callID)+1+len(tag1)] == ';' &&
			k[n-len(tag2):] == tag2 {
			return true
		}
	}
	return false
}

// lookup returns the state of m's Call-ID, creating (or resuming) it.
func (t *Tracker) lookup(m *Message) *callState {
	if cs := t.active[m.CallID]; cs != nil {
		return cs
	}
	cs := t.done[m.CallID]
	if cs != nil {
		delete(t.done, m.CallID)
		if c := cs.c; c.EndedBy == "timeout" {
			// Alive after all: the timeout was not its end.
			c.End, c.EndedBy, c.EndReason = time.Time{}, "", ""
		}
	} else {
		cs = &callState{c: &Call{CallID: strings.Clone(m.CallID), Kind: kindOf(m), Start: m.Time, Last: m.Time}}
	}
	if len(t.active) >= t.o.MaxDialogs {
		t.evict()
	}
	cs.seen = make(map[uint64]struct{})
	t.active[cs.c.CallID] = cs // the Call's own copy: m's may pin a datagram
	return cs
}

// kindOf names a Call-ID by the method of its first message. Methods
// that exist only inside INVITE dialogs (ACK, BYE, CANCEL, PRACK, UPDATE,
// INFO) mean a call whose INVITE was not captured.
func kindOf(m *Message) string {
	switch strings.ToUpper(m.Method) {
	case "INVITE", "ACK", "BYE", "CANCEL", "PRACK", "UPDATE", "INFO":
		return "invite"
	case "REGISTER":
		return "register"
	case "OPTIONS":
		return "options"
	case "SUBSCRIBE":
		return "subscribe"
	case "MESSAGE":
		return "message"
	case "REFER":
		return "refer"
	case "NOTIFY":
		return "notify"
	}
	return "other"
}

// keep appends a copy of m to the ladder while there is room: up to
// MaxMessagesPerCall, and past MaxKeptMessages up to LadderFloor.
func (t *Tracker) keep(c *Call, m *Message) {
	n := len(c.Messages)
	if n >= t.o.MaxMessagesPerCall || (t.o.MaxKeptMessages > 0 && t.kept >= t.o.MaxKeptMessages && n >= t.o.LadderFloor) {
		c.Truncated = true
		return
	}
	t.kept++
	mc := m
	if !t.o.MessagesOwned {
		cp := *m
		mc = &cp
	}
	if len(mc.Raw) > t.o.MaxRawBytes {
		mc.Raw = bytes.Clone(mc.Raw[:t.o.MaxRawBytes])
	}
	if c.Messages == nil {
		// A typical call has a handful of messages: one allocation for them.
		c.Messages = make([]*Message, 0, min(8, t.o.MaxMessagesPerCall))
	}
	c.Messages = append(c.Messages, mc)
}

// retransmission reports whether m repeats a request or response of a
// transaction already seen (top Via branch + CSeq + method; responses
// also by status and To tag), and remembers it otherwise. Keys are kept as
// 64-bit hashes (seeded per tracker): no allocation per message, and a
// false match within one call's at most maxSeen keys is about 2^-44 likely.
func (t *Tracker) retransmission(cs *callState, m *Message) bool {
	b := t.keyBuf[:0]
	if m.IsRequest {
		b = append(b, "q|"...)
	} else {
		b = append(b, "s|"...)
		b = strconv.AppendInt(b, int64(m.StatusCode), 10)
		b = append(b, '|')
		b = append(b, m.ToTag...)
		b = append(b, '|')
	}
	b = append(b, m.Method...)
	b = append(b, '|')
	b = strconv.AppendUint(b, uint64(m.CSeq), 10)
	b = append(b, '|')
	if m.Branch != "" {
		b = append(b, m.Branch...)
	} else {
		// RFC 2543 peers: no branch, so the request itself identifies it.
		b = append(b, m.FromTag...)
		b = append(b, '|')
		b = append(b, m.RequestURI...)
	}
	t.keyBuf = b
	k := maphash.Bytes(t.seed, b)
	if _, ok := cs.seen[k]; ok {
		return true
	}
	if len(cs.seen) >= maxSeen {
		clear(cs.seen)
	}
	cs.seen[k] = struct{}{}
	return false
}

// request applies a new (not retransmitted) request.
func (t *Tracker) request(cs *callState, m *Message) {
	c := cs.c
	switch strings.ToUpper(m.Method) {
	case "INVITE":
		c.Invites++
		if m.ToTag == "" && !c.Answered {
			t.initialInvite(cs, m)
		}
	case "CANCEL":
		if !c.Answered && c.End.IsZero() {
			t.end(cs, m, "CANCEL", cs.side(m), m.Src)
		}
	case "BYE":
		if c.End.IsZero() {
			t.end(cs, m, "BYE", cs.side(m), m.Src)
		}
	case "REFER":
		if len(c.Refers) < maxRefers {
			r := &Refer{Time: m.Time, Src: m.Src, Dst: m.Dst, CSeq: m.CSeq,
				ReferTo: m.ReferTo, ReferredBy: m.ReferredBy, Replaces: m.Replaces}
			detach(&r.ReferTo, &r.ReferredBy, &r.Replaces)
			c.Refers = append(c.Refers, r)
			t.addPending(r, c.CallID)
		}
	case "NOTIFY":
		t.notify(c, m)
	}
	if cs.openMeth != "" && strings.EqualFold(m.Method, cs.openMeth) && m.CSeq > cs.openCSeq &&
		(c.FinalStatus == 401 || c.FinalStatus == 407) {
		// The request again with credentials: the challenge did not end it.
		cs.openCSeq, c.FinalStatus = m.CSeq, 0
		c.End, c.EndedBy, c.EndedByAddr, c.EndReason = time.Time{}, "", netip.AddrPort{}, ""
	}
	if !cs.haveInit && cs.openMeth == "" && c.MessageCount == 1 && c.Kind != "invite" {
		cs.openMeth, cs.openCSeq = t.names.get(m.Method), m.CSeq
		c.Caller, c.Callee = m.Src, m.Dst
		c.FromURI, c.ToURI, c.RequestURI = m.From, m.To, m.RequestURI
		c.From, c.To = m.FromUser, m.ToUser
		detach(&c.FromURI, &c.ToURI, &c.RequestURI, &c.From, &c.To)
	}
}

// initialInvite records the INVITE that opens the call (or retries it
// after a challenge or another final failure).
func (t *Tracker) initialInvite(cs *callState, m *Message) {
	c := cs.c
	if !c.End.IsZero() && c.EndReason != "CANCEL" {
		// A retry (after 401/407, say): the earlier failure did not end it.
		c.End, c.EndedBy, c.EndedByAddr, c.EndReason = time.Time{}, "", netip.AddrPort{}, ""
		c.ByeReason, c.Q850Cause, c.ReasonText, c.FinalStatus = "", 0, "", 0
	}
	first := !cs.haveInit
	cs.haveInit, cs.initCSeq, cs.callerTag = true, m.CSeq, strings.Clone(m.FromTag)
	if !first {
		return
	}
	c.Caller, c.Callee = m.Src, m.Dst
	c.RequestURI, c.FromURI, c.ToURI = m.RequestURI, m.From, m.To
	c.From, c.To, c.PAI = m.FromUser, m.ToUser, m.PAI
	if m.PAI != "" {
		if u := uriUser(lenientURI(m.PAI)); u != "" {
			c.From = u
		}
	}
	detach(&c.RequestURI, &c.FromURI, &c.ToURI, &c.From, &c.To, &c.PAI)
	t.followRefer(c, m)
}

// response applies a new (not retransmitted) response.
func (t *Tracker) response(cs *callState, m *Message) {
	c := cs.c
	final := m.StatusCode >= 200
	if c.MessageCount == 1 && c.Kind != "invite" {
		// Capture began after the opening request: its response stands in.
		cs.openMeth, cs.openCSeq = t.names.get(m.Method), m.CSeq
		c.Caller, c.Callee = m.Dst, m.Src
		c.FromURI, c.ToURI, c.From, c.To = m.From, m.To, m.FromUser, m.ToUser
		detach(&c.FromURI, &c.ToURI, &c.From, &c.To)
	}
	switch strings.ToUpper(m.Method) {
	case "INVITE":
		if !cs.haveInit && m.ToTag != "" && len(c.Dialogs) <= 1 && c.Kind == "invite" {
			// Capture began after the INVITE: its first response stands in.
			cs.haveInit, cs.initCSeq, cs.callerTag = true, m.CSeq, strings.Clone(m.FromTag)
			c.Caller, c.Callee = m.Dst, m.Src
			c.FromURI, c.ToURI, c.From, c.To = m.From, m.To, m.FromUser, m.ToUser
			detach(&c.FromURI, &c.ToURI, &c.From, &c.To)
		}
		if !cs.haveInit || m.CSeq != cs.initCSeq {
			return // a re-INVITE's response
		}
		switch {
		case m.StatusCode >= 200 && m.StatusCode < 300:
			if !c.Answered {
				c.Answered, c.Answer, c.FinalStatus = true, m.Time, m.StatusCode
				if !c.End.IsZero() && c.EndReason != "BYE" {
					// A 200 that crossed the CANCEL, or a fork answering
					// after another failed: the call goes on until a BYE.
					c.End, c.EndedBy, c.EndedByAddr, c.EndReason = time.Time{}, "", netip.AddrPort{}, ""
					c.ByeReason, c.Q850Cause, c.ReasonText = "", 0, ""
				}
			}
		case m.StatusCode >= 300 && !c.Answered:
			c.FinalStatus = m.StatusCode
			if c.End.IsZero() {
				t.end(cs, m, m.Summary(), "callee", m.Src)
			}
		}
	case "BYE":
		if final && c.End.IsZero() {
			// The BYE itself was not captured; its response dates the end.
			t.end(cs, m, "BYE", cs.side(m), m.Dst)
			c.ByeReason, c.Q850Cause, c.ReasonText = "", 0, ""
		}
	case "REFER":
		if !final {
			break
		}
		for i := len(c.Refers) - 1; i >= 0; i-- {
			if r := c.Refers[i]; r.CSeq == m.CSeq && r.Response == 0 {
				r.Response, r.ResponseReason, r.ResponseTime = m.StatusCode, strings.Clone(m.Reason), m.Time
				break
			}
		}
	}
	if final && c.Kind != "invite" && cs.openMeth != "" && c.FinalStatus == 0 &&
		strings.EqualFold(m.Method, cs.openMeth) && m.CSeq == cs.openCSeq {
		c.FinalStatus = m.StatusCode
		t.end(cs, m, m.Summary(), "callee", m.Src)
	}
}

// end closes the call at m.
func (t *Tracker) end(cs *callState, m *Message, reason, by string, byAddr netip.AddrPort) {
	c := cs.c
	c.End, c.EndReason, c.EndedBy, c.EndedByAddr = m.Time, reason, by, byAddr
	c.ByeReason, c.Q850Cause, c.ReasonText = m.ReasonHdr, m.Q850Cause, m.ReasonText
	detach(&c.EndReason, &c.ByeReason, &c.ReasonText)
	t.open.remove(cs)
}

// side says whether the request m (or the request m answers) came from
// the caller's or the callee's side: by From tag against the initial
// INVITE's From tag, else by address; "unknown" when neither tells.
func (cs *callState) side(m *Message) string {
	if cs.callerTag != "" && m.FromTag != "" {
		if m.FromTag == cs.callerTag {
			return "caller"
		}
		return "callee"
	}
	sender := m.Src
	if !m.IsRequest {
		sender = m.Dst
	}
	switch c := cs.c; {
	case c.Caller.IsValid() && sender.Addr() == c.Caller.Addr():
		return "caller"
	case c.Callee.IsValid() && sender.Addr() == c.Callee.Addr():
		return "callee"
	}
	return "unknown"
}

// notify attaches a NOTIFY of a refer subscription to its REFER: the one
// whose CSeq the Event id names, else the latest.
func (t *Tracker) notify(c *Call, m *Message) {
	if len(c.Refers) == 0 {
		return
	}
	ev := splitParams(m.Event)
	if !strings.EqualFold(ev[0], "refer") && m.SipFrag == "" {
		return
	}
	r := c.Refers[len(c.Refers)-1]
	for _, p := range ev[1:] {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "id") {
			for _, x := range c.Refers {
				if strconv.FormatUint(uint64(x.CSeq), 10) == strings.TrimSpace(v) {
					r = x
				}
			}
		}
	}
	if len(r.Notifies) < maxNotifies {
		n := Notify{Time: m.Time, Src: m.Src, Dst: m.Dst, SipFrag: m.SipFrag, SubState: m.SubState}
		detach(&n.SipFrag, &n.SubState)
		r.Notifies = append(r.Notifies, n)
	}
}

// addPending remembers a REFER until an INVITE follows it.
func (t *Tracker) addPending(r *Refer, callID string) {
	if len(t.pending) >= maxPending {
		t.pending = append(t.pending[:0], t.pending[1:]...)
	}
	t.pending = append(t.pending, pendingRefer{r: r, callID: callID})
}

// followRefer links the initial INVITE m of a new call to the REFER it
// carries out: same Referred-By, or a Request-URI equal to the Refer-To
// target, within ReferFollowWindow.
func (t *Tracker) followRefer(c *Call, m *Message) {
	keep := t.pending[:0]
	var hit *pendingRefer
	for i := range t.pending {
		p := t.pending[i]
		if m.Time.Sub(p.r.Time) > t.o.ReferFollowWindow {
			continue
		}
		if hit == nil && p.callID != m.CallID && referMatches(p.r, m) {
			hit = &pendingRefer{r: p.r, callID: p.callID}
			continue
		}
		keep = append(keep, p)
	}
	t.pending = keep
	if hit == nil {
		return
	}
	r := hit.r
	r.NewCallID, r.NewInviteTime, r.NewInviteSrc, r.NewInviteDst, r.NewInviteURI = c.CallID, m.Time, m.Src, m.Dst, c.RequestURI
	c.ReferredFrom = hit.callID
}

func referMatches(r *Refer, m *Message) bool {
	if r.ReferredBy != "" && m.ReferredBy != "" && normalize(r.ReferredBy) == normalize(m.ReferredBy) {
		return true
	}
	if r.ReferTo == "" {
		return false
	}
	target, _, _ := strings.Cut(r.ReferTo, "?")
	if strings.EqualFold(target, m.RequestURI) {
		return true
	}
	a, b := lenientURI(target), lenientURI(m.RequestURI)
	ua := uriUser(a)
	return ua != "" && ua == uriUser(b) && strings.EqualFold(uriHost(a), uriHost(b))
}

func normalize(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), ""))
}

// microsoft marks a call as Microsoft's when an endpoint is in a
// Microsoft range or a pstnhub host appears in the Request-URI, Via,
// Contact, Record-Route, From or To, and works out which endpoint is
// Microsoft's and which the SBC's where it can.
func (t *Tracker) microsoft(c *Call, m *Message) {
	if c.Microsoft && c.MicrosoftAddr.IsValid() && c.SBCSide.IsValid() {
		return
	}
	var ms, other netip.AddrPort
	switch {
	case t.o.IsMicrosoft(m.Src.Addr()):
		ms, other = m.Src, m.Dst
	case t.o.IsMicrosoft(m.Dst.Addr()):
		ms, other = m.Dst, m.Src
	case m.IsRequest && t.isMSURI(m.RequestURI):
		ms, other = m.Dst, m.Src
	case len(m.Via) > 0 && t.isMSHost(viaHost(m.Via[0])):
		if m.IsRequest {
			ms, other = m.Src, m.Dst
		} else {
			ms, other = m.Dst, m.Src
		}
	case t.isMSURI(m.Contact):
		ms, other = m.Src, m.Dst
	default:
		found := t.isMSURI(m.From) || t.isMSURI(m.To)
		for _, rr := range m.RecordRoute {
			found = found || t.isMSURI(rr)
		}
		for _, v := range m.Via {
			found = found || t.isMSHost(viaHost(v))
		}
		if found {
			c.Microsoft = true
		}
		return
	}
	c.Microsoft = true
	if !c.MicrosoftAddr.IsValid() && ms.IsValid() {
		c.MicrosoftAddr = ms.Addr()
	}
	if !c.SBCSide.IsValid() {
		switch {
		case t.o.IsSBC != nil && t.o.IsSBC(m.Src.Addr()):
			c.SBCSide = m.Src
		case t.o.IsSBC != nil && t.o.IsSBC(m.Dst.Addr()):
			c.SBCSide = m.Dst
		case other.IsValid() && !t.o.IsMicrosoft(other.Addr()):
			c.SBCSide = other
		}
	}
}

func (t *Tracker) isMSURI(s string) bool { return t.isMSHost(quickHost(s)) }

func (t *Tracker) isMSHost(h string) bool { return h != "" && t.o.IsMicrosoftHost(h) }

// quickHost returns the host of a sip: or sips: URI without allocating:
// after the scheme, past any userinfo, up to a port, parameter or header.
// Detection only; URIHost is the careful version.
func quickHost(s string) string {
	switch {
	case len(s) > 4 && strings.EqualFold(s[:4], "sip:"):
		s = s[4:]
	case len(s) > 5 && strings.EqualFold(s[:5], "sips:"):
		s = s[5:]
	default:
		return ""
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ';' || c == '?' || c == '>' {
			s = s[:i]
			break
		}
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i >= 0 {
			return s[:i+1]
		}
		return ""
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	return s
}

// viaHost returns the sent-by host of a Via value "SIP/2.0/TLS host:port;…".
func viaHost(v string) string {
	// Byte loops: strings.IndexAny and TrimLeft build a set per call,
	// and this runs for every Via of every message.
	v = strings.TrimSpace(v)
	i := 0
	for i < len(v) && v[i] != ' ' && v[i] != '\t' {
		i++
	}
	if i == len(v) {
		return ""
	}
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	h := v[i:]
	for j := 0; j < len(h); j++ {
		if c := h[j]; c == ';' || c == ' ' || c == '\t' {
			h = h[:j]
			break
		}
	}
	if strings.HasPrefix(h, "[") {
		if j := strings.IndexByte(h, ']'); j >= 0 {
			return h[:j+1]
		}
		return ""
	}
	if j := strings.IndexByte(h, ':'); j >= 0 {
		h = h[:j]
	}
	return h
}

// sbcHeaders records Contact and Allow of the first INVITE or 2xx to an
// INVITE that the SBC side sent towards Microsoft.
func (t *Tracker) sbcHeaders(c *Call, m *Message) {
	if c.SBCAllowSeen || !c.Microsoft {
		return
	}
	if strings.ToUpper(m.Method) != "INVITE" || (!m.IsRequest && (m.StatusCode < 200 || m.StatusCode >= 300)) {
		return
	}
	fromSBC := (t.o.IsSBC != nil && t.o.IsSBC(m.Src.Addr())) || (c.SBCSide.IsValid() && m.Src.Addr() == c.SBCSide.Addr())
	toMS := t.o.IsMicrosoft(m.Dst.Addr()) || (c.MicrosoftAddr.IsValid() && m.Dst.Addr() == c.MicrosoftAddr)
	if fromSBC && toMS {
		c.SBCContact, c.SBCAllow, c.SBCAllowSeen = t.names.get(m.Contact), t.names.get(m.Allow), true
	}
}

// Expire ends open calls idle longer than DialogTimeout at now (EndedBy
// "timeout", End = last message) and lets go of ended calls idle longer
// than Linger. now is a capture timestamp.
func (t *Tracker) Expire(now time.Time) {
	for cs := t.open.head; cs != nil && now.Sub(cs.c.Last) > t.o.DialogTimeout; cs = t.open.head {
		c := cs.c
		c.End, c.EndedBy, c.EndReason, c.EndedByAddr = c.Last, "timeout", "timeout", netip.AddrPort{}
		t.release(cs)
	}
	for cs := t.ended.head; cs != nil && now.Sub(cs.c.Last) > t.o.Linger; cs = t.ended.head {
		t.release(cs)
	}
	keep := t.pending[:0]
	for _, p := range t.pending {
		if now.Sub(p.r.Time) <= t.o.ReferFollowWindow {
			keep = append(keep, p)
		}
	}
	t.pending = keep
}

// Evicted counts the calls let go early because MaxDialogs was reached.
func (t *Tracker) Evicted() uint64 { return t.evicted }

// evict lets go of the least recently active call, ended ones first.
func (t *Tracker) evict() {
	t.evicted++
	if cs := t.ended.head; cs != nil {
		t.release(cs)
		return
	}
	if cs := t.open.head; cs != nil {
		t.release(cs)
	}
}

// release stops tracking cs: to OnDone, or kept for Close.
func (t *Tracker) release(cs *callState) {
	t.open.remove(cs)
	t.ended.remove(cs)
	delete(t.active, cs.c.CallID)
	cs.seen = nil
	if t.o.OnDone != nil {
		// The call is handed over: never touch its REFERs again.
		keep := t.pending[:0]
		for _, p := range t.pending {
			if p.callID != cs.c.CallID {
				keep = append(keep, p)
			}
		}
		t.pending = keep
		t.kept -= len(cs.c.Messages)
		t.o.OnDone(cs.c)
		return
	}
	t.done[cs.c.CallID] = cs
}

// Close ends the input: it returns every Call (still open ones with a
// zero End and EndedBy ""), sorted by Start then Call-ID, and resets the
// tracker. With OnDone set, calls already handed over are not repeated.
func (t *Tracker) Close() []*Call {
	out := make([]*Call, 0, len(t.active)+len(t.done))
	for _, cs := range t.active {
		out = append(out, cs.c)
	}
	for _, cs := range t.done {
		out = append(out, cs.c)
	}
	slices.SortFunc(out, func(a, b *Call) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return strings.Compare(a.CallID, b.CallID)
	})
	t.active, t.done, t.pending = make(map[string]*callState), make(map[string]*callState), nil
	t.open, t.ended = lru{}, lru{}
	t.kept = 0
	return out
}

// lru is an intrusive doubly linked list of calls, least recently
// active first.
type lru struct{ head, tail *callState }

func (l *lru) remove(cs *callState) {
	if cs.list != l {
		return
	}
	if cs.prev != nil {
		cs.prev.next = cs.next
	} else {
		l.head = cs.next
	}
	if cs.next != nil {
		cs.next.prev = cs.prev
	} else {
		l.tail = cs.prev
	}
	cs.prev, cs.next, cs.list = nil, nil, nil
}

// moveToBack makes cs the most recently active of l, taking it out of
// whichever list held it.
func (l *lru) moveToBack(cs *callState) {
	if cs.list != nil {
		cs.list.remove(cs)
	}
	cs.list = l
	cs.prev = l.tail
	if l.tail != nil {
		l.tail.next = cs
	} else {
		l.head = cs
	}
	l.tail = cs
}

// detach copies the strings the pointers point to into one allocation,
// so what a Call keeps does not pin the datagrams the fast parser cut
// them from (see fast.go).
func detach(ss ...*string) {
	n := 0
	for _, p := range ss {
		n += len(*p)
	}
	if n == 0 {
		return
	}
	var b strings.Builder
	b.Grow(n)
	for _, p := range ss {
		b.WriteString(*p)
	}
	all, at := b.String(), 0
	for _, p := range ss {
		l := len(*p)
		*p = all[at : at+l]
		at += l
	}
}

// maxInterned bounds an interner.
const maxInterned = 4096

// interner hands out one copy of strings that repeat from call to call
// (User-Agents, Allow, Contact, SDP addresses). Past maxInterned distinct
// values it copies without remembering.
type interner struct{ m map[string]string }

func (in *interner) get(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := in.m[s]; ok {
		return v
	}
	c := strings.Clone(s)
	if in.m == nil {
		in.m = make(map[string]string)
	}
	if len(in.m) < maxInterned {
		in.m[c] = c
	}
	return c
}
