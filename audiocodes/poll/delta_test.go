package poll

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func reading(at time.Time, uptime time.Duration, vals map[string]uint64, bits int) *Reading {
	r := &Reading{SBC: "sbc1", Time: at, Uptime: &uptime, Global: Values{}}
	for n, v := range vals {
		r.Global[n] = f64(float64(v))
		r.setRaw(ScopeGlobal, n, v, bits)
	}
	return r
}

func TestCounter64Wrap(t *testing.T) {
	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	var tr Tracker
	tr.Update(reading(t0, time.Hour, map[string]uint64{ShortCalls: math.MaxUint64 - 4}, 64))
	ss, _ := tr.Update(reading(t0.Add(time.Minute), time.Hour+time.Minute, map[string]uint64{ShortCalls: 5}, 64))
	s := sampleOf(ss, ScopeGlobal, ShortCalls)
	if s.Delta == nil || *s.Delta != 10 || s.Reset {
		t.Fatalf("across the 64-bit wrap = %+v, want delta 10 without reset", s)
	}

	// Counter32 wraps at 2^32.
	tr = Tracker{}
	tr.Update(reading(t0, time.Hour, map[string]uint64{ShortCalls: math.MaxUint32 - 1}, 32))
	ss, _ = tr.Update(reading(t0.Add(time.Minute), time.Hour+time.Minute, map[string]uint64{ShortCalls: 3}, 32))
	if s := sampleOf(ss, ScopeGlobal, ShortCalls); s.Delta == nil || *s.Delta != 5 || s.Reset {
		t.Fatalf("across the 32-bit wrap = %+v, want delta 5", s)
	}

	// Going down from the middle of the range is a reset, not a wrap.
	tr = Tracker{}
	tr.Update(reading(t0, time.Hour, map[string]uint64{ShortCalls: 1 << 40}, 64))
	ss, _ = tr.Update(reading(t0.Add(time.Minute), time.Hour+time.Minute, map[string]uint64{ShortCalls: 7}, 64))
	if s := sampleOf(ss, ScopeGlobal, ShortCalls); s.Delta == nil || *s.Delta != 7 || !s.Reset {
		t.Fatalf("counter down = %+v, want delta 7, reset", s)
	}
}

func TestSysUpTimeWrapIsNotAReset(t *testing.T) {
	const wrap = time.Duration(1<<32) * 10 * time.Millisecond // ~497 days
	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	var tr Tracker
	tr.Update(reading(t0, wrap-20*time.Second, map[string]uint64{ShortCalls: 100}, 64))
	ss, _ := tr.Update(reading(t0.Add(time.Minute), 40*time.Second, map[string]uint64{ShortCalls: 104}, 64))
	if s := sampleOf(ss, ScopeGlobal, ShortCalls); s.Delta == nil || *s.Delta != 4 || s.Reset {
		t.Fatalf("after the TimeTicks wrap = %+v, want delta 4 without reset", s)
	}
	// A real restart right after: uptime 40s → 5s.
	ss, _ = tr.Update(reading(t0.Add(2*time.Minute), 5*time.Second, map[string]uint64{ShortCalls: 1}, 64))
	if s := sampleOf(ss, ScopeGlobal, ShortCalls); s.Delta == nil || *s.Delta != 1 || !s.Reset || *s.Rate != 0.2 {
		t.Fatalf("after restart = %+v, want delta 1 reset, rate 1/5s", s)
	}
}

