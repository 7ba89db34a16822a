// Package daemon is `sbcwatch serve`: the API, the live sources, the
// engine, the store writer with its spool, the alerts, the pollers, the
// scheduled audits and the retention, each a component with Run(ctx)
// under one errgroup. A component that fails stops the others and serve
// returns its error; a source that cannot start (a port in use, a
// missing interface, no CAP_NET_RAW) stops serve before anything runs.
//
// # Flow
//
//	source ─ bounded queue ─┐
//	source ─ bounded queue ─┼─ engine (one goroutine) ─┬─ writer ─ store (spool when down)
//	source ─ bounded queue ─┘    watermark: wall clock └─ alerts ─ webhooks
//
// Each source copies what it receives into its own queue and never waits
// (a full queue drops and counts); one forwarder per queue hands items to
// the engine goroutine, which also advances the watermark every second.
//
// # Reload
//
// On SIGHUP (Daemon.Reload) the configuration is loaded again and
// everything that can change while running changes at once (reload.go):
// the engine's settings for what it decides from then on, listeners
// moved (the new address bound before the old one closes), captures
// added and removed and their kernel filter rebuilt, webhooks, pollers,
// audits and retention. A configuration that does not load changes
// nothing; what needs a restart is named in one warning.
//
// # Alerts
//
// New findings go to the alerts through an outbox on disk and the table
// alert_deliveries (ledger.go, alert.Ledger): one delivery per webhook
// and finding key across restarts and instances.
//
// # Shutdown
//
// When ctx ends (SIGTERM), the sources stop, the items already queued
// are decoded, the engine closes (open calls are judged and handed over),
// then the writer flushes within serve.shutdown_timeout; what it cannot
// write stays in the spool for the next start.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sbcwatch/sbcwatch/alert"
	"github.com/sbcwatch/sbcwatch/api"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/internal/forwarded"
	"github.com/sbcwatch/sbcwatch/live"
	"github.com/sbcwatch/sbcwatch/metrics"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/spool"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// Component is one long-running part of serve.
type Component interface {
	Name() string
	Run(ctx context.Context) error
}

// Options are the daemon's dependencies.
type Options struct {
	// Config is validated; nil runs the API over stored data only.
	Config *config.Config
	// Store is open and migrated.
	Store *store.Store
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Listen is the API address.
	Listen string
	// Version is reported by /metrics.
	Version string
	// RetentionDays for the partitions (0: store default).
	RetentionDays int
	// OnListening is called with the API's bound address.
	OnListening func(net.Addr)
	// Now is the watermark's clock (default time.Now), for tests.
	Now func() time.Time
	// Tick is how often the watermark advances (default 1 s).
	Tick time.Duration
	// Reload, when set, is called on a reload request (SIGHUP) and
	// returns the new configuration; see Daemon.Reload.
	Reload func() (*config.Config, error)
	// Metrics is the registry /metrics serves (default: a new one); the
	// sources report through it.
	Metrics *metrics.Registry
	// TrustedProxies and ServeOptions (HTTPS) go to the API.
	TrustedProxies forwarded.Trusted
	ServeOptions   []api.ServeOption
}

// Daemon is one serve process.
type Daemon struct {
	o      Options
	cfg    atomic.Pointer[config.Config]
	log    *slog.Logger
	srcs   []*sourceRun
	writer *writer
	alerts atomic.Pointer[alert.Notifier]
	opts   *optionsWatch
	engine Engine
	engMu  sync.Mutex
	sp     *spool.Spool
	spTmp  string
	reload chan struct{}

	spoolRep *metrics.Source

	// srcMu guards srcs and lv: a reload adds and removes sources while
	// they run.
	srcMu sync.Mutex
	lv    *liveRun

	outbox    *spool.Spool // the alerts' outbox (alert.Options.Outbox)
	outboxTmp string

	// The last reload: successful, and when the configuration was last
	// applied (start or reload), for /metrics.
	reloadOK atomic.Bool
	reloadAt atomic.Int64 // Unix seconds
	// reconf wakes the components that follow the configuration (poll,
	// audit, retention) after a reload.
	reconf *broadcast
}

// sourceRun is a source with its queue and state.
type sourceRun struct {
	src   live.Source
	kind  string // the metrics kind: acdr, hep, syslog, pcap
	q     *live.Queue
	state atomic.Value // string: starting, running, stopped, failed: ...
	rep   *metrics.Source

	cancel context.CancelFunc // stops this source alone (reload)
	done   chan struct{}      // closed when its Run and forwarder returned

	lastMalformed uint64
}

