package store

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// The hot rows (SIP messages) are written in COPY's binary format by
// hand rather than through pgx's []any rows: no boxing, no per-value
// type lookup, and text goes from the parsed message straight into the
// buffer. The column types are fixed by the migrations (messageCols);
// TestMessageRoundTrip reads every column back.

// copyHeader starts a binary COPY stream: signature, flags, no extension.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// microsecondsY2K is 2000-01-01T00:00:00Z in microseconds since the Unix
// epoch: binary timestamps count from it.
const microsecondsY2K = 946684800 * 1000000

func appendTuple(b []byte, fields int) []byte {
	return binary.BigEndian.AppendUint16(b, uint16(fields))
}

func appendNull(b []byte) []byte { return binary.BigEndian.AppendUint32(b, math.MaxUint32) }

func appendInt4(b []byte, v int) []byte {
	v = max(min(v, math.MaxInt32), math.MinInt32)
	b = binary.BigEndian.AppendUint32(b, 4)
	return binary.BigEndian.AppendUint32(b, uint32(int32(v)))
}

func appendInt8(b []byte, v int64) []byte {
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

func appendBool(b []byte, v bool) []byte {
	b = binary.BigEndian.AppendUint32(b, 1)
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// appendTimestamptz writes t as pgx does: microseconds since 2000-01-01
// UTC.
func appendTimestamptz(b []byte, t time.Time) []byte {
	us := t.Unix()*1000000 + int64(t.Nanosecond())/1000
	return appendInt8(b, us-microsecondsY2K)
}

func appendUUID(b []byte, id [16]byte) []byte {
	b = binary.BigEndian.AppendUint32(b, 16)
	return append(b, id[:]...)
}

// appendText writes s as Postgres text (clean: valid UTF-8, no NUL).
func appendText(b []byte, s string) []byte {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		s = clean(s)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// appendTextBytes is appendText of p without converting it first.
func appendTextBytes(b, p []byte) []byte {
	if !utf8.Valid(p) || bytes.IndexByte(p, 0) >= 0 {
		return appendText(b, string(p))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
	return append(b, p...)
}

// appendAddrPort writes a as text, "" when it is not valid (as apString).
func appendAddrPort(b []byte, a netip.AddrPort) []byte {
	if !a.IsValid() {
		return binary.BigEndian.AppendUint32(b, 0)
	}
	at := len(b)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = a.AppendTo(b)
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}

// copyReader is a binary COPY stream of n rows, each encoded by row
// when the reader gets to it, so a batch is never held twice in memory.
type copyReader struct {
	row  func(b []byte, i int) []byte
	n, i int
	buf  []byte
	off  int
	end  bool
}

func newCopyReader(n int, row func(b []byte, i int) []byte) *copyReader {
	return &copyReader{row: row, n: n, buf: append(make([]byte, 0, 128<<10), copyHeader...)}
}

func (r *copyReader) Read(p []byte) (int, error) {
	for len(r.buf)-r.off < len(p) && !r.end {
		if r.off > 0 {
			r.buf = r.buf[:copy(r.buf, r.buf[r.off:])]
			r.off = 0
		}
		if r.i < r.n {
			r.buf = r.row(r.buf, r.i)
			r.i++
		} else {
			r.buf = binary.BigEndian.AppendUint16(r.buf, math.MaxUint16) // trailer: -1
			r.end = true
		}
	}
	if r.off == len(r.buf) {
		return 0, io.EOF
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// appendOptTime writes t, or NULL when it is zero (as optTime).
func appendOptTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return appendNull(b)
	}
	return appendTimestamptz(b, t)
}

// appendDigits writes the ASCII digits of s as text (config.Digits).
func appendDigits(b []byte, s string) []byte {
	at := len(b)
	b = binary.BigEndian.AppendUint32(b, 0)
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			b = append(b, s[i])
		}
	}
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}

// oidText is the type OID of text, the element type of text[].
const oidText = 25

// appendTextArray writes ss as a one-dimensional text[] ('{}' when
// empty).
func appendTextArray(b []byte, ss []string) []byte {
	at := len(b)
	b = binary.BigEndian.AppendUint32(b, 0)
	if len(ss) == 0 {
		b = binary.BigEndian.AppendUint32(b, 0) // no dimensions
	} else {
		b = binary.BigEndian.AppendUint32(b, 1)
	}
	b = binary.BigEndian.AppendUint32(b, 0) // no NULLs
	b = binary.BigEndian.AppendUint32(b, oidText)
	if len(ss) > 0 {
		b = binary.BigEndian.AppendUint32(b, uint32(len(ss)))
		b = binary.BigEndian.AppendUint32(b, 1) // lower bound
		for _, s := range ss {
			b = appendText(b, s)
		}
	}
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}

// appendJSONB writes j (JSON text without NUL escapes, see jsonb) as
// jsonb: version 1, then the text.
func appendJSONB(b []byte, j []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(j)+1))
	b = append(b, 1)
	return append(b, j...)
}
