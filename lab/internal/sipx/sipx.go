// Package sipx is the lab's minimal SIP message model: ordered headers, a
// body, exact serialisation (Content-Length computed), stream framing for
// TLS connections and datagram parsing for UDP. The lab writes every
// message itself, so the text on the wire is fully under its control.
package sipx

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Header is one header line.
type Header struct{ Name, Value string }

// Msg is a SIP request or response.
type Msg struct {
	// StartLine is "METHOD uri SIP/2.0" or "SIP/2.0 code reason".
	StartLine string
	Headers   []Header
	Body      []byte
}

// NewRequest starts a request.
func NewRequest(method, uri string) *Msg {
	return &Msg{StartLine: method + " " + uri + " SIP/2.0"}
}

// IsRequest reports whether m is a request.
func (m *Msg) IsRequest() bool { return !strings.HasPrefix(m.StartLine, "SIP/2.0 ") }

// Method is the request method, or the CSeq method of a response.
func (m *Msg) Method() string {
	if m.IsRequest() {
		method, _, _ := strings.Cut(m.StartLine, " ")
		return method
	}
	_, method := m.CSeq()
	return method
}

// RequestURI is the Request-URI of a request.
func (m *Msg) RequestURI() string {
	f := strings.Fields(m.StartLine)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// Status is the status code of a response (0 for a request).
func (m *Msg) Status() int {
	if m.IsRequest() {
		return 0
	}
	f := strings.Fields(m.StartLine)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// Get returns the first value of a header (case-insensitive).
func (m *Msg) Get(name string) string {
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// All returns every value of a header, in order.
func (m *Msg) All(name string) []string {
	var out []string
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			out = append(out, h.Value)
		}
	}
	return out
}

// Add appends a header.
func (m *Msg) Add(name, value string) *Msg {
	m.Headers = append(m.Headers, Header{name, value})
	return m
}

// Set replaces the first header of that name, or appends it.
func (m *Msg) Set(name, value string) *Msg {
	for i, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			m.Headers[i].Value = value
			return m
		}
	}
	return m.Add(name, value)
}

// CallID is the Call-ID header.
func (m *Msg) CallID() string { return m.Get("Call-ID") }

// CSeq returns the CSeq number and method.
func (m *Msg) CSeq() (int, string) {
	n, method, _ := strings.Cut(strings.TrimSpace(m.Get("CSeq")), " ")
	v, _ := strconv.Atoi(n)
	return v, strings.TrimSpace(method)
}

// Bytes serialises the message; Content-Length is written last among the
// headers and always matches the body.
func (m *Msg) Bytes() []byte {
	var b bytes.Buffer
	b.WriteString(m.StartLine)
	b.WriteString("\r\n")
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, "Content-Length") {
			continue
		}
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(h.Value)
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(m.Body))
	b.Write(m.Body)
	return b.Bytes()
}

// Response builds a response to req copying Via, From, To, Call-ID and
// CSeq. toTag is added to To when To has no tag yet and toTag is set.
func Response(req *Msg, code int, reason, toTag string) *Msg {
	r := &Msg{StartLine: fmt.Sprintf("SIP/2.0 %d %s", code, reason)}
	for _, v := range req.All("Via") {
		r.Add("Via", v)
	}
	r.Add("From", req.Get("From"))
	to := req.Get("To")
	if toTag != "" && Tag(to) == "" {
		to += ";tag=" + toTag
	}
	r.Add("To", to)
	r.Add("Call-ID", req.CallID())
	r.Add("CSeq", req.Get("CSeq"))
	return r
}

// Tag returns the tag parameter of a From/To value.
func Tag(v string) string {
	if i := strings.LastIndex(v, ">"); i >= 0 {
		v = v[i+1:]
	}
	for _, p := range strings.Split(v, ";") {
		if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "tag") {
			return val
		}
	}
	return ""
}

// URI returns the URI inside <...> of a name-addr, or the value itself.
func URI(v string) string {
	i := strings.Index(v, "<")
	j := strings.LastIndex(v, ">")
	if i >= 0 && j > i {
		return v[i+1 : j]
	}
	if k := strings.Index(v, ";"); k >= 0 {
		return strings.TrimSpace(v[:k])
	}
	return strings.TrimSpace(v)
}

