package sip

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	gs "github.com/emiago/sipgo/sip"
)

// MessageMeta is what the tap knows about where bytes came from.
type MessageMeta struct {
	// Time is the capture (or exporter) timestamp.
	Time time.Time
	// Frame is the 1-based capture frame number (0 when unknown).
	Frame    uint64
	Src, Dst netip.AddrPort
	// Transport is udp, tcp, tls or sctp; Origin is wire, acdr, hep or
	// syslog.
	Transport, Origin string
}

// Errors returned (wrapped) by the parser; test them with errors.Is.
var (
	// ErrKeepAlive is returned for a datagram holding only CRLF
	// keep-alives: not a message, not an error worth counting.
	ErrKeepAlive = errors.New("sip: keep-alive")
	// ErrTooLarge is returned for a message above the size limit.
	ErrTooLarge = errors.New("sip: message too large")
	// ErrInvalid marks a message sipgo parsed but that breaks a rule a
	// tracker relies on (version, CSeq method, a required or repeated
	// single-valued header).
	ErrInvalid = errors.New("sip: invalid message")
)

// DefaultMaxMessage is the size limit used when NewParser gets 0.
const DefaultMaxMessage = 65535

// Parser turns bytes into Messages with sipgo's parser. Framing-critical
// headers (Via, From, To, Call-ID, CSeq, Content-Length, Content-Type)
// are parsed strictly by sipgo; the others are kept as text and read
// leniently here, so an odd Contact or Refer-To never loses a message.
// A Parser is safe for concurrent use; a Stream is not.
type Parser struct {
	gp  *gs.Parser
	max int
}

// strictHeaders are parsed by sipgo; a malformed one fails the message.
// From and To get one retry without their display name, the part a
// tracker never needs and real devices most often get wrong.
var strictHeaders = func() map[string]gs.HeaderParser {
	all := gs.DefaultHeadersParser()
	m := make(map[string]gs.HeaderParser)
	for _, name := range []string{"via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "content-length", "l", "content-type", "c"} {
		p, ok := all[name]
		if !ok {
			continue
		}
		switch name {
		case "from", "f", "to", "t":
			m[name] = withoutDisplayName(p)
		default:
			m[name] = p
		}
	}
	return m
}()

// withoutDisplayName retries a failed name-addr parse from its last '<'.
func withoutDisplayName(strict gs.HeaderParser) gs.HeaderParser {
	return func(name []byte, text string) (gs.Header, error) {
		h, err := strict(name, text)
		if err == nil {
			return h, nil
		}
		if lt := strings.LastIndexByte(text, '<'); lt > 0 {
			if h2, err2 := strict(name, text[lt:]); err2 == nil {
				return h2, nil
			}
		}
		return h, err
	}
}

// NewParser returns a parser refusing messages above maxMessage bytes
// (DefaultMaxMessage when maxMessage <= 0).
func NewParser(maxMessage int) *Parser {
	if maxMessage <= 0 {
		maxMessage = DefaultMaxMessage
	}
	gp := gs.NewParser(gs.WithHeadersParsers(strictHeaders))
	gp.MaxMessageLength = maxMessage
	return &Parser{gp: gp, max: maxMessage}
}

// ParseDatagram parses exactly one message from one datagram (UDP, or
// one ACDR/HEP copy). Leading CRLFs are skipped; bytes after the body
// that Content-Length announces are ignored; without a Content-Length,
// or with one that is not a number (repaired, see repair.go), the body
// runs to the end of the datagram (RFC 3261 section 18.3). A datagram of
// CRLFs only returns ErrKeepAlive. Errors are wrapped; payload is not
// retained.
func (p *Parser) ParseDatagram(meta MessageMeta, payload []byte) (*Message, error) {
	return p.parseDatagram(meta, payload, false)
}

// ParseDatagramOwned is ParseDatagram for a payload that is handed over:
// the Message may keep it as Raw (every string field then points into
// it) instead of a copy, so the caller must never modify it afterwards —
// as a frame freshly read from a capture file (tap.Source) is never
// modified. It saves a copy and an allocation per message.
func (p *Parser) ParseDatagramOwned(meta MessageMeta, payload []byte) (*Message, error) {
	return p.parseDatagram(meta, payload, true)
}

