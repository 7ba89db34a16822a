package store

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// BatcherOptions tune a Batcher. Zero values take the defaults.
type BatcherOptions struct {
	// MaxItems flushes when this many records are pending (default 5000).
	MaxItems int
	// Interval flushes at least this often while records are pending
	// (default 2s).
	Interval time.Duration
	// MaxPending drops new records while this many are pending because
	// the database is slow or down (default 20 × MaxItems).
	MaxPending int
}

// Batcher buffers the records of a live stream (ended calls, closed TLS
// connections, findings, counter samples) and writes them with the same
// idempotent path as SaveReport, flushing on size or time. Add* are safe
// from any goroutine; Run owns the flushing and must be running.
type Batcher struct {
	st     *Store
	sbc    string
	source string
	opts   BatcherOptions
	kick   chan struct{}

	mu      sync.Mutex
	calls   []*sip.Call
	conns   []*tlsaudit.Conn
	finds   []*finding.Finding
	samples []CounterSample
	dropped uint64
	flushes uint64
	lastErr error
}

// NewBatcher returns a Batcher writing as SaveReport(sbc, source, …).
func (s *Store) NewBatcher(sbc, source string, opts BatcherOptions) *Batcher {
	if opts.MaxItems <= 0 {
		opts.MaxItems = 5000
	}
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 20 * opts.MaxItems
	}
	return &Batcher{st: s, sbc: sbc, source: source, opts: opts, kick: make(chan struct{}, 1)}
}

func (b *Batcher) pendingLocked() int {
	return len(b.calls) + len(b.conns) + len(b.finds) + len(b.samples)
}

// admit reserves room for one record; it reports false (and counts a
// drop) when the buffer is full.
func (b *Batcher) admitLocked() bool {
	n := b.pendingLocked()
	if n >= b.opts.MaxPending {
		b.dropped++
		return false
	}
	if n+1 >= b.opts.MaxItems {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// AddCall queues a call (normally once it ended; adding it again later
// updates the stored row).
func (b *Batcher) AddCall(c *sip.Call) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.admitLocked() {
		b.calls = append(b.calls, c)
	}
}

// AddConn queues a TLS connection.
func (b *Batcher) AddConn(c *tlsaudit.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.admitLocked() {
		b.conns = append(b.conns, c)
	}
}

// AddFinding queues a finding.
func (b *Batcher) AddFinding(f *finding.Finding) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.admitLocked() {
		b.finds = append(b.finds, f)
	}
}

// AddSample queues a counter sample.
func (b *Batcher) AddSample(c CounterSample) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.admitLocked() {
		b.samples = append(b.samples, c)
	}
}

// BatcherStats are the Batcher's counters.
type BatcherStats struct {
	Pending int    `json:"pending"`
	Dropped uint64 `json:"dropped"`
	Flushes uint64 `json:"flushes"`
	LastErr string `json:"last_error,omitempty"`
}

// Stats returns the counters.
func (b *Batcher) Stats() BatcherStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := BatcherStats{Pending: b.pendingLocked(), Dropped: b.dropped, Flushes: b.flushes}
	if b.lastErr != nil {
		s.LastErr = b.lastErr.Error()
	}
	return s
}

// Flush writes everything pending now. On error the records stay pending
// and the next flush tries again.
func (b *Batcher) Flush(ctx context.Context) error {
	b.mu.Lock()
	calls, conns, finds, samples := b.calls, b.conns, b.finds, b.samples
	b.calls, b.conns, b.finds, b.samples = nil, nil, nil, nil
	b.mu.Unlock()
	if len(calls)+len(conns)+len(finds)+len(samples) == 0 {
		return nil
	}
	err := b.write(ctx, calls, conns, finds, samples)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lastErr = err
	if err != nil {
		// Put them back in front, within the bound.
		b.calls = append(calls, b.calls...)
		b.conns = append(conns, b.conns...)
		b.finds = append(finds, b.finds...)
		b.samples = append(samples, b.samples...)
		for b.pendingLocked() > b.opts.MaxPending && len(b.calls) > 0 {
			b.calls = b.calls[1:]
			b.dropped++
		}
		return err
	}
	b.flushes++
	return nil
}

func (b *Batcher) write(ctx context.Context, calls []*sip.Call, conns []*tlsaudit.Conn, finds []*finding.Finding, samples []CounterSample) error {
	if len(calls)+len(conns)+len(finds) > 0 {
		bt := buildBatch(b.sbc, calls, conns, finds)
		if _, err := b.st.saveBatch(ctx, b.sbc, b.source, json.RawMessage("{}"), bt); err != nil {
			return err
		}
	}
	return b.st.SaveCounterSamples(ctx, samples)
}

// Run flushes on size and on the interval until ctx ends, then flushes
// once more (with a bounded grace period) and returns.
func (b *Batcher) Run(ctx context.Context) error {
	t := time.NewTicker(b.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := b.Flush(fctx)
			cancel()
			return err
		case <-t.C:
		case <-b.kick:
		}
		if err := b.Flush(ctx); err != nil && ctx.Err() == nil {
			b.st.log.Warn("batch flush failed; will retry", "sbc", b.sbc, "err", err)
		}
	}
}
