package sip

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// streamMessages is a TCP conversation: bodies, a folded header, a
// compact Content-Length and a sipfrag body that looks like a status line.
var streamMessages = []string{
	"INVITE sip:+4969123456@sip.pstnhub.microsoft.com:5061;transport=tls SIP/2.0\n" +
		"Via: SIP/2.0/TLS 192.168.2.10:5061;alias;branch=z9hG4bKs1\n" +
		"Max-Forwards: 70\n" +
		"From: <sip:+4930111222@sbc.example.de;user=phone>;tag=sbc-1\n" +
		"To: <sip:+4969123456@sip.pstnhub.microsoft.com>\n" +
		"Call-ID: stream-1@sbc.example.de\n" +
		"CSeq: 1 INVITE\n" +
		"Contact: <sip:sbc.example.de:5061;transport=tls>\n" +
		"Allow: INVITE, ACK, CANCEL, BYE,\n" +
		" REFER, NOTIFY, OPTIONS\n" +
		"Content-Type: application/sdp\n" +
		"Content-Length: *\n" +
		"\n" +
		"v=0\no=- 1 1 IN IP4 192.168.2.10\ns=-\nc=IN IP4 192.168.2.10\nt=0 0\nm=audio 6000 RTP/SAVP 0\n",
	"SIP/2.0 100 Trying\n" +
		"Via: SIP/2.0/TLS 192.168.2.10:5061;alias;branch=z9hG4bKs1\n" +
		"From: <sip:+4930111222@sbc.example.de;user=phone>;tag=sbc-1\n" +
		"To: <sip:+4969123456@sip.pstnhub.microsoft.com>\n" +
		"Call-ID: stream-1@sbc.example.de\n" +
		"CSeq: 1 INVITE\n" +
		"l: 0\n\n",
	"SIP/2.0 200 OK\n" +
		"Via: SIP/2.0/TLS 192.168.2.10:5061;alias;branch=z9hG4bKs1\n" +
		"From: <sip:+4930111222@sbc.example.de;user=phone>;tag=sbc-1\n" +
		"To: <sip:+4969123456@sip.pstnhub.microsoft.com>;tag=ms-1\n" +
		"Call-ID: stream-1@sbc.example.de\n" +
		"CSeq: 1 INVITE\n" +
		"Content-Type: application/sdp\n" +
		"Content-Length: *\n\n" +
		"v=0\no=- 2 2 IN IP4 52.114.0.10\ns=-\nc=IN IP4 52.114.0.10\nt=0 0\nm=audio 49152 RTP/SAVP 0\n",
	"NOTIFY sip:sip.pstnhub.microsoft.com:5061;transport=tls SIP/2.0\n" +
		"Via: SIP/2.0/TLS 192.168.2.10:5061;alias;branch=z9hG4bKs2\n" +
		"From: <sip:+4930111222@sbc.example.de;user=phone>;tag=sbc-1\n" +
		"To: <sip:+4969123456@sip.pstnhub.microsoft.com>;tag=ms-1\n" +
		"Call-ID: stream-1@sbc.example.de\n" +
		"CSeq: 2 NOTIFY\n" +
		"Event: refer\n" +
		"Content-Type: message/sipfrag\n" +
		"Content-Length: *\n\n" +
		"SIP/2.0 200 OK\n",
	"BYE sip:sip.pstnhub.microsoft.com:5061;transport=tls SIP/2.0\n" +
		"Via: SIP/2.0/TLS 192.168.2.10:5061;alias;branch=z9hG4bKs3\n" +
		"From: <sip:+4930111222@sbc.example.de;user=phone>;tag=sbc-1\n" +
		"To: <sip:+4969123456@sip.pstnhub.microsoft.com>;tag=ms-1\n" +
		"Call-ID: stream-1@sbc.example.de\n" +
		"CSeq: 3 BYE\n" +
		"Reason: Q.850 ;cause=22 ;text=\"x;MediaError\"\n" +
		"Content-Length: 0\n\n",
}

// keepAlives go before message i (RFC 5626 double and single CRLF).
var keepAlives = []string{"\r\n\r\n", "", "\r\n", "\r\n\r\n\r\n\r\n", ""}

func wireStream(t testing.TB) (data []byte, msgs [][]byte) {
	t.Helper()
	for i, s := range streamMessages {
		m := wireMessage(s)
		msgs = append(msgs, m)
		data = append(data, keepAlives[i]...)
		data = append(data, m...)
	}
	return data, msgs
}

type collected struct {
	msgs  []*Message
	times []time.Time
}

func (c *collected) emit(m *Message) { c.msgs = append(c.msgs, m) }

// feed writes data in chunks ending at the given cut offsets; chunk i
// gets Time base+i ms and Frame i+1.
func feed(s *Stream, data []byte, cuts []int) {
	base := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	prev := 0
	for i, c := range append(cuts, len(data)) {
		if c < prev || c > len(data) {
			continue
		}
		meta := testMeta
		meta.Time = base.Add(time.Duration(i) * time.Millisecond)
		meta.Frame = uint64(i + 1)
		s.Write(meta, data[prev:c])
		prev = c
	}
}

