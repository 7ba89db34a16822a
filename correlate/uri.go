package correlate

import (
	"net/netip"
	"net/url"
	"strings"
)

// sipURI holds the parts of a SIP URI that decide whether a Request-URI
// is "the" Refer-To target.
type sipURI struct {
	scheme string
	user   string
	host   string
	port   string
	params map[string]string
}

// parseURI reads a SIP URI as it appears in a Request-URI or in a
// name-addr header value (Refer-To, Contact): an optional display name
// and angle brackets, then scheme:user@host:port;params?headers. The
// escaped headers part (?Replaces=...) is dropped: it never becomes part
// of the Request-URI. ok is false when there is no host.
func parseURI(s string) (u sipURI, ok bool) {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		s = s[i+1:]
		if j := strings.IndexByte(s, '>'); j >= 0 {
			s = s[:j]
		}
	}
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '?'); i >= 0 {
		s = s[:i]
	}
	scheme, rest, found := strings.Cut(s, ":")
	if !found {
		return u, false
	}
	u.scheme = strings.ToLower(strings.TrimSpace(scheme))
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		user := rest[:at]
		if i := strings.IndexByte(user, ':'); i >= 0 { // user:password
			user = user[:i]
		}
		u.user = unescape(user)
		rest = rest[at+1:]
	}
	parts := strings.Split(rest, ";")
	hostport := strings.TrimSpace(parts[0])
	if strings.HasPrefix(hostport, "[") {
		if j := strings.IndexByte(hostport, ']'); j >= 0 {
			u.host = hostport[1:j]
			u.port = strings.TrimPrefix(hostport[j+1:], ":")
		}
	} else if h, p, ok := strings.Cut(hostport, ":"); ok {
		u.host, u.port = h, p
	} else {
		u.host = hostport
	}
	u.host = strings.ToLower(strings.TrimSuffix(u.host, "."))
	if u.host == "" {
		return u, false
	}
	u.params = map[string]string{}
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		u.params[strings.ToLower(unescape(k))] = strings.ToLower(unescape(v))
	}
	return u, true
}

func unescape(s string) string {
	if v, err := url.PathUnescape(s); err == nil {
		return v
	}
	return s
}

// sameURI reports whether two URIs name the same target in the sense
// Microsoft requires of the new INVITE after a REFER ("Request-URI is the
// exact Refer-To"), forgiving only what transport and formatting change:
// angle brackets, escaped headers, case of scheme, host and parameter
// names and values, parameter order and %-escaping. User part and port
// must be equal, and both must carry the same set of parameters: an SBC
// that drops x-m or x-t has not sent the exact Refer-To.
func sameURI(a, b string) bool {
	ua, oka := parseURI(a)
	ub, okb := parseURI(b)
	if !oka || !okb {
		return false
	}
	if ua.scheme != ub.scheme || ua.user != ub.user || ua.host != ub.host || ua.port != ub.port {
		return false
	}
	if len(ua.params) != len(ub.params) {
		return false
	}
	for k, v := range ua.params {
		if w, ok := ub.params[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// uriUser returns the user part of a URI, "" when none.
func uriUser(s string) string {
	u, ok := parseURI(s)
	if !ok {
		return ""
	}
	return u.user
}

// uriHost returns the host of a URI and whether it is an IP literal.
func uriHost(s string) (host string, isIP bool) {
	u, ok := parseURI(s)
	if !ok {
		return "", false
	}
	_, err := netip.ParseAddr(u.host)
	return u.host, err == nil
}
