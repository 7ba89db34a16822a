package daemon

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/spool"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// batch is what one write stores: it is also the spool's record.
type batch struct {
	SBC      string             `json:"sbc"`
	Calls    []*sip.Call        `json:"calls,omitempty"`
	Conns    []spoolConn        `json:"conns,omitempty"`
	Findings []*finding.Finding `json:"findings,omitempty"`

	keys map[string]int // finding key → index in Findings, while pending
}

func (b *batch) size() int { return len(b.Calls) + len(b.Conns) + len(b.Findings) }

// spoolConn is a TLS connection with the fields its JSON form leaves out.
type spoolConn struct {
	*tlsaudit.Conn
	XClient   netip.AddrPort `json:"x_client"`
	XServer   netip.AddrPort `json:"x_server"`
	XChain    [][]byte       `json:"x_chain,omitempty"`
	XDuration time.Duration  `json:"x_duration"`
}

func toSpoolConn(c *tlsaudit.Conn) spoolConn {
	sc := spoolConn{Conn: c, XClient: c.Client, XServer: c.Server, XDuration: c.Duration}
	for _, cert := range c.Chain {
		sc.XChain = append(sc.XChain, cert.Raw)
	}
	return sc
}

func (sc spoolConn) conn() *tlsaudit.Conn {
	c := sc.Conn
	if c == nil {
		c = &tlsaudit.Conn{}
	}
	c.Client, c.Server, c.Duration = sc.XClient, sc.XServer, sc.XDuration
	if len(c.Chain) == 0 {
		for _, der := range sc.XChain {
			if cert, err := x509.ParseCertificate(der); err == nil {
				c.Chain = append(c.Chain, cert)
			}
		}
	}
	return c
}

// saveFunc writes one batch to the database; it must be idempotent.
type saveFunc func(ctx context.Context, b *batch) error

// storeSave writes a batch as a report of source "live".
func storeSave(st *store.Store) saveFunc {
	return func(ctx context.Context, b *batch) error {
		conns := make([]*tlsaudit.Conn, 0, len(b.Conns))
		for _, c := range b.Conns {
			conns = append(conns, c.conn())
		}
		return st.SaveReport(ctx, b.SBC, "live", report.Build(b.Calls, conns, b.Findings))
	}
}

// writer is the Sink side of the store: records are batched in memory
// (bounded) and written by Run. When a write fails or times out (the
// database is down or slow) the batch goes to the spool, and so does
// every later batch while the spool holds anything, so that order is
// kept; the spool is replayed, oldest first, as soon as writes succeed
// again. Every row has an idempotent key, so a batch replayed after a
// write that did commit stores nothing twice.
type writer struct {
	sbc        string
	save       saveFunc
	sp         *spool.Spool
	log        *slog.Logger
	maxPending int
	batchSize  int
	timeout    time.Duration

	// route names the SBC of a record when several are configured (nil:
	// every record goes under sbc).
	route *sbcRoute

	mu      sync.Mutex
	pending map[string]*batch // by SBC name
	npend   int
	kick    chan struct{}
	down    bool // the last write failed (logged once per outage)

	written, spooled, replayed, dropped, failures atomic.Uint64
	spoolDrops                                    atomic.Uint64

	// saved maps the engine's ids of findings already written to their
	// store ids, so a finding that cites one written in an earlier batch
	// (refer_delivery_failed citing the handshake failures decided
	// minutes before it) cites it by its store id. Bounded: the oldest
	// entries go first.
	saved *idMemo
}

// idMemo is a bounded map: past max entries the oldest are forgotten.
type idMemo struct {
	m     map[string]string
	order []string
	max   int
}

func newIDMemo(max int) *idMemo { return &idMemo{m: map[string]string{}, max: max} }

