package suggest

import (
	"strings"
	"testing"
)

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "abc", 3}, {"kitten", "sitting", 3},
		{"short_cal", "short_call", 1}, {"methd", "method", 1}, {"ab", "ba", 2},
	} {
		if got := Distance(c.a, c.b); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := Distance(c.b, c.a); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d (symmetric)", c.b, c.a, got, c.want)
		}
	}
}

func TestNearest(t *testing.T) {
	keys := []string{"short_call", "retention_days", "refer_window", "fqdns", "format"}
	prefix := func(s, c string) bool { return strings.HasPrefix(c, s) || strings.HasPrefix(s, c) }
	for _, c := range []struct {
		s       string
		related func(s, c string) bool
		want    string
	}{
		{"short_cal", nil, "short_call"},
		{"retention_dayz", nil, "retention_days"},
		{"fqdn", nil, "fqdns"},
		{"zzzzzz", nil, ""}, // nothing close
		// "ret" is 11 edits from retention_days, but a prefix of it.
		{"ret", nil, ""},
		{"ret", prefix, "retention_days"},
		{"forms", nil, "format"},
	} {
		if got := Nearest(c.s, keys, c.related); got != c.want {
			t.Errorf("Nearest(%q) = %q, want %q", c.s, got, c.want)
		}
	}
	// Order of candidates does not matter on a tie.
	a := Nearest("ab", []string{"ax", "ay"}, nil)
	b := Nearest("ab", []string{"ay", "ax"}, nil)
	if a != "ax" || b != "ax" {
		t.Errorf("tie: %q / %q, want ax both times", a, b)
	}
}
