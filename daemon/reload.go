package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sbcwatch/sbcwatch/alert"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/live"
	"github.com/sbcwatch/sbcwatch/spool"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// Reload asks the daemon to reload its configuration (SIGHUP); see
// runReload for what changes.
func (d *Daemon) Reload() {
	select {
	case d.reload <- struct{}{}:
	default:
	}
}

// runReload applies reload requests until ctx ends.
func (d *Daemon) runReload(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.reload:
		}
		if d.o.Reload == nil {
			continue
		}
		d.applyReload(ctx)
	}
}

// applyReload loads the configuration again and applies it. A file that
// does not load or validate, an unreadable webhook secret or a trust
// store that does not load keeps the running configuration (one error
// line; sbcwatch_config_last_reload_successful 0). Otherwise everything
// that can change while running does, at once:
//
//   - the engine's SBCs, Microsoft ranges, thresholds, windows, trust
//     store and expect_transfer, for what it decides from now on (what
//     it holds stays), the writer's routing by SBC, options_missing;
//   - listen addresses of acdr/hep/syslog (the new one is bound before
//     the old one closes; a bind that fails keeps the old one and is
//     reported), capture interfaces added and removed, the kernel filter
//     of every capture rebuilt;
//   - webhooks and min_severity, pollers, scheduled audits, retention,
//     resolve_after_days, shutdown_timeout;
//
// and what cannot (restartOnly) is named in one warning line.
func (d *Daemon) applyReload(ctx context.Context) {
	cfg, err := d.o.Reload()
	if err == nil {
		err = precheck(cfg)
	}
	if err != nil {
		d.reloadOK.Store(false)
		d.log.Error("reload: configuration refused; the running one stays: " + oneLine(err))
		return
	}
	old := d.cfg.Load()
	eff := effective(old, cfg)
	var problems []string
	if d.engine != nil {
		problems = d.reloadSources(ctx, old, eff)
	}
	if le, ok := d.engine.(*liveEngine); ok {
		d.engMu.Lock()
		err := le.setConfig(eff)
		if err == nil {
			d.writer.setConfig(eff)
			if d.opts != nil {
				d.opts.setConfig(eff, eff.Serve.OptionsMissingAfter.D())
			}
		}
		d.engMu.Unlock()
		if err != nil { // precheck loaded the same trust store
			problems = append(problems, "engine: "+err.Error())
		}
	}
	if n := d.alerts.Load(); n != nil {
		hooks, _ := webhooks(eff) // precheck read them
		n.SetWebhooks(hooks)
		n.SetMinSeverity(findingSeverity(eff))
	}
	if d.o.Store != nil {
		uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		for _, s := range eff.SBCs {
			if err := store.UpsertSBC(uctx, d.o.Store.Pool(), store.SBC{Name: s.Name, FQDNs: s.FQDNs, Addresses: s.Addresses}); err != nil {
				d.log.Warn("reload: recording the SBC failed (its records still name it)", "sbc", s.Name, "err", err)
			}
		}
		cancel()
	}
	d.cfg.Store(eff)
	d.reconf.fire()
	if restart := restartOnly(old, cfg); len(restart) > 0 {
		d.log.Warn("reload: these settings change only with a restart; the running values stay: " + strings.Join(restart, ", "))
	}
	if len(problems) > 0 {
		d.reloadOK.Store(false)
		d.log.Error("reload: applied except: " + strings.Join(problems, "; "))
		return
	}
	d.reloadOK.Store(true)
	d.reloadAt.Store(time.Now().Unix())
	d.log.Info("reload: configuration applied", "changed", strings.Join(changed(old, eff), ", "))
}

