package sip

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
)

// Endpoints of the scenarios: the SBC, two Microsoft proxy addresses (a
// REFER may come from another one), a carrier, and hosts outside every
// Microsoft range for detection by name.
var (
	sbc     = netip.MustParseAddrPort("192.168.2.10:5061")
	ms1     = netip.MustParseAddrPort("52.114.75.24:5061")
	ms2     = netip.MustParseAddrPort("52.114.16.74:5061")
	carrier = netip.MustParseAddrPort("10.0.0.5:5060")
	t0      = time.Date(2026, 4, 1, 9, 50, 0, 0, time.UTC)
)

// scenario drives a Tracker with messages written as SIP text, so every
// scenario also goes through the parser.
type scenario struct {
	t     *testing.T
	p     *Parser
	tr    *Tracker
	frame uint64
}

func newScenario(t *testing.T, o TrackerOptions) *scenario {
	cfg := config.Default()
	if o.IsMicrosoft == nil {
		o.IsMicrosoft = cfg.IsMicrosoft
	}
	if o.IsMicrosoftHost == nil {
		o.IsMicrosoftHost = cfg.IsMicrosoftHost
	}
	return &scenario{t: t, p: NewParser(0), tr: NewTracker(o)}
}

// dialog holds the header values a message of one call shares.
type dialog struct {
	callID         string
	from, to       string // URIs, From and To as the caller wrote them
	fromTag, toTag string
	extra          []string
	body, bodyType string
	reqURI         string
	viaHost        string
}

