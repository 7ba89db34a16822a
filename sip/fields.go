package sip

import (
	"bytes"
	"net/url"
	"slices"
	"strconv"
	"strings"

	gs "github.com/emiago/sipgo/sip"
)

// splitList splits a header value on the commas that separate list
// elements, ignoring commas inside quotes or angle brackets. Elements are
// trimmed; empty ones are dropped.
func splitList(v string) []string {
	var out []string
	for _, s := range splitOutside(v, ',') {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// splitParams splits "a ;b=1 ;c="x;y"" on semicolons outside quotes and
// angle brackets; elements are trimmed, empty ones kept.
func splitParams(v string) []string { return splitOutside(v, ';') }

// splitOutside splits v on sep where sep is outside double quotes (with
// backslash escapes) and angle brackets, trimming each element.
func splitOutside(v string, sep byte) []string {
	var out []string
	for {
		i := indexOutside(v, sep)
		if i < 0 {
			return append(out, strings.TrimSpace(v))
		}
		out = append(out, strings.TrimSpace(v[:i]))
		v = v[i+1:]
	}
}

// indexOutside returns the index of the first sep in v outside double
// quotes (with backslash escapes) and angle brackets, or -1: the scanner
// of splitOutside and of the fast path's nextListElem. A scan may start
// afresh after a sep it found: quotes and brackets are closed there.
func indexOutside(v string, sep byte) int {
	inQuote, inAngle, escaped := false, false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case escaped:
			escaped = false
		case inQuote && c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case c == '<':
			inAngle = true
		case c == '>':
			inAngle = false
		case c == sep && !inAngle:
			return i
		}
	}
	return -1
}

// unquote removes surrounding double quotes and backslash escapes.
func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	s = s[1 : len(s)-1]
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// reason is one element of a Reason header (RFC 3326).
type reason struct {
	protocol string
	cause    int
	text     string
}

// parseReasons parses every element of every Reason header value,
// tolerating spaces around ';' and '=' and elements that fail to parse.
func parseReasons(values []string) []reason {
	var out []reason
	for _, v := range values {
		for _, el := range splitList(v) {
			parts := splitParams(el)
			r := reason{protocol: strings.TrimSpace(parts[0])}
			for _, p := range parts[1:] {
				k, val, _ := strings.Cut(p, "=")
				switch strings.ToLower(strings.TrimSpace(k)) {
				case "cause":
					if n, err := strconv.Atoi(strings.TrimSpace(val)); err == nil {
						r.cause = n
					}
				case "text":
					r.text = unquote(val)
				}
			}
			out = append(out, r)
		}
	}
	return out
}

// q850 picks the Q.850 cause and the best text from Reason elements: the
// Q.850 element wins, else the first element with a text.
func q850(rs []reason) (cause int, text string) {
	for _, r := range rs {
		if strings.EqualFold(r.protocol, "Q.850") {
			if cause == 0 {
				cause = r.cause
			}
			if text == "" {
				text = r.text
			}
		}
	}
	if text == "" {
		for _, r := range rs {
			if r.text != "" {
				return cause, r.text
			}
		}
	}
	return cause, text
}

// addrSpec is the URI of a name-addr or addr-spec header value, parsed
// leniently: display name and header parameters dropped.
type addrSpec struct {
	uri    string // as written, without angle brackets
	params string // header parameters after the URI, without the ';'
}

// parseAddr extracts the URI of "Name <uri>;p=1" or "uri;p=1".
func parseAddr(v string) addrSpec {
	v = strings.TrimSpace(v)
	if lt := indexOutsideQuotes(v, '<'); lt >= 0 {
		rest := v[lt+1:]
		gt := strings.IndexByte(rest, '>')
		if gt < 0 {
			return addrSpec{uri: strings.TrimSpace(rest)}
		}
		params := strings.TrimSpace(rest[gt+1:])
		return addrSpec{uri: strings.TrimSpace(rest[:gt]), params: strings.TrimPrefix(params, ";")}
	}
	// addr-spec form: parameters after ';' belong to the header.
	if i := strings.IndexByte(v, ';'); i >= 0 {
		return addrSpec{uri: strings.TrimSpace(v[:i]), params: v[i+1:]}
	}
	return addrSpec{uri: v}
}

func indexOutsideQuotes(s string, c byte) int {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && inQuote:
			i++
		case s[i] == '"':
			inQuote = !inQuote
		case s[i] == c && !inQuote:
			return i
		}
	}
	return -1
}

// URIUser returns the user part of a SIP or SIPS URI, or the number of a
// tel URI, as written ("" when s does not parse). Angle brackets and a
// display name around the URI are allowed.
func URIUser(s string) string { return uriUser(lenientURI(parseAddr(s).uri)) }

// URIHost returns the host of a SIP or SIPS URI ("" for other schemes or
// when s does not parse); an IPv6 host keeps its brackets. Angle brackets
// and a display name around the URI are allowed.
func URIHost(s string) string {
	u := lenientURI(parseAddr(s).uri)
	h := uriHost(u)
	if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
		return "[" + h + "]"
	}
	return h
}

// uriUser returns the user part of a SIP URI, or the number of a tel URI
// (visual separators kept, parameters dropped).
func uriUser(u gs.Uri) string {
	if u.Scheme == "sip" || u.Scheme == "sips" || u.Scheme == "" {
		return u.User
	}
	if u.Scheme == "tel" {
		n, _, _ := strings.Cut(u.Raw(), ";")
		return n
	}
	return ""
}

// uriHost returns the host of a SIP URI ("" for other schemes).
func uriHost(u gs.Uri) string {
	if u.Scheme == "sip" || u.Scheme == "sips" || u.Scheme == "" {
		return u.Host
	}
	return ""
}

// lenientURI parses a URI string; on failure it returns a Uri carrying
// only the scheme so callers degrade gracefully.
func lenientURI(s string) gs.Uri {
	var u gs.Uri
	if err := gs.ParseUri(s, &u); err != nil {
		scheme, _, _ := strings.Cut(s, ":")
		return gs.Uri{Scheme: strings.ToLower(scheme)}
	}
	return u
}

// embeddedReplaces returns the unescaped Replaces header embedded in a
// Refer-To URI ("sip:x@y?Replaces=abc%3Bto-tag%3D1"), or "".
func embeddedReplaces(referTo string) string {
	_, hdrs, ok := strings.Cut(referTo, "?")
	if !ok {
		return ""
	}
	for _, kv := range strings.Split(hdrs, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if strings.EqualFold(k, "Replaces") {
			if u, err := url.QueryUnescape(v); err == nil {
				return u
			}
			return v
		}
	}
	return ""
}

// firstLine returns the first line of b, without CR/LF, leading blank
// lines skipped.
func firstLine(b []byte) string {
	b = bytes.TrimLeft(b, "\r\n")
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return string(bytes.TrimRight(b, "\r \t"))
}

// sdpAddrs returns the distinct connection addresses of the c= lines of
// an SDP body (also inside a multipart body).
func sdpAddrs(body []byte) []string {
	var out []string
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimSpace(line)
		if !bytes.HasPrefix(line, []byte("c=")) {
			continue
		}
		f := strings.Fields(string(line[2:]))
		if len(f) < 3 {
			continue
		}
		a, _, _ := strings.Cut(f[2], "/") // multicast TTL/count
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
