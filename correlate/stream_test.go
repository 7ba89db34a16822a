package correlate

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/audiocodes/syslog"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// longDay is three hours of a busy SBC with Microsoft: a call every 10 s,
// each up a minute; every 25th call is to the Auto Attendant and loses
// its transfer to a burst of failed TLS connections 3 s before its end;
// every 40th has an accepted REFER followed by the new leg; every 60th a
// rejected one; a failed connection no call explains every 1 000 s.
func longDay(t *testing.T) Input {
	cs := newCerts(t)
	in := Input{Config: testConfig()}
	port := uint16(10000)
	for i := range 1080 {
		s := float64(10 * i)
		to := "+4930555" + strconv.Itoa(i)
		var opts []callOpt
		switch {
		case i%25 == 0:
			to = aaNumber
			for k := range 3 {
				port++
				in.Conns = append(in.Conns, failed(cs, port, s+57+0.3*float64(k), sbcFQDN, cs.dflt, 5*time.Millisecond))
			}
		case i%40 == 0:
			opts = append(opts, withRefer(refer(s+20, 202)))
			in.Calls = append(in.Calls, newLeg("leg"+strconv.Itoa(i), s+20.5, "sip:sip.pstnhub.microsoft.com;x-m=8:orgid:0a1b2c;x-t=9f8e7d", msProxy))
		case i%60 == 0:
			opts = append(opts, withRefer(refer(s+20, 403)))
		}
		in.Calls = append(in.Calls, msCall("c"+strconv.Itoa(i), to, s, s+60, opts...))
		if i%100 == 50 {
			port++
			in.Conns = append(in.Conns, failed(cs, port, s+5, sbcFQDN, cs.dflt, 5*time.Millisecond))
		}
	}
	// The TLS findings as the engine makes them (grouped per listener
	// and certificate, over the connections by time), numbered in report
	// order.
	slices.SortStableFunc(in.Conns, compareConns)
	in.TLSFindings = tlsaudit.Findings(in.Conns, tlsaudit.FindingOptions{})
	sort.SliceStable(in.TLSFindings, func(i, j int) bool { return finding.Less(in.TLSFindings[i], in.TLSFindings[j]) })
	for i, f := range in.TLSFindings {
		f.ID = "F" + strconv.Itoa(i+1)
	}
	return in
}

var anyID = regexp.MustCompile(`\bF[0-9]+\b`)

// canon writes findings without their IDs: references become what they
// point at.
func canon(t *testing.T, fs []*finding.Finding) []string {
	t.Helper()
	name := map[string]string{}
	for _, f := range fs {
		name[f.ID] = fmt.Sprintf("<%s %s %s %s>", f.Rule, f.CallID, f.Connection, f.Time.Format(time.RFC3339Nano))
	}
	sub := func(s string) string {
		return anyID.ReplaceAllStringFunc(s, func(id string) string { return name[id] })
	}
	var out []string
	for _, f := range fs {
		ev, err := json.Marshal(f.Evidence)
		if err != nil {
			t.Fatal(err)
		}
		var cites []string
		for _, c := range f.Cites {
			cites = append(cites, sub(c))
		}
		slices.Sort(cites)
		out = append(out, fmt.Sprintf("%s %s %s %s %s %v %s %s", f.Severity, f.Rule, f.CallID, f.Connection,
			f.Time.Format(time.RFC3339Nano), cites, sub(f.Summary), sub(string(ev))))
	}
	slices.Sort(out)
	return out
}

// withEngineTLS replaces an input's TLS findings with the ones the
// engine makes (grouped per listener and certificate, over the
// connections by time), numbered in report order.
func withEngineTLS(in Input) Input {
	slices.SortStableFunc(in.Conns, compareConns)
	in.TLSFindings = tlsaudit.Findings(in.Conns, tlsaudit.FindingOptions{})
	sort.SliceStable(in.TLSFindings, func(i, j int) bool { return finding.Less(in.TLSFindings[i], in.TLSFindings[j]) })
	for i, f := range in.TLSFindings {
		f.ID = "F" + strconv.Itoa(i+1)
	}
	return in
}

