// Package sip turns SIP bytes into records and tracks dialogs: one Message
// per parsed request or response (parsed with sipgo's parser; this package
// never frames SIP itself) and one Call per Call-ID with its dialogs,
// transactions, REFERs, NOTIFYs and end.
//
// A passive observer does not know who is the UAC, so dialogs are keyed by
// Call-ID plus both tags sorted. Time is the capture clock only.
//
// The pieces, in pipeline order:
//
//   - LooksLikeSIP probes the first bytes of a datagram or a stream, so
//     the protocol is chosen by content, never by port.
//   - Parser.ParseDatagram parses one UDP payload (or one exported copy);
//     Parser.NewStream frames one TCP/TLS direction by Content-Length,
//     skips CRLF keep-alives, dates each message by the chunk holding its
//     last byte, and resynchronises after garbage, a parse error or Gap.
//   - Tracker.Observe takes every Message in capture order; Expire ends
//     idle calls on the capture clock; Close returns every Call.
//
// Memory is bounded everywhere: messages by the parser's size limit,
// tracked Call-IDs by TrackerOptions.MaxDialogs (oldest idle first, ended
// calls before open ones), kept messages per call by MaxMessagesPerCall
// (the count stays exact) and their text by MaxRawBytes. Nothing panics on
// input; parse errors are returned or counted.
package sip

import (
	"net/netip"
	"time"
)

// Message is one SIP request or response as seen on the wire or in an
// exported copy. Key fields are lifted into columns; Raw keeps the text.
type Message struct {
	Time      time.Time
	Frame     uint64
	Src, Dst  netip.AddrPort
	Transport string // udp, tcp, tls, sctp
	Origin    string // wire, acdr, hep, syslog

	IsRequest  bool
	Method     string // request method; for responses the CSeq method
	RequestURI string
	StatusCode int
	Reason     string // reason phrase of a response

	// CallID as CallIDText renders it: unchanged when valid UTF-8, else
	// with \xNN escapes (the form printed, stored and looked up).
	CallID     string
	From, To   string // full URIs (no tag)
	FromUser   string
	ToUser     string
	FromTag    string
	ToTag      string
	CSeq       uint32
	CSeqMethod string
	Branch     string // top Via branch
	Via        []string

	Contact     string
	Allow       string
	UserAgent   string
	PAI         string // P-Asserted-Identity URI
	ReferTo     string
	ReferredBy  string
	Replaces    string
	ReasonHdr   string // raw Reason header(s), joined with ", "
	Q850Cause   int    // parsed from ReasonHdr, 0 when absent
	ReasonText  string // text= of the Reason header
	Event       string
	SubState    string // Subscription-State
	ContentType string
	// SipFrag is the status line of a message/sipfrag body (NOTIFY).
	SipFrag string
	// SDPAddrs are the c= addresses of an SDP body.
	SDPAddrs    []string
	RecordRoute []string

	// Repaired lists what a lenient second parse had to fix (bare LF
	// line ends, truncation, unbracketed IPv6 hosts); nil for a clean
	// message.
	Repaired []string

	// Raw is the message text, bounded by the configured limit. It is
	// read-only: the string fields of a Message from the fast path share
	// its memory.
	Raw []byte
}

// Summary returns "INVITE" or "200 OK".
func (m *Message) Summary() string {
	if m.IsRequest {
		return m.Method
	}
	if m.Reason == "" {
		return itoa(m.StatusCode)
	}
	return itoa(m.StatusCode) + " " + m.Reason
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// Refer is one REFER request within a call, with what came of it.
type Refer struct {
	Time       time.Time
	Src, Dst   netip.AddrPort
	CSeq       uint32
	ReferTo    string
	ReferredBy string
	Replaces   string
	// Response is the final status (0 when none seen); ResponseTime when.
	Response       int
	ResponseReason string
	ResponseTime   time.Time
	// Notifies are the NOTIFYs in the dialog after this REFER.
	Notifies []Notify
	// NewCallID is the Call-ID of the INVITE that followed this REFER
	// (same Referred-By, or a Request-URI equal to the Refer-To target),
	// "" when none was seen; NewInviteTime, NewInviteSrc, NewInviteDst and
	// NewInviteURI describe that INVITE.
	NewCallID     string
	NewInviteTime time.Time
	NewInviteSrc  netip.AddrPort
	NewInviteDst  netip.AddrPort
	NewInviteURI  string
}

// Notify is one NOTIFY carrying a sipfrag.
type Notify struct {
	Time     time.Time
	Src, Dst netip.AddrPort
	SipFrag  string // e.g. "SIP/2.0 200 OK"
	SubState string
}

// Call is everything seen for one Call-ID. JSON names follow the
// `analyze --format json` contract where they overlap.
type Call struct {
	CallID string
	// Kind is "invite" or the lower-case method that opened the Call-ID.
	Kind string
	// From and To are the caller and callee numbers (user parts), taken
	// from P-Asserted-Identity when present for the caller.
	From, To    string
	FromURI     string
	ToURI       string
	RequestURI  string // of the initial INVITE
	PAI         string
	Caller      netip.AddrPort // sender of the initial request
	Callee      netip.AddrPort // its receiver
	Start       time.Time      // first message
	Answer      time.Time      // 2xx to the initial INVITE (zero if none)
	End         time.Time      // BYE/CANCEL/final failure/timeout
	Last        time.Time      // last message of any kind
	Answered    bool
	FinalStatus int    // final response to the initial INVITE
	EndedBy     string // "caller", "callee", "timeout", "" while open
	EndedByAddr netip.AddrPort
	EndReason   string // "BYE", "CANCEL", "486 Busy Here", "timeout"
	ByeReason   string // raw Reason header of the BYE/CANCEL
	Q850Cause   int
	ReasonText  string
	Refers      []*Refer
	// Invites counts INVITEs including re-INVITEs (not retransmissions).
	Invites int
	// MessageCount counts every SIP message with this Call-ID as seen
	// (UDP retransmissions count again).
	MessageCount int
	// Messages keeps the first messages for the ladder (bounded).
	Messages []*Message
	// Truncated is set when Messages hit the bound.
	Truncated bool
	// Dialogs lists the dialog keys (Call-ID + sorted tags) seen.
	Dialogs []string
	// Microsoft is true when a Microsoft proxy takes part (by address
	// range or by a pstnhub host in the headers); MicrosoftAddr is its
	// address when known.
	Microsoft     bool
	MicrosoftAddr netip.Addr
	// SBCSide is the endpoint of the non-Microsoft peer of a Microsoft
	// call (the SBC), when it could be told.
	SBCSide netip.AddrPort
	// Contact, Allow as sent by the SBC towards Microsoft in its INVITE or
	// 200 OK (for refer_not_allowed / contact_not_fqdn).
	SBCContact string
	SBCAllow   string
	// SBCAllowSeen is true when the SBC sent an INVITE or 200 towards
	// Microsoft in this call (so SBCAllow is meaningful).
	SBCAllowSeen bool
	SDPAddrs     []string
	UserAgents   []string
	// ReferredFrom is the Call-ID whose REFER this call's INVITE followed.
	ReferredFrom string
	// Retransmissions counts messages that repeated one already seen
	// (same transaction, same request or same response); they are
	// included in MessageCount.
	Retransmissions int
}

// Duration is answer to end (0 when not answered or not ended).
func (c *Call) Duration() time.Duration {
	if !c.Answered || c.End.IsZero() || c.Answer.IsZero() {
		return 0
	}
	return c.End.Sub(c.Answer)
}
