package sip

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
)

// Real traffic breaks RFC 3261 in a few common ways that tshark shrugs
// off. When sipgo refuses a datagram, repair makes one lenient copy and
// the parse is tried again; the Message keeps the original bytes and says
// what was repaired. Framing stays sipgo's: repair only rewrites text.
//
//   - bare LF line ends (HEP agents, scripts): LF becomes CRLF in the head;
//   - a datagram cut short (snap length, a lost trailing fragment): the
//     missing blank line is added and Content-Length is lowered to the
//     body bytes present;
//   - IPv6 hosts without brackets (`sip:4321@fec0::1:5060`, `SIP/2.0/UDP
//     fe80:0:0:0:1:2:3:4`) get brackets, a ninth group being the port.
//     The Call-ID is never touched.

// Repair names, recorded in Message.Repaired.
const (
	RepairLF        = "bare LF line ends"
	RepairTruncated = "truncated"
	RepairIPv6      = "unbracketed IPv6 host"
)

// repair returns a fixed copy of b and what was fixed (nil when nothing).
func repair(b []byte) ([]byte, []string) {
	var fixed []string
	head, body, hasEnd := splitHead(b)
	if !bytes.Contains(head, []byte("\r\n")) && bytes.Contains(head, []byte("\n")) {
		head = bytes.ReplaceAll(head, []byte("\n"), []byte("\r\n"))
		fixed = append(fixed, RepairLF)
	}
	lines := strings.Split(string(head), "\r\n")
	ipv6 := false
	for i, l := range lines {
		if isCallIDLine(l) {
			continue
		}
		if nl, ok := bracketIPv6(l); ok {
			lines[i], ipv6 = nl, true
		}
	}
	if ipv6 {
		fixed = append(fixed, RepairIPv6)
	}
	if !hasEnd && len(lines) > 1 && !strings.Contains(lines[len(lines)-1], ":") {
		lines = lines[:len(lines)-1] // a header line cut before its colon
	}
	if cl, idx := contentLength(lines); !hasEnd || (idx >= 0 && cl > len(body)) {
		if idx >= 0 && cl > len(body) {
			name := lines[idx][:strings.IndexByte(lines[idx], ':')]
			lines[idx] = name + ": " + strconv.Itoa(len(body))
		}
		fixed = append(fixed, RepairTruncated)
	}
	if len(fixed) == 0 {
		return nil, nil
	}
	var out bytes.Buffer
	for _, l := range lines {
		if l == "" {
			continue
		}
		out.WriteString(l)
		out.WriteString("\r\n")
	}
	out.WriteString("\r\n")
	out.Write(body)
	return out.Bytes(), fixed
}

// splitHead splits at the first blank line (CRLF or bare LF); hasEnd says
// whether there was one.
// The earliest blank line of either form ends the head: a bare-LF head
// followed by a CRLF body must not swallow the body.
func splitHead(b []byte) (head, body []byte, hasEnd bool) {
	crlf := bytes.Index(b, []byte("\r\n\r\n"))
	lf := bytes.Index(b, []byte("\n\n"))
	switch {
	case lf >= 0 && (crlf < 0 || lf < crlf+2):
		return b[:lf], b[lf+2:], true
	case crlf >= 0:
		return b[:crlf], b[crlf+4:], true
	}
	return bytes.TrimRight(b, "\r\n"), nil, false
}

func isCallIDLine(l string) bool {
	name, _, ok := strings.Cut(l, ":")
	if !ok {
		return false
	}
	n := strings.ToLower(strings.TrimSpace(name))
	return n == "call-id" || n == "i"
}

// contentLength finds the Content-Length header line and its value.
func contentLength(lines []string) (int, int) {
	for i, l := range lines {
		name, val, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		n := strings.ToLower(strings.TrimSpace(name))
		if n == "content-length" || n == "l" {
			v, err := strconv.Atoi(strings.TrimSpace(val))
			if err != nil {
				return -1, -1
			}
			return v, i
		}
	}
	return -1, -1
}

// bracketIPv6 brackets unbracketed IPv6 hosts in one line: after "@" in
// URIs and after the transport of a Via ("SIP/2.0/UDP ").
func bracketIPv6(l string) (string, bool) {
	changed := false
	var out strings.Builder
	for {
		i := hostStart(l)
		if i < 0 {
			out.WriteString(l)
			break
		}
		out.WriteString(l[:i])
		l = l[i:]
		end := strings.IndexAny(l, ";>? ,\t")
		if end < 0 {
			end = len(l)
		}
		host, rest := l[:end], l[end:]
		if nh, ok := bracketHost(host); ok {
			host, changed = nh, true
		}
		out.WriteString(host)
		l = rest
	}
	return out.String(), changed
}

// hostStart returns the index where the next host starts, or -1.
func hostStart(l string) int {
	at := strings.IndexByte(l, '@')
	via := -1
	for _, t := range []string{"/UDP ", "/TCP ", "/TLS ", "/SCTP ", "/WS ", "/WSS "} {
		if j := strings.Index(asciiUpper(l), t); j >= 0 && (via < 0 || j < via) {
			via = j + len(t)
		}
	}
	switch {
	case at < 0:
		return via
	case via < 0 || at+1 < via:
		return at + 1
	}
	return via
}

// asciiUpper upper-cases ASCII letters only, so byte offsets stay valid
// (strings.ToUpper may change the length of invalid UTF-8).
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// bracketHost turns "fec0:0:0:0:216:d3ff:fe0d:22c:5060" into
// "[fec0:0:0:0:216:d3ff:fe0d:22c]:5060"; ok is false when host is not an
// unbracketed IPv6 address.
func bracketHost(host string) (string, bool) {
	if strings.Count(host, ":") < 2 || strings.HasPrefix(host, "[") {
		return host, false
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		return "[" + host + "]", true
	}
	i := strings.LastIndexByte(host, ':')
	addr, port := host[:i], host[i+1:]
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return host, false
	}
	if a, err := netip.ParseAddr(addr); err == nil && a.Is6() {
		return "[" + addr + "]:" + port, true
	}
	return host, false
}
