package sip

import (
	"bytes"
	"slices"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// The fast path. Most SIP on a trunk is plain: CRLF line ends, printable
// ASCII heads, one header per line, sip: URIs without oddities. For such a
// datagram fastParse reads the few fields a Message needs in one pass over
// the head, with no intermediate header objects, and returns exactly the
// Message the reference path (sipgo's parser, then build) would return —
// FuzzFastParse proves it field by field. Anything it is not sure about
// (folding, a tab, a non-ASCII byte, an IPv6 host, a quoted parameter, a
// comma in a Via, a duplicate identifying header, a body shorter than
// Content-Length, ...) makes it give up, and the datagram takes the
// reference path, errors, repairs and all. The fast path never returns an
// error of its own.
//
// Memory: the datagram is copied once into Message.Raw and every string
// field of the Message is a substring of that copy (no copy per field).
// Raw is therefore read-only. Holders that outlive the Message (the
// tracker's Call) copy the few strings they keep.

// maxFastVias bounds the Via headers the fast path handles on the stack.
const maxFastVias = 8

// fastParse parses b, a datagram with leading CRLFs trimmed and within the
// size limit. ok is false when the reference path must decide.
func (p *Parser) fastParse(meta MessageMeta, b []byte) (m *Message, ok bool) {
	return p.fastParseBuf(meta, b, false)
}

// fastParseBuf is fastParse; owned says b is handed over (see
// ParseDatagramOwned) and becomes Raw without a copy.
func (p *Parser) fastParseBuf(meta MessageMeta, b []byte, owned bool) (m *Message, ok bool) {
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		return nil, false
	}
	raw := b
	if !owned {
		raw = bytes.Clone(b)
	}
	s := unsafe.String(&raw[0], len(raw))
	head := s[:end+2] // every head line keeps its CRLF
	bodyAt := end + 4

	m = &Message{Time: meta.Time, Frame: meta.Frame, Src: meta.Src, Dst: meta.Dst,
		Transport: meta.Transport, Origin: meta.Origin}

	line, head, ok := nextFastLine(head)
	if !ok || !fastStartLine(m, line) {
		return nil, false
	}

	var (
		nCallID, nCSeq, nFrom, nTo, nCL int
		cl                              = -1
		viaBuf                          [maxFastVias]string
		vias                            = viaBuf[:0]
		allowBuf, reasonBuf, rrBuf      [2]string
		allows                          = allowBuf[:0]
		reasons                         = reasonBuf[:0]
		rrs                             = rrBuf[:0]
		contact, server, pai, referTo   string
	)
	first := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	for head != "" {
		line, head, ok = nextFastLine(head)
		if !ok {
			return nil, false
		}
		if head != "" && head[0] == ' ' {
			if line, head, ok = unfold(line, head); !ok {
				return nil, false
			}
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 || !isTokenString(line[:colon]) {
			return nil, false
		}
		name, v := line[:colon], strings.Trim(line[colon+1:], " ")
		switch headerID(name) {
		case hVia:
			if len(vias) == maxFastVias {
				return nil, false
			}
			branch, ok := fastVia(v)
			if !ok {
				return nil, false
			}
			if len(vias) == 0 {
				m.Branch = branch
			}
			vias = append(vias, v)
		case hFrom:
			nFrom++
			if !fastNameAddr(v, &m.From, &m.FromUser, &m.FromTag) {
				return nil, false
			}
		case hTo:
			nTo++
			if !fastNameAddr(v, &m.To, &m.ToUser, &m.ToTag) {
				return nil, false
			}
		case hCallID:
			nCallID++
			if v == "" {
				return nil, false
			}
			m.CallID = CallIDText(v) // as build: the text form (unchanged for printable ASCII)
		case hCSeq:
			nCSeq++
			if !fastCSeq(m, v) {
				return nil, false
			}
		case hContentLength:
			nCL++
			n, ok := fastDigits(v, 10)
			if !ok || n > 1<<32-1 {
				return nil, false
			}
			cl = int(n)
		case hContentType:
			if v == "" {
				return nil, false
			}
			first(&m.ContentType, v)
		case hContact:
			// The reference refuses an unbracketed Contact URI with
			// headers; let it judge any '?'.
			if strings.IndexByte(v, '?') >= 0 {
				return nil, false
			}
			first(&contact, v)
		case hAllow:
			allows = append(allows, v)
		case hReason:
			reasons = append(reasons, v)
		case hRecordRoute:
			rrs = append(rrs, v)
		case hUserAgent:
			first(&m.UserAgent, v)
		case hServer:
			first(&server, v)
		case hPAI:
			first(&pai, v)
		case hReferTo:
			first(&referTo, v)
		case hReferredBy:
			first(&m.ReferredBy, v)
		case hReplaces:
			first(&m.Replaces, v)
		case hEvent:
			first(&m.Event, v)
		case hSubState:
			first(&m.SubState, v)
		}
	}
	if nCallID != 1 || nCSeq != 1 || nFrom != 1 || nTo != 1 || nCL > 1 || len(vias) == 0 {
		return nil, false
	}
	if m.IsRequest {
		if !strings.EqualFold(m.CSeqMethod, m.Method) {
			return nil, false
		}
	} else {
		m.Method = m.CSeqMethod
	}
	body := s[bodyAt:]
	if cl >= 0 {
		if cl > len(body) {
			return nil, false
		}
		body = body[:cl]
	}
	m.Raw = raw[: bodyAt+len(body) : bodyAt+len(body)]

	m.Via = slices.Clone(vias)
	if el, _ := nextListElem(contact); el != "" {
		m.Contact = parseAddr(el).uri
	}
	m.Allow = strings.Join(allows, ", ")
	if m.UserAgent == "" {
		m.UserAgent = server
	}
	if el, _ := nextListElem(pai); el != "" {
		m.PAI = parseAddr(el).uri
	}
	if referTo != "" {
		m.ReferTo = parseAddr(referTo).uri
	}
	if m.Replaces == "" {
		m.Replaces = embeddedReplaces(m.ReferTo)
	}
	m.Replaces = CallIDText(m.Replaces) // as build: compared with Call-IDs
	if len(reasons) > 0 {
		m.ReasonHdr = strings.Join(reasons, ", ")
		m.Q850Cause, m.ReasonText = q850(parseReasons(reasons))
	}
	if hasPrefixFold(m.ContentType, "message/sipfrag") {
		m.SipFrag = firstLineString(body)
	}
	if containsFold(m.ContentType, "sdp") || hasPrefixFold(m.ContentType, "multipart/") {
		m.SDPAddrs = sdpAddrsString(body)
	}
	if len(rrs) > 0 {
		n := 0
		for _, v := range rrs {
			for rest := v; rest != ""; {
				var el string
				if el, rest = nextListElem(rest); el != "" {
					n++
				}
			}
		}
		if n > 0 {
			m.RecordRoute = make([]string, 0, n)
			for _, v := range rrs {
				for rest := v; rest != ""; {
					var el string
					if el, rest = nextListElem(rest); el != "" {
						m.RecordRoute = append(m.RecordRoute, parseAddr(el).uri)
					}
				}
			}
		}
	}
	return m, true
}

// nextFastLine cuts the first CRLF-terminated line off head; ok is false
// unless the line is printable ASCII and does not start with whitespace
// (a folded continuation).
func nextFastLine(head string) (line, rest string, ok bool) {
	i := strings.IndexByte(head, '\r')
	if i < 0 || i+1 >= len(head) || head[i+1] != '\n' {
		return "", "", false
	}
	line = head[:i]
	if line == "" || line[0] == ' ' {
		return "", "", false
	}
	for j := 0; j < len(line); j++ {
		if c := line[j]; c < 0x20 || c > 0x7e {
			return "", "", false
		}
	}
	return line, head[i+2:], true
}

// unfold joins the continuation lines at the start of head to line as
// sipgo does: trailing blanks of each part dropped, leading blanks of a
// continuation replaced by one space. One allocation.
func unfold(line, head string) (string, string, bool) {
	var b strings.Builder
	span := 0 // bytes of continuation lines: an upper bound of what they add
	for rest := head; rest != "" && rest[0] == ' '; {
		i := strings.Index(rest, "\r\n")
		if i < 0 {
			return "", "", false
		}
		span += i + 1
		rest = rest[i+2:]
	}
	b.Grow(len(line) + span)
	b.WriteString(strings.TrimRight(line, " "))
	for head != "" && head[0] == ' ' {
		i := strings.IndexByte(head, '\r')
		if i < 0 || i+1 >= len(head) || head[i+1] != '\n' {
			return "", "", false
		}
		cont := head[:i]
		for j := 0; j < len(cont); j++ {
			if c := cont[j]; c < 0x20 || c > 0x7e {
				return "", "", false
			}
		}
		b.WriteByte(' ')
		b.WriteString(strings.Trim(cont, " "))
		head = head[i+2:]
	}
	return b.String(), head, true
}

// fastStartLine reads "METHOD uri SIP/2.0" or "SIP/2.0 200 reason".
func fastStartLine(m *Message, line string) bool {
	if rest, ok := strings.CutPrefix(line, "SIP/2.0 "); ok {
		code, reason, ok := strings.Cut(rest, " ")
		if !ok || len(code) != 3 {
			return false
		}
		n, ok := fastDigits(code, 3)
		if !ok || n < 100 || n > 699 {
			return false
		}
		// sipgo reads a one-word reason starting "SIP"/"sip" as a
		// request line.
		if len(reason) >= 3 && (reason[:3] == "SIP" || reason[:3] == "sip") && strings.IndexByte(reason, ' ') < 0 {
			return false
		}
		m.StatusCode, m.Reason = int(n), reason
		return true
	}
	method, rest, ok := strings.Cut(line, " ")
	if !ok || method == "" {
		return false
	}
	for i := 0; i < len(method); i++ {
		if c := method[i]; c < 'A' || c > 'Z' {
			return false
		}
	}
	uri, version, ok := strings.Cut(rest, " ")
	if !ok || version != sipVersion || !fastURI(uri) {
		return false
	}
	m.IsRequest, m.Method, m.RequestURI = true, method, uri
	return true
}

// Header identifiers of the fast path.
const (
	hOther = iota
	hVia
	hFrom
	hTo
	hCallID
	hCSeq
	hContentLength
	hContentType
	hContact
	hAllow
	hReason
	hRecordRoute
	hUserAgent
	hServer
	hPAI
	hReferTo
	hReferredBy
	hReplaces
	hEvent
	hSubState
)

// headerID names a header (full or compact form, any case) as collect
// and sipgo's strict parsers do.
func headerID(name string) int {
	if len(name) == 1 {
		switch name[0] | 0x20 {
		case 'v':
			return hVia
		case 'f':
			return hFrom
		case 't':
			return hTo
		case 'i':
			return hCallID
		case 'l':
			return hContentLength
		case 'c':
			return hContentType
		case 'm':
			return hContact
		case 'r':
			return hReferTo
		case 'b':
			return hReferredBy
		case 'o':
			return hEvent
		}
		return hOther
	}
	for _, h := range fastHeaders {
		if len(h.name) == len(name) && strings.EqualFold(h.name, name) {
			return h.id
		}
	}
	return hOther
}

var fastHeaders = [...]struct {
	name string
	id   int
}{
	{"via", hVia}, {"from", hFrom}, {"to", hTo}, {"call-id", hCallID}, {"cseq", hCSeq},
	{"content-length", hContentLength}, {"content-type", hContentType}, {"contact", hContact},
	{"allow", hAllow}, {"reason", hReason}, {"record-route", hRecordRoute},
	{"user-agent", hUserAgent}, {"server", hServer}, {"p-asserted-identity", hPAI},
	{"refer-to", hReferTo}, {"referred-by", hReferredBy}, {"replaces", hReplaces},
	{"event", hEvent}, {"subscription-state", hSubState},
}

// isTokenString reports whether s is a non-empty RFC 3261 token.
func isTokenString(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && strings.IndexByte("-.!%*_+`'~", c) < 0 {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// fastDigits parses 1..max decimal digits.
func fastDigits(s string, max int) (uint64, bool) {
	if s == "" || len(s) > max {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// fastCSeq reads "123 INVITE".
func fastCSeq(m *Message, v string) bool {
	num, method, ok := strings.Cut(v, " ")
	if !ok || method == "" {
		return false
	}
	n, ok := fastDigits(num, 10)
	if !ok || n > 1<<31-1 {
		return false
	}
	for i := 0; i < len(method); i++ {
		if c := method[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	m.CSeq, m.CSeqMethod = uint32(n), method
	return true
}

// fastVia checks that a Via value is one plain hop sipgo renders back
// unchanged ("SIP/2.0/UDP host:port;branch=x;rport") and returns its
// branch.
func fastVia(v string) (branch string, ok bool) {
	rest, ok := strings.CutPrefix(v, "SIP/2.0/")
	if !ok {
		return "", false
	}
	transport, rest, ok := strings.Cut(rest, " ")
	if !ok || transport == "" {
		return "", false
	}
	for i := 0; i < len(transport); i++ {
		if !isAlnum(transport[i]) {
			return "", false
		}
	}
	hostport, params, hasParams := strings.Cut(rest, ";")
	if !fastHostPort(hostport) {
		return "", false
	}
	if !hasParams {
		return "", true
	}
	return fastParams(params, "branch")
}

// fastHostPort accepts a host name or IPv4 address with an optional port
// without leading zeros.
func fastHostPort(s string) bool {
	host, port, hasPort := strings.Cut(s, ":")
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; !isAlnum(c) && c != '.' && c != '-' && c != '_' {
			return false
		}
	}
	if hasPort {
		if port == "" || port[0] == '0' {
			return false
		}
		if _, ok := fastDigits(port, 5); !ok {
			return false
		}
	}
	return true
}

// fastParams checks ";"-separated parameters (after the first ';') that
// sipgo parses and renders unchanged: token keys, each at most once,
// token values, no empty element. It returns the value of key want.
func fastParams(s, want string) (string, bool) {
	var val string
	var seenBuf [8]string
	seen := seenBuf[:0]
	for {
		p, rest, more := strings.Cut(s, ";")
		k, v, hasV := strings.Cut(p, "=")
		if !isTokenString(k) || hasV && !isTokenString(v) || len(seen) == len(seenBuf) || slices.Contains(seen, k) {
			return "", false
		}
		seen = append(seen, k)
		if k == want {
			val = v
		}
		if !more {
			return val, true
		}
		s = rest
	}
}

// fastURI accepts a sip:, sips: or tel: URI that sipgo parses without
// error and renders back exactly as written: lower-case scheme; for SIP an
// optional user without ':' (no password), a host name or IPv4 address,
// an optional port, plain parameters, no headers.
func fastURI(u string) bool {
	scheme, rest, ok := strings.Cut(u, ":")
	if !ok || rest == "" {
		return false
	}
	switch scheme {
	case "sip", "sips":
	case "tel":
		for i := 0; i < len(rest); i++ {
			if c := rest[i]; !isAlnum(c) && strings.IndexByte("+-.()=;*#%", c) < 0 {
				return false
			}
		}
		return true
	default:
		return false
	}
	hostpart := rest
	if at := strings.IndexByte(rest, '@'); at >= 0 {
		user := rest[:at]
		if user == "" {
			return false
		}
		for i := 0; i < len(user); i++ {
			if c := user[i]; !isAlnum(c) && strings.IndexByte("-_.!~*'()%&=+$,", c) < 0 {
				return false
			}
		}
		hostpart = rest[at+1:]
	}
	hostport, params, hasParams := strings.Cut(hostpart, ";")
	if !fastHostPort(hostport) {
		return false
	}
	if hasParams {
		_, ok := fastParams(params, "")
		return ok
	}
	return true
}

// fastNameAddr reads a From or To value: `["Name"|Name] <uri>;tag=x` or
// `uri;tag=x`. uri receives the URI as sipgo renders it, user its user
// part, tag the tag parameter as sipgo finds it.
func fastNameAddr(v string, uri, user, tag *string) bool {
	var u, params string
	if i := strings.IndexAny(v, "\"<;"); i >= 0 && v[i] != ';' {
		if v[i] == '"' {
			// A quoted display name: no escapes, then '<'.
			end := strings.IndexByte(v[i+1:], '"')
			if end < 0 || strings.IndexByte(v[i+1:i+1+end], '\\') >= 0 {
				return false
			}
			after := strings.TrimLeft(v[i+1+end+1:], " ")
			if after == "" || after[0] != '<' {
				return false
			}
			v = after
			i = 0
		}
		gt := strings.IndexByte(v[i+1:], '>')
		if gt < 0 {
			return false
		}
		u, params = v[i+1:i+1+gt], v[i+1+gt+1:]
		if params != "" && params[0] != ';' {
			return false
		}
	} else {
		// addr-spec: everything after the first ';' is a header parameter.
		u, _, _ = strings.Cut(v, ";")
		params = v[len(u):]
		if strings.ContainsAny(u, ",?") {
			return false
		}
	}
	if !fastURI(u) {
		return false
	}
	*uri, *user, *tag = u, fastURIUser(u), ""
	// sipgo splits header parameters on every ';' and names a parameter
	// by the text before its last '='; a later "tag" replaces an earlier.
	for params != "" { // params starts with ';'
		p, _, more := strings.Cut(params[1:], ";")
		if more {
			params = params[1+len(p):]
		} else {
			params = ""
		}
		if eq := strings.LastIndexByte(p, '='); eq > 0 && p[:eq] == "tag" {
			*tag = p[eq+1:]
		}
	}
	return true
}

// fastURIUser is uriUser for a URI fastURI accepted.
func fastURIUser(u string) string {
	scheme, rest, _ := strings.Cut(u, ":")
	if scheme == "tel" {
		n, _, _ := strings.Cut(rest, ";")
		return n
	}
	if at := strings.IndexByte(rest, '@'); at >= 0 {
		return rest[:at]
	}
	return ""
}

// nextListElem returns the first non-empty element of a comma-separated
// header value (as splitList does) and what follows it.
func nextListElem(v string) (el, rest string) {
	for v != "" {
		end := indexOutside(v, ',')
		if end < 0 {
			end = len(v)
		}
		el = strings.TrimSpace(v[:end])
		if end < len(v) {
			v = v[end+1:]
		} else {
			v = ""
		}
		if el != "" {
			return el, v
		}
	}
	return "", ""
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// firstLineString is firstLine for a string, without copying.
func firstLineString(s string) string {
	s = strings.TrimLeft(s, "\r\n")
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimRight(s, "\r \t")
}

// sdpAddrsString is sdpAddrs for a string: substrings, one allocation.
func sdpAddrsString(body string) []string {
	var out []string
	for len(body) > 0 {
		line := body
		if i := strings.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = ""
		}
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "c=") {
			continue
		}
		a, ok := thirdField(line[2:])
		if !ok {
			continue
		}
		a, _, _ = strings.Cut(a, "/") // multicast TTL/count
		if !slices.Contains(out, a) {
			if out == nil {
				out = make([]string, 0, 2)
			}
			out = append(out, a)
		}
	}
	return out
}

// thirdField is strings.Fields(s)[2] without building the slice.
func thirdField(s string) (string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			f := strings.Fields(s)
			if len(f) < 3 {
				return "", false
			}
			return f[2], true
		}
	}
	n := 0
	for s != "" {
		s = strings.TrimLeft(s, " \t\n\v\f\r")
		if s == "" {
			break
		}
		end := strings.IndexAny(s, " \t\n\v\f\r")
		if end < 0 {
			end = len(s)
		}
		if n == 2 {
			return s[:end], true
		}
		n++
		s = s[end:]
	}
	return "", false
}
