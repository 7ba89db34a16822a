package web

import (
	"net/url"
	"strings"
	"testing"
)

// browserTarget is where a browser on https://sbcwatch.example goes for
// Location s, the way the URL standard reads it: tabs and newlines
// dropped, leading and trailing C0 controls and spaces trimmed, "\" read
// as "/".
func browserTarget(s string) (*url.URL, error) {
	s = strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(s)
	s = strings.TrimFunc(s, func(r rune) bool { return r <= 0x20 })
	s = strings.ReplaceAll(s, `\`, "/")
	base, _ := url.Parse("https://sbcwatch.example/login")
	ref, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	return base.ResolveReference(ref), nil
}

// FuzzSafeNext: whatever next a sign-in carries, the redirect stays on
// this origin, and a next that is kept is kept unchanged.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/", "/calls/x?sbc=a", "/\t/evil.example", "//evil.example", `/\evil.example`,
		"https://evil.example", "/%2F/evil", "/ /x", "/\u3000/x", "\x00//evil", "/.//evil", "/..//evil"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := safeNext(next)
		if got != "/" && got != next {
			t.Fatalf("safeNext(%q) = %q: neither the input nor /", next, got)
		}
		u, err := browserTarget(got)
		if err != nil {
			t.Fatalf("safeNext(%q) = %q, which does not parse: %v", next, got, err)
		}
		if u.Scheme != "https" || u.Host != "sbcwatch.example" {
			t.Fatalf("safeNext(%q) = %q leads a browser to %s", next, got, u)
		}
	})
}
