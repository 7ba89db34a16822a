package sip

import "bytes"

// sipVersion is the only protocol version a start line may carry.
const sipVersion = "SIP/2.0"

// LooksLikeSIP reports whether b (the start of a datagram or a stream)
// begins with a SIP start line: a request line "METHOD sip:… SIP/2.0" (or
// sips:, tel:) whose method is an RFC 3261 token, or a status line
// "SIP/2.0 NNN". Leading CRLF keep-alives are skipped. When the first line
// is complete it must also end in " SIP/2.0" (requests); when b ends
// before the line does, the prefix decides. It looks at content only,
// never at ports, and does not allocate.
func LooksLikeSIP(b []byte) bool {
	for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	line := b
	complete := false
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line = bytes.TrimSuffix(b[:i], []byte{'\r'})
		complete = true
	}
	if isStatusLine(line) {
		return true
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !isToken(line[:sp]) {
		return false
	}
	rest := line[sp+1:]
	if !hasSchemePrefix(rest) {
		return false
	}
	if !complete {
		return true
	}
	sp2 := bytes.IndexByte(rest, ' ')
	return sp2 > 0 && string(rest[sp2+1:]) == sipVersion
}

// isStatusLine reports whether line starts "SIP/2.0 NNN" followed by the
// end of the line or a space.
func isStatusLine(line []byte) bool {
	if len(line) < len(sipVersion)+4 || !bytes.EqualFold(line[:len(sipVersion)], []byte(sipVersion)) || line[len(sipVersion)] != ' ' {
		return false
	}
	code := line[len(sipVersion)+1:]
	for i := range 3 {
		if code[i] < '0' || code[i] > '9' {
			return false
		}
	}
	return len(code) == 3 || code[3] == ' '
}

// isStartLine is the stricter check used to resynchronise a stream: a
// complete line (without its CRLF) that is a status line, or a request
// line "token SP uri SP SIP/2.0" whose URI has a scheme.
func isStartLine(line []byte) bool {
	if isStatusLine(line) {
		return true
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !isToken(line[:sp]) {
		return false
	}
	rest := line[sp+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || string(rest[sp2+1:]) != sipVersion {
		return false
	}
	colon := bytes.IndexByte(rest[:sp2], ':')
	return colon > 0 && isToken(rest[:colon])
}

var schemes = [][]byte{[]byte("sip:"), []byte("sips:"), []byte("tel:")}

func hasSchemePrefix(b []byte) bool {
	for _, s := range schemes {
		if len(b) >= len(s) && bytes.EqualFold(b[:len(s)], s) {
			return true
		}
	}
	return false
}

// isToken reports whether b is a non-empty RFC 3261 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case bytes.IndexByte([]byte("-.!%*_+`'~"), c) >= 0:
		default:
			return false
		}
	}
	return true
}
