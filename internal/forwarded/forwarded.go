// Package forwarded decides whether a request reached sbcwatch over
// HTTPS: directly (the API serves TLS itself), or through a reverse proxy
// that terminated TLS and said so in X-Forwarded-Proto. The header is
// believed only from the proxies an operator listed (--trusted-proxy);
// from anyone else it is ignored, so a client cannot claim HTTPS to get
// a cookie marked Secure over plain HTTP, nor the reverse.
package forwarded

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Trusted is a set of proxy addresses. The zero value trusts nobody.
type Trusted struct{ prefixes []netip.Prefix }

// Parse reads addresses and CIDR prefixes (for example "127.0.0.1" or
// "10.0.0.0/8"), separated by commas or given one per element.
func Parse(list ...string) (Trusted, error) {
	var t Trusted
	for _, item := range list {
		for _, s := range strings.Split(item, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if p, err := netip.ParsePrefix(s); err == nil {
				t.prefixes = append(t.prefixes, p.Masked())
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				return Trusted{}, fmt.Errorf("forwarded: trusted proxy %q is not an IP address or CIDR prefix", s)
			}
			a = a.Unmap()
			t.prefixes = append(t.prefixes, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return t, nil
}

// Empty reports whether no proxy is trusted.
func (t Trusted) Empty() bool { return len(t.prefixes) == 0 }

// Contains reports whether the peer address (ip:port or ip) is trusted.
func (t Trusted) Contains(remoteAddr string) bool {
	host := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

type key struct{}

// Middleware marks requests that a trusted proxy forwarded with
// X-Forwarded-Proto: https as secure (see Secure).
func (t Trusted) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !t.Empty() && t.Contains(r.RemoteAddr) {
			// The proxy closest to us wrote the last value.
			vals := strings.Split(r.Header.Get("X-Forwarded-Proto"), ",")
			if strings.EqualFold(strings.TrimSpace(vals[len(vals)-1]), "https") {
				r = r.WithContext(context.WithValue(r.Context(), key{}, true))
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Secure reports whether the request came over HTTPS: TLS on this
// connection, or a trusted proxy's X-Forwarded-Proto: https.
func Secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	v, _ := r.Context().Value(key{}).(bool)
	return v
}
