package daemon

import (
	"context"
	"maps"
	"reflect"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sbcwatch/sbcwatch/alert"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/metrics"
)

// liveCollector exports, at scrape time, what the registry's per-source
// reporters do not carry: whether each source runs, its own counters
// (connections, framing errors, kernel packets and queue freezes), the
// engine's counters, the writer's (spool included) and the alerts'.
type liveCollector struct {
	d                                   *Daemon
	up, counter, engine, writer, alerts *prometheus.Desc
}

var _ prometheus.Collector = (*liveCollector)(nil)

func newLiveCollector(d *Daemon) *liveCollector {
	n := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(metrics.Namespace+"_"+name, help, labels, nil)
	}
	return &liveCollector{d: d,
		up:      n("source_up", "1 while a live source runs, 0 once it stopped or failed.", "kind", "source"),
		counter: n("source_events_total", "A live source's own counters: connections, framing errors, kernel packets and queue freezes of a capture.", "kind", "source", "counter"),
		engine:  n("engine_events", "The live engine's counters (messages, calls, connections, findings, evictions, internal errors).", "counter"),
		writer:  n("writer_events", "The store writer's counters: records written, spooled, replayed and dropped; spool size.", "counter"),
		alerts:  n("alert_deliveries_total", "Webhook deliveries by result.", "webhook", "result"),
	}
}

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.counter, c.engine, c.writer, c.alerts} {
		ch <- d
	}
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	for _, r := range d.srcs {
		s, _ := r.state.Load().(string)
		up := 0.0
		if s == "running" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, r.kind, r.src.Name())
		cs := r.src.Counters()
		for _, k := range slices.Sorted(maps.Keys(cs)) {
			ch <- prometheus.MustNewConstMetric(c.counter, prometheus.CounterValue, float64(cs[k]), r.kind, r.src.Name(), k)
		}
	}
	if d.engine != nil {
		d.engMu.Lock()
		ec := d.engine.Counters()
		d.engMu.Unlock()
		for _, k := range slices.Sorted(maps.Keys(ec)) {
			ch <- prometheus.MustNewConstMetric(c.engine, prometheus.GaugeValue, float64(ec[k]), k)
		}
	}
	if d.writer != nil {
		wc := d.writer.Counters()
		for _, k := range slices.Sorted(maps.Keys(wc)) {
			ch <- prometheus.MustNewConstMetric(c.writer, prometheus.GaugeValue, float64(wc[k]), k)
		}
	}
	if n := d.notifier(); n != nil {
		as := n.Stats()
		for _, name := range slices.Sorted(maps.Keys(as)) {
			s := as[name]
			for _, kv := range []struct {
				k string
				v uint64
			}{{"delivered", s.Delivered}, {"failed", s.Failed}, {"dropped", s.Dropped}, {"retried", s.Retries}} {
				ch <- prometheus.MustNewConstMetric(c.alerts, prometheus.CounterValue, float64(kv.v), name, kv.k)
			}
		}
	}
}

// report updates the registry's per-source gauges: queue depth, the
// kernel's drops of a capture, framing errors as malformed, the spool.
func (d *Daemon) report() {
	for _, r := range d.srcs {
		if r.rep == nil {
			continue
		}
		r.rep.QueueDepth(r.q.Stats().Queued)
		cs := r.src.Counters()
		if v, ok := cs["kernel_drops"]; ok {
			r.rep.KernelDrops(v)
		}
		if v := cs["framing_errors"]; v > r.lastMalformed {
			r.rep.Malformed(int(v - r.lastMalformed))
			r.lastMalformed = v
		}
	}
	if d.spoolRep != nil && d.sp != nil {
		d.spoolRep.SpoolBytes(d.sp.Stats().Bytes)
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
		if d.opts != nil {
			d.opts.setAfter(cfg.Serve.OptionsMissingAfter.D())
		}
		d.engMu.Unlock()
		startAlerts(n)
		d.log.Info("reload: configuration applied (alerts, options_missing_after)")
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
		{"serve.provisional_after", a.ProvisionalAfter, b.ProvisionalAfter},
		{"sbcs", old.SBCs, cfg.SBCs}, {"trust", old.Trust, cfg.Trust},
		{"expect_transfer", old.ExpectTransfer, cfg.ExpectTransfer},
		{"rule windows and thresholds", [5]config.Duration{old.ShortCall, old.ReferWindow, old.GiveUpWindow, old.ExpiryWarning, old.DialogTimeout},
			[5]config.Duration{cfg.ShortCall, cfg.ReferWindow, cfg.GiveUpWindow, cfg.ExpiryWarning, cfg.DialogTimeout}},
	} {
		if !reflect.DeepEqual(c.x, c.y) {
			out = append(out, c.name)
		}
	}
	return out
}