// precheck is what must hold before anything is applied.
func precheck(cfg *config.Config) error {
	var errs []error
	if _, err := webhooks(cfg); err != nil {
		errs = append(errs, err)
	}
	if _, err := certcheck.LoadTrust(cfg.Trust, cfg.NoSystemRoots); err != nil {
		errs = append(errs, fmt.Errorf("trust: %w", err))
	}
	return errors.Join(errs...)
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

// webhooks reads the webhooks of cfg with their secrets.
func webhooks(cfg *config.Config) ([]alert.Webhook, error) {
	var hooks []alert.Webhook
	for _, w := range cfg.Serve.Alerts.Webhooks {
		sec, err := w.Secret()
		if err != nil {
			return nil, err
		}
		hooks = append(hooks, alert.Webhook{Name: w.Name, Kind: w.Kind, URL: w.URL, Secret: sec})
	}
	return hooks, nil
}

// restartOnly lists the settings of cfg that differ from the running
// old one and that only a restart applies: the API address, the
// instance name (every row and connection carries it), the spool, the
// queue and ring sizes (allocated at start), provisional_after (the
// engine's early judgements are set up at start), and the limits that
// size the decoder and trackers.
func restartOnly(old, cfg *config.Config) []string {
	var out []string
	a, b := old.Serve, cfg.Serve
	lo, ln := old.Limits, cfg.Limits
	lo.MaxWindowCalls, lo.MaxWindowConns, lo.MaxWindowEvents = 0, 0, 0
	ln.MaxWindowCalls, ln.MaxWindowConns, ln.MaxWindowEvents = 0, 0, 0
	for _, c := range []struct {
		name string
		x, y any
	}{
		{"serve.listen", a.Listen, b.Listen}, {"serve.instance", a.Instance, b.Instance},
		{"serve.spool", a.Spool, b.Spool}, {"serve.queue_size", a.QueueSize, b.QueueSize},
		{"serve.capture.ring_mb", a.Capture.RingMB, b.Capture.RingMB},
		{"serve.provisional_after", a.ProvisionalAfter, b.ProvisionalAfter},
		{"limits (other than max_window_*)", lo, ln},
	} {
		if !reflect.DeepEqual(c.x, c.y) {
			out = append(out, c.name)
		}
	}
	return out
}

// effective is cfg with the restart-only settings of the running old.
func effective(old, cfg *config.Config) *config.Config {
	eff := *cfg
	eff.Serve.Listen, eff.Serve.Instance, eff.Serve.Spool = old.Serve.Listen, old.Serve.Instance, old.Serve.Spool
	eff.Serve.QueueSize, eff.Serve.Capture.RingMB = old.Serve.QueueSize, old.Serve.Capture.RingMB
	eff.Serve.ProvisionalAfter = old.Serve.ProvisionalAfter
	w := cfg.Limits
	eff.Limits = old.Limits
	eff.Limits.MaxWindowCalls, eff.Limits.MaxWindowConns, eff.Limits.MaxWindowEvents = w.MaxWindowCalls, w.MaxWindowConns, w.MaxWindowEvents
	_ = eff.Validate() // the parsed forms (SBC addresses, ranges) of the copy
	return &eff
}

// changed names the top-level settings that differ, for the log.
func changed(old, cfg *config.Config) []string {
	var out []string
	ov, nv := reflect.ValueOf(*old), reflect.ValueOf(*cfg)
	t := ov.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || tag == "" {
			continue
		}
		if f.Name == "Serve" {
			st := f.Type
			for j := range st.NumField() {
				sf := st.Field(j)
				stag, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
				if stag != "" && !reflect.DeepEqual(ov.Field(i).Field(j).Interface(), nv.Field(i).Field(j).Interface()) {
					out = append(out, "serve."+stag)
				}
			}
			continue
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			out = append(out, tag)
		}
	}
	if len(out) == 0 {
		out = []string{"nothing"}
	}
	return out
}

