package report

import "bytes"

// appendIndented appends src, compact JSON as json.Marshal writes it
// (what the spool holds), indented exactly as json.MarshalIndent(
// json.RawMessage(src), prefix, indent) would: the same output without
// json's validation and compaction pass, which cost more than the rest
// of writing a big report. TestAppendIndented and FuzzAppendIndented
// check it against encoding/json. src must be valid JSON.
func appendIndented(dst, src []byte, prefix, indent string) []byte {
	depth := 0
	open := false // after '{' or '[': the newline waits, so {} and [] stay empty
	newline := func(d int) {
		dst = append(dst, '\n')
		dst = append(dst, prefix...)
		for range d {
			dst = append(dst, indent...)
		}
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		if open && c != '}' && c != ']' {
			open = false
			depth++
			newline(depth)
		}
		switch c {
		case '"':
			j := stringEnd(src, i)
			dst = append(dst, src[i:j]...)
			i = j - 1
		case '{', '[':
			open = true
			dst = append(dst, c)
		case ',':
			dst = append(dst, c)
			newline(depth)
		case ':':
			dst = append(dst, c, ' ')
		case '}', ']':
			if open {
				open = false
			} else {
				depth--
				newline(depth)
			}
			dst = append(dst, c)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// stringEnd returns the index just after the string that starts with
// the quote at src[i] (len(src) when it does not end).
func stringEnd(src []byte, i int) int {
	j := i + 1
	k := bytes.IndexByte(src[j:], '"')
	if k < 0 {
		return len(src)
	}
	if bytes.IndexByte(src[j:j+k], '\\') < 0 {
		return j + k + 1 // no escape: the usual case
	}
	for j < len(src) && src[j] != '"' {
		if src[j] == '\\' {
			j++
		}
		j++
	}
	return min(j+1, len(src))
}
