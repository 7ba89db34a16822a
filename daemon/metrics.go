package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"

	"github.com/sbcwatch/sbcwatch/alert"
	"github.com/sbcwatch/sbcwatch/config"
)

// captureWriter records a handler's answer so /metrics can be extended.
type captureWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *captureWriter) Header() http.Header         { return c.header }
func (c *captureWriter) Write(b []byte) (int, error) { return c.body.Write(b) }
func (c *captureWriter) WriteHeader(code int)        { c.status = code }
func (c *captureWriter) code() int {
	if c.status == 0 {
		return http.StatusOK
	}
	return c.status
}

// writeMetrics appends the live counters in the Prometheus text format:
// per source (queue and source-specific counters, kernel drops of a
// capture among them), the engine, the writer and spool, the alerts.
func (d *Daemon) writeMetrics(w io.Writer) {
	if len(d.srcs) == 0 {
		return
	}
	fmt.Fprintln(w, "# HELP sbcwatch_source_items_total Items a live source received, dropped (queue full) and handled.")
	fmt.Fprintln(w, "# TYPE sbcwatch_source_items_total counter")
	for _, r := range d.srcs {
		s := r.q.Stats()
		n := r.src.Name()
		fmt.Fprintf(w, "sbcwatch_source_items_total{source=%q,state=\"received\"} %d\n", n, s.Received)
		fmt.Fprintf(w, "sbcwatch_source_items_total{source=%q,state=\"dropped\"} %d\n", n, s.Dropped)
		fmt.Fprintf(w, "sbcwatch_source_items_total{source=%q,state=\"handled\"} %d\n", n, s.Handled)
	}
	fmt.Fprintln(w, "# HELP sbcwatch_source_queued Items waiting in a source's queue.")
	fmt.Fprintln(w, "# TYPE sbcwatch_source_queued gauge")
	for _, r := range d.srcs {
		fmt.Fprintf(w, "sbcwatch_source_queued{source=%q} %d\n", r.src.Name(), r.q.Stats().Queued)
	}
	fmt.Fprintln(w, "# HELP sbcwatch_source_up 1 while a source runs.")
	fmt.Fprintln(w, "# TYPE sbcwatch_source_up gauge")
	for _, r := range d.srcs {
		s, _ := r.state.Load().(string)
		up := 0
		if s == "running" {
			up = 1
		}
		fmt.Fprintf(w, "sbcwatch_source_up{source=%q} %d\n", r.src.Name(), up)
	}
	fmt.Fprintln(w, "# HELP sbcwatch_source_counter Source-specific counters (connections, framing errors, kernel packets and drops of a capture).")
	fmt.Fprintln(w, "# TYPE sbcwatch_source_counter counter")
	for _, r := range d.srcs {
		c := r.src.Counters()
		for _, k := range slices.Sorted(maps.Keys(c)) {
			fmt.Fprintf(w, "sbcwatch_source_counter{source=%q,counter=%q} %d\n", r.src.Name(), k, c[k])
		}
	}
	d.engMu.Lock()
	ec := d.engine.Counters()
	d.engMu.Unlock()
	fmt.Fprintln(w, "# HELP sbcwatch_engine_counter The live engine's counters.")
	fmt.Fprintln(w, "# TYPE sbcwatch_engine_counter gauge")
	for _, k := range slices.Sorted(maps.Keys(ec)) {
		fmt.Fprintf(w, "sbcwatch_engine_counter{counter=%q} %d\n", k, ec[k])
	}
	wc := d.writer.Counters()
	fmt.Fprintln(w, "# HELP sbcwatch_writer_counter Store writes, spool and drops.")
	fmt.Fprintln(w, "# TYPE sbcwatch_writer_counter gauge")
	for _, k := range slices.Sorted(maps.Keys(wc)) {
		fmt.Fprintf(w, "sbcwatch_writer_counter{counter=%q} %d\n", k, wc[k])
	}
	as := d.notifier().Stats()
	fmt.Fprintln(w, "# HELP sbcwatch_alerts_total Webhook deliveries.")
	fmt.Fprintln(w, "# TYPE sbcwatch_alerts_total counter")
	for _, name := range slices.Sorted(maps.Keys(as)) {
		s := as[name]
		for _, kv := range []struct {
			k string
			v uint64
		}{{"delivered", s.Delivered}, {"failed", s.Failed}, {"dropped", s.Dropped}, {"retried", s.Retries}} {
			fmt.Fprintf(w, "sbcwatch_alerts_total{webhook=%q,result=%q} %d\n", name, kv.k, kv.v)
		}
	}
}

// notifier returns the current alert notifier.
func (d *Daemon) notifier() *alert.Notifier { return d.alerts.Load() }

// runReload applies reload requests until ctx ends.
func (d *Daemon) runReload(ctx context.Context, startAlerts func(*alert.Notifier)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.reload:
		}
		if d.o.Reload == nil {
			continue
		}
		cfg, err := d.o.Reload()
		if err != nil {
			d.log.Error("reload: configuration refused; the running one stays", "err", err)
			continue
		}
		old := d.cfg.Load()
		if restart := restartNeeded(old, cfg); len(restart) > 0 {
			d.log.Warn("reload: these settings change only with a restart", "settings", restart)
		}
		var hooks []alert.Webhook
		bad := false
		for _, w := range cfg.Serve.Alerts.Webhooks {
			sec, err := w.Secret()
			if err != nil {
				d.log.Error("reload: configuration refused; the running one stays", "err", err)
				bad = true
				break
			}
			hooks = append(hooks, alert.Webhook{Name: w.Name, Kind: w.Kind, URL: w.URL, Secret: sec})
		}
		if bad {
			continue
		}
		n := alert.New(hooks, alert.Options{MinSeverity: findingSeverity(cfg), Instance: cfg.Serve.Instance,
			Logger: d.log.With("component", "alert")})
		d.engMu.Lock()
		d.cfg.Store(cfg)
		d.alerts.Store(n)
		if e, ok := d.engine.(*trackerEngine); ok {
			e.cfg = cfg
		}
		if d.opts != nil {
			d.opts.setAfter(cfg.Serve.OptionsMissingAfter.D())
		}
		d.engMu.Unlock()
		startAlerts(n)
		d.log.Info("reload: configuration applied (rules, expect_transfer, alerts, options_missing_after)")
	}
}

// restartNeeded lists the settings that differ and apply only at start.
func restartNeeded(old, cfg *config.Config) []string {
	var out []string
	a, b := old.Serve, cfg.Serve
	for _, c := range []struct {
		name string
		x, y any
	}{
		{"serve.listen", a.Listen, b.Listen}, {"serve.interfaces", a.Interfaces, b.Interfaces},
		{"serve.acdr_listen", a.ACDRListen, b.ACDRListen}, {"serve.hep_listen", a.HEPListen, b.HEPListen},
		{"serve.syslog_listen", a.SyslogListen, b.SyslogListen}, {"serve.capture", a.Capture, b.Capture},
		{"serve.spool", a.Spool, b.Spool}, {"serve.instance", a.Instance, b.Instance},
		{"serve.queue_size", a.QueueSize, b.QueueSize}, {"limits", old.Limits, cfg.Limits},
		{"sbcs", old.SBCs, cfg.SBCs}, {"trust", old.Trust, cfg.Trust},
	} {
		if !reflect.DeepEqual(c.x, c.y) {
			out = append(out, c.name)
		}
	}
	return out
}