func sameMessages(t *testing.T, label string, got []*Message, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d messages, want %d: %v", label, len(got), len(want), summaries(got))
	}
	for i, m := range got {
		if !bytes.Equal(m.Raw, want[i]) {
			t.Fatalf("%s: message %d (%s) raw differs:\n%q\nwant\n%q", label, i, m.Summary(), m.Raw, want[i])
		}
		if m.CallID != "stream-1@sbc.example.de" || m.CSeq == 0 {
			t.Fatalf("%s: message %d lost its identifiers: %+v", label, i, m)
		}
	}
}

func summaries(ms []*Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s/%d/%d", m.Summary(), m.CSeq, len(m.Raw)))
	}
	return out
}

func TestStreamSplits(t *testing.T) {
	data, want := wireStream(t)
	p := NewParser(0)
	run := func(label string, cuts []int) *collected {
		t.Helper()
		var c collected
		s := p.NewStream(c.emit)
		feed(s, data, cuts)
		sameMessages(t, label, c.msgs, want)
		if s.Errors() != 0 {
			t.Fatalf("%s: %d errors", label, s.Errors())
		}
		return &c
	}
	c := run("all in one", nil)
	check(t, "allow unfolded", c.msgs[0].Allow, "INVITE, ACK, CANCEL, BYE, REFER, NOTIFY, OPTIONS")
	check(t, "sipfrag", c.msgs[3].SipFrag, "SIP/2.0 200 OK")
	check(t, "cause", c.msgs[4].Q850Cause, 22)
	for i := 1; i < len(data); i++ {
		run(fmt.Sprintf("split at %d", i), []int{i})
	}
	every := make([]int, len(data)-1)
	for i := range every {
		every[i] = i + 1
	}
	c = run("byte by byte", every)
	// Each message is dated by the chunk holding its last byte.
	end := 0
	for i, m := range c.msgs {
		end += len(keepAlives[i]) + len(want[i])
		check(t, fmt.Sprintf("frame of message %d", i), m.Frame, uint64(end))
		check(t, fmt.Sprintf("time of message %d", i), m.Time, time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC).Add(time.Duration(end-1)*time.Millisecond))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var cuts []int
		for at := 0; at < len(data); {
			at += 1 + r.IntN(200)
			cuts = append(cuts, at)
		}
		run(fmt.Sprintf("random round %d", round), cuts)
	}
}

func TestStreamGarbage(t *testing.T) {
	_, want := wireStream(t)
	garbage := []string{
		"GARBAGE LINE\r\n",
		"\x00\x01\xfe\xff binary\r\nmore junk\r\n",
		"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n",
		"Foo: bar\r\n",
		"SIP/2.0 abc\r\n",
	}
	var data []byte
	for i, m := range want {
		data = append(data, garbage[i]...)
		data = append(data, m...)
	}
	p := NewParser(0)
	for _, cuts := range [][]int{nil, {7}, {100, 101, 102, 900}} {
		var c collected
		s := p.NewStream(c.emit)
		feed(s, data, cuts)
		sameMessages(t, fmt.Sprintf("garbage, cuts %v", cuts), c.msgs, want)
		check(t, "errors", s.Errors(), uint64(len(garbage)))
	}
	// Byte by byte as well.
	var c collected
	s := p.NewStream(c.emit)
	for i := range data {
		s.Write(testMeta, data[i:i+1])
	}
	sameMessages(t, "garbage byte by byte", c.msgs, want)
	check(t, "errors byte by byte", s.Errors(), uint64(len(garbage)))
}

func TestStreamBrokenMessages(t *testing.T) {
	_, want := wireStream(t)
	noLength := "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: nolen\r\nCSeq: 1 OPTIONS\r\n\r\n"
	badHeader := "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nCSeq: many OPTIONS\r\nContent-Length: 6\r\n\r\nabcdef"
	noCallID := "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	var data []byte
	data = append(data, want[0]...)
	data = append(data, noLength...)
	data = append(data, want[1]...)
	data = append(data, badHeader...)
	data = append(data, want[2]...)
	data = append(data, noCallID...)
	data = append(data, bytes.Join(want[3:], nil)...)
	var c collected
	s := NewParser(0).NewStream(c.emit)
	feed(s, data, []int{len(want[0]) + 10})
	sameMessages(t, "broken messages", c.msgs, want)
	check(t, "errors", s.Errors(), uint64(3))
}

