package report

import "testing"

func TestSpan(t *testing.T) {
	for _, tc := range []struct {
		s    float64
		want string
	}{
		{0.0034, "3 ms"}, {28, "28.0 s"}, {59.94, "59.9 s"}, {245, "4 min 5 s"}, {300, "5 min"},
		{3 * 3600, "3 h"}, {3*3600 + 12*60 + 20, "3 h 12 min"}, {86400, "1 d"},
		{527457049.8, "6104 d 19 h"}, {6*86400 + 3*3600 + 59, "6 d 3 h"}, {-90, "-1 min 30 s"},
	} {
		if got := Span(tc.s); got != tc.want {
			t.Errorf("Span(%v) = %q, want %q", tc.s, got, tc.want)
		}
	}
}