func TestDerivedNERAndACD(t *testing.T) {
	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	mk := func(at time.Time, est, att, busy, noans, mou, short uint64) *Reading {
		return reading(at, time.Hour+at.Sub(t0), map[string]uint64{
			EstablishedCallsIn: est, EstablishedCallsOut: est / 2, AttemptedCallsIn: att, AttemptedCallsOut: att / 2,
			BusyCallsIn: busy, NoAnswerCallsOut: noans, MinutesOfUsage: mou, ShortCalls: short}, 64)
	}
	var tr Tracker
	tr.Update(mk(t0, 1000, 2000, 50, 30, 9000, 100))
	// Interval: established 60+30=90, attempted 120+60=180, busy 10,
	// no answer 20, minutes 450, short 18.
	ss, ivs := tr.Update(mk(t0.Add(5*time.Minute), 1060, 2120, 60, 50, 9450, 118))
	ner := sampleOf(ss, ScopeGlobal, DerivedNER)
	if ner.Value == nil || math.Abs(*ner.Value-(90+10+20)/180.0*100) > 1e-9 {
		t.Errorf("ner = %+v, want 66.67", ner)
	}
	acd := sampleOf(ss, ScopeGlobal, DerivedAverageCallDuration)
	if acd.Value == nil || *acd.Value != 300 {
		t.Errorf("acd = %+v, want 450 min × 60 / 90 = 300 s", acd)
	}
	ratio := sampleOf(ss, ScopeGlobal, DerivedShortCallRatio)
	if ratio.Value == nil || *ratio.Value != 0.2 {
		t.Errorf("short ratio = %+v, want 0.2", ratio)
	}
	if len(ivs) != 1 || *ivs[0].Deltas[EstablishedCallsIn] != 60 {
		t.Errorf("intervals = %+v", ivs)
	}
	// No attempts in the interval: NER is undefined, not 0.
	ss, _ = tr.Update(mk(t0.Add(10*time.Minute), 1060, 2120, 60, 50, 9450, 118))
	if v := sampleOf(ss, ScopeGlobal, DerivedNER).Value; v != nil {
		t.Errorf("ner with no attempts = %v, want nil", *v)
	}
}

func TestWriteText(t *testing.T) {
	r := &Reading{SBC: "sbc1", Method: "snmp", Target: "udp://127.0.0.1:161", Time: time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC),
		Global:       Values{ShortCalls: f64(3), "active_sessions": nil, TLSRejectedConnections: f64(1)},
		IPGroups:     map[string]Values{"10": {ShortCalls: f64(1)}, "2": {ShortCalls: f64(2)}},
		IPGroupNames: map[string]string{"2": "Teams"}}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{"active_sessions", "n/a (not supported)", "ip group 2 (Teams)", "tls_rejected_connections"} {
		if !strings.Contains(out, s) {
			t.Errorf("text lacks %q:\n%s", s, out)
		}
	}
	if strings.Index(out, "ip group 2") > strings.Index(out, "ip group 10") {
		t.Errorf("ip groups not in numeric order:\n%s", out)
	}
	if strings.Index(out, "short_calls") > strings.Index(out, "active_sessions") {
		t.Errorf("counters not in MIB order:\n%s", out)
	}
}

func TestIPGroupColumnMap(t *testing.T) {
	// The per-IP-Group table: global column + 1 up to NoRoute, equal from
	// OtherReason on, NotEstablish In/Out swapped, no ClassificationFailed.
	for col, want := range map[int]string{
		2: "average_call_duration_s", 9: EstablishedCallsIn, 10: EstablishedCallsOut, 13: "asr", 14: "ner",
		20: "not_established_failed_calls_in", 32: "no_route_calls_in", 33: "other_reason_calls_in",
		35: "abnormal_terminated_calls_in", 37: "post_dial_delay_s", 39: ShortCalls,
		41: "not_established_calls_out", 42: "not_established_calls_in",
	} {
		if d := byIPGroupCol[col]; d == nil || d.Name != want {
			t.Errorf("ip group column %d = %v, want %s", col, d, want)
		}
	}
	if byIPGroupCol[1] != nil || byIPGroupCol[43] != nil {
		t.Error("index column or a column the table lacks is mapped")
	}
	if byName[ShortCalls].GlobalOID() != "1.3.6.1.4.1.5003.15.3.1.1.1.39.0" {
		t.Error(byName[ShortCalls].GlobalOID())
	}
}