// msg sends one message at t0+ms from src to dst. first is the start
// line ("INVITE" alone means a request to d.reqURI; "SIP/2.0 200 OK" a
// response). reverse swaps From/To tags as a request from the callee
// side does. cseq is "1 INVITE". branch names the transaction.
func (s *scenario) msg(ms int, src, dst netip.AddrPort, d dialog, first, cseq, branch string, reverse bool, extra ...string) *Message {
	s.t.Helper()
	fromURI, toURI, fromTag, toTag := d.from, d.to, d.fromTag, d.toTag
	if reverse {
		fromURI, toURI, fromTag, toTag = toURI, fromURI, toTag, fromTag
	}
	var b strings.Builder
	if !strings.HasPrefix(first, "SIP/2.0") {
		b.WriteString(first + " " + d.reqURI + " SIP/2.0\r\n")
	} else {
		b.WriteString(first + "\r\n")
	}
	via := src.String()
	if d.viaHost != "" {
		via = d.viaHost
	}
	if strings.HasPrefix(first, "SIP/2.0") {
		via = dst.String() // a response carries its request's Via
		if d.viaHost != "" {
			via = d.viaHost
		}
	}
	fmt.Fprintf(&b, "Via: SIP/2.0/TLS %s;branch=z9hG4bK%s\r\n", via, branch)
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <%s>%s\r\n", fromURI, tagParam(fromTag))
	fmt.Fprintf(&b, "To: <%s>%s\r\n", toURI, tagParam(toTag))
	fmt.Fprintf(&b, "Call-ID: %s\r\n", d.callID)
	fmt.Fprintf(&b, "CSeq: %s\r\n", cseq)
	for _, h := range append(append([]string(nil), d.extra...), extra...) {
		b.WriteString(h + "\r\n")
	}
	body := ""
	if strings.HasPrefix(first, "INVITE") || strings.HasPrefix(first, "SIP/2.0 200") && strings.HasSuffix(cseq, "INVITE") {
		body = d.body
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", d.bodyType)
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	s.frame++
	meta := MessageMeta{Time: t0.Add(time.Duration(ms) * time.Millisecond), Frame: s.frame, Src: src, Dst: dst, Transport: "tls", Origin: "wire"}
	m, err := s.p.ParseDatagram(meta, []byte(b.String()))
	if err != nil {
		s.t.Fatalf("scenario message %q: %v\n%s", first, err, b.String())
	}
	s.tr.Observe(m)
	return m
}

// raw sends a message given as complete SIP text.
func (s *scenario) raw(ms int, src, dst netip.AddrPort, text string) {
	s.t.Helper()
	s.frame++
	meta := MessageMeta{Time: t0.Add(time.Duration(ms) * time.Millisecond), Frame: s.frame, Src: src, Dst: dst, Transport: "udp", Origin: "wire"}
	m, err := s.p.ParseDatagram(meta, wireMessage(text))
	if err != nil {
		s.t.Fatalf("raw message: %v\n%s", err, text)
	}
	s.tr.Observe(m)
}

func tagParam(tag string) string {
	if tag == "" {
		return ""
	}
	return ";tag=" + tag
}

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// oneCall closes the tracker and returns the call with that Call-ID.
func oneCall(t *testing.T, calls []*Call, id string) *Call {
	t.Helper()
	for _, c := range calls {
		if c.CallID == id {
			return c
		}
	}
	t.Fatalf("no call %q among %d", id, len(calls))
	return nil
}

const sdpSBC = "v=0\r\no=- 1 1 IN IP4 192.168.2.10\r\ns=-\r\nc=IN IP4 192.168.2.10\r\nt=0 0\r\nm=audio 6000 RTP/SAVP 0\r\n"

// outbound is a call the SBC places towards Microsoft (a PSTN caller
// reaching a Teams Auto Attendant): the SBC is the caller.
func outbound(id string) dialog {
	return dialog{
		callID:  id,
		from:    "sip:+4930111222@sbc.example.de;user=phone",
		to:      "sip:+4969123456@sip.pstnhub.microsoft.com;user=phone",
		fromTag: "sbc-" + id,
		reqURI:  "sip:+4969123456@sip.pstnhub.microsoft.com:5061;user=phone;transport=tls",
		body:    sdpSBC, bodyType: "application/sdp",
	}
}

// answer plays INVITE/100/180/200/ACK from the SBC to Microsoft.
func (s *scenario) answer(d *dialog, ms int) {
	s.msg(ms, sbc, ms1, *d, "INVITE", "1 INVITE", "inv-"+d.callID, false,
		"Contact: <sip:sbc.example.de:5061;transport=tls>",
		"Allow: INVITE, ACK, CANCEL, BYE, REFER, NOTIFY, OPTIONS",
		"P-Asserted-Identity: <sip:+4930999000@carrier.example;user=phone>",
		"User-Agent: M800C/v.7.40A.100.114")
	s.msg(ms+20, ms1, sbc, *d, "SIP/2.0 100 Trying", "1 INVITE", "inv-"+d.callID, false)
	d.toTag = "ms-" + d.callID
	s.msg(ms+300, ms1, sbc, *d, "SIP/2.0 180 Ringing", "1 INVITE", "inv-"+d.callID, false)
	s.msg(ms+2000, ms1, sbc, *d, "SIP/2.0 200 OK", "1 INVITE", "inv-"+d.callID, false,
		"Contact: <sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls>",
		"Server: Microsoft.PSTNHub.SIPProxy")
	s.msg(ms+2030, sbc, ms1, *d, "ACK", "1 ACK", "ack-"+d.callID, false)
}

func TestTrackerAnsweredEndedByCallee(t *testing.T) {
	s := newScenario(t, TrackerOptions{})
	d := outbound("c1")
	s.answer(&d, 0)
	// Microsoft (the callee side) hangs up with a Q.850 cause.
	s.msg(62000, ms1, sbc, d, "BYE", "5 BYE", "bye-c1", true, `Reason: Q.850;cause=16;text="Normal call clearing"`)
	s.msg(62010, sbc, ms1, d, "SIP/2.0 200 OK", "5 BYE", "bye-c1", true)
	c := oneCall(t, s.tr.Close(), "c1")

	check(t, "kind", c.Kind, "invite")
	check(t, "from (PAI)", c.From, "+4930999000")
	check(t, "to", c.To, "+4969123456")
	check(t, "caller", c.Caller, sbc)
	check(t, "callee", c.Callee, ms1)
	check(t, "start", c.Start, at(0))
	check(t, "answered", c.Answered, true)
	check(t, "answer", c.Answer, at(2000))
	check(t, "final", c.FinalStatus, 200)
	check(t, "end", c.End, at(62000))
	check(t, "last", c.Last, at(62010))
	check(t, "duration", c.Duration(), 60*time.Second)
	check(t, "ended by", c.EndedBy, "callee")
	check(t, "ended by addr", c.EndedByAddr, ms1)
	check(t, "end reason", c.EndReason, "BYE")
	check(t, "q850", c.Q850Cause, 16)
	check(t, "reason text", c.ReasonText, "Normal call clearing")
	check(t, "messages", c.MessageCount, 7)
	check(t, "kept", len(c.Messages), 7)
	check(t, "invites", c.Invites, 1)
	check(t, "dialogs", strings.Join(c.Dialogs, " "), "c1;ms-c1;sbc-c1")
	check(t, "microsoft", c.Microsoft, true)
	check(t, "microsoft addr", c.MicrosoftAddr, ms1.Addr())
	check(t, "sbc side", c.SBCSide, sbc)
	check(t, "sbc contact", c.SBCContact, "sip:sbc.example.de:5061;transport=tls")
	check(t, "sbc allow seen", c.SBCAllowSeen, true)
	check(t, "sbc allow", c.SBCAllow, "INVITE, ACK, CANCEL, BYE, REFER, NOTIFY, OPTIONS")
	check(t, "sdp", strings.Join(c.SDPAddrs, ","), "192.168.2.10")
	check(t, "uas", strings.Join(c.UserAgents, "|"), "M800C/v.7.40A.100.114|Microsoft.PSTNHub.SIPProxy")
	check(t, "refers", len(c.Refers), 0)
}

func TestTrackerFieldCaseCallerBye(t *testing.T) {
	// The field case: the caller gives up and the SBC sends the BYE of
	// docs/field-evidence.md §2.
	s := newScenario(t, TrackerOptions{})
	d := outbound("field")
	s.answer(&d, 0)
	s.msg(25000, sbc, ms1, d, "BYE", "3 BYE", "bye-field", false,
		"Allow: REGISTER, REFER, NOTIFY, SUBSCRIBE, INVITE, ACK, OPTIONS, CANCEL, BYE",
		"User-Agent: M800C/v.7.40A.100.114",
		`Reason: Q.850 ;cause=22 ;text="<guid>;MediaError"`)
	c := oneCall(t, s.tr.Close(), "field")
	check(t, "ended by", c.EndedBy, "caller")
	check(t, "ended by addr", c.EndedByAddr, sbc)
	check(t, "bye reason", c.ByeReason, `Q.850 ;cause=22 ;text="<guid>;MediaError"`)
	check(t, "q850", c.Q850Cause, 22)
	check(t, "text", c.ReasonText, "<guid>;MediaError")
	check(t, "duration", c.Duration(), 23*time.Second)
}

func TestTrackerCancel(t *testing.T) {
	s := newScenario(t, TrackerOptions{})
	d := outbound("cancel")
	s.msg(0, sbc, ms1, d, "INVITE", "1 INVITE", "inv", false)
	s.msg(20, ms1, sbc, d, "SIP/2.0 100 Trying", "1 INVITE", "inv", false)
	d2 := d
	d2.toTag = "ms-x"
	s.msg(300, ms1, sbc, d2, "SIP/2.0 180 Ringing", "1 INVITE", "inv", false)
	s.msg(5000, sbc, ms1, d, "CANCEL", "1 CANCEL", "inv", false, `Reason: Q.850;cause=16`)
	s.msg(5010, ms1, sbc, d2, "SIP/2.0 200 OK", "1 CANCEL", "inv", false)
	s.msg(5020, ms1, sbc, d2, "SIP/2.0 487 Request Terminated", "1 INVITE", "inv", false)
	s.msg(5030, sbc, ms1, d2, "ACK", "1 ACK", "inv", false)
	c := oneCall(t, s.tr.Close(), "cancel")
	check(t, "answered", c.Answered, false)
	check(t, "end reason", c.EndReason, "CANCEL")
	check(t, "ended by", c.EndedBy, "caller")
	check(t, "end", c.End, at(5000))
	check(t, "final", c.FinalStatus, 487)
	check(t, "q850", c.Q850Cause, 16)
	check(t, "duration", c.Duration(), time.Duration(0))
	check(t, "messages", c.MessageCount, 7)
	check(t, "retransmissions", c.Retransmissions, 0)
}

func TestTrackerBusy(t *testing.T) {
	s := newScenario(t, TrackerOptions{})
	d := outbound("busy")
	s.msg(0, sbc, ms1, d, "INVITE", "1 INVITE", "inv", false)
	s.msg(20, ms1, sbc, d, "SIP/2.0 100 Trying", "1 INVITE", "inv", false)
	d.toTag = "ms-b"
	s.msg(800, ms1, sbc, d, "SIP/2.0 486 Busy Here", "1 INVITE", "inv", false, `Reason: Q.850;cause=17;text="User busy"`)
	s.msg(810, sbc, ms1, d, "ACK", "1 ACK", "inv", false)
	c := oneCall(t, s.tr.Close(), "busy")
	check(t, "end reason", c.EndReason, "486 Busy Here")
	check(t, "ended by", c.EndedBy, "callee")
	check(t, "ended by addr", c.EndedByAddr, ms1)
	check(t, "end", c.End, at(800))
	check(t, "final", c.FinalStatus, 486)
	check(t, "q850", c.Q850Cause, 17)
	check(t, "answered", c.Answered, false)
}

func TestTrackerAuthRetryIsNotTheEnd(t *testing.T) {
	s := newScenario(t, TrackerOptions{})
	d := outbound("auth")
	s.msg(0, sbc, carrier, d, "INVITE", "1 INVITE", "a1", false)
	d407 := d
	d407.toTag = "px"
	s.msg(10, carrier, sbc, d407, "SIP/2.0 407 Proxy Authentication Required", "1 INVITE", "a1", false)
	s.msg(20, sbc, carrier, d407, "ACK", "1 ACK", "a1", false)
	s.msg(30, sbc, carrier, d, "INVITE", "2 INVITE", "a2", false)
	d.toTag = "uas"
	s.msg(900, carrier, sbc, d, "SIP/2.0 200 OK", "2 INVITE", "a2", false)
	c := oneCall(t, s.tr.Close(), "auth")
	check(t, "answered", c.Answered, true)
	check(t, "answer", c.Answer, at(900))
	check(t, "end", c.End.IsZero(), true)
	check(t, "ended by", c.EndedBy, "")
	check(t, "final", c.FinalStatus, 200)
	check(t, "invites", c.Invites, 2)
}

func TestTrackerReInvite(t *testing.T) {
	s := newScenario(t, TrackerOptions{})
	d := outbound("reinv")
	s.answer(&d, 0)
	// Microsoft re-INVITEs (hold), then a glare 491, then hangs up.
	s.msg(10000, ms1, sbc, d, "INVITE", "2 INVITE", "re1", true)
	s.msg(10050, sbc, ms1, d, "SIP/2.0 200 OK", "2 INVITE", "re1", true)
	s.msg(10060, ms1, sbc, d, "ACK", "2 ACK", "re1a", true)
	s.msg(11000, sbc, ms1, d, "INVITE", "2 INVITE", "re2", false)
	s.msg(11010, ms1, sbc, d, "SIP/2.0 491 Request Pending", "2 INVITE", "re2", false)
	c := oneCall(t, s.tr.Close(), "reinv")
	check(t, "invites", c.Invites, 3)
	check(t, "answer unchanged", c.Answer, at(2000))
	check(t, "still open", c.End.IsZero(), true)
	check(t, "final", c.FinalStatus, 200)
	check(t, "kind", c.Kind, "invite")
	check(t, "dialogs", len(c.Dialogs), 1)
}

const referTo = "sip:+4969777888@sip.pstnhub.microsoft.com;user=phone"
const referredBy = "<sip:sip.pstnhub.microsoft.com;x-m=8:orgid:aa;x-t=tenant-1;x-ti=corr-1>"

func TestTrackerReferAccepted(t *testing.T) {
	s := newScenario(t, TrackerOptions{})
	d := outbound("aa")
	s.answer(&d, 0)
	// The REFER comes from another Microsoft address.
	s.msg(8000, ms2, sbc, d, "REFER", "3 REFER", "ref", true,
		"Refer-To: <"+referTo+">", "Referred-By: "+referredBy)
	s.msg(8010, sbc, ms2, d, "SIP/2.0 202 Accepted", "3 REFER", "ref", true)
	s.msg(8020, sbc, ms2, d, "NOTIFY", "2 NOTIFY", "n1", false,
		"Event: refer;id=3", "Subscription-State: active;expires=60", "Content-Type: message/sipfrag")
	s.msg(8030, ms2, sbc, d, "SIP/2.0 200 OK", "2 NOTIFY", "n1", false)
	// The SBC carries the transfer out: a new call to the Refer-To target.
	nd := dialog{callID: "cq", from: d.from, to: "sip:+4969777888@sip.pstnhub.microsoft.com", fromTag: "sbc-cq", reqURI: referTo}
	s.msg(8040, sbc, ms1, nd, "INVITE", "1 INVITE", "cq-inv", false, "Referred-By: "+referredBy)
	nd.toTag = "ms-cq"
	s.msg(9000, ms1, sbc, nd, "SIP/2.0 200 OK", "1 INVITE", "cq-inv", false)
	s.msg(9010, sbc, ms2, d, "NOTIFY", "3 NOTIFY", "n2", false,
		"Event: refer;id=3", "Subscription-State: terminated;reason=noresource")
	s.msg(9020, ms1, sbc, d, "BYE", "4 BYE", "bye", true)
	calls := s.tr.Close()
	c := oneCall(t, calls, "aa")
	if len(c.Refers) != 1 {
		t.Fatalf("%d refers", len(c.Refers))
	}
	r := c.Refers[0]
	check(t, "refer time", r.Time, at(8000))
	check(t, "refer src", r.Src, ms2)
	check(t, "refer cseq", r.CSeq, uint32(3))
	check(t, "refer-to", r.ReferTo, referTo)
	check(t, "referred-by", r.ReferredBy, referredBy)
	check(t, "response", r.Response, 202)
	check(t, "response reason", r.ResponseReason, "Accepted")
	check(t, "response time", r.ResponseTime, at(8010))
	check(t, "notifies", len(r.Notifies), 2)
	check(t, "new call", r.NewCallID, "cq")
	check(t, "new invite time", r.NewInviteTime, at(8040))
	check(t, "new invite dst", r.NewInviteDst, ms1)
	check(t, "new invite uri", r.NewInviteURI, referTo)
	check(t, "ended by", c.EndedBy, "callee")
	check(t, "microsoft addr stays the first", c.MicrosoftAddr, ms1.Addr())
	cq := oneCall(t, calls, "cq")
	check(t, "referred from", cq.ReferredFrom, "aa")
	check(t, "cq answered", cq.Answered, true)
	// The empty-bodied NOTIFY has no sipfrag; the tracker still keeps it
	// as a refer NOTIFY by its Event.
	check(t, "notify 1 substate", r.Notifies[0].SubState, "active;expires=60")
	check(t, "notify 2 substate", r.Notifies[1].SubState, "terminated;reason=noresource")
	check(t, "notify 1 time", r.Notifies[0].Time, at(8020))
}

func TestTrackerReferNotifySipfrag(t *testing.T) {
	s := newScenario(t, TrackerOptions{})
	d := outbound("frag")
	s.answer(&d, 0)
	s.msg(8000, ms2, sbc, d, "REFER", "3 REFER", "ref", true, "Refer-To: <"+referTo+">")
	s.msg(8010, sbc, ms2, d, "SIP/2.0 202 Accepted", "3 REFER", "ref", true)
	for i, frag := range []string{"SIP/2.0 100 Trying", "SIP/2.0 200 OK"} {
		s.raw(8020+i*1000, sbc, ms2, "NOTIFY sip:sip.pstnhub.microsoft.com:5061;transport=tls SIP/2.0\n"+
			"Via: SIP/2.0/TLS 192.168.2.10:5061;branch=z9hG4bKnf"+fmt.Sprint(i)+"\n"+
			"From: <"+d.from+">;tag="+d.fromTag+"\nTo: <"+d.to+">;tag="+d.toTag+"\n"+
			"Call-ID: frag\nCSeq: "+fmt.Sprint(10+i)+" NOTIFY\nEvent: refer\n"+
			"Subscription-State: "+[]string{"active", "terminated"}[i]+"\n"+
			"Content-Type: message/sipfrag\nContent-Length: *\n\n"+frag+"\n")
	}
	c := oneCall(t, s.tr.Close(), "frag")
	r := c.Refers[0]
	check(t, "notifies", len(r.Notifies), 2)
	check(t, "frag 1", r.Notifies[0].SipFrag, "SIP/2.0 100 Trying")
	check(t, "frag 2", r.Notifies[1].SipFrag, "SIP/2.0 200 OK")
	check(t, "state 2", r.Notifies[1].SubState, "terminated")
	check(t, "no follow-up", r.NewCallID, "")
}

func TestTrackerReferRejected(t *testing.T) {
	s := newScenario(t, TrackerOptions{})
	d := outbound("rej")
	s.answer(&d, 0)
	s.msg(8000, ms2, sbc, d, "REFER", "3 REFER", "ref", true, "Refer-To: <"+referTo+">")
	s.msg(8005, sbc, ms2, d, "SIP/2.0 100 Trying", "3 REFER", "ref", true)
	s.msg(8010, sbc, ms2, d, "SIP/2.0 403 Forbidden", "3 REFER", "ref", true)
	c := oneCall(t, s.tr.Close(), "rej")
	r := c.Refers[0]
	check(t, "response", r.Response, 403)
	check(t, "reason", r.ResponseReason, "Forbidden")
	check(t, "time", r.ResponseTime, at(8010))
	check(t, "notifies", len(r.Notifies), 0)
	check(t, "still open", c.End.IsZero(), true)
}

func TestTrackerReferWithReplaces(t *testing.T) {
	s := newScenario(t, TrackerOptions{})
	d := outbound("att")
	s.answer(&d, 0)
	s.msg(8000, ms2, sbc, d, "REFER", "3 REFER", "ref", true,
		"Refer-To: <sip:+4969777888@sip.pstnhub.microsoft.com?Replaces=other%40x%3Bto-tag%3Da%3Bfrom-tag%3Db>")
	c := oneCall(t, s.tr.Close(), "att")
	check(t, "replaces", c.Refers[0].Replaces, "other@x;to-tag=a;from-tag=b")
}

func TestTrackerUDPRetransmissions(t *testing.T) {
	s := newScenario(t, TrackerOptions{})
	d := outbound("rtx")
	for i := range 3 { // INVITE, then two retransmissions (Timer A)
		s.msg(i*500, sbc, ms1, d, "INVITE", "1 INVITE", "inv", false)
	}
	s.msg(1600, ms1, sbc, d, "SIP/2.0 100 Trying", "1 INVITE", "inv", false)
	d.toTag = "ms-r"
	for i := range 3 { // 200 OK until the ACK arrives
		s.msg(3000+i*500, ms1, sbc, d, "SIP/2.0 200 OK", "1 INVITE", "inv", false)
	}
	s.msg(4100, sbc, ms1, d, "ACK", "1 ACK", "ack", false)
	s.msg(9000, sbc, ms1, d, "BYE", "2 BYE", "bye", false)
	s.msg(9500, sbc, ms1, d, "BYE", "2 BYE", "bye", false)
	s.msg(9600, ms1, sbc, d, "SIP/2.0 200 OK", "2 BYE", "bye", false)
	c := oneCall(t, s.tr.Close(), "rtx")
	check(t, "messages", c.MessageCount, 11)
	check(t, "retransmissions", c.Retransmissions, 5)
	check(t, "invites", c.Invites, 1)
	check(t, "answer is the first 200", c.Answer, at(3000))
	check(t, "end is the first BYE", c.End, at(9000))
	check(t, "ended by", c.EndedBy, "caller")
}

func TestTrackerForkedResponses(t *testing.T) {
	s := newScenario(t, TrackerOptions{})
	d := outbound("fork")
	s.msg(0, sbc, ms1, d, "INVITE", "1 INVITE", "inv", false)
	a, b := d, d
	a.toTag, b.toTag = "leg-a", "leg-b"
	s.msg(100, ms1, sbc, a, "SIP/2.0 180 Ringing", "1 INVITE", "inv", false)
	s.msg(150, ms1, sbc, b, "SIP/2.0 183 Session Progress", "1 INVITE", "inv", false)
	s.msg(600, ms1, sbc, a, "SIP/2.0 486 Busy Here", "1 INVITE", "inv", false)
	s.msg(900, ms1, sbc, b, "SIP/2.0 200 OK", "1 INVITE", "inv", false)
	c := oneCall(t, s.tr.Close(), "fork")
	check(t, "a fork's failure does not end an answered call", c.End.IsZero(), true)
	check(t, "final", c.FinalStatus, 200)
	check(t, "dialogs", strings.Join(c.Dialogs, " "), "fork;leg-a;sbc-fork fork;leg-b;sbc-fork")
	check(t, "answered", c.Answer, at(900))
	check(t, "retransmissions", c.Retransmissions, 0)
}

func TestTrackerBounds(t *testing.T) {
	s := newScenario(t, TrackerOptions{MaxMessagesPerCall: 3, MaxRawBytes: 64})
	d := outbound("big")
	s.answer(&d, 0)
	for i := range 5 {
		s.msg(5000+i, sbc, ms1, d, "OPTIONS", fmt.Sprintf("%d OPTIONS", 10+i), fmt.Sprint("o", i), false)
	}
	c := oneCall(t, s.tr.Close(), "big")
	check(t, "count exact", c.MessageCount, 10)
	check(t, "kept", len(c.Messages), 3)
	check(t, "truncated", c.Truncated, true)
	check(t, "raw bounded", len(c.Messages[0].Raw), 64)
	check(t, "first kept is the INVITE", c.Messages[0].Summary(), "INVITE")
}

func TestTrackerEviction(t *testing.T) {
	var done []*Call
	s := newScenario(t, TrackerOptions{MaxDialogs: 3, OnDone: func(c *Call) { done = append(done, c) }})
	open1, ended, open2 := outbound("open1"), outbound("ended"), outbound("open2")
	s.msg(0, sbc, ms1, open1, "INVITE", "1 INVITE", "i1", false)
	s.answer(&ended, 100)
	s.msg(3000, sbc, ms1, ended, "BYE", "2 BYE", "b", false)
	s.msg(4000, sbc, ms1, open2, "INVITE", "1 INVITE", "i3", false)
	check(t, "active", s.tr.Active(), 3)
	// A fourth Call-ID: the ended call goes first although open1 has been
	// idle longer.
	s.msg(5000, sbc, ms1, outbound("fourth"), "INVITE", "1 INVITE", "i4", false)
	if len(done) != 1 || done[0].CallID != "ended" {
		t.Fatalf("evicted %v", callIDs(done))
	}
	// No ended call left: the least recently active open one goes.
	s.msg(6000, sbc, ms1, outbound("fifth"), "INVITE", "1 INVITE", "i5", false)
	if len(done) != 2 || done[1].CallID != "open1" {
		t.Fatalf("evicted %v", callIDs(done))
	}
	check(t, "evicted open call stays open", done[1].EndedBy, "")
	check(t, "active", s.tr.Active(), 3)
	rest := s.tr.Close()
	check(t, "close returns the rest", strings.Join(callIDs(rest), ","), "open2,fourth,fifth")

	// Without OnDone, evicted calls are kept and a Call-ID seen again is
	// resumed: Close has one Call per Call-ID.
	s = newScenario(t, TrackerOptions{MaxDialogs: 1})
	a, b := outbound("a"), outbound("b")
	s.msg(0, sbc, ms1, a, "INVITE", "1 INVITE", "ia", false)
	s.msg(10, sbc, ms1, b, "INVITE", "1 INVITE", "ib", false)
	a.toTag = "ms-a"
	s.msg(20, ms1, sbc, a, "SIP/2.0 200 OK", "1 INVITE", "ia", false)
	all := s.tr.Close()
	check(t, "calls", strings.Join(callIDs(all), ","), "a,b")
	check(t, "resumed call answered", all[0].Answered, true)
	check(t, "resumed call count", all[0].MessageCount, 2)
}

func callIDs(cs []*Call) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.CallID)
	}
	return out
}

