package poll

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
)

// Sink receives what the scheduler produces. The scheduler serialises its
// calls, so a Sink need not be safe for concurrent use. An error is
// logged; polling goes on.
type Sink interface {
	Samples(ctx context.Context, samples []Sample) error
	Finding(ctx context.Context, f *finding.Finding) error
}

// NewReader returns the reader for an SBC's Poll.Method.
func NewReader(sbc config.SBC) (Reader, error) {
	if sbc.Poll == nil {
		return nil, fmt.Errorf("poll %s: no poll settings", sbc.Name)
	}
	switch sbc.Poll.Method {
	case "snmp":
		return NewSNMPReader(sbc.Name, sbc.Poll)
	case "rest":
		return NewRESTReader(sbc.Name, sbc.Poll)
	}
	return nil, fmt.Errorf("poll %s: method %q is not snmp or rest", sbc.Name, sbc.Poll.Method)
}

// Retry is how one poll is attempted.
type Retry struct {
	// Timeout bounds each attempt.
	Timeout time.Duration
	// Retries is how many more attempts follow a failed one.
	Retries int
	// Backoff is the wait before the first retry; it doubles for each
	// further one, up to MaxBackoff, with ±20% jitter.
	Backoff, MaxBackoff time.Duration
}

// RetryFor returns the retry policy of a Poll with the default backoff
// (1s doubling to 10s).
func RetryFor(p *config.Poll) Retry {
	return Retry{Timeout: p.Timeout.D(), Retries: p.Retries, Backoff: time.Second, MaxBackoff: 10 * time.Second}
}

// ReadOnce reads with retries and backoff. ErrUnauthorized is not retried.
func ReadOnce(ctx context.Context, r Reader, rt Retry) (*Reading, error) {
	return readRetry(ctx, r, rt, nil, nil)
}

func readRetry(ctx context.Context, r Reader, rt Retry, acquire func(context.Context) error, release func()) (*Reading, error) {
	if rt.Timeout <= 0 {
		rt.Timeout = 5 * time.Second
	}
	var err error
	for attempt := 0; attempt <= max(rt.Retries, 0); attempt++ {
		if attempt > 0 {
			if serr := sleep(ctx, backoff(rt, attempt)); serr != nil {
				return nil, errors.Join(err, serr)
			}
		}
		if acquire != nil {
			if aerr := acquire(ctx); aerr != nil {
				return nil, errors.Join(err, aerr)
			}
		}
		actx, cancel := context.WithTimeout(ctx, rt.Timeout)
		var rd *Reading
		rd, err = r.Read(actx)
		cancel()
		if release != nil {
			release()
		}
		if err == nil {
			return rd, nil
		}
		if errors.Is(err, ErrUnauthorized) || ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func backoff(rt Retry, attempt int) time.Duration {
	b := rt.Backoff
	if b <= 0 {
		return 0
	}
	for i := 1; i < attempt && (rt.MaxBackoff <= 0 || b < rt.MaxBackoff); i++ {
		b *= 2
	}
	if rt.MaxBackoff > 0 && b > rt.MaxBackoff {
		b = rt.MaxBackoff
	}
	return time.Duration(float64(b) * (0.8 + 0.4*rand.Float64()))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Option configures a Scheduler.
type Option func(*Scheduler)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Scheduler) { s.log = l } }

// WithMaxConcurrent bounds the polls in flight (default
// cfg.Serve.MaxPolls, at least 1).
func WithMaxConcurrent(n int) Option { return func(s *Scheduler) { s.maxConc = n } }

// WithJitter sets the jitter as a fraction of the interval (default 0.1):
// the first poll of each SBC waits a random [0, j×interval), and every
// later one interval + [0, j×interval).
func WithJitter(j float64) Option { return func(s *Scheduler) { s.jitter = j } }

// WithBackoff sets the retry backoff (default 1s doubling up to 10s).
func WithBackoff(base, maxWait time.Duration) Option {
	return func(s *Scheduler) { s.backoff, s.maxBackoff = base, maxWait }
}

// WithReaderFactory replaces NewReader (tests, other device types).
func WithReaderFactory(f func(config.SBC) (Reader, error)) Option {
	return func(s *Scheduler) { s.newReader = f }
}

// WithSpikeConfig sets the short_calls_spike parameters other than
// Ratio and Interval, which come from each SBC's Poll.
func WithSpikeConfig(c SpikeConfig) Option { return func(s *Scheduler) { s.spike = c } }

// Scheduler polls every SBC that has a Poll section on its own interval
// and hands samples and findings to a Sink.
type Scheduler struct {
	cfg        *config.Config
	sink       Sink
	log        *slog.Logger
	maxConc    int
	jitter     float64
	backoff    time.Duration
	maxBackoff time.Duration
	newReader  func(config.SBC) (Reader, error)
	spike      SpikeConfig

	sem    chan struct{}
	sinkMu sync.Mutex
	mu     sync.Mutex
	status map[string]*Status
}

// Status is the state of one SBC's poller.
type Status struct {
	SBC         string    `json:"sbc"`
	Method      string    `json:"method"`
	Target      string    `json:"target"`
	LastAttempt time.Time `json:"last_attempt"`
	LastSuccess time.Time `json:"last_success"`
	LastError   string    `json:"last_error,omitempty"`
	// Misses counts consecutive failed polls; FailingSince is the time of
	// the first of them.
	Misses       int       `json:"misses"`
	FailingSince time.Time `json:"failing_since"`
}

// NewScheduler returns a scheduler over cfg's SBCs. Nothing runs until Run.
func NewScheduler(cfg *config.Config, sink Sink, opts ...Option) *Scheduler {
	s := &Scheduler{cfg: cfg, sink: sink, log: slog.Default(), maxConc: cfg.Serve.MaxPolls,
		jitter: 0.1, backoff: time.Second, maxBackoff: 10 * time.Second, newReader: NewReader,
		status: map[string]*Status{}}
	for _, o := range opts {
		o(s)
	}
	if s.maxConc < 1 {
		s.maxConc = 1
	}
	s.log = s.log.With("component", "audiocodes/poll")
	return s
}

// Status returns a copy of every poller's state.
func (s *Scheduler) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Status
	for _, sbc := range s.cfg.SBCs {
		if st := s.status[sbc.Name]; st != nil {
			out = append(out, *st)
		}
	}
	return out
}

