package pipeline

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// wsEncode frames payload as one WebSocket frame, masked when key is.
func wsEncode(payload []byte, opcode byte, fin bool, key []byte) []byte {
	b0 := opcode & 0x0f
	if fin {
		b0 |= 0x80
	}
	var mask byte
	if len(key) == 4 {
		mask = 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mask|byte(n))
	case n <= 0xffff:
		out = append(out, mask|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mask|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if mask != 0 {
		out = append(out, key...)
		for i, c := range payload {
			out = append(out, c^key[i%4])
		}
		return out
	}
	return append(out, payload...)
}

// FuzzWebSocket: the stream unframes what was framed, however the bytes
// are cut, and on arbitrary bytes it neither panics nor holds more than
// its bound.
func FuzzWebSocket(f *testing.F) {
	f.Add([]byte("INVITE sip:a@b SIP/2.0\r\n\r\n"), []byte("OPTIONS"), []byte{1, 2, 3, 4}, uint8(3), []byte{})
	f.Add(bytes.Repeat([]byte("x"), 300), []byte{}, []byte{}, uint8(1), []byte{0x81, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, m1, m2, key []byte, cut uint8, junk []byte) {
		if len(m1) > wsMaxMessage || len(m2) > wsMaxMessage {
			return // longer messages are dropped by design
		}
		if len(key) != 4 {
			key = nil
		}
		head := []byte("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
		stream := append([]byte{}, head...)
		// m1 in two fragments (the second a continuation), then m2 whole,
		// a ping between them.
		half := len(m1) / 2
		stream = append(stream, wsEncode(m1[:half], 1, false, key)...)
		stream = append(stream, wsEncode([]byte("ping"), 9, true, nil)...)
		stream = append(stream, wsEncode(m1[half:], 0, true, key)...)
		stream = append(stream, wsEncode(m2, 2, true, key)...)

		var w wsStream
		var got [][]byte
		step := int(cut) + 1
		for i := 0; i < len(stream); i += step {
			got = append(got, w.write(stream[i:min(i+step, len(stream))])...)
		}
		if len(got) != 2 || !bytes.Equal(got[0], m1) || !bytes.Equal(got[1], m2) {
			t.Fatalf("unframed %q, want %q and %q", got, m1, m2)
		}
		// Junk after the upgrade: no panic, bounded.
		w.write(junk)
		if len(w.buf) > 2*wsMaxMessage || len(w.msg) > wsMaxMessage {
			t.Fatalf("holds %d + %d bytes", len(w.buf), len(w.msg))
		}
	})
}
