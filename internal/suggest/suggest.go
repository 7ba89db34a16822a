// Package suggest finds the known name nearest to a mistyped one, for
// "did you mean …?" hints (unknown flags, unknown configuration keys).
package suggest

// Nearest returns the candidate closest to s by edit distance, or "" when
// none is close: at most max(2, len(s)/3) edits away. A candidate that
// related(s, candidate) reports as related (e.g. a prefix of s, or s of
// it) counts as at most 2 edits away; related may be nil. Ties go to the
// candidate first in byte order, so the answer does not depend on the
// order of candidates.
func Nearest(s string, candidates []string, related func(s, candidate string) bool) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := Distance(s, c)
		if related != nil && related(s, c) {
			d = min(d, 2)
		}
		if d < bestD || d == bestD && c < best {
			best, bestD = c, d
		}
	}
	if bestD <= max(2, len(s)/3) {
		return best
	}
	return ""
}

// Distance is the Levenshtein distance of a and b, in bytes.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