func TestStreamTooLarge(t *testing.T) {
	_, want := wireStream(t)
	head := "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: big\r\nCSeq: 1 MESSAGE\r\nContent-Length: 3000\r\n\r\n"
	// The body holds no line break: only Content-Length can frame it.
	big := head + strings.Repeat("z", 3000)
	for _, cuts := range [][]int{nil, {300, 600, 2000, 2500, 3000}} {
		var data []byte
		data = append(data, want[0]...)
		data = append(data, big...)
		data = append(data, bytes.Join(want[1:], nil)...)
		var c collected
		s := NewParser(1500).NewStream(c.emit)
		for i := range cuts {
			cuts[i] += len(want[0])
		}
		feed(s, data, cuts)
		label := fmt.Sprintf("too large, cuts %v", cuts)
		if len(c.msgs) != len(want)+1 {
			t.Fatalf("%s: got %v", label, summaries(c.msgs))
		}
		// The oversized message comes out without its body; the rest is intact.
		check(t, label+": headers only", string(c.msgs[1].Raw), head)
		check(t, label+": call-id", c.msgs[1].CallID, "big")
		sameMessages(t, label, append(c.msgs[:1:1], c.msgs[2:]...), want)
		check(t, label+": errors", s.Errors(), uint64(1))
		if len(s.acc) > 1500 {
			t.Errorf("%s: buffer holds %d bytes", label, len(s.acc))
		}
	}
	// Headers that never end are dropped once they pass the limit, and the
	// stream finds the next message.
	var c collected
	s := NewParser(1500).NewStream(c.emit)
	s.Write(testMeta, []byte("OPTIONS sip:a@b SIP/2.0\r\n"))
	for range 200 {
		s.Write(testMeta, []byte("X-Filler: 0123456789\r\n"))
	}
	if len(s.acc) > 1500+64 {
		t.Errorf("endless headers: buffer holds %d bytes", len(s.acc))
	}
	s.Write(testMeta, []byte("\r\n"))
	s.Write(testMeta, bytes.Join(want, nil))
	sameMessages(t, "endless headers", c.msgs, want)
	if s.Errors() == 0 {
		t.Error("endless headers not counted")
	}
}

func TestStreamGap(t *testing.T) {
	_, want := wireStream(t)
	p := NewParser(0)

	// Bytes lost in the middle of message 1: it is dropped, 2.. survive.
	var c collected
	s := p.NewStream(c.emit)
	s.Write(testMeta, want[0])
	s.Write(testMeta, want[1][:40])
	s.Gap(25)
	s.Write(testMeta, want[1][65:])
	s.Write(testMeta, bytes.Join(want[2:], nil))
	sameMessages(t, "gap mid message", c.msgs, append([][]byte{want[0]}, want[2:]...))

	// A gap inside a body that holds a start-line look-alike: the
	// look-alike may be taken for a message start, but the stream recovers
	// by the next real message.
	c = collected{}
	s = p.NewStream(c.emit)
	s.Write(testMeta, want[3][:len(want[3])-20])
	s.Gap(5)
	s.Write(testMeta, want[3][len(want[3])-15:])
	s.Write(testMeta, want[4])
	sameMessages(t, "gap in a sipfrag body", c.msgs, want[4:])

	// A stream picked up mid-connection: Gap(0) before the first bytes.
	c = collected{}
	s = p.NewStream(c.emit)
	s.Gap(0)
	s.Write(testMeta, want[1][30:])
	s.Write(testMeta, bytes.Join(want[2:], nil))
	sameMessages(t, "picked up mid-message", c.msgs, want[2:])
	check(t, "a gap is no error", s.Errors(), uint64(0))

	// A gap on a message boundary loses nothing else.
	c = collected{}
	s = p.NewStream(c.emit)
	s.Write(testMeta, want[0])
	s.Gap(100)
	s.Write(testMeta, bytes.Join(want[2:], nil))
	sameMessages(t, "gap at a boundary", c.msgs, append([][]byte{want[0]}, want[2:]...))
}

func TestStreamKeepAlivesOnly(t *testing.T) {
	s := NewParser(0).NewStream(func(m *Message) { t.Fatalf("emitted %s", m.Summary()) })
	for range 100000 {
		s.Write(testMeta, []byte("\r\n\r\n"))
	}
	if s.Errors() != 0 || len(s.acc) != 0 {
		t.Fatalf("errors %d, buffered %d", s.Errors(), len(s.acc))
	}
}

func TestStreamTinyWritesBounded(t *testing.T) {
	body := strings.Repeat("a=x-filler\r\n", 500)
	msg := wireMessage("MESSAGE sip:a@b SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bKt\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>\nCall-ID: tiny\nCSeq: 1 MESSAGE\nContent-Type: text/plain\nContent-Length: *\n\n" + body)
	var c collected
	s := NewParser(0).NewStream(c.emit)
	most := 0
	for i := range msg {
		meta := testMeta
		meta.Frame = uint64(i + 1)
		s.Write(meta, msg[i:i+1])
		most = max(most, len(s.chunks))
	}
	if len(c.msgs) != 1 || string(c.msgs[0].Raw) != string(msg) {
		t.Fatalf("got %v", summaries(c.msgs))
	}
	check(t, "dated by the last byte", c.msgs[0].Frame, uint64(len(msg)))
	if most > maxChunks {
		t.Errorf("%d chunk records for one message", most)
	}
}
