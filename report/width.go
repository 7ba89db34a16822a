package report

import (
	"fmt"
	"math"
)

// Span is a duration in seconds as a person reads it: "850 ms",
// "28.0 s", "4 min 5 s", "3 h 12 min", "6 d 3 h".
func Span(seconds float64) string {
	if math.IsNaN(seconds) || math.IsInf(seconds, 0) {
		return "-"
	}
	neg := ""
	if seconds < 0 {
		neg, seconds = "-", -seconds
	}
	switch {
	case seconds < 1:
		return fmt.Sprintf("%s%.0f ms", neg, seconds*1000)
	case seconds < 60:
		return fmt.Sprintf("%s%.1f s", neg, seconds)
	}
	s := int64(math.Round(seconds))
	d, h, m := s/86400, s%86400/3600, s%3600/60
	switch {
	case d > 0 && h > 0:
		return fmt.Sprintf("%s%d d %d h", neg, d, h)
	case d > 0:
		return fmt.Sprintf("%s%d d", neg, d)
	case h > 0 && m > 0:
		return fmt.Sprintf("%s%d h %d min", neg, h, m)
	case h > 0:
		return fmt.Sprintf("%s%d h", neg, h)
	case s%60 > 0:
		return fmt.Sprintf("%s%d min %d s", neg, m, s%60)
	}
	return fmt.Sprintf("%s%d min", neg, m)
}