type worker struct {
	sbc     config.SBC
	reader  Reader
	tracker Tracker
	spike   *SpikeDetector
	misses  int
	since   time.Time
}

// Run polls until ctx is done, then returns nil. It returns an error at
// once, polling nothing, when an SBC's poll settings cannot be used, and
// nil at once when no SBC has poll settings.
func (s *Scheduler) Run(ctx context.Context) error {
	var workers []*worker
	var errs []error
	for _, sbc := range s.cfg.SBCs {
		if sbc.Poll == nil {
			continue
		}
		r, err := s.newReader(sbc)
		if err != nil {
			// One SBC's unusable settings (an unreadable secret file, a
			// bad URL) must not stop the polling of the others.
			s.log.Error("poll settings unusable; this SBC is not polled", "sbc", sbc.Name, "err", err)
			errs = append(errs, err)
			continue
		}
		sc := s.spike
		sc.Ratio = sbc.Poll.ShortCallRatio
		sc.Interval = sbc.Poll.Interval.D()
		workers = append(workers, &worker{sbc: sbc, reader: r, spike: NewSpikeDetector(sc)})
		s.mu.Lock()
		s.status[sbc.Name] = &Status{SBC: sbc.Name, Method: sbc.Poll.Method, Target: r.Target()}
		s.mu.Unlock()
	}
	if len(workers) == 0 && len(errs) > 0 {
		return fmt.Errorf("poll: %w", errors.Join(errs...))
	}
	s.sem = make(chan struct{}, s.maxConc)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { s.loop(ctx, w) })
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("poll: %w", errors.Join(errs...))
	}
	return nil
}

func (s *Scheduler) interval(w *worker) time.Duration {
	iv := w.sbc.Poll.Interval.D()
	if iv <= 0 {
		iv = time.Minute
	}
	return iv
}