func TestTrackerExpire(t *testing.T) {
	var done []*Call
	s := newScenario(t, TrackerOptions{DialogTimeout: time.Hour, Linger: 30 * time.Second, OnDone: func(c *Call) { done = append(done, c) }})
	open, ended := outbound("open"), outbound("ended")
	s.answer(&open, 0)
	s.answer(&ended, 10)
	s.msg(5000, sbc, ms1, ended, "BYE", "2 BYE", "b", false)
	s.tr.Expire(at(5000 + 29000))
	check(t, "nothing yet", len(done), 0)
	s.tr.Expire(at(5000 + 31000))
	if len(done) != 1 || done[0].CallID != "ended" {
		t.Fatalf("lingered calls released: %v", callIDs(done))
	}
	s.tr.Expire(at(2030 + 3600000 - 1))
	check(t, "open call not yet timed out", len(done), 1)
	s.tr.Expire(at(2030 + 3600000 + 1))
	if len(done) != 2 || done[1].CallID != "open" {
		t.Fatalf("timed out: %v", callIDs(done))
	}
	c := done[1]
	check(t, "ended by", c.EndedBy, "timeout")
	check(t, "end reason", c.EndReason, "timeout")
	check(t, "end", c.End, at(2030))
	check(t, "active", s.tr.Active(), 0)
}

