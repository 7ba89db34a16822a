package live

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzSyslogBodies: any message gives at most one body, never longer
// than the message plus its kept priority, and never panics.
func FuzzSyslogBodies(f *testing.F) {
	f.Add([]byte(`<13>1 2026-12-06T17:40:00Z host sbc - - [a b="c\"]"] msg`))
	f.Add([]byte("<13>Dec  6 17:40:00 host sbc[1]: msg"))
	f.Add([]byte("<142>[S=1] [SID=a:b:c] (N 1) text [Time:04-01@09:55:04.717]"))
	f.Add([]byte("<13>1 x y z - - [broken"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out := SyslogBodies(b)
		if len(out) > 1 {
			t.Fatalf("%d bodies", len(out))
		}
		for _, o := range out {
			if len(o) > len(b)+2 {
				t.Fatalf("body of %d bytes from %d", len(o), len(b))
			}
		}
	})
}

// FuzzTCPFraming: the three framers read any byte stream to its end or
// to a framing error, never panic, and never return more bytes than they
// read.
func FuzzTCPFraming(f *testing.F) {
	f.Add([]byte("HEP3\x00\x07x"), byte(0))
	f.Add([]byte("\x00\x03abc\x00\x01z"), byte(1))
	f.Add([]byte("12 <13>[S=1] on<13>[S=2] two\n"), byte(2))
	f.Add([]byte("99999999999 x"), byte(2))
	f.Fuzz(func(t *testing.T, stream []byte, which byte) {
		r := bufio.NewReaderSize(bytes.NewReader(stream), 16)
		read := []func(*bufio.Reader) ([]byte, error){readHEP, readLenPrefixed, readSyslogFrame}[int(which)%3]
		total := 0
		for range len(stream) + 1 {
			b, err := read(r)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errFraming) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			total += len(b)
			if total > len(stream) {
				t.Fatalf("framed %d bytes out of %d", total, len(stream))
			}
		}
	})
}