// New builds the daemon and starts (binds) every source; a source that
// cannot start is an error naming it, and nothing is left bound.
func New(ctx context.Context, o Options) (*Daemon, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New(o.Version, "", "")
	}
	d := &Daemon{o: o, log: o.Logger, reload: make(chan struct{}, 1), reconf: newBroadcast()}
	d.reloadOK.Store(true)
	d.reloadAt.Store(time.Now().Unix())
	if err := o.Metrics.Register(newLiveCollector(d)); err != nil {
		return nil, fmt.Errorf("daemon: metrics: %w", err)
	}
	cfg := o.Config
	if cfg == nil {
		return d, nil
	}
	d.cfg.Store(cfg)
	srcs, err := Sources(cfg)
	if err != nil {
		return nil, err
	}
	for _, s := range srcs {
		d.srcs = append(d.srcs, d.newSourceRun(cfg, s))
	}
	hooks, err := webhooks(cfg)
	if err != nil {
		return nil, err
	}
	ao := alert.Options{MinSeverity: findingSeverity(cfg), Instance: cfg.Serve.Instance, Logger: d.log.With("component", "alert")}
	if o.Store != nil {
		// Deliveries are recorded in the database (alert_deliveries) via
		// an outbox on disk next to the writer's spool.
		if d.outbox, d.outboxTmp, err = openOutbox(cfg); err != nil {
			return nil, err
		}
		ao.Ledger, ao.Outbox = storeLedger{o.Store}, d.outbox
	}
	d.alerts.Store(alert.New(hooks, ao))
	for i, r := range d.srcs {
		r.state.Store("starting")
		if err := r.src.Start(ctx); err != nil {
			d.release(d.srcs[:i])
			d.closeOutbox()
			return nil, err
		}
		r.state.Store("running")
	}
	// The live part runs even without a source, so that a reload can add
	// one.
	dir := cfg.Serve.Spool.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "sbcwatch-spool-"); err != nil {
			d.release(d.srcs)
			d.closeOutbox()
			return nil, fmt.Errorf("daemon: spool: %w", err)
		}
		d.spTmp = dir
	}
	if d.sp, err = spool.Open(dir, int64(cfg.Serve.Spool.MaxMB)<<20); err != nil {
		d.release(d.srcs)
		d.closeOutbox()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	d.spoolRep = o.Metrics.Source("spool", "writer")
	if st := d.sp.Stats(); st.Segments > 0 {
		d.log.Info("spool: writes left by the last run will be replayed", "segments", st.Segments, "bytes", st.Bytes)
	}
	d.writer = newWriter(LiveSBCName(cfg), storeSave(o.Store), d.sp, d.log.With("component", "writer"))
	d.writer.route = newSBCRoute(cfg)
	d.opts = newOptionsWatch(cfg, cfg.Serve.OptionsMissingAfter.D())
	eng, err := newLiveEngine(cfg, fanout{d}, d.opts, d.log.With("component", "engine"))
	if err != nil {
		d.release(d.srcs)
		d.closeOutbox()
		return nil, fmt.Errorf("daemon: engine: %w", err)
	}
	d.engine = eng
	return d, nil
}

// release stops sources already started (their Run on a done context
// closes their sockets).
func (d *Daemon) release(rs []*sourceRun) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, r := range rs {
		_ = r.src.Run(done, r.q)
	}
}

// metricsKind is the registry's kind of a source.
func metricsKind(s live.Source) string {
	n := s.Name()
	if strings.HasPrefix(n, "capture-") {
		return "pcap"
	}
	k, _, _ := strings.Cut(n, "-")
	return k
}

// LiveSBCName is the SBC name live records are stored under: the
// configured SBC when there is exactly one, else "live" for the records
// that name none of the configured SBCs' addresses.
func LiveSBCName(cfg *config.Config) string {
	if len(cfg.SBCs) == 1 {
		return cfg.SBCs[0].Name
	}
	return "live"
}