func (p *Parser) parseDatagram(meta MessageMeta, payload []byte, owned bool) (*Message, error) {
	b := bytes.TrimLeft(payload, "\r\n")
	if len(b) == 0 {
		return nil, ErrKeepAlive
	}
	if len(b) > p.max {
		return nil, fmt.Errorf("sip: datagram of %d bytes: %w", len(b), ErrTooLarge)
	}
	if oddLineEnds(b) {
		// sipgo splits header lines on CRLF only: a bare LF or lone CR
		// would let one header swallow the next (a Call-ID running into
		// the CSeq). Read the lines as tshark does first.
		if fixed, what := repair(b); what != nil {
			if m, err := p.parseOne(meta, fixed, b); err == nil {
				m.Repaired = what
				return m, nil
			}
		}
	} else if m, ok := p.fastParseBuf(meta, b, owned); ok {
		return m, nil // see fast.go: equal to the path below, proven by FuzzFastParse
	}
	m, err := p.parseOne(meta, b, b)
	if err != nil && !errors.Is(err, ErrTooLarge) {
		// sipgo refused it, or accepted something a tracker cannot use
		// (a bare-LF head read as one start line): try the lenient copy.
		if fixed, what := repair(b); what != nil {
			if m2, err2 := p.parseOne(meta, fixed, b); err2 == nil {
				m2.Repaired = what
				return m2, nil
			}
		}
	}
	return m, err
}

// parseOne parses data as one message; the Message keeps raw as its text.
func (p *Parser) parseOne(meta MessageMeta, data, raw []byte) (*Message, error) {
	gm, n, err := p.gp.Parse(data, false)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = gs.ErrParseEOF
		}
		if errors.Is(err, gs.ErrMessageTooLarge) {
			err = fmt.Errorf("%w: %w", ErrTooLarge, err)
		}
		return nil, fmt.Errorf("sip: parse datagram: %w", err)
	}
	if len(data) == len(raw) {
		raw = raw[:n]
	}
	return p.build(meta, raw, gm)
}

// build checks a parsed sipgo message and lifts it into a Message; raw
// is copied.
func (p *Parser) build(meta MessageMeta, raw []byte, gm gs.Message) (*Message, error) {
	hs := collect(gm)
	if err := validate(gm, &hs); err != nil {
		return nil, err
	}
	m := &Message{
		Time:      meta.Time,
		Frame:     meta.Frame,
		Src:       meta.Src,
		Dst:       meta.Dst,
		Transport: meta.Transport,
		Origin:    meta.Origin,
		Raw:       bytes.Clone(raw),
	}
	switch v := gm.(type) {
	case *gs.Request:
		m.IsRequest = true
		m.Method = string(v.Method)
		// As written, not as sipgo renders it: the new INVITE of a
		// transfer must carry the Refer-To string exactly.
		m.RequestURI = v.Recipient.String()
		if parts := strings.SplitN(firstLine(raw), " ", 3); len(parts) == 3 {
			m.RequestURI = parts[1]
		}
	case *gs.Response:
		m.StatusCode = v.StatusCode
		m.Reason = v.Reason
	}
	m.CallID = CallIDText(string(*gm.CallID()))
	from, to := gm.From(), gm.To()
	m.From, m.To = from.Address.String(), to.Address.String()
	m.FromUser, m.ToUser = uriUser(from.Address), uriUser(to.Address)
	m.FromTag, _ = from.Params.Get("tag")
	m.ToTag, _ = to.Params.Get("tag")
	cs := gm.CSeq()
	m.CSeq, m.CSeqMethod = cs.SeqNo, string(cs.MethodName)
	if !m.IsRequest {
		m.Method = m.CSeqMethod
	}
	m.Branch, _ = gm.Via().Params.Get("branch")
	m.Via = hs.via
	if els := splitList(hs.contact); len(els) > 0 {
		m.Contact = parseAddr(els[0]).uri
	}
	m.Allow = strings.Join(hs.allow, ", ")
	m.UserAgent = hs.userAgent
	if m.UserAgent == "" {
		m.UserAgent = hs.server
	}
	if els := splitList(hs.pai); len(els) > 0 {
		m.PAI = parseAddr(els[0]).uri
	}
	if hs.referTo != "" {
		m.ReferTo = parseAddr(hs.referTo).uri
	}
	m.ReferredBy = hs.referredBy
	m.Replaces = hs.replaces
	if m.Replaces == "" {
		m.Replaces = embeddedReplaces(m.ReferTo)
	}
	// The Call-ID in a Replaces is compared with Message.CallID.
	m.Replaces = CallIDText(m.Replaces)
	m.ReasonHdr = strings.Join(hs.reasons, ", ")
	m.Q850Cause, m.ReasonText = q850(parseReasons(hs.reasons))
	m.Event, m.SubState, m.ContentType = hs.event, hs.subState, hs.contentType
	body := gm.Body()
	ctl := strings.ToLower(m.ContentType)
	if strings.HasPrefix(ctl, "message/sipfrag") {
		m.SipFrag = firstLine(body)
	}
	if strings.Contains(ctl, "sdp") || strings.HasPrefix(ctl, "multipart/") {
		m.SDPAddrs = sdpAddrs(body)
	}
	for _, v := range hs.recordRoute {
		for _, el := range splitList(v) {
			m.RecordRoute = append(m.RecordRoute, parseAddr(el).uri)
		}
	}
	return m, nil
}

