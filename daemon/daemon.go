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
	"net"
	"net/http"
	"net/netip"
	"os"
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
}

// sourceRun is a source with its queue and state.
type sourceRun struct {
	src   live.Source
	kind  string // the metrics kind: acdr, hep, syslog, pcap
	q     *live.Queue
	state atomic.Value // string: starting, running, stopped, failed: ...
	rep   *metrics.Source

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
	d := &Daemon{o: o, log: o.Logger, reload: make(chan struct{}, 1)}
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
		r := &sourceRun{src: s, q: live.NewQueue(cfg.Serve.QueueSize, 0), kind: metricsKind(s)}
		r.rep = o.Metrics.Source(r.kind, s.Name())
		r.q.ReportTo(r.rep)
		d.srcs = append(d.srcs, r)
	}
	var hooks []alert.Webhook
	for _, w := range cfg.Serve.Alerts.Webhooks {
		sec, err := w.Secret()
		if err != nil {
			return nil, err
		}
		hooks = append(hooks, alert.Webhook{Name: w.Name, Kind: w.Kind, URL: w.URL, Secret: sec})
	}
	d.alerts.Store(alert.New(hooks, alert.Options{MinSeverity: findingSeverity(cfg),
		Instance: cfg.Serve.Instance, Logger: d.log.With("component", "alert")}))
	for i, r := range d.srcs {
		r.state.Store("starting")
		if err := r.src.Start(ctx); err != nil {
			d.release(d.srcs[:i])
			return nil, err
		}
		r.state.Store("running")
	}
	if len(d.srcs) == 0 {
		return d, nil
	}
	dir := cfg.Serve.Spool.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "sbcwatch-spool-"); err != nil {
			d.release(d.srcs)
			return nil, fmt.Errorf("daemon: spool: %w", err)
		}
		d.spTmp = dir
	}
	if d.sp, err = spool.Open(dir, int64(cfg.Serve.Spool.MaxMB)<<20); err != nil {
		d.release(d.srcs)
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
	f.d.notify(x)
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
	}()
	g, gctx := errgroup.WithContext(ctx)
	comps := []Component{
		fn("api", d.runAPI),
		fn("retention", d.runRetention),
	}
	if cfg := d.cfg.Load(); cfg != nil {
		st := d.o.Store
		comps = append(comps,
			fn("poll", func(ctx context.Context) error { return runPollers(ctx, cfg, st, d.log, d.notify) }),
			fn("audit", func(ctx context.Context) error { return runScheduledAudits(ctx, cfg, st, d.log, d.notify) }),
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
	var alertMu sync.Mutex
	var alertCancel context.CancelFunc
	startAlerts := func(n *alert.Notifier) {
		alertMu.Lock()
		defer alertMu.Unlock()
		if alertCancel != nil {
			alertCancel() // deliveries queued for the old webhooks are dropped
		}
		c, cancel := context.WithCancel(actx)
		alertCancel = cancel
		alertWG.Go(func() { _ = n.Run(c) })
	}
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
		startAlerts(n)
		g.Go(func() error { return d.runReload(gctx, startAlerts) })
	}
	if d.engine != nil {
		g.Go(func() error { return d.runLive(gctx) })
	} else if d.cfg.Load() == nil || len(d.srcs) == 0 {
		d.log.Info("no live input configured: nothing is captured or received by this process")
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

// runLive runs the sources, the forwarders, the engine, the writer and
// the alerts, and stops them in that order.
func (d *Daemon) runLive(ctx context.Context) error {
	cfg := d.cfg.Load()
	in := make(chan live.Item, 64)
	// The sources stop when ctx ends or when one of them fails.
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	var srcWG, fwdWG sync.WaitGroup
	errc := make(chan error, len(d.srcs))
	for _, r := range d.srcs {
		d.log.Info("listening for exported SIP", "source", r.src.Name())
		stopped := make(chan struct{})
		srcWG.Go(func() {
			defer close(stopped)
			err := r.src.Run(sctx, r.q)
			if err != nil && sctx.Err() == nil {
				r.state.Store("failed: " + err.Error())
				errc <- err
				return
			}
			r.state.Store("stopped")
		})
		fwdWG.Go(func() {
			for {
				select {
				case it := <-r.q.C():
					r.q.Done(it)
					in <- it
				case <-stopped:
					for { // what the source queued before it stopped still goes in
						select {
						case it := <-r.q.C():
							r.q.Done(it)
							in <- it
						default:
							return
						}
					}
				}
			}
		})
	}
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
			case it, ok := <-in:
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
	case failed = <-errc:
	}
	scancel()
	srcWG.Wait()
	fwdWG.Wait()
	close(in)
	<-engineDone
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

func (d *Daemon) statsAttrs() []any {
	var out []any
	for _, r := range d.srcs {
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
	if cfg := d.cfg.Load(); cfg != nil {
		opts.RunAudit = auditRunner(cfg, d.o.Store, d.log, d.notify)
	}
	h := d.wrap(api.NewServer(d.o.Store, opts))
	return api.ListenAndServe(ctx, d.o.Listen, h, d.log, d.o.OnListening, d.o.ServeOptions...)
}

// runRetention drops old partitions and creates the next days' ones, at
// start and then hourly.
func (d *Daemon) runRetention(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if _, err := d.o.Store.DropOlderThan(ctx, d.o.RetentionDays); err != nil && ctx.Err() == nil {
			d.log.Warn("retention failed", "err", err)
		}
		if err := d.o.Store.EnsureUpcoming(ctx, 2); err != nil && ctx.Err() == nil {
			d.log.Warn("creating partitions ahead failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Ready reports, per source, "running" or why not; the store's
// reachability is checked by the API's own /readyz.
func (d *Daemon) Ready() (map[string]string, bool) {
	out := map[string]string{}
	ok := true
	for _, r := range d.srcs {
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

// Reload asks the daemon to reload its configuration (SIGHUP): settings
// that can change while running (alert webhooks and thresholds, the
// options_missing threshold) are applied; a change of sources, listen
// addresses or the database needs a restart and is logged as such.
func (d *Daemon) Reload() {
	select {
	case d.reload <- struct{}{}:
	default:
	}
}

func findingSeverity(cfg *config.Config) finding.Severity {
	return finding.Severity(cfg.Serve.Alerts.MinSeverity)
}
