package sip

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func fuzzSeeds(f *testing.F, add func([]byte)) {
	f.Helper()
	files, _ := filepath.Glob("testdata/torture/*/*.dat")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			add(b)
		}
	}
	golden, _ := filepath.Glob("testdata/golden/*.txtar")
	for _, file := range golden {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		if _, msg, ok := bytes.Cut(b, []byte("-- msg --\n")); ok {
			msg, _, _ = bytes.Cut(msg, []byte("-- want.json --\n"))
			add(wireMessage(string(msg)))
		}
		for _, sec := range []string{"-- wire --\n", "-- stream --\n"} {
			if _, msg, ok := bytes.Cut(b, []byte(sec)); ok {
				msg, _, _ = bytes.Cut(msg, []byte("-- want.json --\n"))
				add(quotedBytes(f, msg))
			}
		}
	}
	data, _ := wireStream(f)
	add(data)
	add([]byte("\r\n\r\nGARBAGE\r\nSIP/2.0 200 OK\r\nl: 5\r\n\r\nabc"))
}

func FuzzParseDatagram(f *testing.F) {
	fuzzSeeds(f, func(b []byte) { f.Add(b) })
	p := NewParser(4096)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := p.ParseDatagram(testMeta, b)
		if err != nil {
			if m != nil {
				t.Fatal("message and error")
			}
			return
		}
		if m.CallID == "" || m.Via == nil || len(m.Raw) == 0 || len(m.Raw) > len(b) {
			t.Fatalf("parsed message lacks basics: %+v", m)
		}
		if m.IsRequest == (m.StatusCode != 0) {
			t.Fatalf("request %v with status %d", m.IsRequest, m.StatusCode)
		}
		_ = m.Summary()
	})
}

// FuzzStream feeds data whole and again cut where cuts says (each byte a
// chunk length), and requires the same messages and error count.
func FuzzStream(f *testing.F) {
	fuzzSeeds(f, func(b []byte) { f.Add(b, []byte{1, 7, 200, 3}) })
	p := NewParser(4096)
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var whole collected
		s1 := p.NewStream(whole.emit)
		s1.Write(testMeta, data)

		var split collected
		s2 := p.NewStream(split.emit)
		at := 0
		for i := 0; at < len(data); i++ {
			n := len(data) - at
			if len(cuts) > 0 {
				n = min(n, int(cuts[i%len(cuts)])+1)
			}
			s2.Write(testMeta, data[at:at+n])
			at += n
		}
		if len(whole.msgs) != len(split.msgs) {
			t.Fatalf("whole %v, split %v", summaries(whole.msgs), summaries(split.msgs))
		}
		for i := range whole.msgs {
			if !bytes.Equal(whole.msgs[i].Raw, split.msgs[i].Raw) {
				t.Fatalf("message %d: whole %q, split %q", i, whole.msgs[i].Raw, split.msgs[i].Raw)
			}
		}
		if s1.Errors() != s2.Errors() {
			t.Fatalf("errors: whole %d, split %d", s1.Errors(), s2.Errors())
		}
		if len(s2.acc) > 4096+256 {
			t.Fatalf("buffer holds %d bytes", len(s2.acc))
		}
		// Whatever came out, a small tracker takes it without losing count.
		tr := NewTracker(TrackerOptions{MaxDialogs: 2, MaxMessagesPerCall: 3})
		for _, m := range whole.msgs {
			tr.Observe(m)
			tr.Expire(m.Time.Add(time.Minute))
		}
		total := 0
		for _, c := range tr.Close() {
			total += c.MessageCount
			if len(c.Messages) > 3 || c.Kind == "" {
				t.Fatalf("call %q: %d messages kept, kind %q", c.CallID, len(c.Messages), c.Kind)
			}
		}
		if total != len(whole.msgs) {
			t.Fatalf("tracker counted %d of %d messages", total, len(whole.msgs))
		}
	})
}