// reloadSources moves the listeners, adds and removes capture
// interfaces and rebuilds the kernel filter. eff is corrected to what
// runs when a change fails (the old address, no new interface); the
// problems are returned, one per failure.
func (d *Daemon) reloadSources(ctx context.Context, old, eff *config.Config) []string {
	var problems []string
	for _, l := range []struct {
		k        live.Kind
		key      string
		from, to *string
	}{
		{live.KindACDR, "acdr_listen", &old.Serve.ACDRListen, &eff.Serve.ACDRListen},
		{live.KindHEP, "hep_listen", &old.Serve.HEPListen, &eff.Serve.HEPListen},
		{live.KindSyslog, "syslog_listen", &old.Serve.SyslogListen, &eff.Serve.SyslogListen},
	} {
		if *l.from == *l.to {
			continue
		}
		if err := d.moveListener(ctx, eff, l.k, *l.from, *l.to); err != nil {
			problems = append(problems, fmt.Sprintf("serve.%s: %v; still on %q", l.key, err, *l.from))
			*l.to = *l.from
			continue
		}
		d.log.Info("reload: listener moved", "listener", l.key, "from", *l.from, "to", *l.to)
	}
	f := CaptureFilter(eff)
	if !reflect.DeepEqual(f, CaptureFilter(old)) {
		for _, r := range d.sources() {
			if c, ok := r.src.(*live.CaptureSource); ok {
				if err := c.SetFilter(f); err != nil {
					problems = append(problems, fmt.Sprintf("%s: kernel filter: %v (the old one stays)", r.src.Name(), err))
				} else {
					d.log.Info("reload: kernel filter rebuilt", "source", r.src.Name())
				}
			}
		}
	}
	var keep []string
	for _, ifc := range old.Serve.Interfaces {
		if !slices.Contains(eff.Serve.Interfaces, ifc) {
			d.stopSources(func(r *sourceRun) bool { return r.src.Name() == "capture-"+ifc })
			d.log.Info("reload: capture stopped", "interface", ifc)
		}
	}
	for _, ifc := range eff.Serve.Interfaces {
		if slices.Contains(old.Serve.Interfaces, ifc) {
			keep = append(keep, ifc)
			continue
		}
		src := live.NewCapture(ifc, f, eff.Serve.Capture.RingMB)
		if err := d.startSources(ctx, eff, []live.Source{src}); err != nil {
			problems = append(problems, fmt.Sprintf("serve.interfaces: %v", err))
			continue
		}
		keep = append(keep, ifc)
		d.log.Info("reload: capture started", "interface", ifc)
	}
	eff.Serve.Interfaces = keep
	return problems
}

// moveListener binds kind k on to (UDP and TCP), then stops the sources
// on from; a bind that fails leaves from running.
func (d *Daemon) moveListener(ctx context.Context, cfg *config.Config, k live.Kind, from, to string) error {
	var news []live.Source
	if to != "" {
		news = []live.Source{live.NewUDP(k, to), live.NewTCP(k, to)}
	}
	prefix := k.String() + "-"
	isOld := func(r *sourceRun) bool {
		n := r.src.Name()
		return n == prefix+"udp" || n == prefix+"tcp"
	}
	// The old ones, before the new ones join srcs under the same names.
	olds := slices.DeleteFunc(d.sources(), func(r *sourceRun) bool { return !isOld(r) })
	if err := d.startSources(ctx, cfg, news); err != nil {
		return err
	}
	d.stopSources(func(r *sourceRun) bool { return slices.Contains(olds, r) })
	return nil
}

// startSources binds every source (all or none) and runs them.
func (d *Daemon) startSources(ctx context.Context, cfg *config.Config, srcs []live.Source) error {
	var runs []*sourceRun
	for i, s := range srcs {
		r := d.newSourceRun(cfg, s)
		r.state.Store("starting")
		if err := s.Start(ctx); err != nil {
			d.release(runs[:i])
			return err
		}
		r.state.Store("running")
		runs = append(runs, r)
	}
	d.srcMu.Lock()
	defer d.srcMu.Unlock()
	for _, r := range runs {
		if d.lv != nil && !d.launch(d.lv, r) {
			return errors.New("serve is stopping")
		}
		d.srcs = append(d.srcs, r)
	}
	return nil
}