// streamed feeds an input to a Stream in time order, as the engine
// would: the log's sockets first (analyze reads the logs before the
// captures), then calls a linger after their end, connections as they
// close, INVITEs and REFERs as seen, with a decision round every
// `every` records. It returns the findings (latest version of each),
// the number of updates, the hints and the stats.
func streamed(in Input, every int) ([]*finding.Finding, int, []string, StreamStats) {
	got := map[string]*finding.Finding{}
	updates := 0
	s := NewStream(StreamOptions{Config: in.Config, TeamsContextID: in.TeamsContextID, Emit: func(f *finding.Finding) {
		if _, ok := got[f.ID]; ok {
			updates++
		}
		got[f.ID] = f
	}})
	for _, sk := range in.SBCSockets {
		s.AddSocket(sk)
	}
	type event struct {
		at time.Time
		do func()
	}
	var evs []event
	for _, c := range in.Calls {
		evs = append(evs, event{callTime(c).Add(32 * time.Second), func() { s.AddCall(c) }})
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
	for i, e := range evs {
		e.do()
		if i%every == 0 {
			s.Flush()
		}
	}
	hints := s.Close()
	var fs []*finding.Finding
	for _, f := range got {
		fs = append(fs, f)
	}
	return fs, updates, hints, s.Stats()
}

// matchRun requires the stream's findings and hints to be Run's.
func matchRun(t *testing.T, in Input, fs []*finding.Finding, hints []string) []*finding.Finding {
	t.Helper()
	want := append(slices.Clone(in.TLSFindings), Run(in)...)
	onlyRun, onlyStream := diff(canon(t, want), canon(t, fs))
	for _, l := range onlyRun {
		t.Errorf("only from Run: %s", l)
	}
	for _, l := range onlyStream {
		t.Errorf("only from the stream: %s", l)
	}
	if wantHints := Hints(in); !slices.Equal(hints, wantHints) {
		t.Errorf("hints:\n%q\nwant\n%q", hints, wantHints)
	}
	return want
}

// TestStreamMatchesRun feeds three hours of a busy SBC to a Stream, with
// decision rounds all along, and requires the findings and hints Run
// gives over the whole input.
func TestStreamMatchesRun(t *testing.T) {
	in := withEngineTLS(longDay(t))
	fs, updates, hints, st := streamed(in, 50)
	if st.Flushes < 40 || st.PeakCalls > 100 || st.Postponed == 0 {
		t.Fatalf("not streamed: %+v", st)
	}
	want := matchRun(t, in, fs, hints)
	if n, m := len(byRule(fs, finding.ReferDeliveryFailed)), len(byRule(want, finding.ReferDeliveryFailed)); n != m || n < 44 {
		t.Errorf("%d refer_delivery_failed, want %d (at least one per Auto Attendant call)", n, m)
	}
	if updates == 0 {
		t.Error("no finding was updated: the grouped TLS findings should grow as connections come")
	}
	t.Logf("%d findings, %d updates, stats %+v", len(fs), updates, st)
}

// TestStreamMatchesRunScenarios: the field case, and the SBC's log with
// and without the capture, streamed record by record.
func TestStreamMatchesRunScenarios(t *testing.T) {
	logCall := func(id string, sockets []*syslog.Socket) *sip.Call {
		call := msCall(id, aaNumber, 0, 0)
		call.Answer = sockets[0].Accepted.Add(-10 * time.Second)
		call.Start = call.Answer.Add(-2 * time.Second)
		call.End = sockets[3].Accepted.Add(3 * time.Second)
		call.Last = call.End
		call.EndedBy, call.EndedByAddr, call.EndReason = "caller", sbc, "BYE"
		return call
	}
	withCapture := func() Input {
		sockets := fieldLog(t, "")
		cs := newCerts(t)
		var conns []*tlsaudit.Conn
		for i, s := range sockets {
			c := failed(cs, uint16(8576+i), 0, sbcFQDN, cs.dflt, 16*time.Millisecond)
			c.FirstSeen, c.LastSeen = s.Accepted, s.Closed
			conns = append(conns, c)
		}
		return Input{Calls: []*sip.Call{logCall("log-1", sockets)}, Conns: conns, SBCSockets: sockets, Config: testConfig()}
	}
	logOnly := func() Input {
		sockets := fieldLog(t, teamsAccept+carrierAccept)
		return Input{Calls: []*sip.Call{logCall("log-2", sockets)}, SBCSockets: sockets, Config: testConfig()}
	}
	// A transfer accepted early in a call that then lasts an hour: the
	// INVITE that followed the REFER must still be known when the call is
	// judged, an hour later.
	longTransfer := func() Input {
		ruri := "sip:sip.pstnhub.microsoft.com;x-m=8:orgid:0a1b2c;x-t=9f8e7d"
		long := msCall("long", "+4930555777", 0, 3600, withRefer(refer(20, 202)))
		long.Refers[0].Notifies = append(long.Refers[0].Notifies, notifyFromSBC(21))
		return Input{Calls: []*sip.Call{long, newLeg("leg", 20.5, ruri, msProxy)}, Config: testConfig()}
	}
	for name, in := range map[string]Input{"field": fieldCase(t), "log+capture": withCapture(), "log": logOnly(), "long transfer": longTransfer()} {
		t.Run(name, func(t *testing.T) {
			// A call an hour later makes the stream decide the scenario
			// mid-stream, not at Close.
			later := *in.Calls[0]
			later.CallID, later.To = "later", "+4930999"
			for _, d := range []*time.Time{&later.Start, &later.Answer, &later.End, &later.Last} {
				*d = d.Add(time.Hour)
			}
			in.Calls = append(slices.Clone(in.Calls), &later)
			in := withEngineTLS(in)
			fs, _, hints, st := streamed(in, 1)
			if st.Flushes < 2 {
				t.Fatalf("decided only at Close: %+v", st)
			}
			want := matchRun(t, in, fs, hints)
			if name == "long transfer" {
				if len(byRule(want, finding.ReferNotFollowed)) != 0 {
					t.Fatalf("scenario lost its point: %v", rules(want))
				}
				return
			}
			if len(byRule(want, finding.ReferDeliveryFailed)) != 1 {
				t.Fatalf("scenario lost its point: %v", rules(want))
			}
		})
	}
}

func diff(a, b []string) (onlyA, onlyB []string) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i] < b[j]:
			onlyA = append(onlyA, a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			onlyB = append(onlyB, b[j])
			j++
		default:
			i++
			j++
		}
	}
	return onlyA, onlyB
}