func TestTrackerMicrosoftByHost(t *testing.T) {
	// Addresses outside every Microsoft range (a lab, or NAT): the
	// pstnhub Request-URI alone marks the call and tells the sides.
	lab, proxy := netip.MustParseAddrPort("10.1.1.1:5061"), netip.MustParseAddrPort("10.9.9.9:5061")
	s := newScenario(t, TrackerOptions{})
	d := outbound("byhost")
	s.msg(0, lab, proxy, d, "INVITE", "1 INVITE", "i", false, "Allow: INVITE, ACK, BYE", "Contact: <sip:10.1.1.1:5061;transport=tls>")
	c := oneCall(t, s.tr.Close(), "byhost")
	check(t, "microsoft", c.Microsoft, true)
	check(t, "microsoft addr", c.MicrosoftAddr, proxy.Addr())
	check(t, "sbc side", c.SBCSide, lab)
	check(t, "sbc allow", c.SBCAllow, "INVITE, ACK, BYE")
	check(t, "sbc contact", c.SBCContact, "sip:10.1.1.1:5061;transport=tls")

	// Inbound from Microsoft, known only by the top Via host.
	s = newScenario(t, TrackerOptions{})
	in := dialog{callID: "inbound", from: "sip:+4969123456@sip.pstnhub.microsoft.com", to: "sip:+4930111222@sbc.example.de",
		fromTag: "ms-in", reqURI: "sip:+4930111222@sbc.example.de:5061;transport=tls", viaHost: "sip-du-a-eu.pstnhub.microsoft.com:5061"}
	s.msg(0, proxy, lab, in, "INVITE", "1 INVITE", "i", false)
	in.toTag = "sbc-in"
	s.msg(500, lab, proxy, in, "SIP/2.0 200 OK", "1 INVITE", "i", false, "Allow: INVITE, ACK, BYE, REFER", "Contact: <sip:sbc.example.de:5061;transport=tls>")
	c = oneCall(t, s.tr.Close(), "inbound")
	check(t, "microsoft", c.Microsoft, true)
	check(t, "microsoft addr", c.MicrosoftAddr, proxy.Addr())
	check(t, "sbc side", c.SBCSide, lab)
	check(t, "sbc allow from the 200", c.SBCAllow, "INVITE, ACK, BYE, REFER")
	check(t, "caller", c.Caller, proxy)

	// Neither address nor host: not Microsoft.
	s = newScenario(t, TrackerOptions{})
	plain := dialog{callID: "plain", from: "sip:a@carrier.example", to: "sip:b@sbc.example.de", fromTag: "x", reqURI: "sip:b@sbc.example.de"}
	s.msg(0, carrier, sbc, plain, "INVITE", "1 INVITE", "i", false)
	c = oneCall(t, s.tr.Close(), "plain")
	check(t, "microsoft", c.Microsoft, false)
	check(t, "sbc allow seen", c.SBCAllowSeen, false)
}