// Sources builds the sources the configuration asks for: UDP and TCP for
// each of acdr_listen, hep_listen and syslog_listen, and a capture per
// interface.
func Sources(cfg *config.Config) ([]live.Source, error) {
	var out []live.Source
	for _, l := range []struct {
		k    live.Kind
		addr string
	}{{live.KindACDR, cfg.Serve.ACDRListen}, {live.KindHEP, cfg.Serve.HEPListen}, {live.KindSyslog, cfg.Serve.SyslogListen}} {
		if l.addr == "" {
			continue
		}
		out = append(out, live.NewUDP(l.k, l.addr), live.NewTCP(l.k, l.addr))
	}
	if len(cfg.Serve.Interfaces) > 0 {
		f := CaptureFilter(cfg)
		for _, ifc := range cfg.Serve.Interfaces {
			out = append(out, live.NewCapture(ifc, f, cfg.Serve.Capture.RingMB))
		}
	}
	return out, nil
}

// CaptureFilter is the kernel filter of the configuration: the SBC
// addresses, and the SIP, TLS, ACDR and HEP ports (the defaults, the
// ports of acdr_listen and hep_listen, and serve.capture.ports).
func CaptureFilter(cfg *config.Config) live.Filter {
	f := live.Filter{KeepUDP: cfg.Serve.Capture.KeepRTP}
	for _, s := range cfg.SBCs {
		for _, a := range s.Addresses {
			if p, err := netip.ParseAddr(a); err == nil {
				f.Hosts = append(f.Hosts, p)
			}
		}
	}
	f.Ports = append(f.Ports, live.DefaultPorts...)
	for _, a := range []string{cfg.Serve.ACDRListen, cfg.Serve.HEPListen} {
		if ap, err := netip.ParseAddrPort(a); err == nil && ap.Port() != 0 {
			f.Ports = append(f.Ports, ap.Port())
		}
	}
	for _, p := range cfg.Serve.Capture.Ports {
		f.Ports = append(f.Ports, uint16(p))
	}
	return f
}

// fanout is the engine's sink: records to the writer, new findings also
// to the alerts.
type fanout struct{ d *Daemon }

func (f fanout) Call(c *sip.Call)         { f.d.writer.Call(c) }
func (f fanout) TLSConn(c *tlsaudit.Conn) { f.d.writer.TLSConn(c) }
func (f fanout) Finding(x *finding.Finding) {
	f.d.writer.Finding(x)
	f.d.notify(snapshot(x))
}

// snapshot copies a finding as the engine hands it over: the engine
// updates a finding it emitted in place (a tls_cert_inconsistent that
// counts more connections, Cites added to a refer_delivery_failed) and
// emits it again, while the writer and the alert workers read the
// earlier version on their own goroutines.
func snapshot(x *finding.Finding) *finding.Finding {
	g := *x
	g.Cites = slices.Clone(x.Cites)
	g.Evidence = maps.Clone(x.Evidence)
	return &g
}

// notify hands a new finding to the alerts (live, poll and audit
// findings alike). A provisional finding alerts only with
// serve.alerts.provisional; otherwise its confirmation (same key) does.
// A retraction follows up wherever the provisional finding went.
func (d *Daemon) notify(f *finding.Finding) {
	n := d.alerts.Load()
	if n == nil {
		return
	}
	switch {
	case f.Retracted:
		n.Retract(FindingKey(f), f)
	case f.Provisional:
		if cfg := d.cfg.Load(); cfg != nil && cfg.Serve.Alerts.Provisional {
			n.Notify(FindingKey(f), f)
		}
	default:
		n.Notify(FindingKey(f), f)
	}
}

