package poll

import (
	"bufio"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
)

// loadSeries reads a recorded counter series (testdata/series/*.csv):
// cumulative counters once a minute, global and IP Group 1.
func loadSeries(t *testing.T, name string) []*Reading {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "series", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	base := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	var out []*Reading
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var n []uint64
		for _, fld := range strings.Split(line, ",") {
			v, err := strconv.ParseUint(fld, 10, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", name, line, err)
			}
			n = append(n, v)
		}
		up := time.Duration(n[1]) * time.Second
		r := &Reading{SBC: "sbc1", Method: "snmp", Time: base.Add(time.Duration(n[0]) * time.Second), Uptime: &up,
			Global: Values{}, IPGroups: map[string]Values{"1": {}}}
		set := func(scope string, vals Values, name string, v uint64) {
			vals[name] = f64(float64(v))
			r.setRaw(scope, name, v, 64)
		}
		set(ScopeGlobal, r.Global, ShortCalls, n[2])
		set(ScopeGlobal, r.Global, EstablishedCallsIn, n[3])
		set(ScopeGlobal, r.Global, EstablishedCallsOut, n[4])
		set(ScopeGlobal, r.Global, AttemptedCallsIn, n[5])
		set(IPGroupScope("1"), r.IPGroups["1"], ShortCalls, n[6])
		set(IPGroupScope("1"), r.IPGroups["1"], EstablishedCallsIn, n[7])
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// runSeries feeds a series through a Tracker and a SpikeDetector and
// returns the findings with the row (1-based) that produced each.
func runSeries(t *testing.T, rs []*Reading, cfg SpikeConfig) ([]*finding.Finding, []int) {
	t.Helper()
	var tr Tracker
	d := NewSpikeDetector(cfg)
	var fs []*finding.Finding
	var rows []int
	for i, r := range rs {
		_, ivs := tr.Update(r)
		for _, iv := range ivs {
			if f := d.Observe(iv); f != nil {
				fs = append(fs, f)
				rows = append(rows, i+1)
			}
		}
	}
	return fs, rows
}

var minuteCfg = SpikeConfig{Ratio: 0.3, Interval: time.Minute}

func TestSpikeQuietOnNormalTraffic(t *testing.T) {
	fs, rows := runSeries(t, loadSeries(t, "normal.csv"), minuteCfg)
	if len(fs) != 0 {
		t.Fatalf("fired on normal traffic at rows %v: %s", rows, fs[0].Summary)
	}
}

func TestSpikeQuietOnNoisyHighRatioTraffic(t *testing.T) {
	rs := loadSeries(t, "noisy.csv")
	fs, rows := runSeries(t, rs, minuteCfg)
	if len(fs) != 0 {
		t.Fatalf("fired on noisy normal traffic at rows %v: %s", rows, fs[0].Summary)
	}
	// The series is over the ratio most of the time: only the baseline
	// keeps it quiet. Without it (a huge window that never fills) the
	// rule would have nothing to say either, so check the ratio really
	// is above the threshold.
	over := 0
	for i := 1; i < len(rs); i++ {
		ds := *rs[i].Global[ShortCalls] - *rs[i-1].Global[ShortCalls]
		de := *rs[i].Global[EstablishedCallsIn] + *rs[i].Global[EstablishedCallsOut] -
			*rs[i-1].Global[EstablishedCallsIn] - *rs[i-1].Global[EstablishedCallsOut]
		if ds >= 5 && ds/de >= 0.3 {
			over++
		}
	}
	if over < len(rs)/2 {
		t.Fatalf("only %d of %d intervals are over the ratio: the series does not test the baseline", over, len(rs))
	}
}

func TestSpikeFiresOnLostTransfers(t *testing.T) {
	fs, rows := runSeries(t, loadSeries(t, "spike.csv"), minuteCfg)
	if len(fs) != 2 {
		for _, f := range fs {
			t.Log(f.Summary)
		}
		t.Fatalf("findings = %d at rows %v, want 2 (global and IP Group 1, once per episode)", len(fs), rows)
	}
	scopes := map[string]bool{}
	for i, f := range fs {
		if rows[i] != 31 { // row 31 is the first interval of the incident
			t.Errorf("%s fired at row %d, want 31", f.Evidence["scope"], rows[i])
		}
		if f.Rule != finding.ShortCallsSpike || f.Severity != finding.Warning || f.Source != finding.SourcePoll || f.SBC != "sbc1" {
			t.Errorf("finding header = %+v", f)
		}
		ev := f.Evidence
		for _, k := range []string{"sbc", "counter", "interval_s", "delta", "rate_per_min", "established_delta", "ratio", "baseline_mean", "baseline_stddev", "baseline_limit"} {
			if _, ok := ev[k]; !ok {
				t.Errorf("evidence lacks %s: %v", k, ev)
			}
		}
		if ev["counter"] != ShortCalls || ev["interval_s"] != 60.0 || ev["ratio"].(float64) < 0.3 ||
			ev["delta"].(float64) <= ev["baseline_limit"].(float64) {
			t.Errorf("evidence = %v", ev)
		}
		scopes[ev["scope"].(string)] = true
	}
	if !scopes[ScopeGlobal] || !scopes["ipgroup:1"] {
		t.Errorf("scopes = %v", scopes)
	}
	if fs[1].Evidence["ip_group"] != "1" && fs[0].Evidence["ip_group"] != "1" {
		t.Error("IP Group finding lacks ip_group")
	}
}

func TestSpikeQuietOnReset(t *testing.T) {
	rs := loadSeries(t, "reset.csv")
	fs, rows := runSeries(t, rs, minuteCfg)
	if len(fs) != 0 {
		t.Fatalf("fired across a restart at rows %v: %s", rows, fs[0].Summary)
	}
	// The restart is seen: row 21's delta is what accumulated since the
	// restart, flagged, with the rate over the 50 s of uptime. The same
	// interval unflagged would fire, so the flag is what keeps it quiet.
	var tr Tracker
	d := NewSpikeDetector(minuteCfg)
	for i, r := range rs {
		ss, ivs := tr.Update(r)
		if i != 20 {
			for _, iv := range ivs {
				d.Observe(iv)
			}
			continue
		}
		s := sampleOf(ss, ScopeGlobal, ShortCalls)
		if !s.Reset || s.Delta == nil || *s.Delta != 25 || !ivs[0].Reset {
			t.Fatalf("restart row sample = %+v", s)
		}
		if math.Abs(*s.Rate-25.0/50) > 1e-9 {
			t.Errorf("rate = %v, want 25/50", *s.Rate)
		}
		unflagged := ivs[0]
		unflagged.Reset = false
		if d.Observe(unflagged) == nil {
			t.Fatal("the restart interval would not fire even unflagged: the series does not test the reset")
		}
		break
	}
}

func TestSpikeMinimumDelta(t *testing.T) {
	d := NewSpikeDetector(SpikeConfig{Ratio: 0.3})
	base := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	iv := func(i int, short, est float64) Interval {
		return Interval{SBC: "sbc1", Scope: ScopeGlobal, Time: base.Add(time.Duration(i) * time.Minute), Elapsed: time.Minute,
			Deltas: map[string]*float64{ShortCalls: f64(short), EstablishedCallsIn: f64(est)}}
	}
	for i := range 10 {
		if f := d.Observe(iv(i, float64(i%2), 2)); f != nil {
			t.Fatalf("fired on quiet traffic: %s", f.Summary)
		}
	}
	// 1 → 2 short calls of 2 established: ratio 1.0, but below MinDelta.
	if f := d.Observe(iv(10, 2, 2)); f != nil {
		t.Fatalf("1→2 fired: %s", f.Summary)
	}
	if f := d.Observe(iv(11, 4, 4)); f != nil {
		t.Fatalf("4 short calls fired: %s", f.Summary)
	}
	// 12 of 15: fires, once.
	if f := d.Observe(iv(12, 12, 15)); f == nil {
		t.Fatal("12 short of 15 established did not fire")
	}
	if f := d.Observe(iv(13, 14, 15)); f != nil {
		t.Fatal("second interval of the same episode fired again")
	}
	// Back to normal, then a new episode fires again.
	d.Observe(iv(14, 0, 3))
	if f := d.Observe(iv(15, 13, 15)); f == nil {
		t.Fatal("new episode did not fire")
	}
}

func TestSpikeNeedsBaseline(t *testing.T) {
	d := NewSpikeDetector(SpikeConfig{Ratio: 0.3, MinHistory: 5})
	for i := range 4 {
		iv := Interval{SBC: "sbc1", Scope: ScopeGlobal, Elapsed: time.Minute,
			Deltas: map[string]*float64{ShortCalls: f64(20), EstablishedCallsIn: f64(30)}}
		if f := d.Observe(iv); f != nil {
			t.Fatalf("fired before a baseline existed (interval %d)", i)
		}
	}
}

func TestSpikeScalesLongIntervals(t *testing.T) {
	// After missed polls one interval spans 5 minutes: 5× the usual
	// short calls is not a spike.
	d := NewSpikeDetector(SpikeConfig{Ratio: 0.1, Interval: time.Minute})
	for range 12 {
		d.Observe(Interval{Scope: ScopeGlobal, Elapsed: time.Minute,
			Deltas: map[string]*float64{ShortCalls: f64(6), EstablishedCallsIn: f64(40)}})
	}
	if f := d.Observe(Interval{Scope: ScopeGlobal, Elapsed: 5 * time.Minute,
		Deltas: map[string]*float64{ShortCalls: f64(31), EstablishedCallsIn: f64(200)}}); f != nil {
		t.Fatalf("fired on a long interval of normal traffic: %s", f.Summary)
	}
	if f := d.Observe(Interval{Scope: ScopeGlobal, Elapsed: time.Minute,
		Deltas: map[string]*float64{ShortCalls: f64(31), EstablishedCallsIn: f64(40)}}); f == nil {
		t.Fatal("31 short calls in one minute did not fire")
	}
}