// validate enforces what sipgo leaves to the application but a tracker
// relies on: SIP/2.0, the headers that identify a transaction present
// exactly once, a request's CSeq method equal to its method, and no
// escaped headers in a Request-URI (RFC 3261 §19.1.5).
func validate(gm gs.Message, hs *headerSet) error {
	var version string
	switch v := gm.(type) {
	case *gs.Request:
		version = v.SipVersion
		if cs := gm.CSeq(); cs != nil && !strings.EqualFold(string(cs.MethodName), string(v.Method)) {
			return fmt.Errorf("%w: CSeq method %q differs from request method %q", ErrInvalid, cs.MethodName, v.Method)
		}
		if len(v.Recipient.Headers) > 0 {
			return fmt.Errorf("%w: Request-URI carries headers", ErrInvalid)
		}
	case *gs.Response:
		version = v.SipVersion
		if v.StatusCode < 100 || v.StatusCode > 699 {
			return fmt.Errorf("%w: status code %d", ErrInvalid, v.StatusCode)
		}
	default:
		return fmt.Errorf("%w: neither request nor response", ErrInvalid)
	}
	if !strings.EqualFold(version, sipVersion) {
		return fmt.Errorf("%w: version %q", ErrInvalid, version)
	}
	for _, h := range []struct {
		name string
		n    int
	}{{"Call-ID", hs.nCallID}, {"CSeq", hs.nCSeq}, {"From", hs.nFrom}, {"To", hs.nTo}} {
		switch {
		case h.n == 0:
			return fmt.Errorf("%w: no %s header", ErrInvalid, h.name)
		case h.n > 1:
			return fmt.Errorf("%w: %d %s headers", ErrInvalid, h.n, h.name)
		}
	}
	if len(hs.via) == 0 || gm.Via() == nil {
		return fmt.Errorf("%w: no Via header", ErrInvalid)
	}
	if hs.nContentLength > 1 {
		return fmt.Errorf("%w: several Content-Length headers", ErrInvalid)
	}
	for _, v := range hs.contacts {
		for _, el := range splitList(v) {
			if indexOutsideQuotes(el, '<') < 0 && strings.Contains(parseAddr(el).uri, "?") {
				return fmt.Errorf("%w: unbracketed Contact URI with headers", ErrInvalid)
			}
		}
	}
	return nil
}

// headerSet is what one pass over a message's headers finds: counts of
// the identifying headers and the values the Message lifts.
type headerSet struct {
	nCallID, nCSeq, nFrom, nTo, nContentLength int

	via, contacts, allow, reasons, recordRoute []string

	contact, userAgent, server, pai, referTo, referredBy, replaces string
	event, subState, contentType                                   string
}

// compactNames maps RFC 3261/3515/3265/4488 compact forms to full names.
var compactNames = map[string]string{
	"i": "call-id", "f": "from", "t": "to", "v": "via", "l": "content-length",
	"c": "content-type", "m": "contact", "r": "refer-to", "b": "referred-by",
	"o": "event", "e": "content-encoding", "k": "supported", "s": "subject",
	"u": "allow-events", "x": "session-expires", "a": "accept-contact", "j": "reject-contact", "d": "request-disposition", "y": "identity", "n": "identity-info",
}

// collect walks the headers once, in order.
func collect(gm gs.Message) headerSet {
	var hs headerSet
	lister, ok := gm.(interface{ Headers() []gs.Header })
	if !ok {
		return hs
	}
	first := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	for _, h := range lister.Headers() {
		name := gs.HeaderToLower(h.Name())
		if full, ok := compactNames[name]; ok {
			name = full
		}
		switch name {
		case "call-id":
			hs.nCallID++
		case "cseq":
			hs.nCSeq++
		case "from":
			hs.nFrom++
		case "to":
			hs.nTo++
		case "content-length":
			hs.nContentLength++
		case "via":
			hs.via = append(hs.via, h.Value())
		case "contact":
			v := h.Value()
			hs.contacts = append(hs.contacts, v)
			first(&hs.contact, v)
		case "allow":
			hs.allow = append(hs.allow, h.Value())
		case "reason":
			hs.reasons = append(hs.reasons, h.Value())
		case "record-route":
			hs.recordRoute = append(hs.recordRoute, h.Value())
		case "user-agent":
			first(&hs.userAgent, h.Value())
		case "server":
			first(&hs.server, h.Value())
		case "p-asserted-identity":
			first(&hs.pai, h.Value())
		case "refer-to":
			first(&hs.referTo, h.Value())
		case "referred-by":
			first(&hs.referredBy, h.Value())
		case "replaces":
			first(&hs.replaces, h.Value())
		case "event":
			first(&hs.event, h.Value())
		case "subscription-state":
			first(&hs.subState, h.Value())
		case "content-type":
			first(&hs.contentType, h.Value())
		}
	}
	return hs
}