// User returns the user part of a SIP URI or name-addr.
func User(v string) string {
	u := URI(v)
	u = strings.TrimPrefix(strings.TrimPrefix(u, "sips:"), "sip:")
	user, _, ok := strings.Cut(u, "@")
	if !ok {
		return ""
	}
	user, _, _ = strings.Cut(user, ";")
	return user
}

// Branch returns the branch parameter of the top Via.
func (m *Msg) Branch() string {
	for _, p := range strings.Split(m.Get("Via"), ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "branch") {
			return v
		}
	}
	return ""
}

// ErrTooLarge is returned for a message above the framing limit.
var ErrTooLarge = errors.New("sipx: message too large")

const maxMsg = 64 << 10

// Read reads one message from a stream (TLS or TCP), skipping CRLF
// keep-alives between messages.
func Read(r *bufio.Reader) (*Msg, error) {
	var head []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if err == io.EOF && len(head) == 0 && line == "" {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("sipx: read header: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if len(head) == 0 {
				continue
			}
			break
		}
		head = append(head, line)
		if len(head) > 200 {
			return nil, ErrTooLarge
		}
	}
	m, err := parseHead(head)
	if err != nil {
		return nil, err
	}
	n, _ := strconv.Atoi(strings.TrimSpace(m.Get("Content-Length")))
	if n < 0 || n > maxMsg {
		return nil, ErrTooLarge
	}
	if n > 0 {
		m.Body = make([]byte, n)
		if _, err := io.ReadFull(r, m.Body); err != nil {
			return nil, fmt.Errorf("sipx: read body: %w", err)
		}
	}
	return m, nil
}

// Parse parses one message from a datagram.
func Parse(b []byte) (*Msg, error) {
	hdr, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok {
		return nil, errors.New("sipx: datagram without end of headers")
	}
	m, err := parseHead(strings.Split(string(hdr), "\r\n"))
	if err != nil {
		return nil, err
	}
	if len(body) > 0 {
		m.Body = append([]byte(nil), body...)
	}
	return m, nil
}

func parseHead(lines []string) (*Msg, error) {
	if len(lines) == 0 || (!strings.HasSuffix(lines[0], " SIP/2.0") && !strings.HasPrefix(lines[0], "SIP/2.0 ")) {
		return nil, fmt.Errorf("sipx: bad start line %q", strings.Join(lines[:min(1, len(lines))], ""))
	}
	m := &Msg{StartLine: lines[0]}
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("sipx: bad header line %q", l)
		}
		m.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	return m, nil
}

// IDs derives reproducible identifiers (Call-IDs, tags, branches) from a
// seed, so each scenario produces the same Call-IDs on every run.
type IDs struct{ seed string }

// NewIDs returns a generator for seed.
func NewIDs(seed string) IDs { return IDs{seed} }

// Hex returns n hex digits derived from the seed and the parts.
func (g IDs) Hex(n int, parts ...string) string {
	h := sha256.Sum256([]byte(g.seed + "\x00" + strings.Join(parts, "\x00")))
	s := hex.EncodeToString(h[:])
	for len(s) < n {
		s += s
	}
	return s[:n]
}

// GUID returns a GUID-shaped identifier.
func (g IDs) GUID(parts ...string) string {
	s := g.Hex(32, parts...)
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// Branch returns an RFC 3261 branch.
func (g IDs) Branch(parts ...string) string { return "z9hG4bK" + g.Hex(16, parts...) }

// SDP returns a small audio offer/answer from addr:port.
func SDP(user, addr string, port int, sessID string) []byte {
	return []byte("v=0\r\n" +
		"o=" + user + " " + sessID + " 1 IN IP4 " + addr + "\r\n" +
		"s=-\r\n" +
		"c=IN IP4 " + addr + "\r\n" +
		"t=0 0\r\n" +
		"m=audio " + strconv.Itoa(port) + " RTP/AVP 8 0 101\r\n" +
		"a=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n" +
		"a=ptime:20\r\n" +
		"a=sendrecv\r\n")
}
