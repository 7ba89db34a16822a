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
//   - line ends other than CRLF in the head, read as tshark reads them: a
//     bare LF (HEP agents, scripts) or a lone CR ends a header line, so a
//     damaged line end never lets the Call-ID swallow the next header; a
//     run of CRs before an LF is one line end (tshark would read "\r\r\n"
//     as a line end and an empty line, ending the head early). They
//     become CRLF. A head with such line ends is repaired before sipgo
//     sees it, since sipgo would otherwise accept the swallowed header;
//   - a Content-Length that is not a number (`Content-Length: bad`): over
//     UDP the body runs to the end of the datagram (RFC 3261 section
//     18.3), so the header is rewritten to the body's length;
//   - a datagram cut short (snap length, a lost trailing fragment): the
//     missing blank line is added and Content-Length is lowered to the
//     body bytes present;
//   - IPv6 hosts without brackets (`sip:4321@fec0::1:5060`, `SIP/2.0/UDP
//     fe80:0:0:0:1:2:3:4`) get brackets, a ninth group being the port.
//     The Call-ID is never touched.

// Repair names, recorded in Message.Repaired.
const (
	RepairLF            = "bare LF line ends"
	RepairCR            = "bare CR line ends"
	RepairContentLength = "Content-Length not a number"
	RepairTruncated     = "truncated"
	RepairIPv6          = "unbracketed IPv6 host"
)

// repair returns a fixed copy of b and what was fixed (nil when nothing).
func repair(b []byte) ([]byte, []string) {
	var fixed []string
	head, body, hasEnd := splitHead(b)
	lines, lf, cr := headLines(head)
	if lf {
		fixed = append(fixed, RepairLF)
	}
	if cr {
		fixed = append(fixed, RepairCR)
	}
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
	cl, idx := contentLength(lines)
	if idx >= 0 && cl == -1 && hasEnd {
		name := lines[idx][:strings.IndexByte(lines[idx], ':')]
		lines[idx] = name + ": " + strconv.Itoa(len(body))
		fixed = append(fixed, RepairContentLength)
	} else if !hasEnd || (idx >= 0 && cl > len(body)) {
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

// lineEnd finds the end of the line starting at b[i:]: the index of its
// first line-end byte (len(b) when none) and the index just past the
// line end. CRLF, a bare LF, a lone CR and a run of CRs before an LF
// each end a line.
func lineEnd(b []byte, i int) (end, next int) {
	j := bytes.IndexAny(b[i:], "\r\n")
	if j < 0 {
		return len(b), len(b)
	}
	end = i + j
	k := end
	for k < len(b) && b[k] == '\r' {
		k++
	}
	if k < len(b) && b[k] == '\n' {
		k++
	}
	return end, k
}

// splitHead splits at the first empty line, with line ends read as
// lineEnd reads them; hasEnd says whether there was one. The earliest
// empty line ends the head: a bare-LF head followed by a CRLF body must
// not swallow the body.
func splitHead(b []byte) (head, body []byte, hasEnd bool) {
	for i := 0; i < len(b); {
		end, next := lineEnd(b, i)
		if end == len(b) {
			break
		}
		if end == i && i > 0 {
			return b[:i], b[next:], true
		}
		i = next
	}
	return bytes.TrimRight(b, "\r\n"), nil, false
}

// headLines splits a head into lines; lf and cr say whether a bare LF
// or a lone (or doubled) CR ended any of them.
func headLines(head []byte) (lines []string, lf, cr bool) {
	for i := 0; i < len(head); {
		end, next := lineEnd(head, i)
		lines = append(lines, string(head[i:end]))
		switch t := head[end:next]; {
		case len(t) == 0, string(t) == "\r\n":
		case string(t) == "\n":
			lf = true
		default:
			cr = true
		}
		i = next
	}
	return lines, lf, cr
}

// oddLineEnds reports whether the head of b ends any line otherwise
// than with CRLF.
func oddLineEnds(b []byte) bool {
	if end := bytes.Index(b, crlfcrlf); end > 0 && crlfOnly(b[:end+2]) {
		// The usual datagram: every line of the head ends in CRLF up to
		// the first empty line, which is then where splitHead ends it
		// (b does not start with a line end, ParseDatagram trimmed them).
		return false
	}
	head, _, _ := splitHead(b)
	for i := bytes.IndexAny(head, "\r\n"); i >= 0 && i < len(head); {
		if head[i] == '\n' || i+1 == len(head) || head[i+1] != '\n' {
			return true
		}
		j := bytes.IndexAny(head[i+2:], "\r\n")
		if j < 0 {
			break
		}
		i += 2 + j
	}
	return false
}

// crlfOnly reports whether every CR and LF in h is part of a CRLF: each
// LF follows a CR and there are as many CRs as LFs.
func crlfOnly(h []byte) bool {
	lfs := 0
	for i := 0; ; {
		j := bytes.IndexByte(h[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		if i == 0 || h[i-1] != '\r' {
			return false
		}
		lfs++
		i++
	}
	return bytes.Count(h, []byte{'\r'}) == lfs
}

func isCallIDLine(l string) bool {
	name, _, ok := strings.Cut(l, ":")
	if !ok {
		return false
	}
	n := strings.ToLower(strings.TrimSpace(name))
	return n == "call-id" || n == "i"
}

// contentLength finds the Content-Length header line and its value:
// (-1, -1) when there is none, (-1, line) when it is not a number,
// (-2, line) when it is negative.
func contentLength(lines []string) (int, int) {
	for i, l := range lines {
		name, val, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		n := strings.ToLower(strings.TrimSpace(name))
		if n == "content-length" || n == "l" {
			v, err := strconv.Atoi(strings.TrimSpace(val))
			switch {
			case err != nil:
				return -1, i
			case v < 0:
				return -2, i // a number, but an error (RFC 4475 3.1.2.7)
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
