package correlate

import (
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// emitted is one finding as the stream emitted it, with the stream's
// clock then.
type emitted struct {
	at time.Time
	f  finding.Finding
}

// clocked drives a Stream as serve does, on a controlled clock stepped a
// second at a time: calls are handed over linger after their last message
// (and Open shows them until then when withOpen), connections when they
// end, INVITEs and REFERs when seen, Advance and Flush every second. It
// returns every emission in order and the latest version of each finding.
func clocked(in Input, provisional, linger time.Duration, withOpen bool) ([]emitted, []*finding.Finding, StreamStats) {
	var out []emitted
	var s *Stream
	latest := map[string]*finding.Finding{}
	o := StreamOptions{Config: in.Config, ProvisionalAfter: provisional, Emit: func(f *finding.Finding) {
		out = append(out, emitted{s.now, *f})
		latest[f.ID] = f
	}}
	var now time.Time
	if withOpen {
		o.Open = func() []*sip.Call {
			var open []*sip.Call
			for _, c := range in.Calls {
				if c.Start.After(now) || !now.Before(callTime(c).Add(linger)) {
					continue
				}
				cc := *c
				if cc.End.After(now) {
					cc.End, cc.Last, cc.EndReason = time.Time{}, now, ""
				}
				open = append(open, &cc)
			}
			return open
		}
	}
	s = NewStream(o)
	type event struct {
		at time.Time
		do func()
	}
	var evs []event
	for _, c := range in.Calls {
		evs = append(evs, event{callTime(c).Add(linger), func() { s.AddCall(c) }})
		evs = append(evs, event{c.Start, func() {
			s.Observe(&sip.Message{IsRequest: true, Method: "INVITE", CallID: c.CallID, Time: c.Start, Src: c.Caller, Dst: c.Callee, RequestURI: c.RequestURI})
		}})
		for _, r := range c.Refers {
			evs = append(evs, event{r.Time, func() {
				s.Observe(&sip.Message{IsRequest: true, Method: "REFER", CallID: c.CallID, Time: r.Time, Src: r.Src, Dst: r.Dst})
			}})
		}
	}
	for _, c := range in.Conns {
		evs = append(evs, event{c.LastSeen, func() { s.AddConn(c) }})
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	now = evs[0].at.Truncate(time.Second)
	end := evs[len(evs)-1].at.Add(20 * time.Minute)
	for i := 0; now.Before(end); now = now.Add(time.Second) {
		for ; i < len(evs) && !evs[i].at.After(now); i++ {
			evs[i].do()
		}
		s.Advance(now)
		s.Flush()
	}
	s.Close()
	var fs []*finding.Finding
	for _, f := range latest {
		fs = append(fs, f)
	}
	return out, fs, s.Stats()
}

// deliveries returns the emissions of refer_delivery_failed.
func deliveries(es []emitted) []emitted {
	var out []emitted
	for _, e := range es {
		if e.f.Rule == finding.ReferDeliveryFailed {
			out = append(out, e)
		}
	}
	return out
}

// settled drops the retracted findings.
func settled(fs []*finding.Finding) []*finding.Finding {
	return slices.DeleteFunc(slices.Clone(fs), func(f *finding.Finding) bool { return f.Retracted })
}

// The field case on serve's clock: the failed transfer is reported,
// provisional, a minute after the call ends, and confirmed at the lag
// under the same ID and key; once settled the findings are those of the
// stream without the option, and so of Run.
func TestProvisionalFieldCaseConfirmed(t *testing.T) {
	in := withEngineTLS(fieldCase(t))
	end := in.Calls[0].End
	es, fs, st := clocked(in, 60*time.Second, 32*time.Second, true)
	d := deliveries(es)
	if len(d) != 2 {
		t.Fatalf("%d emissions of refer_delivery_failed, want 2 (provisional, confirmed)", len(d))
	}
	p, c := d[0], d[1]
	if !p.f.Provisional || p.f.Retracted || p.f.Severity != finding.Critical || p.f.CallID != in.Calls[0].CallID {
		t.Fatalf("first emission: provisional=%v retracted=%v %s %s", p.f.Provisional, p.f.Retracted, p.f.Severity, p.f.CallID)
	}
	if after := p.at.Sub(end); after < 60*time.Second || after > 62*time.Second {
		t.Errorf("provisional %s after the call's end, want 60-62 s", after)
	}
	lag := 156 * time.Second
	if want := end.Add(lag); p.f.SettlesAt.Before(want) || p.f.SettlesAt.After(want.Add(12*time.Second)) {
		t.Errorf("settles_at %s, want within 12 s after %s", p.f.SettlesAt, want)
	}
	if c.f.Provisional || c.f.Retracted || !c.f.SettlesAt.IsZero() {
		t.Errorf("second emission not a plain confirmation: %+v", c.f)
	}
	if c.f.ID != p.f.ID || c.f.Key != p.f.Key || c.f.Key != finding.KeyOf(&c.f) {
		t.Errorf("confirmation %s/%s, provisional %s/%s", c.f.ID, c.f.Key, p.f.ID, p.f.Key)
	}
	if after := c.at.Sub(end); after < lag || after > lag+11*time.Second || c.at.After(p.f.SettlesAt) {
		t.Errorf("confirmed %s after the call's end (settles_at %s), want the lag (%s) to a round later", after, p.f.SettlesAt.Sub(end), lag)
	}
	if st.Provisional != 1 || st.Confirmed != 1 || st.Retracted != 0 {
		t.Errorf("stats %+v", st)
	}
	_, off, _ := clocked(in, 0, 32*time.Second, true)
	onlyOff, onlyOn := diff(canon(t, off), canon(t, settled(fs)))
	if len(onlyOff)+len(onlyOn) > 0 {
		t.Errorf("settled findings differ from the stream without provisional ones:\n off: %q\n on:  %q", onlyOff, onlyOn)
	}
	matchRun(t, in, settled(fs), Hints(in))
	for _, e := range es {
		if e.f.Rule != finding.ReferDeliveryFailed && (e.f.Provisional || e.f.Retracted || !e.f.SettlesAt.IsZero()) {
			t.Errorf("%s marked provisional or retracted: only refer_delivery_failed is judged early", e.f.Rule)
		}
	}
}

// busyLater is TestBusySBCTiming's short call c4, which ends 3.6 s after
// a failed burst, and a call to the Auto Attendant (expects a transfer)
// that ends 53 s after c4 and so takes the burst from it.
func busyLater(t *testing.T) Input {
	cs := newCerts(t)
	calls := []*sip.Call{
		msCall("c4", "+4930555004", 15, 27),
		msCall("aa", aaNumber, 5, 80),
	}
	conns := []*tlsaudit.Conn{failed(cs, 7100, 23.0, sbcFQDN, cs.dflt, time.Millisecond), failed(cs, 7101, 23.4, sbcFQDN, cs.dflt, time.Millisecond)}
	return withEngineTLS(Input{Calls: calls, Conns: conns, Config: testConfig()})
}

// A later call takes the failed connections: without a view of the calls
// still tracked, c4 is blamed provisionally; the final verdict blames the
// Auto Attendant call, so c4's finding is retracted (same ID and key).
// With that view (serve's tracker), the early judgement already sees the
// Auto Attendant call, ended but still lingering, and waits for it.
func TestProvisionalRetractedForALaterCall(t *testing.T) {
	in := busyLater(t)
	es, fs, st := clocked(in, 60*time.Second, 32*time.Second, false)
	d := deliveries(es)
	// c4 provisional; aa provisional at its own time (both stand until
	// the group is settled); c4 retracted, aa confirmed.
	if len(d) != 4 {
		for _, e := range d {
			t.Logf("%s %s provisional=%v retracted=%v", e.at.Sub(t0), e.f.CallID, e.f.Provisional, e.f.Retracted)
		}
		t.Fatalf("%d emissions, want provisional c4 and aa, c4's retraction, aa confirmed", len(d))
	}
	p, aa, r, final := d[0], d[1], d[2], d[3]
	if aa.f.CallID != "aa" || !aa.f.Provisional || final.f.ID != aa.f.ID {
		t.Errorf("aa: %+v then %+v", aa.f, final.f)
	}
	if p.f.CallID != "c4" || !p.f.Provisional {
		t.Fatalf("first: %s provisional=%v", p.f.CallID, p.f.Provisional)
	}
	if after := p.at.Sub(at(27)); after < 60*time.Second || after > 62*time.Second {
		t.Errorf("provisional %s after c4's end", after)
	}
	if !r.f.Retracted || r.f.Provisional || r.f.ID != p.f.ID || r.f.Key != p.f.Key || r.f.CallID != "c4" {
		t.Errorf("second is no retraction of the first: %+v", r.f)
	}
	if final.f.CallID != "aa" || final.f.Provisional || final.f.Retracted || final.f.Key == p.f.Key {
		t.Errorf("third: %s provisional=%v retracted=%v", final.f.CallID, final.f.Provisional, final.f.Retracted)
	}
	if st.Provisional != 2 || st.Retracted != 1 || st.Confirmed != 1 {
		t.Errorf("stats %+v", st)
	}
	matchRun(t, in, settled(fs), Hints(in))

	es, fs, st = clocked(in, 60*time.Second, 32*time.Second, true)
	d = deliveries(es)
	if len(d) != 2 || d[0].f.CallID != "aa" || !d[0].f.Provisional || d[1].f.Provisional || d[1].f.ID != d[0].f.ID {
		for _, e := range d {
			t.Logf("%s %s provisional=%v retracted=%v", e.at.Sub(t0), e.f.CallID, e.f.Provisional, e.f.Retracted)
		}
		t.Fatalf("with the tracker's view: want aa provisional then confirmed, stats %+v", st)
	}
	if after := d[0].at.Sub(at(80)); after < 60*time.Second || after > 62*time.Second {
		t.Errorf("aa provisional %s after its end", after)
	}
	matchRun(t, in, settled(fs), Hints(in))
}

// A REFER retried within Timer F after the last failed attempt recovers
// the delivery. Serve's defaults (a minute, after a 32 s linger) always
// see it first; judged sooner, before the retry, the early verdict is
// retracted.
func TestProvisionalRetractedForARetriedRefer(t *testing.T) {
	in := fieldCase(t)
	// Microsoft's retry got through 27.5 s after the last attempt, to the
	// same SBC, for another dialog.
	other := msCall("other", "+4930555009", 3, 200, withRefer(refer(50, 202)))
	in.Calls = append(in.Calls, other)
	in = withEngineTLS(in)
	es, fs, st := clocked(in, 15*time.Second, 0, false)
	d := deliveries(es)
	if len(d) != 2 || !d[0].f.Provisional || !d[1].f.Retracted || d[1].f.ID != d[0].f.ID || d[1].f.Key != d[0].f.Key {
		t.Fatalf("want provisional then retraction, got %d emissions, stats %+v", len(d), st)
	}
	if d[0].at.After(at(50)) {
		t.Errorf("provisional at %s, after the retry", d[0].at.Sub(t0))
	}
	matchRun(t, in, settled(fs), Hints(in))
	if len(byRule(settled(fs), finding.ReferDeliveryFailed)) != 0 {
		t.Error("a recovered delivery is blamed")
	}
	// Judged a minute after the end, the retry is already seen.
	es, _, st = clocked(in, 60*time.Second, 32*time.Second, true)
	if len(deliveries(es)) != 0 || st.Provisional != 0 {
		t.Errorf("default timing: %d emissions, stats %+v", len(deliveries(es)), st)
	}
}

// Three hours of a busy SBC judged early and then settled: the settled
// findings are Run's, every provisional one is confirmed or retracted
// once, under its ID and key.
func TestProvisionalBusyDayMatchesRun(t *testing.T) {
	in := withEngineTLS(longDay(t))
	for _, withOpen := range []bool{false, true} {
		es, fs, st := clocked(in, 60*time.Second, 32*time.Second, withOpen)
		matchRun(t, in, settled(fs), Hints(in))
		prov := map[string]emitted{}
		settledN := 0
		for _, e := range es {
			switch {
			case e.f.Provisional:
				prov[e.f.ID] = e
			case prov[e.f.ID].f.Key != "":
				if e.f.Key != prov[e.f.ID].f.Key {
					t.Errorf("%s settled under another key", e.f.ID)
				}
				settledN++
				delete(prov, e.f.ID)
			}
		}
		crit := 0
		for _, f := range byRule(settled(fs), finding.ReferDeliveryFailed) {
			if f.Severity == finding.Critical {
				crit++
			}
		}
		if len(prov) != 0 || settledN != int(st.Provisional) || st.Provisional != st.Confirmed+st.Retracted || int(st.Confirmed) != crit || crit < 30 {
			t.Errorf("open=%v: %d unsettled, %d settled, stats %+v", withOpen, len(prov), settledN, st)
		}
		t.Logf("open=%v: stats %+v", withOpen, st)
	}
}
