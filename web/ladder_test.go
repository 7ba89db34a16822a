package web

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/store"
)

// longEvidence is a call of n SIP messages, one every 3 s between the SBC
// and Microsoft, with the given TLS connections.
func longEvidence(n int, tls ...store.TLSConn) *evidence {
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	ev := &evidence{Call: store.Call{CallID: "long@x", SBC: "sbc1", SBCSide: "192.0.2.10:5061", MicrosoftIP: "52.112.1.10"}, TLS: tls}
	for i := range n {
		m := store.Message{Time: t0.Add(time.Duration(i) * 3 * time.Second), Src: "192.0.2.10:5061", Dst: "52.112.1.10:5061",
			IsRequest: true, Method: "INFO", CSeq: int64(i + 1), CSeqMethod: "INFO"}
		if i%2 == 1 {
			m.Src, m.Dst, m.IsRequest, m.Method, m.Status, m.Reason = m.Dst, m.Src, false, "", 200, "OK"
		}
		ev.Messages = append(ev.Messages, m)
	}
	return ev
}

func tlsAt(t time.Time, id, outcome string) store.TLSConn {
	return store.TLSConn{ConnID: id, Client: "52.114.75.24:50001", Server: "192.0.2.10:5061", Outcome: outcome,
		FirstSeen: t, FromMicrosoft: true}
}

func TestLadderShortCallDrawsEverything(t *testing.T) {
	ev := longEvidence(6)
	ev.TLS = []store.TLSConn{tlsAt(ev.Messages[2].Time.Add(time.Second), "between", "alert")}
	l := layoutLadder(ev, DefaultLadderSteps)
	if len(l.Msgs) != 6 || len(l.TLS) != 1 || len(l.Skips) != 0 || l.OmittedMsgs+l.OmittedTLS != 0 {
		t.Fatalf("%d messages, %d TLS, %d skips, %d+%d omitted", len(l.Msgs), len(l.TLS), len(l.Skips), l.OmittedMsgs, l.OmittedTLS)
	}
	if y := l.TLS[0].Y; y <= l.Msgs[2].Y || y >= l.Msgs[3].Y {
		t.Errorf("TLS at y=%d, not between messages 3 (%d) and 4 (%d)", y, l.Msgs[2].Y, l.Msgs[3].Y)
	}
	if note := ladderNote(l, DefaultLadderSteps); note != "" {
		t.Errorf("note %q for a call drawn whole", note)
	}
}

func TestLadderCapsRows(t *testing.T) {
	ev := longEvidence(1000)
	mid := ev.Messages[500].Time.Add(time.Second)
	ev.TLS = []store.TLSConn{tlsAt(ev.Messages[1].Time.Add(time.Second), "early", "alert"), tlsAt(mid, "middle", "alert")}
	const limit = 10
	l := layoutLadder(ev, limit)
	if len(l.Msgs)+len(l.TLS) != limit || len(l.TLS) != 2 {
		t.Fatalf("%d messages and %d TLS drawn, want %d rows with both TLS", len(l.Msgs), len(l.TLS), limit)
	}
	if l.OmittedMsgs != 1000-len(l.Msgs) || l.OmittedTLS != 0 {
		t.Fatalf("omitted %d messages, %d TLS; drew %d messages", l.OmittedMsgs, l.OmittedTLS, len(l.Msgs))
	}
	// The first four and the last four messages.
	for i, a := range l.Msgs {
		want := i + 1
		if i >= 4 {
			want = 1000 - 8 + i + 1
		}
		if !strings.Contains(a.Label, fmt.Sprintf("(CSeq %d", want)) {
			t.Errorf("row %d is %q, want CSeq %d", i, a.Label, want)
		}
	}
	// The early attempt stays between the messages it fell between; the
	// middle one sits between the two runs left out.
	if y := l.TLS[0].Y; y <= l.Msgs[1].Y || y >= l.Msgs[2].Y {
		t.Errorf("early TLS at y=%d, not between messages 2 (%d) and 3 (%d)", y, l.Msgs[1].Y, l.Msgs[2].Y)
	}
	if len(l.Skips) != 2 {
		t.Fatalf("%d skip rows, want 2 (around the middle TLS attempt)", len(l.Skips))
	}
	if y := l.TLS[1].Y; y <= l.Skips[0].Y || y >= l.Skips[1].Y || l.Skips[1].Y >= l.Msgs[4].Y || l.Skips[0].Y <= l.Msgs[3].Y {
		t.Errorf("middle TLS at y=%d, skips at %d and %d, messages 4 and 5 at %d and %d", y, l.Skips[0].Y, l.Skips[1].Y, l.Msgs[3].Y, l.Msgs[4].Y)
	}
	if got := l.Skips[0].Label; !strings.HasPrefix(got, "497 SIP messages not drawn (09:00:12.000 to 09:25:00.000, 24m48s)") {
		t.Errorf("skip label %q", got)
	}
	note := ladderNote(l, limit)
	if want := "992 more SIP messages not drawn"; !strings.HasPrefix(note, want) {
		t.Errorf("note %q, want %q…", note, want)
	}
	if l.Height > firstRow+(limit+3)*(rowHeight+gapExtra)+40 {
		t.Errorf("height %d for %d rows", l.Height, limit)
	}
}

func TestLadderCapsTLS(t *testing.T) {
	ev := longEvidence(40)
	for i := range 30 {
		outcome := "alert"
		if i%3 == 0 {
			outcome = "established"
		}
		ev.TLS = append(ev.TLS, tlsAt(ev.Messages[i].Time.Add(time.Second), fmt.Sprint("c", i), outcome))
	}
	l := layoutLadder(ev, 10)
	if len(l.TLS) != 5 || len(l.Msgs) != 5 {
		t.Fatalf("%d TLS and %d messages drawn, want 5 and 5", len(l.TLS), len(l.Msgs))
	}
	for _, a := range l.TLS {
		if !strings.Contains(a.Class, "tls-failed") {
			t.Errorf("%s drawn before failed attempts", a.Connection)
		}
	}
	if l.OmittedTLS != 25 || l.OmittedMsgs != 35 {
		t.Errorf("omitted %d TLS, %d messages", l.OmittedTLS, l.OmittedMsgs)
	}
	if note := ladderNote(l, 10); !strings.HasPrefix(note, "35 more SIP messages and 25 more TLS connections not drawn") {
		t.Errorf("note %q", note)
	}
}

func TestGroupDigits(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1234: "1\u00a0234", 1234567: "1\u00a0234\u00a0567", -1000: "-1\u00a0000"} {
		if got := groupDigits(n); got != want {
			t.Errorf("groupDigits(%d) = %q, want %q", n, got, want)
		}
	}
}