// stopSources stops the running sources that match and waits until what
// they queued went to the engine and their sockets are closed.
func (d *Daemon) stopSources(match func(*sourceRun) bool) {
	d.srcMu.Lock()
	var stop []*sourceRun
	d.srcs = slices.DeleteFunc(d.srcs, func(r *sourceRun) bool {
		if match(r) {
			stop = append(stop, r)
			return true
		}
		return false
	})
	d.srcMu.Unlock()
	for _, r := range stop {
		if r.cancel != nil {
			r.cancel()
			<-r.done
		} else {
			d.release([]*sourceRun{r})
		}
		r.state.Store("stopped")
	}
	// Its series go from /metrics, unless a source of the same name (a
	// listener moved) carries them on.
	for _, r := range stop {
		if !slices.ContainsFunc(d.sources(), func(x *sourceRun) bool { return x.src.Name() == r.src.Name() }) {
			d.o.Metrics.RemoveSource(r.kind, r.src.Name())
		}
	}
}

// newSourceRun wraps s with its queue and metrics.
func (d *Daemon) newSourceRun(cfg *config.Config, s live.Source) *sourceRun {
	r := &sourceRun{src: s, q: live.NewQueue(cfg.Serve.QueueSize, 0), kind: metricsKind(s)}
	r.rep = d.o.Metrics.Source(r.kind, s.Name())
	r.q.ReportTo(r.rep)
	return r
}

// broadcast wakes every waiter once per fire.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func newBroadcast() *broadcast { return &broadcast{ch: make(chan struct{})} }

func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

func (b *broadcast) fire() {
	b.mu.Lock()
	close(b.ch)
	b.ch = make(chan struct{})
	b.mu.Unlock()
}

// following runs run with the current configuration and runs it again
// with the new one when a reload changes what sel picks from it.
func (d *Daemon) following(sel func(*config.Config) any, run func(context.Context, *config.Config) error) func(context.Context) error {
	return func(ctx context.Context) error {
		for {
			cfg := d.cfg.Load()
			rctx, cancel := context.WithCancel(ctx)
			errc := make(chan error, 1)
			go func() { errc <- run(rctx, cfg) }()
			running := true
			restart := false
			for !restart {
				select {
				case <-ctx.Done():
					cancel()
					if running {
						<-errc
					}
					return nil
				case err := <-errc:
					running = false
					if err != nil && ctx.Err() == nil {
						cancel()
						return err
					}
				case <-d.reconf.wait():
					restart = !reflect.DeepEqual(sel(cfg), sel(d.cfg.Load()))
				}
			}
			cancel()
			if running {
				<-errc
			}
		}
	}
}

// pollConfig is what the pollers use.
func pollConfig(cfg *config.Config) any {
	type p struct {
		name string
		poll *config.Poll
	}
	var out []p
	for _, s := range cfg.SBCs {
		out = append(out, p{s.Name, s.Poll})
	}
	return []any{out, cfg.Serve.MaxPolls}
}

// auditConfig is what the scheduled audits use.
func auditConfig(cfg *config.Config) any {
	type a struct {
		name  string
		fqdns []string
		audit *config.Audit
	}
	var out []a
	for _, s := range cfg.SBCs {
		out = append(out, a{s.Name, s.FQDNs, s.Audit})
	}
	return []any{out, cfg.Trust, cfg.NoSystemRoots}
}

// openOutbox opens the alerts' outbox: serve.spool.dir/alerts, or a
// temporary directory (removed at exit) without spool.dir.
func openOutbox(cfg *config.Config) (*spool.Spool, string, error) {
	dir, tmp := "", ""
	if cfg.Serve.Spool.Dir != "" {
		dir = filepath.Join(cfg.Serve.Spool.Dir, "alerts")
	} else {
		var err error
		if dir, err = os.MkdirTemp("", "sbcwatch-alerts-"); err != nil {
			return nil, "", fmt.Errorf("daemon: alert outbox: %w", err)
		}
		tmp = dir
	}
	sp, err := spool.Open(dir, 64<<20)
	if err != nil {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
		return nil, "", fmt.Errorf("daemon: alert outbox: %w", err)
	}
	return sp, tmp, nil
}

func (d *Daemon) closeOutbox() {
	if d.outbox != nil {
		d.outbox.Close()
	}
	if d.outboxTmp != "" {
		os.RemoveAll(d.outboxTmp)
		d.outboxTmp = ""
	}
}
