package poll

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
)

func v2cPoll(target, community string) *config.Poll {
	return &config.Poll{Method: "snmp", Interval: config.Duration(time.Minute), Timeout: config.Duration(2 * time.Second),
		Retries: 0, MissesBeforeFinding: 3, ShortCallRatio: 0.3,
		SNMP: config.SNMP{Target: target, Version: "2c", Community: community}}
}

func fieldValues() map[string]val {
	return map[string]val{
		OIDSysUpTime:        ticks(360000),  // 1h
		g(39):               c64(1<<40 + 7), // short calls beyond 32 bits
		g(8):                c64(1000),
		g(9):                c64(500),
		g(4):                c64(1300),
		g(12):               gauge(87),
		g(37):               gauge(2),
		g(41):               c64(21), // NotEstablishCallsIn
		g(42):               c64(22), // NotEstablishCallsOut
		g(43):               integer(-1),
		g(35):               c64(4),
		OIDTLSAttemptedConn: c64(55),
		OIDTLSRejectedConns: c64(3),

		ipg(1, 1):  gauge(1), // index column
		ipg(2, 1):  gauge(180),
		ipg(9, 1):  c64(33), // EstablishedCallsIn (global col 8 + 1)
		ipg(39, 1): c64(12),
		ipg(41, 1): c64(7), // NotEstablishCallsOut: swapped
		ipg(42, 1): c64(9), // NotEstablishCallsIn
		ipg(36, 1): c64(4), // AbnormalTerminatedCallsOut
		ipg(14, 1): integer(-1),
		ipg(1, 3):  gauge(3),
		ipg(39, 3): c64(0),
		ipg(9, 3):  c64(5),
	}
}

func want(t *testing.T, v Values, name string, exp float64) {
	t.Helper()
	p, ok := v[name]
	if !ok || p == nil {
		t.Errorf("%s = missing/nil, want %v", name, exp)
		return
	}
	if *p != exp {
		t.Errorf("%s = %v, want %v", name, *p, exp)
	}
}

func wantNil(t *testing.T, v Values, name string) {
	t.Helper()
	p, ok := v[name]
	if !ok {
		t.Errorf("%s missing, want present as null", name)
	} else if p != nil {
		t.Errorf("%s = %v, want null (not supported)", name, *p)
	}
}

