package poll

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
)

// fakeReader is an in-memory SBC: each Read takes `work` of (bubble) time
// and returns counters that grow by one call a poll, or fails while down.
type fakeReader struct {
	name  string
	work  time.Duration
	down  atomic.Bool
	hang  bool // a down reader hangs until the deadline instead of failing at once
	reads atomic.Int64
	times []time.Time
	mu    sync.Mutex

	inFlight, maxInFlight *atomic.Int64
}

func (f *fakeReader) Target() string { return "fake://" + f.name }

func (f *fakeReader) Read(ctx context.Context) (*Reading, error) {
	n := f.reads.Add(1)
	if f.inFlight != nil {
		cur := f.inFlight.Add(1)
		defer f.inFlight.Add(-1)
		for {
			m := f.maxInFlight.Load()
			if cur <= m || f.maxInFlight.CompareAndSwap(m, cur) {
				break
			}
		}
	}
	f.mu.Lock()
	f.times = append(f.times, time.Now())
	f.mu.Unlock()
	if f.down.Load() {
		if f.hang {
			<-ctx.Done()
			return nil, fmt.Errorf("fake %s: %w", f.name, ctx.Err())
		}
		return nil, errors.New("fake: connection refused")
	}
	select {
	case <-time.After(f.work):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	up := time.Duration(n) * time.Minute
	return &Reading{SBC: f.name, Method: "fake", Target: f.Target(), Time: time.Now(), Uptime: &up,
		Global: Values{ShortCalls: f64(float64(n)), EstablishedCallsIn: f64(float64(10 * n))}}, nil
}

func fakeCfg(readers map[string]*fakeReader, interval time.Duration, maxPolls int) (*config.Config, func(config.SBC) (Reader, error)) {
	cfg := &config.Config{}
	for name := range readers {
		cfg.SBCs = append(cfg.SBCs, config.SBC{Name: name, Poll: &config.Poll{Method: "snmp",
			Interval: config.Duration(interval), Timeout: config.Duration(5 * time.Second), Retries: 0,
			MissesBeforeFinding: 3, ShortCallRatio: 0.3}})
	}
	cfg.Serve.MaxPolls = maxPolls
	return cfg, func(s config.SBC) (Reader, error) { return readers[s.Name], nil }
}

func TestSchedulerConcurrencyLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var inFlight, maxIn atomic.Int64
		readers := map[string]*fakeReader{}
		for i := range 8 {
			n := fmt.Sprintf("sbc%d", i)
			readers[n] = &fakeReader{name: n, work: 3 * time.Second, inFlight: &inFlight, maxInFlight: &maxIn}
		}
		cfg, factory := fakeCfg(readers, 10*time.Second, 3)
		sink := &recSink{}
		s := NewScheduler(cfg, sink, WithReaderFactory(factory), WithJitter(0), WithLogger(testLogger(t)))
		ctx, cancel := context.WithTimeout(t.Context(), 35*time.Second)
		defer cancel()
		if err := s.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if m := maxIn.Load(); m != 3 {
			t.Errorf("max polls in flight = %d, want exactly the limit 3", m)
		}
		for n, r := range readers {
			// 8 polls of 3 s through 3 slots take 9 s, well inside 10 s.
			if got := r.reads.Load(); got < 3 {
				t.Errorf("%s polled %d times in 35s at 10s, want >= 3", n, got)
			}
		}
	})
}

func TestSchedulerUnreachableDoesNotDelayOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dead := &fakeReader{name: "dead", hang: true}
		dead.down.Store(true)
		ok := &fakeReader{name: "ok", work: 100 * time.Millisecond}
		readers := map[string]*fakeReader{"dead": dead, "ok": ok}
		cfg, factory := fakeCfg(readers, 10*time.Second, 2)
		for _, sbc := range cfg.SBCs {
			sbc.Poll.Retries = 2 // dead burns 3 × 5 s timeouts plus backoff per poll
		}
		sink := &recSink{}
		s := NewScheduler(cfg, sink, WithReaderFactory(factory), WithJitter(0), WithLogger(testLogger(t)))
		ctx, cancel := context.WithTimeout(t.Context(), 95*time.Second)
		defer cancel()
		start := time.Now()
		if err := s.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if n := ok.reads.Load(); n != 10 {
			t.Errorf("ok polled %d times in 95s at 10s, want 10", n)
		}
		for i, at := range ok.times {
			if want := start.Add(time.Duration(i) * 10 * time.Second); !at.Equal(want) {
				t.Errorf("ok poll %d at +%s, want +%s", i, at.Sub(start), want.Sub(start))
			}
		}
		if sink.count("ok", PollUp, 1) != 10 || sink.count("ok", PollUp, 0) != 0 {
			t.Errorf("ok poll_up samples: %d up, %d down", sink.count("ok", PollUp, 1), sink.count("ok", PollUp, 0))
		}
		if dead.reads.Load() < 6 {
			t.Errorf("dead attempted %d reads, want retries", dead.reads.Load())
		}
	})
}

