package pipeline

import (
	"bytes"
	"encoding/binary"
)

// SIP over WebSocket (RFC 7118): after the HTTP upgrade each WebSocket
// message carries one SIP message. This is the minimum of RFC 6455 that a
// passive reader needs: skip the HTTP head, unmask frames, join
// continuation frames, ignore control frames. Bounded by wsMaxMessage.

const wsMaxMessage = 1 << 16

func looksLikeWebSocketUpgrade(b []byte) bool {
	if !bytes.HasPrefix(b, []byte("GET ")) {
		return false
	}
	// The Upgrade header may come later than the first bytes; a GET is
	// enough to keep watching, and wsStream gives up if no upgrade comes.
	return true
}

type wsStream struct {
	buf      []byte
	headDone bool
	failed   bool
	msg      []byte
}

// write appends stream bytes and returns the complete messages.
func (w *wsStream) write(data []byte) [][]byte {
	if w.failed {
		return nil
	}
	w.buf = append(w.buf, data...)
	if !w.headDone {
		i := bytes.Index(w.buf, []byte("\r\n\r\n"))
		if i < 0 {
			if len(w.buf) > 16384 {
				w.failed, w.buf = true, nil
			}
			return nil
		}
		head := bytes.ToLower(w.buf[:i])
		if !bytes.Contains(head, []byte("websocket")) {
			w.failed, w.buf = true, nil
			return nil
		}
		w.headDone = true
		w.buf = append([]byte(nil), w.buf[i+4:]...)
	}
	var out [][]byte
	for {
		payload, opcode, fin, n, ok := wsFrame(w.buf)
		if !ok {
			break
		}
		w.buf = w.buf[n:]
		if opcode >= 8 { // close, ping, pong
			continue
		}
		if opcode != 0 {
			w.msg = w.msg[:0]
		}
		if len(w.msg)+len(payload) > wsMaxMessage {
			w.msg = w.msg[:0]
			continue
		}
		w.msg = append(w.msg, payload...)
		if fin {
			out = append(out, append([]byte(nil), w.msg...))
			w.msg = w.msg[:0]
		}
	}
	if len(w.buf) > 2*wsMaxMessage {
		w.failed, w.buf = true, nil
	}
	return out
}

// wsFrame decodes one frame from b: payload (unmasked), opcode, FIN and
// the frame's length; ok is false when b holds no complete frame.
func wsFrame(b []byte) (payload []byte, opcode byte, fin bool, n int, ok bool) {
	if len(b) < 2 {
		return nil, 0, false, 0, false
	}
	fin = b[0]&0x80 != 0
	opcode = b[0] & 0x0f
	masked := b[1]&0x80 != 0
	l := uint64(b[1] & 0x7f)
	off := 2
	switch l {
	case 126:
		if len(b) < 4 {
			return nil, 0, false, 0, false
		}
		l = uint64(binary.BigEndian.Uint16(b[2:]))
		off = 4
	case 127:
		if len(b) < 10 {
			return nil, 0, false, 0, false
		}
		l = binary.BigEndian.Uint64(b[2:])
		off = 10
	}
	var key []byte
	if masked {
		if len(b) < off+4 {
			return nil, 0, false, 0, false
		}
		key = b[off : off+4]
		off += 4
	}
	// An absurd length never completes; the caller drops the buffer
	// once it outgrows its bound.
	if l > wsMaxMessage*2 || uint64(len(b)-off) < l {
		return nil, 0, false, 0, false
	}
	payload = make([]byte, l)
	copy(payload, b[off:off+int(l)])
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return payload, opcode, fin, off + int(l), true
}