func TestSNMPv2cGlobalAndIPGroups(t *testing.T) {
	a := startSNMPD(t)
	a.set(t, fieldValues())
	r, err := NewSNMPReader("sbc1", v2cPoll(a.addr, testCommunity))
	if err != nil {
		t.Fatal(err)
	}
	rd, err := r.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rd.Uptime == nil || *rd.Uptime != time.Hour {
		t.Errorf("uptime = %v, want 1h", rd.Uptime)
	}
	want(t, rd.Global, ShortCalls, float64(1<<40+7))
	if raw := rd.raw["global/"+ShortCalls]; raw.v != 1<<40+7 || raw.bits != 64 {
		t.Errorf("raw short calls = %+v, want exact Counter64", raw)
	}
	want(t, rd.Global, EstablishedCallsIn, 1000)
	want(t, rd.Global, EstablishedCallsOut, 500)
	want(t, rd.Global, "asr", 87)
	want(t, rd.Global, "post_dial_delay_s", 2)
	want(t, rd.Global, "not_established_calls_in", 21)
	want(t, rd.Global, "not_established_calls_out", 22)
	want(t, rd.Global, "abnormal_terminated_calls_in", 4)
	want(t, rd.Global, TLSAttemptedConnections, 55)
	want(t, rd.Global, TLSRejectedConnections, 3)
	wantNil(t, rd.Global, "active_sessions")         // served as -1
	wantNil(t, rd.Global, "attempted_calls_rate_in") // Gauge32 all ones
	wantNil(t, rd.Global, "long_calls")              // Counter64 all ones
	wantNil(t, rd.Global, "average_call_duration_s") // not served: noSuchInstance

	if len(rd.IPGroups) != 2 {
		t.Fatalf("ip groups = %v, want 1 and 3", rd.IPGroups)
	}
	g1 := rd.IPGroups["1"]
	want(t, g1, "average_call_duration_s", 180)
	want(t, g1, EstablishedCallsIn, 33)
	want(t, g1, ShortCalls, 12)
	want(t, g1, "not_established_calls_in", 9)
	want(t, g1, "not_established_calls_out", 7)
	want(t, g1, "abnormal_terminated_calls_out", 4)
	wantNil(t, g1, "ner")
	if _, ok := g1["ip_group_index"]; ok {
		t.Error("index column read as a counter")
	}
	want(t, rd.IPGroups["3"], EstablishedCallsIn, 5)

	b, err := json.Marshal(rd)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"active_sessions":null`, `"ip_groups":{"1":{`, `"short_calls":1099511627783`, `"uptime_s":3600`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("JSON lacks %s: %s", s, b)
		}
	}
}

func TestSNMPv3AuthPriv(t *testing.T) {
	a := startSNMPD(t)
	a.set(t, fieldValues())
	dir := t.TempDir()
	privFile := filepath.Join(dir, "priv")
	if err := os.WriteFile(privFile, []byte(testPrivPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ user, auth string }{{testV3User, "SHA"}, {testV3User256, "SHA256"}} {
		t.Run(tc.auth, func(t *testing.T) {
			p := v2cPoll(a.addr, "")
			p.SNMP = config.SNMP{Target: a.addr, Version: "3", User: tc.user, AuthProto: tc.auth, AuthPass: testAuthPass,
				PrivProto: "AES", PrivPassFile: privFile}
			r, err := NewSNMPReader("sbc1", p)
			if err != nil {
				t.Fatal(err)
			}
			rd, err := r.Read(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want(t, rd.Global, ShortCalls, float64(1<<40+7))
			want(t, rd.IPGroups["1"], ShortCalls, 12)

			p.SNMP.PrivPassFile, p.SNMP.PrivPass = "", "wrong-priv-pass"
			bad, err := NewSNMPReader("sbc1", p)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if _, err := bad.Read(ctx); err == nil {
				t.Error("read with a wrong privacy passphrase succeeded")
			}
		})
	}
}

func TestSNMPCounterReset(t *testing.T) {
	a := startSNMPD(t)
	vals := fieldValues()
	a.set(t, vals)
	r, err := NewSNMPReader("sbc1", v2cPoll(a.addr, testCommunity))
	if err != nil {
		t.Fatal(err)
	}
	var tr Tracker
	read := func() ([]Sample, []Interval) {
		t.Helper()
		rd, err := r.Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return tr.Update(rd)
	}
	find := func(ss []Sample, scope, name string) Sample {
		t.Helper()
		for _, s := range ss {
			if s.Scope == scope && s.Counter == name {
				return s
			}
		}
		t.Fatalf("no sample %s %s", scope, name)
		return Sample{}
	}
	s, _ := read()
	if d := find(s, ScopeGlobal, ShortCalls); d.Delta != nil {
		t.Fatalf("first poll has a delta: %v", *d.Delta)
	}
	time.Sleep(20 * time.Millisecond)

	// Normal growth.
	vals[OIDSysUpTime] = ticks(366000)
	vals[g(39)] = c64(1<<40 + 17)
	vals[g(8)] = c64(1100)
	a.set(t, vals)
	s, ivs := read()
	sc := find(s, ScopeGlobal, ShortCalls)
	if sc.Delta == nil || *sc.Delta != 10 || sc.Reset || sc.Rate == nil || *sc.Rate <= 0 {
		t.Fatalf("short calls sample = %+v, want delta 10, no reset", sc)
	}
	if len(ivs) != 3 || ivs[0].Reset {
		t.Fatalf("intervals = %+v", ivs)
	}
	if gs := find(s, ScopeGlobal, "asr"); gs.Delta != nil || gs.Value == nil || *gs.Value != 87 {
		t.Errorf("gauge sample = %+v, want value only", gs)
	}

	// The SBC restarts: sysUpTime goes down, counters start over.
	vals[OIDSysUpTime] = ticks(500)
	vals[g(39)] = c64(3)
	vals[g(8)] = c64(40)
	vals[ipg(39, 1)] = c64(2)
	a.set(t, vals)
	s, ivs = read()
	sc = find(s, ScopeGlobal, ShortCalls)
	if sc.Delta == nil || *sc.Delta != 3 || !sc.Reset {
		t.Fatalf("after restart short calls = %+v, want delta 3 (since reset), reset", sc)
	}
	if ig := find(s, "ipgroup:1", ShortCalls); ig.Delta == nil || *ig.Delta != 2 || !ig.Reset {
		t.Errorf("after restart ip group short calls = %+v", ig)
	}
	if !ivs[0].Reset {
		t.Error("interval not marked reset")
	}

	// A counter goes down without a restart (statistics cleared).
	vals[OIDSysUpTime] = ticks(6500)
	vals[g(39)] = c64(1)
	a.set(t, vals)
	s, _ = read()
	if sc = find(s, ScopeGlobal, ShortCalls); sc.Delta == nil || *sc.Delta != 1 || !sc.Reset {
		t.Errorf("counter down = %+v, want delta 1 reset", sc)
	}
	if e := find(s, ScopeGlobal, EstablishedCallsIn); e.Delta == nil || *e.Delta != 0 || e.Reset {
		t.Errorf("unchanged counter = %+v, want delta 0 no reset", e)
	}
}

// recSink records what the scheduler emits.
type recSink struct {
	mu       sync.Mutex
	samples  []Sample
	findings []*finding.Finding
}

func (s *recSink) Samples(_ context.Context, ss []Sample) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = append(s.samples, ss...)
	return nil
}

func (s *recSink) Finding(_ context.Context, f *finding.Finding) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.findings = append(s.findings, f)
	return nil
}

func (s *recSink) count(sbc, counter string, value float64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, x := range s.samples {
		if x.SBC == sbc && x.Counter == counter && x.Value != nil && *x.Value == value {
			n++
		}
	}
	return n
}

func (s *recSink) rules(rule string) []*finding.Finding {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*finding.Finding
	for _, f := range s.findings {
		if f.Rule == rule {
			out = append(out, f)
		}
	}
	return out
}

func TestSNMPWrongCommunityUnreachable(t *testing.T) {
	a := startSNMPD(t)
	a.set(t, fieldValues())
	good := v2cPoll(a.addr, testCommunity)
	bad := v2cPoll(a.addr, "not-the-community")
	for _, p := range []*config.Poll{good, bad} {
		p.Interval = config.Duration(300 * time.Millisecond)
		p.Timeout = config.Duration(150 * time.Millisecond)
		p.Retries = 1
	}
	cfg := &config.Config{SBCs: []config.SBC{{Name: "good", Poll: good}, {Name: "bad", Poll: bad}}}
	cfg.Serve.MaxPolls = 2
	sink := &recSink{}
	s := NewScheduler(cfg, sink, WithJitter(0), WithLogger(testLogger(t)), WithBackoff(20*time.Millisecond, 20*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2200*time.Millisecond)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	f := sink.rules(finding.SBCUnreachable)
	if len(f) != 1 {
		t.Fatalf("sbc_unreachable findings = %d, want 1: %+v", len(f), f)
	}
	if f[0].SBC != "bad" || f[0].Evidence["misses"] != 3 || f[0].Source != finding.SourcePoll ||
		!strings.Contains(f[0].Evidence["last_error"].(string), "no response before timeout") {
		t.Errorf("finding = %+v", f[0])
	}
	if n := sink.count("bad", PollUp, 0); n < 3 {
		t.Errorf("bad SBC recorded %d gaps, want >= 3", n)
	}
	if n := sink.count("good", PollUp, 1); n < 6 {
		t.Errorf("good SBC polled %d times in 2.2s at 300ms, want >= 6", n)
	}
	var st Status
	for _, x := range s.Status() {
		if x.SBC == "bad" {
			st = x
		}
	}
	if st.Misses < 3 || st.LastError == "" || !st.LastSuccess.IsZero() {
		t.Errorf("status = %+v", st)
	}
}

// testLogger sends the scheduler's log to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