// Run runs every component until ctx ends or one fails.
func (d *Daemon) Run(ctx context.Context) error {
	defer func() {
		if d.sp != nil {
			d.sp.Close()
		}
		if d.spTmp != "" {
			os.RemoveAll(d.spTmp)
		}
		d.closeOutbox()
	}()
	g, gctx := errgroup.WithContext(ctx)
	comps := []Component{
		fn("api", d.runAPI),
		fn("retention", d.runRetention),
	}
	if d.cfg.Load() != nil {
		st := d.o.Store
		// Restarted with the new configuration when a reload changes
		// what they use.
		comps = append(comps,
			fn("poll", d.following(pollConfig, func(ctx context.Context, cfg *config.Config) error {
				return runPollers(ctx, cfg, st, d.log, d.notify)
			})),
			fn("audit", d.following(auditConfig, func(ctx context.Context, cfg *config.Config) error {
				return runScheduledAudits(ctx, cfg, st, d.log, d.notify)
			})),
		)
	}
	for _, c := range comps {
		g.Go(func() error {
			err := c.Run(gctx)
			if err != nil && gctx.Err() == nil {
				return fmt.Errorf("%s: %w", c.Name(), err)
			}
			return nil
		})
	}
	// The alerts outlive the other components, so that the findings
	// decided while stopping are still queued; they stop after them.
	actx, acancel := context.WithCancel(context.WithoutCancel(ctx))
	var alertWG sync.WaitGroup
	defer func() {
		// Deliveries queued while stopping get the shutdown bound.
		if n := d.alerts.Load(); n != nil {
			bound := 10 * time.Second
			if cfg := d.cfg.Load(); cfg != nil {
				bound = cfg.Serve.ShutdownTimeout.D()
			}
			for deadline := time.Now().Add(bound); n.Pending() > 0 && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
			}
		}
		acancel()
		alertWG.Wait()
	}()
	if n := d.alerts.Load(); n != nil {
		alertWG.Go(func() {
			if err := n.Run(actx); err != nil {
				d.log.Error("alerts stopped", "err", err)
			}
		})
	}
	if d.cfg.Load() != nil {
		g.Go(func() error { return d.runReload(gctx) })
	}
	if d.engine != nil {
		g.Go(func() error { return d.runLive(gctx) })
	}
	if len(d.sources()) == 0 {
		d.log.Info("no live input configured: nothing is captured or received by this process (a reload can add one)")
	}
	err := g.Wait()
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

type fnComponent struct {
	name string
	run  func(context.Context) error
}

func (f fnComponent) Name() string                  { return f.name }
func (f fnComponent) Run(ctx context.Context) error { return f.run(ctx) }

func fn(name string, run func(context.Context) error) Component { return fnComponent{name, run} }

// liveRun is what runLive shares with a reload: the engine's input and
// the sources' goroutines.
type liveRun struct {
	sctx     context.Context // the sources': ends when serve stops or one fails
	in       chan live.Item
	srcWG    sync.WaitGroup
	fwdWG    sync.WaitGroup
	errc     chan error
	stopping bool // no source starts any more (srcMu)
}

// launch runs r (started) and its forwarder under the live run; false
// when serve is stopping (r is released). d.srcMu is held.
func (d *Daemon) launch(lv *liveRun, r *sourceRun) bool {
	if lv.stopping {
		d.release([]*sourceRun{r})
		return false
	}
	rctx, cancel := context.WithCancel(lv.sctx)
	r.cancel = cancel
	r.done = make(chan struct{})
	stopped := make(chan struct{})
	d.log.Info("listening for exported SIP", "source", r.src.Name())
	lv.srcWG.Go(func() {
		defer close(stopped)
		err := r.src.Run(rctx, r.q)
		if err != nil && rctx.Err() == nil {
			r.state.Store("failed: " + err.Error())
			select {
			case lv.errc <- err:
			default:
			}
			return
		}
		r.state.Store("stopped")
	})
	lv.fwdWG.Go(func() {
		defer close(r.done)
		for {
			select {
			case it := <-r.q.C():
				r.q.Done(it)
				lv.in <- it
			case <-stopped:
				for { // what the source queued before it stopped still goes in
					select {
					case it := <-r.q.C():
						r.q.Done(it)
						lv.in <- it
					default:
						return
					}
				}
			}
		}
	})
	return true
}

// runLive runs the sources, the forwarders, the engine, the writer and
// the alerts, and stops them in that order.
func (d *Daemon) runLive(ctx context.Context) error {
	// The sources stop when ctx ends or when one of them fails.
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	lv := &liveRun{sctx: sctx, in: make(chan live.Item, 64), errc: make(chan error, 1)}
	d.srcMu.Lock()
	d.lv = lv
	for _, r := range d.srcs {
		d.launch(lv, r)
	}
	d.srcMu.Unlock()
	// Writer and alerts run until the engine has handed everything over.
	wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer wcancel()
	var bg sync.WaitGroup
	bg.Go(func() { _ = d.writer.Run(wctx) })

	engineDone := make(chan struct{})
	go func() {
		defer close(engineDone)
		t := time.NewTicker(d.o.Tick)
		defer t.Stop()
		for {
			select {
			case it, ok := <-lv.in:
				if !ok {
					d.engMu.Lock()
					d.engine.Close()
					d.engMu.Unlock()
					return
				}
				d.engMu.Lock()
				d.engine.Feed(it)
				d.engMu.Unlock()
			case <-t.C:
				d.engMu.Lock()
				d.engine.Advance(d.o.Now())
				d.engMu.Unlock()
				d.report()
			}
		}
	}()
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-lv.errc:
	}
	d.srcMu.Lock()
	lv.stopping = true
	d.srcMu.Unlock()
	scancel()
	lv.srcWG.Wait()
	lv.fwdWG.Wait()
	close(lv.in)
	<-engineDone
	cfg := d.cfg.Load()
	d.log.Info("live input stopped", d.statsAttrs()...)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Serve.ShutdownTimeout.D())
	defer cancel()
	if err := d.writer.Flush(fctx); err != nil {
		d.log.Warn("writer: not everything was written before stopping; it stays in the spool", "err", err)
	}
	wcancel()
	bg.Wait()
	if failed != nil {
		return failed
	}
	return nil
}

