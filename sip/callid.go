package sip

import (
	"strings"
	"unicode/utf8"
)

// CallIDText returns the one form of a Call-ID that sbcwatch prints, stores
// and looks up (JSON output, the store, --call, the API). A Call-ID that
// is valid UTF-8 is returned unchanged, so it matches tshark and the SBC's
// own logs. One that is not, or that holds a control character (a NUL
// would be cut or replaced by the store), would be mangled by JSON
// (U+FFFD) and by PostgreSQL; its bytes are escaped instead: each byte
// that is not part of valid UTF-8, and each control character, becomes
// \xNN (lower-case hex) and each backslash becomes \\, so the text is
// valid UTF-8 without control characters and CallIDBytes gives the
// original bytes back.
func CallIDText(raw string) string {
	if !needsEscape(raw) {
		return raw
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(raw) + 8)
	for i := 0; i < len(raw); {
		r, n := utf8.DecodeRuneInString(raw[i:])
		switch {
		case r == utf8.RuneError && n <= 1, r < 0x20, r == 0x7f:
			c := raw[i]
			b.WriteString(`\x`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		case r == '\\':
			b.WriteString(`\\`)
		default:
			b.WriteString(raw[i : i+n])
		}
		i += max(n, 1)
	}
	return b.String()
}

// CallIDBytes reverses CallIDText: for a text holding \xNN escapes of
// bytes that are not valid UTF-8 it returns the original bytes; any
// other text is returned as it is. (A valid Call-ID that itself
// contains such a literal escape would read back escaped; real
// Call-IDs do not.)
func CallIDBytes(text string) string {
	if !strings.Contains(text, `\x`) {
		return text
	}
	var b strings.Builder
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c == '\\' && i+1 < len(text) {
			switch {
			case text[i+1] == '\\':
				b.WriteByte('\\')
				i++
				continue
			case text[i+1] == 'x' && i+3 < len(text) && isHex(text[i+2]) && isHex(text[i+3]):
				b.WriteByte(unhex(text[i+2])<<4 | unhex(text[i+3]))
				i += 3
				continue
			}
		}
		b.WriteByte(c)
	}
	out := b.String()
	if !needsEscape(out) || CallIDText(out) != text {
		return text // not an escaped form
	}
	return out
}

// needsEscape: raw is not valid UTF-8 or holds a control character.
func needsEscape(raw string) bool {
	if !utf8.ValidString(raw) {
		return true
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] < 0x20 || raw[i] == 0x7f {
			return true
		}
	}
	return false
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}