func TestTrackerIsSBC(t *testing.T) {
	// With IsSBC configured, the SBC side is the configured address even
	// when Microsoft is recognised by address on the other end.
	s := newScenario(t, TrackerOptions{IsSBC: func(a netip.Addr) bool { return a == sbc.Addr() }})
	d := outbound("cfg")
	s.answer(&d, 0)
	c := oneCall(t, s.tr.Close(), "cfg")
	check(t, "sbc side", c.SBCSide, sbc)
	check(t, "allow seen", c.SBCAllowSeen, true)
}

func TestTrackerKinds(t *testing.T) {
	s := newScenario(t, TrackerOptions{})
	opt := dialog{callID: "opt", from: "sip:sbc.example.de", to: "sip:sip.pstnhub.microsoft.com", fromTag: "o1", reqURI: "sip:sip.pstnhub.microsoft.com:5061;transport=tls"}
	s.msg(0, sbc, ms1, opt, "OPTIONS", "1 OPTIONS", "o", false)
	opt.toTag = "o2"
	s.msg(40, ms1, sbc, opt, "SIP/2.0 200 OK", "1 OPTIONS", "o", false)
	reg := dialog{callID: "reg", from: "sip:1000@pbx.example", to: "sip:1000@pbx.example", fromTag: "r1", reqURI: "sip:pbx.example"}
	s.msg(100, carrier, sbc, reg, "REGISTER", "1 REGISTER", "r", false)
	s.msg(110, sbc, carrier, reg, "SIP/2.0 401 Unauthorized", "1 REGISTER", "r", false)
	s.msg(120, carrier, sbc, reg, "REGISTER", "2 REGISTER", "r2", false)
	s.msg(130, sbc, carrier, reg, "SIP/2.0 403 Forbidden", "2 REGISTER", "r2", false)
	mid := outbound("mid") // capture began mid-call
	mid.toTag = "ms-mid"
	s.msg(200, ms1, sbc, mid, "BYE", "9 BYE", "b", true)
	sub := dialog{callID: "sub", from: "sip:a@x", to: "sip:b@y", fromTag: "s1", reqURI: "sip:b@y"}
	s.msg(300, carrier, sbc, sub, "SUBSCRIBE", "1 SUBSCRIBE", "s", false, "Event: presence")
	pub := dialog{callID: "pub", from: "sip:a@x", to: "sip:a@x", fromTag: "p1", reqURI: "sip:a@x"}
	s.msg(400, carrier, sbc, pub, "PUBLISH", "1 PUBLISH", "p", false)
	rsp := outbound("rsp") // only a response seen
	rsp.toTag = "t"
	s.msg(500, ms1, sbc, rsp, "SIP/2.0 200 OK", "1 INVITE", "x", false)
	regonly := dialog{callID: "regonly", from: "sip:1000@pbx.example", to: "sip:1000@pbx.example", fromTag: "r1", toTag: "r2"}
	s.msg(600, sbc, carrier, regonly, "SIP/2.0 503 Service Unavailable", "7 REGISTER", "r", false)

	calls := s.tr.Close()
	check(t, "sorted by start", strings.Join(callIDs(calls), ","), "opt,reg,mid,sub,pub,rsp,regonly")
	o := oneCall(t, calls, "opt")
	check(t, "options kind", o.Kind, "options")
	check(t, "options final", o.FinalStatus, 200)
	check(t, "options end", o.End, at(40))
	check(t, "options microsoft", o.Microsoft, true)
	r := oneCall(t, calls, "reg")
	check(t, "register kind", r.Kind, "register")
	check(t, "register final after the challenge", r.FinalStatus, 403)
	check(t, "register end", r.End, at(130))
	check(t, "register from", r.From, "1000")
	check(t, "register makes no dialog", len(r.Dialogs), 0)
	check(t, "options make no dialog", len(o.Dialogs), 0)
	ro := oneCall(t, calls, "regonly")
	check(t, "response-only register kind", ro.Kind, "register")
	check(t, "response-only register final", ro.FinalStatus, 503)
	check(t, "response-only register caller", ro.Caller, carrier)
	check(t, "response-only register end", ro.End, at(600))
	m := oneCall(t, calls, "mid")
	check(t, "mid kind", m.Kind, "invite")
	check(t, "mid ended", m.EndReason, "BYE")
	check(t, "mid ended by", m.EndedBy, "unknown")
	check(t, "subscribe kind", oneCall(t, calls, "sub").Kind, "subscribe")
	check(t, "publish kind", oneCall(t, calls, "pub").Kind, "other")
	x := oneCall(t, calls, "rsp")
	check(t, "response-only kind", x.Kind, "invite")
	check(t, "response-only answered", x.Answered, true)
	check(t, "response-only caller", x.Caller, sbc)
}