// sources returns the running sources (a copy).
func (d *Daemon) sources() []*sourceRun {
	d.srcMu.Lock()
	defer d.srcMu.Unlock()
	return slices.Clone(d.srcs)
}

func (d *Daemon) statsAttrs() []any {
	var out []any
	for _, r := range d.sources() {
		s := r.q.Stats()
		out = append(out, r.src.Name(), fmt.Sprintf("received=%d dropped=%d", s.Received, s.Dropped))
	}
	d.engMu.Lock()
	c := d.engine.Counters()
	d.engMu.Unlock()
	out = append(out, "calls", c["calls"], "findings", c["findings"], "sip_messages", c["sip_messages"])
	return out
}

func (d *Daemon) runAPI(ctx context.Context) error {
	opts := api.Options{Logger: d.log, Metrics: d.o.Metrics, TrustedProxies: d.o.TrustedProxies}
	if d.cfg.Load() != nil {
		opts.RunAudit = auditRunner(d.cfg.Load, d.o.Store, d.log, d.notify)
	}
	h := d.wrap(api.NewServer(d.o.Store, opts))
	return api.ListenAndServe(ctx, d.o.Listen, h, d.log, d.o.OnListening, d.o.ServeOptions...)
}

// runRetention drops old partitions (and finished alert deliveries) and
// creates the next days' ones, at start, hourly and after a reload (its
// retention_days and resolve_after_days are the current ones).
func (d *Daemon) runRetention(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		days := d.o.RetentionDays
		if cfg := d.cfg.Load(); cfg != nil {
			if cfg.Serve.Retention > 0 {
				days = cfg.Serve.Retention
			}
			// Here, not in the reload: the store reads it in DropOlderThan.
			d.o.Store.SetResolveAfter(cfg.Serve.ResolveAfterDays)
		}
		if _, err := d.o.Store.DropOlderThan(ctx, days); err != nil && ctx.Err() == nil {
			d.log.Warn("retention failed", "err", err)
		}
		if _, err := d.o.Store.PruneAlerts(ctx, days); err != nil && ctx.Err() == nil {
			d.log.Warn("retention of alert deliveries failed", "err", err)
		}
		if err := d.o.Store.EnsureUpcoming(ctx, 2); err != nil && ctx.Err() == nil {
			d.log.Warn("creating partitions ahead failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-d.reconf.wait():
		}
	}
}

// Ready reports, per source, "running" or why not; the store's
// reachability is checked by the API's own /readyz.
func (d *Daemon) Ready() (map[string]string, bool) {
	out := map[string]string{}
	ok := true
	for _, r := range d.sources() {
		s, _ := r.state.Load().(string)
		out[r.src.Name()] = s
		if s != "running" {
			ok = false
		}
	}
	return out, ok
}

// wrap adds the sources to /readyz.
func (d *Daemon) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			d.serveReady(w, r, h)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (d *Daemon) serveReady(w http.ResponseWriter, r *http.Request, h http.Handler) {
	states, ok := d.Ready()
	if !ok {
		var bad []string
		for n, s := range states {
			if s != "running" {
				bad = append(bad, n+": "+s)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"error":{"code":"unavailable","message":%q}}`+"\n", "sources not running: "+strings.Join(bad, "; "))
		return
	}
	h.ServeHTTP(w, r)
}

func findingSeverity(cfg *config.Config) finding.Severity {
	return finding.Severity(cfg.Serve.Alerts.MinSeverity)
}