func (s *Scheduler) jitterFor(iv time.Duration) time.Duration {
	if s.jitter <= 0 {
		return 0
	}
	return time.Duration(rand.Float64() * s.jitter * float64(iv))
}

func (s *Scheduler) loop(ctx context.Context, w *worker) {
	iv := s.interval(w)
	if err := sleep(ctx, s.jitterFor(iv)); err != nil {
		return
	}
	for {
		start := time.Now()
		s.pollOnce(ctx, w)
		wait := time.Until(start.Add(iv + s.jitterFor(iv)))
		if err := sleep(ctx, wait); err != nil {
			return
		}
	}
}

func (s *Scheduler) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Scheduler) release() { <-s.sem }

func (s *Scheduler) pollOnce(ctx context.Context, w *worker) {
	rt := RetryFor(w.sbc.Poll)
	rt.Backoff, rt.MaxBackoff = s.backoff, s.maxBackoff
	now := time.Now()
	rd, err := readRetry(ctx, w.reader, rt, s.acquire, s.release)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		s.miss(ctx, w, now, err)
		return
	}
	if w.misses >= w.sbc.Poll.MissesBeforeFinding {
		s.log.Info("SBC reachable again", "sbc", w.sbc.Name, "misses", w.misses)
	}
	w.misses = 0
	s.mu.Lock()
	st := s.status[w.sbc.Name]
	st.LastAttempt, st.LastSuccess, st.LastError, st.Misses, st.FailingSince = now, rd.Time, "", 0, time.Time{}
	s.mu.Unlock()

	samples, ivs := w.tracker.Update(rd)
	samples = append(samples, Sample{SBC: w.sbc.Name, Scope: ScopeGlobal, Counter: PollUp, Time: rd.Time, Value: f64(1)})
	var findings []*finding.Finding
	for _, iv := range ivs {
		if f := w.spike.Observe(iv); f != nil {
			f.Evidence["target"] = w.reader.Target()
			findings = append(findings, f)
		}
	}
	s.emit(ctx, samples, findings)
}

func (s *Scheduler) miss(ctx context.Context, w *worker, now time.Time, err error) {
	w.misses++
	if w.misses == 1 {
		w.since = now
	}
	s.mu.Lock()
	st := s.status[w.sbc.Name]
	st.LastAttempt, st.LastError, st.Misses, st.FailingSince = now, err.Error(), w.misses, w.since
	s.mu.Unlock()
	s.log.Warn("poll failed", "sbc", w.sbc.Name, "target", w.reader.Target(), "misses", w.misses, "err", err)

	gap := []Sample{{SBC: w.sbc.Name, Scope: ScopeGlobal, Counter: PollUp, Time: now, Value: f64(0)}}
	var findings []*finding.Finding
	if n := max(w.sbc.Poll.MissesBeforeFinding, 1); w.misses == n {
		f := finding.New(finding.SBCUnreachable, finding.Warning, now,
			"%s: %s poller could not reach %s %d times in a row since %s: %v",
			w.sbc.Name, w.sbc.Poll.Method, w.reader.Target(), w.misses, w.since.UTC().Format(time.RFC3339), err)
		f.Source = finding.SourcePoll
		f.SBC = w.sbc.Name
		f.Connection = w.reader.Target()
		f.Evidence["sbc"] = w.sbc.Name
		f.Evidence["target"] = w.reader.Target()
		f.Evidence["method"] = w.sbc.Poll.Method
		f.Evidence["last_error"] = err.Error()
		f.Evidence["since"] = w.since.UTC()
		f.Evidence["misses"] = w.misses
		findings = append(findings, f)
	}
	s.emit(ctx, gap, findings)
}

func (s *Scheduler) emit(ctx context.Context, samples []Sample, findings []*finding.Finding) {
	s.sinkMu.Lock()
	defer s.sinkMu.Unlock()
	if len(samples) > 0 {
		if err := s.sink.Samples(ctx, samples); err != nil {
			s.log.Error("sink samples", "err", err)
		}
	}
	for _, f := range findings {
		if err := s.sink.Finding(ctx, f); err != nil {
			s.log.Error("sink finding", "rule", f.Rule, "err", err)
		}
	}
}