func TestSchedulerMissesMakeOneFinding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		flaky := &fakeReader{name: "flaky", work: time.Second}
		flaky.down.Store(true)
		readers := map[string]*fakeReader{"flaky": flaky}
		cfg, factory := fakeCfg(readers, time.Minute, 1)
		sink := &recSink{}
		s := NewScheduler(cfg, sink, WithReaderFactory(factory), WithJitter(0.1), WithLogger(testLogger(t)))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()

		time.Sleep(2*time.Minute + 30*time.Second) // polls 1-3 fail (within jitter)
		synctest.Wait()
		if f := sink.rules(finding.SBCUnreachable); len(f) != 0 {
			// 3 polls start at 0-6 s, 60-72 s, 120-138 s: the third may
			// not have happened yet.
			if s.Status()[0].Misses < 3 {
				t.Fatalf("finding before 3 misses: %+v", f[0])
			}
		}
		time.Sleep(5 * time.Minute) // 5 more misses
		synctest.Wait()
		f := sink.rules(finding.SBCUnreachable)
		if len(f) != 1 {
			t.Fatalf("sbc_unreachable findings after 8 misses = %d, want 1", len(f))
		}
		ev := f[0].Evidence
		if ev["misses"] != 3 || ev["target"] != "fake://flaky" || ev["last_error"] != "fake: connection refused" || f[0].SBC != "flaky" {
			t.Errorf("evidence = %v", ev)
		}
		if since, _ := ev["since"].(time.Time); !since.Before(f[0].Time) {
			t.Errorf("since %v not before the finding's time %v", since, f[0].Time)
		}
		if gaps := sink.count("flaky", PollUp, 0); gaps < 7 {
			t.Errorf("gaps recorded = %d, want one per failed poll", gaps)
		}

		// Recovery resets the count; failing again makes a new finding.
		flaky.down.Store(false)
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		if st := s.Status()[0]; st.Misses != 0 || st.LastError != "" || st.LastSuccess.IsZero() {
			t.Errorf("status after recovery = %+v", st)
		}
		flaky.down.Store(true)
		time.Sleep(4 * time.Minute)
		synctest.Wait()
		if n := len(sink.rules(finding.SBCUnreachable)); n != 2 {
			t.Errorf("findings after a second outage = %d, want 2", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestSchedulerEmitsDeltasAndSpike(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int64
		r := readerFunc(func(ctx context.Context) (*Reading, error) {
			i := n.Add(1)
			short := 3 * i
			if i >= 10 {
				short += 40 * (i - 9) // lost transfers from poll 10 on
			}
			return &Reading{SBC: "sbc1", Time: time.Now(), Global: Values{
				ShortCalls: f64(float64(short)), EstablishedCallsIn: f64(float64(60 * i)), "asr": f64(80)}}, nil
		})
		cfg := &config.Config{SBCs: []config.SBC{{Name: "sbc1", Poll: &config.Poll{Method: "rest",
			Interval: config.Duration(time.Minute), Timeout: config.Duration(time.Second), MissesBeforeFinding: 3, ShortCallRatio: 0.3}}}}
		sink := &recSink{}
		s := NewScheduler(cfg, sink, WithReaderFactory(func(config.SBC) (Reader, error) { return r, nil }),
			WithJitter(0), WithLogger(testLogger(t)))
		ctx, cancel := context.WithTimeout(t.Context(), 12*time.Minute+time.Second)
		defer cancel()
		if err := s.Run(ctx); err != nil {
			t.Fatal(err)
		}
		f := sink.rules(finding.ShortCallsSpike)
		if len(f) != 1 || f[0].Evidence["delta"] != 43.0 || f[0].Evidence["established_delta"] != 60.0 {
			t.Fatalf("spike findings = %+v", f)
		}
		var deltas, ratios int
		for _, x := range sink.samples {
			if x.Counter == ShortCalls && x.Delta != nil {
				deltas++
			}
			if x.Counter == DerivedShortCallRatio && x.Value != nil {
				ratios++
			}
			if x.Counter == "asr" && x.Delta != nil {
				t.Error("gauge got a delta")
			}
		}
		if deltas != 12 || ratios != 12 {
			t.Errorf("short-call deltas %d, ratios %d; want 12 each (13 polls)", deltas, ratios)
		}
	})
}

type readerFunc func(context.Context) (*Reading, error)

func (f readerFunc) Read(ctx context.Context) (*Reading, error) { return f(ctx) }
func (f readerFunc) Target() string                             { return "func" }

func TestSchedulerBadConfigFailsFast(t *testing.T) {
	cfg := &config.Config{SBCs: []config.SBC{{Name: "x", Poll: &config.Poll{Method: "snmp",
		SNMP: config.SNMP{Target: "udp://127.0.0.1:1", Version: "3", User: "u", AuthProto: "MD5"}}}}}
	err := NewScheduler(cfg, &recSink{}).Run(t.Context())
	if err == nil {
		t.Fatal("MD5 v3 accepted")
	}
}

// TestSchedulerBadSBCDoesNotStopOthers: one SBC whose settings cannot be
// used is logged and skipped; the others are polled, and Run reports the
// bad one when it returns.
func TestSchedulerBadSBCDoesNotStopOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		good := &fakeReader{name: "good"}
		cfg, factory := fakeCfg(map[string]*fakeReader{"good": good, "broken": nil}, time.Minute, 2)
		bad := func(s config.SBC) (Reader, error) {
			if s.Name == "broken" {
				return nil, errors.New("community_file: permission denied")
			}
			return factory(s)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute+time.Second)
		defer cancel()
		err := NewScheduler(cfg, &recSink{}, WithReaderFactory(bad), WithJitter(0), WithLogger(testLogger(t))).Run(ctx)
		if good.reads.Load() < 5 {
			t.Fatalf("good SBC polled %d times in 5 minutes", good.reads.Load())
		}
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("Run = %v, want the broken SBC reported", err)
		}
	})
}
