package store

import (
	"bytes"
	"encoding/json"
)

// jsonb marshals v for a jsonb column. PostgreSQL's jsonb refuses the
// NUL character (\u0000), which hostile or broken input can put into any
// string sbcwatch records (an SNI, a header); it becomes U+FFFD so one bad
// string cannot make a whole save fail.
func jsonb(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return replaceNUL(b), nil
}

// replaceNUL rewrites every \u0000 escape in JSON text to \ufffd. In JSON
// each backslash starts an escape, so escapes are skipped pairwise and a
// literal backslash followed by "u0000" is left alone.
func replaceNUL(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\u0000`)) {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			out = append(out, b[i])
			continue
		}
		if bytes.HasPrefix(b[i:], []byte(`\u0000`)) {
			out = append(out, `\ufffd`...)
			i += 5
			continue
		}
		out = append(out, b[i], b[i+1])
		i++
	}
	return out
}