func (c *idMemo) put(k, v string) {
	if _, ok := c.m[k]; !ok {
		c.order = append(c.order, k)
	}
	c.m[k] = v
	for len(c.order) > c.max {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
}

// resolveCites returns b with the references of its findings to findings
// of earlier batches (Cites, evidence "explained_by" and
// "possibly_explained_by") rewritten to their store ids. Findings it
// changes are copied: other sinks share them.
func (w *writer) resolveCites(b *batch) *batch {
	in := make(map[string]bool, len(b.Findings))
	for _, f := range b.Findings {
		if f.ID != "" {
			in[f.ID] = true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	lookup := func(ref string) (string, bool) {
		if in[ref] {
			return "", false
		}
		id, ok := w.saved.m[ref]
		return id, ok
	}
	out := *b
	out.Findings = slices.Clone(b.Findings)
	for i, f := range out.Findings {
		var g *finding.Finding
		own := func() {
			if g == nil {
				c := *f
				c.Cites = slices.Clone(f.Cites)
				c.Evidence = maps.Clone(f.Evidence)
				g = &c
			}
		}
		for j, ref := range f.Cites {
			if id, ok := lookup(ref); ok {
				own()
				g.Cites[j] = id
			}
		}
		for _, k := range []string{"explained_by", "possibly_explained_by"} {
			if v, ok := f.Evidence[k].(string); ok {
				if id, ok := lookup(v); ok {
					own()
					g.Evidence[k] = id
				}
			}
		}
		if g != nil {
			out.Findings[i] = g
		}
	}
	return &out
}

// noteSaved remembers the store ids of b's findings.
func (w *writer) noteSaved(b *batch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range b.Findings {
		if f.ID != "" {
			w.saved.put(f.ID, store.StoredFindingID(b.SBC, f))
		}
	}
}

var _ Sink = (*writer)(nil)

func newWriter(sbc string, save saveFunc, sp *spool.Spool, log *slog.Logger) *writer {
	return &writer{sbc: sbc, save: save, sp: sp, log: log, maxPending: 100000, batchSize: 2000,
		timeout: 10 * time.Second, kick: make(chan struct{}, 1), pending: map[string]*batch{},
		saved: newIDMemo(200000)}
}

func (w *writer) add(sbc string, f func(b *batch)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if sbc == "" {
		sbc = w.sbc
	}
	if w.npend >= w.maxPending {
		if w.dropped.Add(1) == 1 {
			w.log.Error("writer: records dropped: the spool cannot keep up", "pending", w.npend)
		}
		return
	}
	b := w.pending[sbc]
	if b == nil {
		b = &batch{SBC: sbc}
		w.pending[sbc] = b
	}
	n := b.size()
	f(b)
	w.npend += b.size() - n
	if w.npend >= w.batchSize {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

func (w *writer) Call(c *sip.Call) {
	w.add(w.route.call(c), func(b *batch) { b.Calls = append(b.Calls, c) })
}

func (w *writer) TLSConn(c *tlsaudit.Conn) {
	w.add(w.route.conn(c), func(b *batch) { b.Conns = append(b.Conns, toSpoolConn(c)) })
}

// Finding queues f; an update of a finding still pending (same key)
// replaces it, so a batch carries each finding's latest version once.
func (w *writer) Finding(f *finding.Finding) {
	k := FindingKey(f)
	if f.SBC == "" {
		// On the caller's finding: an update of it keeps the SBC.
		f.SBC = w.route.finding(f)
	}
	f = snapshot(f) // written on the writer's goroutine
	w.add(f.SBC, func(b *batch) {
		if i, ok := b.keys[k]; ok {
			b.Findings[i] = f
			return
		}
		if b.keys == nil {
			b.keys = map[string]int{}
		}
		b.keys[k] = len(b.Findings)
		b.Findings = append(b.Findings, f)
	})
}

// take returns what is pending, one batch per SBC in name order.
func (w *writer) take() []*batch {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.npend == 0 {
		return nil
	}
	out := make([]*batch, 0, len(w.pending))
	for _, name := range slices.Sorted(maps.Keys(w.pending)) {
		if b := w.pending[name]; b.size() > 0 {
			out = append(out, b)
		}
	}
	clear(w.pending)
	w.npend = 0
	return out
}

// Run writes every second (or when a batch is full) until ctx ends.
func (w *writer) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	backoff, next := time.Second, time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-w.kick:
		}
		w.cycle(ctx)
		if time.Now().After(next) {
			if err := w.replay(ctx); err != nil {
				next = time.Now().Add(backoff)
				backoff = min(2*backoff, 30*time.Second)
			} else {
				backoff = time.Second
			}
		}
	}
}

// cycle writes what is pending, or spools it.
func (w *writer) cycle(ctx context.Context) {
	for _, b := range w.take() {
		if !w.sp.Empty() {
			w.toSpool(b)
			continue
		}
		if err := w.write(ctx, b); err != nil {
			w.toSpool(b)
		}
	}
}

func (w *writer) write(ctx context.Context, b *batch) error {
	wctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	err := w.save(wctx, w.resolveCites(b))
	if err == nil {
		w.noteSaved(b)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.failures.Add(1)
		if !w.down {
			w.down = true
			w.log.Warn("writer: the database does not take writes; spooling until it does", "err", err)
		}
		return err
	}
	if w.down {
		w.down = false
		w.log.Info("writer: the database takes writes again")
	}
	w.written.Add(uint64(b.size()))
	return nil
}

func (w *writer) toSpool(b *batch) {
	rec, err := json.Marshal(b)
	if err == nil {
		err = w.sp.Append(rec)
	}
	if err != nil {
		n := w.spoolDrops.Add(uint64(b.size()))
		w.log.Error("writer: records dropped: the spool refused them", "records", b.size(), "dropped_total", n, "err", err)
		return
	}
	w.spooled.Add(uint64(b.size()))
}

// replay writes the spool back, oldest segment first, until it is empty
// or a write fails.
func (w *writer) replay(ctx context.Context) error {
	for ctx.Err() == nil {
		seg, ok, err := w.sp.Oldest()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		for _, rec := range seg.Records {
			var b batch
			if err := json.Unmarshal(rec, &b); err != nil {
				w.log.Error("writer: unreadable spool record skipped", "err", err)
				continue
			}
			if err := w.write(ctx, &b); err != nil {
				return err
			}
			w.replayed.Add(uint64(b.size()))
		}
		if err := w.sp.Remove(seg); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Flush is the last write on shutdown, bounded by ctx: what is pending
// goes to the database or, failing that, to the spool (kept for the next
// start).
func (w *writer) Flush(ctx context.Context) error {
	w.cycle(ctx)
	if err := w.replay(ctx); err != nil && !errors.Is(err, context.Canceled) {
		if st := w.sp.Stats(); st.Segments > 0 {
			return fmt.Errorf("writer: %d spool segments (%d bytes) wait for the database: %w", st.Segments, st.Bytes, err)
		}
	}
	return nil
}

// Counters for /metrics.
func (w *writer) Counters() map[string]uint64 {
	st := w.sp.Stats()
	w.mu.Lock()
	pending := w.npend
	w.mu.Unlock()
	return map[string]uint64{
		"written": w.written.Load(), "spooled": w.spooled.Load(), "replayed": w.replayed.Load(),
		"dropped_pending": w.dropped.Load(), "dropped_spool_full": w.spoolDrops.Load(),
		"write_failures": w.failures.Load(), "pending": uint64(pending),
		"spool_segments": uint64(st.Segments), "spool_bytes": uint64(max(0, st.Bytes)), "spool_torn": st.Torn,
	}
}

// sbcRoute names the configured SBC a record belongs to by its
// addresses, when several SBCs are configured; records it cannot place
// go under the default name. A nil *sbcRoute places nothing.
type sbcRoute struct {
	byAddr map[netip.Addr]string
	names  map[string]bool
	calls  map[string]string // Call-ID → SBC, for the findings about a call
}

// maxRoutedCalls bounds the Call-IDs remembered for findings.
const maxRoutedCalls = 100000

func newSBCRoute(cfg *config.Config) *sbcRoute {
	if len(cfg.SBCs) < 2 {
		return nil
	}
	r := &sbcRoute{byAddr: map[netip.Addr]string{}, names: map[string]bool{}, calls: map[string]string{}}
	for _, s := range cfg.SBCs {
		r.names[s.Name] = true
		for _, a := range s.Addresses {
			if p, err := netip.ParseAddr(a); err == nil {
				r.byAddr[p.Unmap()] = s.Name
			}
		}
	}
	return r
}

func (r *sbcRoute) addr(aps ...netip.AddrPort) string {
	for _, ap := range aps {
		if n, ok := r.byAddr[ap.Addr().Unmap()]; ok {
			return n
		}
	}
	return ""
}

func (r *sbcRoute) call(c *sip.Call) string {
	if r == nil {
		return ""
	}
	n := r.addr(c.SBCSide, c.Callee, c.Caller)
	if n != "" {
		if len(r.calls) >= maxRoutedCalls {
			clear(r.calls)
		}
		r.calls[c.CallID] = n
	}
	return n
}

func (r *sbcRoute) conn(c *tlsaudit.Conn) string {
	if r == nil {
		return ""
	}
	return r.addr(c.Server, c.Client)
}

func (r *sbcRoute) finding(f *finding.Finding) string {
	if r == nil {
		return ""
	}
	if n, ok := r.calls[f.CallID]; ok && f.CallID != "" {
		return n
	}
	// A connection is named "client->server".
	if a, b, ok := strings.Cut(f.Connection, "->"); ok {
		var aps []netip.AddrPort
		for _, s := range []string{b, a} {
			if ap, err := netip.ParseAddrPort(s); err == nil {
				aps = append(aps, ap)
			}
		}
		return r.addr(aps...)
	}
	return ""
}

// setConfig routes the records handed over from now on by the SBCs of
// cfg (reload). Call it with the engine goroutine held: the route is
// used from there only.
func (w *writer) setConfig(cfg *config.Config) {
	r := newSBCRoute(cfg)
	if r != nil && w.route != nil {
		for id, n := range w.route.calls {
			if r.names[n] {
				r.calls[id] = n
			}
		}
	}
	w.mu.Lock()
	w.sbc = LiveSBCName(cfg)
	w.mu.Unlock()
	w.route = r
}