func TestTrackerByeOnlyResponseSeen(t *testing.T) {
	s := newScenario(t, TrackerOptions{})
	d := outbound("lostbye")
	s.answer(&d, 0)
	// The BYE from Microsoft was not captured, only the SBC's 200.
	s.msg(7000, sbc, ms1, d, "SIP/2.0 200 OK", "4 BYE", "bye", true)
	c := oneCall(t, s.tr.Close(), "lostbye")
	check(t, "end", c.End, at(7000))
	check(t, "ended by", c.EndedBy, "callee")
	check(t, "ended by addr", c.EndedByAddr, ms1)
	check(t, "reason", c.EndReason, "BYE")
}

func TestTrackerReferFollowUpMatching(t *testing.T) {
	s := newScenario(t, TrackerOptions{ReferFollowWindow: 10 * time.Second})
	d := outbound("orig")
	s.answer(&d, 0)
	s.msg(8000, ms2, sbc, d, "REFER", "3 REFER", "ref", true, "Refer-To: <"+referTo+"?Replaces=abc%40x>")
	s.msg(8010, sbc, ms2, d, "SIP/2.0 202 Accepted", "3 REFER", "ref", true)
	// An unrelated new call first: other target, no Referred-By.
	other := dialog{callID: "other", from: d.from, to: "sip:+4911@sip.pstnhub.microsoft.com", fromTag: "o", reqURI: "sip:+4911@sip.pstnhub.microsoft.com"}
	s.msg(8020, sbc, ms1, other, "INVITE", "1 INVITE", "o", false)
	// The follow-up, known only by its Request-URI (user and host equal,
	// parameters differ).
	nd := dialog{callID: "follow", from: d.from, to: "sip:+4969777888@sip.pstnhub.microsoft.com", fromTag: "f",
		reqURI: "sip:+4969777888@SIP.pstnhub.microsoft.com:5061;transport=tls"}
	s.msg(8030, sbc, ms1, nd, "INVITE", "1 INVITE", "f", false)
	// Too late for a second REFER's window.
	s.msg(9000, ms2, sbc, d, "REFER", "4 REFER", "ref2", true, "Refer-To: <sip:+4922@sip.pstnhub.microsoft.com>")
	late := dialog{callID: "late", from: d.from, to: "sip:+4922@sip.pstnhub.microsoft.com", fromTag: "l", reqURI: "sip:+4922@sip.pstnhub.microsoft.com"}
	s.msg(20000, sbc, ms1, late, "INVITE", "1 INVITE", "l", false)
	calls := s.tr.Close()
	c := oneCall(t, calls, "orig")
	check(t, "follow-up by target", c.Refers[0].NewCallID, "follow")
	check(t, "unrelated call not linked", oneCall(t, calls, "other").ReferredFrom, "")
	check(t, "late call not linked", c.Refers[1].NewCallID, "")
	check(t, "late referred from", oneCall(t, calls, "late").ReferredFrom, "")
}