// TestStreamInviteWindowKeys: an INVITE seen again (same Call-ID, time,
// source and Request-URI) is held once; one that differs in any of them
// is held too; one evicted from a full window is forgotten, so it is
// held again, and the INVITE that evicted it stays known.
func TestStreamInviteWindowKeys(t *testing.T) {
	cfg := config.Default()
	cfg.Limits.MaxWindowEvents = 3
	s := NewStream(StreamOptions{Config: cfg, Emit: func(*finding.Finding) {}})
	t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	src := netip.MustParseAddrPort("198.51.100.7:5060")
	inv := func(id string, at time.Time, from netip.AddrPort, ruri string) *sip.Message {
		return &sip.Message{IsRequest: true, Method: "INVITE", CallID: id, Time: at, Src: from,
			Dst: netip.MustParseAddrPort("192.0.2.10:5060"), RequestURI: ruri}
	}
	held := func() []string {
		var out []string
		for _, v := range s.invites {
			out = append(out, v.callID+"@"+v.time.Format("05.000")+"/"+v.src.String()+"/"+v.ruri)
		}
		return out
	}
	s.Observe(inv("a", t0, src, "sip:1@x"))
	s.Observe(inv("a", t0, src, "sip:1@x"))                                                   // the same
	s.Observe(inv("a", t0.In(time.FixedZone("X", 3600)), src, "sip:1@x"))                     // same instant, other zone
	s.Observe(inv("a", t0, netip.MustParseAddrPort("[::ffff:198.51.100.7]:5060"), "sip:1@x")) // 4-in-6 source
	if got := held(); len(got) != 3 {
		t.Fatalf("held %v, want a, a in another zone, a from a 4-in-6 source", got)
	}
	s.Observe(inv("b", t0.Add(time.Millisecond), src, "sip:1@x")) // evicts the first
	s.Observe(inv("b", t0.Add(time.Millisecond), src, "sip:1@x")) // known
	if got := held(); len(got) != 3 || got[2] != "b@00.001/198.51.100.7:5060/sip:1@x" {
		t.Fatalf("held %v after an eviction", got)
	}
	s.Observe(inv("a", t0, src, "sip:1@x")) // evicted, so new again
	if got := held(); len(got) != 3 || !slices.Contains(got, "a@00.000/198.51.100.7:5060/sip:1@x") {
		t.Fatalf("held %v: the evicted INVITE was not taken again", got)
	}
	if len(s.seenInv) != len(s.invites) {
		t.Fatalf("%d keys for %d INVITEs held", len(s.seenInv), len(s.invites))
	}
	s.Observe(inv("c", t0, src, "")) // no Request-URI: not held
	if len(s.invites) != 3 {
		t.Fatalf("held %v", held())
	}
}
