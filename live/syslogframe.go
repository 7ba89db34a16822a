package live

import (
	"bytes"
	"regexp"
)

var (
	// <PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID (RFC 5424 header).
	re5424 = regexp.MustCompile(`^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) `)
	// <PRI>Mmm dd hh:mm:ss HOST [TAG[pid]:] (RFC 3164 header).
	re3164 = regexp.MustCompile(`^<(\d{1,3})>(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 0-3]\d \d\d:\d\d:\d\d (\S+) (?:[A-Za-z0-9_.\-/]{1,48}(?:\[\d+\])?: )?`)
	bom    = []byte("\xef\xbb\xbf")
)

// SyslogBodies takes the RFC 5424 or RFC 3164 header off one syslog
// message and returns what AudioCodes wrote, with its priority kept in
// front ("<PRI>"), which audiocodes/syslog reads as the start of a
// datagram. A message in AudioCodes' own framing ("<PRI>[S=n] ...",
// which is neither) is returned as it is. It returns nothing for an
// empty message.
func SyslogBodies(b []byte) [][]byte {
	b = bytes.TrimRight(b, "\r\n\x00")
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if m := re5424.FindSubmatchIndex(b); m != nil {
		pri := b[m[2]:m[3]]
		rest, ok := skipSD(b[m[1]:])
		if !ok {
			rest = b[m[1]:] // no valid STRUCTURED-DATA: the message starts here
		}
		rest = bytes.TrimPrefix(rest, bom)
		return [][]byte{withPri(pri, rest)}
	}
	if m := re3164.FindSubmatchIndex(b); m != nil {
		return [][]byte{withPri(b[m[2]:m[3]], b[m[1]:])}
	}
	return [][]byte{b}
}

func withPri(pri, msg []byte) []byte {
	out := make([]byte, 0, len(pri)+2+len(msg))
	out = append(out, '<')
	out = append(out, pri...)
	out = append(out, '>')
	return append(out, msg...)
}

// skipSD skips RFC 5424 STRUCTURED-DATA ("-" or one or more
// [SD-ID PARAM="VALUE" ...] elements) and the space after it. It
// reports false when what follows is not valid STRUCTURED-DATA.
func skipSD(b []byte) ([]byte, bool) {
	if len(b) > 0 && b[0] == '-' {
		return trimOneSpace(b[1:]), true
	}
	if len(b) == 0 || b[0] != '[' {
		return nil, false
	}
	i := 0
	for i < len(b) && b[i] == '[' {
		n, ok := sdElement(b[i:])
		if !ok {
			return nil, false
		}
		i += n
	}
	return trimOneSpace(b[i:]), true
}

// sdElement returns the length of one [SD-ID PARAM="VALUE"...] element.
func sdElement(b []byte) (int, bool) {
	name := func(i int) int { // end of an SD-NAME starting at i
		j := i
		for j < len(b) && j-i < 32 && b[j] > ' ' && b[j] < 127 && b[j] != '=' && b[j] != ']' && b[j] != '"' {
			j++
		}
		return j
	}
	i := name(1)
	if i == 1 {
		return 0, false
	}
	for i < len(b) {
		switch b[i] {
		case ']':
			return i + 1, true
		case ' ':
			j := name(i + 1)
			if j == i+1 || j+1 >= len(b) || b[j] != '=' || b[j+1] != '"' {
				return 0, false
			}
			k := j + 2
			for k < len(b) && b[k] != '"' {
				if b[k] == '\\' {
					k++
				}
				k++
			}
			if k >= len(b) {
				return 0, false
			}
			i = k + 1
		default:
			return 0, false
		}
	}
	return 0, false
}

func trimOneSpace(b []byte) []byte {
	if len(b) > 0 && b[0] == ' ' {
		return b[1:]
	}
	return b
}