func TestTrackerTimedOutCallResumes(t *testing.T) {
	s := newScenario(t, TrackerOptions{DialogTimeout: time.Minute})
	d := outbound("long")
	s.answer(&d, 0)
	s.tr.Expire(at(2030 + 61000))
	check(t, "released", s.tr.Active(), 0)
	// A BYE after the timeout: the call was alive, the BYE ends it.
	s.msg(70000, ms1, sbc, d, "BYE", "9 BYE", "late", true)
	c := oneCall(t, s.tr.Close(), "long")
	check(t, "ended by", c.EndedBy, "callee")
	check(t, "end reason", c.EndReason, "BYE")
	check(t, "end", c.End, at(70000))
}

// TestMaxKeptMessages: past the budget, calls keep exact counts and
// their first LadderFloor messages, each marked truncated on its own.
func TestMaxKeptMessages(t *testing.T) {
	p := NewParser(0)
	msg := func(id string, cseq int) *Message {
		m, err := p.ParseDatagram(MessageMeta{Time: time.Date(2026, 4, 1, 9, 0, cseq, 0, time.UTC)}, []byte("OPTIONS sip:a@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK"+id+strconv.Itoa(cseq)+"\r\nFrom: <sip:b@192.0.2.2>;tag=1\r\nTo: <sip:a@192.0.2.1>\r\nCall-ID: "+id+"\r\nCSeq: "+strconv.Itoa(cseq)+" OPTIONS\r\nContent-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tr := NewTracker(TrackerOptions{MaxKeptMessages: 3, LadderFloor: 2})
	for _, id := range []string{"k1", "k2", "k3", "k4", "k5"} {
		for cseq := 1; cseq <= 3; cseq++ {
			tr.Observe(msg(id, cseq))
		}
	}
	calls := tr.Close()
	if len(calls) != 5 {
		t.Fatalf("calls %d", len(calls))
	}
	for i, c := range calls {
		if c.MessageCount != 3 {
			t.Errorf("%s: count %d", c.CallID, c.MessageCount)
		}
		// The first call fills the budget; every later one keeps the floor.
		want, trunc := 2, true
		if i == 0 {
			want, trunc = 3, false
		}
		if len(c.Messages) != want || c.Truncated != trunc {
			t.Errorf("%s: kept %d truncated %v, want %d %v", c.CallID, len(c.Messages), c.Truncated, want, trunc)
		}
	}
}
