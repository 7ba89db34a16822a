package web_test

import (
	"fmt"
	"html"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/store/storetest"
	"github.com/sbcwatch/sbcwatch/web"
)

// saveLongCall stores the field case starting at t0 stretched to n INFO/200 messages,
// one every 3 s after the ACK (so hours long for thousands), with a fifth
// failed TLS attempt from Microsoft in the middle of the call.
func saveLongCall(t *testing.T, e *env, t0 time.Time, callID string, n int) {
	t.Helper()
	t0 = t0.UTC().Truncate(time.Millisecond)
	r := storetest.FieldCase(t0, callID)
	c := r.CallRecords[0]
	head, bye := c.Messages[:4], c.Messages[4:]
	at := t0.Add(40 * time.Second)
	msgs := append([]*sip.Message{}, head...)
	for i := range n {
		src, dst := storetest.SBCAddr, storetest.MSProxy
		first := fmt.Sprintf("INFO sip:%s@sip.pstnhub.microsoft.com SIP/2.0", storetest.AANum)
		m := &sip.Message{Time: at, Src: src, Dst: dst, Transport: "tls", Origin: "wire", IsRequest: true,
			Method: "INFO", CallID: callID, CSeq: uint32(3 + i/2), CSeqMethod: "INFO", FromUser: storetest.Caller, ToUser: storetest.AANum}
		if i%2 == 1 {
			m.Src, m.Dst, m.IsRequest, m.StatusCode, m.Reason = dst, src, false, 200, "OK"
			first = "SIP/2.0 200 OK"
		}
		m.Raw = fmt.Appendf(nil, "%s\r\nCall-ID: %s\r\nCSeq: %d INFO\r\nContent-Length: 0\r\n\r\n", first, callID, m.CSeq)
		msgs = append(msgs, m)
		at = at.Add(3 * time.Second)
	}
	for i, m := range bye {
		m.Time = at.Add(time.Duration(i) * 50 * time.Millisecond)
	}
	c.Messages = append(msgs, bye...)
	c.End, c.Last = bye[0].Time, bye[len(bye)-1].Time
	c.MessageCount = len(c.Messages)
	mid := *r.Conns[0]
	mid.Client = netip.AddrPortFrom(storetest.MSReferSource, 50099)
	mid.ID = mid.Client.String() + "->" + storetest.SBCAddr.String()
	mid.FirstSeen = t0.Add(40*time.Second + time.Duration(n/2)*3*time.Second + time.Second)
	mid.LastSeen = mid.FirstSeen.Add(6 * time.Millisecond)
	r.Conns = append(r.Conns, &mid)
	e.save(t, r)
}

var svgHeightRE = regexp.MustCompile(`<svg [^>]*class="ladder" width="\d+" height="(\d+)"`)

// A call of thousands of SIP messages over hours draws a ladder of at
// most web.DefaultLadderSteps rows: its TLS attempts, its first and its
// last messages, and says how many it left out. Twice the messages make
// the same page.
func TestCallPageLongCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	type result struct {
		size, height int
	}
	var got []result
	for i, c := range []struct {
		n    int
		note string
	}{
		// 6 field-case messages + n; 5 TLS attempts and 495 messages drawn.
		{1500, "1\u00a0011 more SIP messages not drawn"},
		{3000, "2\u00a0511 more SIP messages not drawn"},
	} {
		id := fmt.Sprintf("long-%d@192.0.2.10", c.n)
		// A day apart: the calls' TLS windows must not overlap.
		saveLongCall(t, e, time.Now().Add(-time.Duration(i+1)*24*time.Hour), id, c.n)
		res := e.get(t, web.CallPath(id, ""), "Authorization", "Bearer "+e.tok)
		if res.status != http.StatusOK {
			t.Fatalf("%d messages: status %d: %.2000s", c.n, res.status, res.body)
		}
		text := html.UnescapeString(res.body)
		if !strings.Contains(text, c.note) || !strings.Contains(text, "See the evidence bundle") {
			t.Errorf("%d messages: the page does not say %q", c.n, c.note)
		}
		msgs, tls := ladderGroups(t, res.body)
		if len(msgs)+len(tls) != web.DefaultLadderSteps || len(tls) != 5 {
			t.Fatalf("%d messages: %d message and %d TLS rows drawn, want %d rows with all 5 TLS attempts",
				c.n, len(msgs), len(tls), web.DefaultLadderSteps)
		}
		if !strings.Contains(msgs[0].body, ">INVITE (CSeq 1)<") || !strings.Contains(msgs[len(msgs)-1].body, ">200 OK (CSeq 2 BYE)<") {
			t.Errorf("%d messages: the ladder does not run from the INVITE to the BYE's 200", c.n)
		}
		// The field case's four attempts fell between drawn messages and
		// are still there; the fifth sits between the runs left out.
		var ack, bye int
		for _, m := range msgs {
			switch {
			case strings.Contains(m.body, ">ACK (CSeq 1)<"):
				ack = m.y
			case strings.Contains(m.body, ">BYE (CSeq 2)<"):
				bye = m.y
			}
		}
		for _, g := range tls {
			if !strings.Contains(g.class, "tls-failed") || g.y <= ack || g.y >= bye {
				t.Errorf("%d messages: TLS attempt %q at y=%d (ACK %d, BYE %d)", c.n, g.class, g.y, ack, bye)
			}
		}
		if skips := strings.Count(res.body, `<g class="gap skip">`); skips != 2 {
			t.Errorf("%d messages: %d skip rows, want 2", c.n, skips)
		}
		if d := strings.Count(res.body, "<details>"); d != len(msgs) {
			t.Errorf("%d messages: %d raw messages listed, want the %d drawn", c.n, d, len(msgs))
		}
		m := svgHeightRE.FindStringSubmatch(res.body)
		if m == nil {
			t.Fatal("no ladder height")
		}
		h, _ := strconv.Atoi(m[1])
		got = append(got, result{size: len(res.body), height: h})
	}
	a, b := got[0], got[1]
	t.Logf("page %d bytes, ladder %d px high for 1 506 messages; %d bytes, %d px for 3 006", a.size, a.height, b.size, b.height)
	if b.height != a.height || b.size > a.size+a.size/100 || a.size > 2<<20 {
		t.Errorf("the page grows with the call: %d bytes, height %d for 1 506 messages; %d bytes, height %d for 3 006",
			a.size, a.height, b.size, b.height)
	}
}
