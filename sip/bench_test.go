package sip

import (
	"fmt"
	"testing"
	"time"
)

func BenchmarkParseDatagram(b *testing.B) {
	_, msgs := wireStream(b)
	p := NewParser(0)
	b.SetBytes(int64(len(msgs[0])))
	for b.Loop() {
		if _, err := p.ParseDatagram(testMeta, msgs[0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStream(b *testing.B) {
	data, msgs := wireStream(b)
	p := NewParser(0)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		n := 0
		s := p.NewStream(func(*Message) { n++ })
		for at := 0; at < len(data); at += 1400 {
			s.Write(testMeta, data[at:min(at+1400, len(data))])
		}
		if n != len(msgs) {
			b.Fatalf("%d messages", n)
		}
	}
}

// BenchmarkTracker observes the five messages of a call per iteration,
// each under a new Call-ID, against a bounded tracker. Each message is a
// fresh copy handed over (MessagesOwned), as a parser's output is: five
// of the allocations per iteration are those copies.
func BenchmarkTracker(b *testing.B) {
	data, _ := wireStream(b)
	var msgs []*Message
	s := NewParser(0).NewStream(func(m *Message) { msgs = append(msgs, m) })
	s.Write(testMeta, data)
	tr := NewTracker(TrackerOptions{MaxDialogs: 10000, OnDone: func(*Call) {}, MessagesOwned: true})
	i := 0
	for b.Loop() {
		id := fmt.Sprint("bench-", i)
		for _, m := range msgs {
			c := *m
			c.CallID = id
			c.Time = t0.Add(time.Duration(i) * time.Millisecond)
			tr.Observe(&c)
		}
		i++
	}
}
