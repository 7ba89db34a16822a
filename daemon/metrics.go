package daemon

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sbcwatch/sbcwatch/alert"
	"github.com/sbcwatch/sbcwatch/metrics"
)

// liveCollector exports, at scrape time, what the registry's per-source
// reporters do not carry: whether each source runs, its own counters
// (connections, framing errors, kernel packets and queue freezes), the
// engine's counters, the writer's (spool included) and the alerts'.
type liveCollector struct {
	d                                   *Daemon
	up, counter, engine, writer, alerts *prometheus.Desc
	reloadOK, reloadAt, ledger          *prometheus.Desc
}

var _ prometheus.Collector = (*liveCollector)(nil)

func newLiveCollector(d *Daemon) *liveCollector {
	n := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(metrics.Namespace+"_"+name, help, labels, nil)
	}
	return &liveCollector{d: d,
		up:       n("source_up", "1 while a live source runs, 0 once it stopped or failed.", "kind", "source"),
		counter:  n("source_events_total", "A live source's own counters: connections, framing errors, kernel packets and queue freezes of a capture.", "kind", "source", "counter"),
		engine:   n("engine_events", "The live engine's counters (messages, calls, connections, findings, evictions, internal errors).", "counter"),
		writer:   n("writer_events", "The store writer's counters: records written, spooled, replayed and dropped; spool size.", "counter"),
		alerts:   n("alert_deliveries_total", "Webhook deliveries by result.", "webhook", "result"),
		reloadOK: n("config_last_reload_successful", "1 when the last configuration reload (SIGHUP) was applied whole, 0 when it was refused or partly failed."),
		reloadAt: n("config_last_reload_success_timestamp_seconds", "When the configuration was last applied whole (start or reload), in Unix seconds."),
		ledger:   n("alert_ledger_events_total", "The alert ledger's counters: duplicates (a delivery already recorded, by an earlier run or another instance) and outbox_dropped (the outbox was full).", "counter"),
	}
}

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.counter, c.engine, c.writer, c.alerts, c.reloadOK, c.reloadAt, c.ledger} {
		ch <- d
	}
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	for _, r := range d.sources() {
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
	ok := 0.0
	if d.reloadOK.Load() {
		ok = 1
	}
	ch <- prometheus.MustNewConstMetric(c.reloadOK, prometheus.GaugeValue, ok)
	ch <- prometheus.MustNewConstMetric(c.reloadAt, prometheus.GaugeValue, float64(d.reloadAt.Load()))
	if n := d.notifier(); n != nil {
		dup, drops := n.Duplicates()
		ch <- prometheus.MustNewConstMetric(c.ledger, prometheus.CounterValue, float64(dup), "duplicates")
		ch <- prometheus.MustNewConstMetric(c.ledger, prometheus.CounterValue, float64(drops), "outbox_dropped")
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
	for _, r := range d.sources() {
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
