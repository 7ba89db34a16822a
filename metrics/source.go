package metrics

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// SourceReporter is what one live input (a capture interface, an ACDR or
// HEP listener, a spool) reports through. Every method is cheap (atomic
// adds) and safe for concurrent use, so it can sit on a packet path.
//
// Counts are deltas except KernelDrops, which takes the running total the
// kernel reports (pcap_stats ps_drop, PACKET_STATISTICS): the largest
// total seen is exported, so a reader that reports it every second does
// not double count.
type SourceReporter interface {
	// Received counts n packets or datagrams read from the source.
	Received(n int)
	// Dropped counts n items sbcwatch dropped itself (queue full,
	// database too slow).
	Dropped(n int)
	// Malformed counts n items that could not be parsed and were skipped.
	Malformed(n int)
	// KernelDrops sets the kernel's running total of drops.
	KernelDrops(total uint64)
	// QueueDepth sets the number of items waiting to be processed.
	QueueDepth(n int)
	// SpoolBytes sets the bytes held in the on-disk spool.
	SpoolBytes(n int64)
}

// Discard is a SourceReporter that ignores everything, for inputs run
// without a registry (tests, `sbcwatch analyze`).
var Discard SourceReporter = discard{}

type discard struct{}

func (discard) Received(int)       {}
func (discard) Dropped(int)        {}
func (discard) Malformed(int)      {}
func (discard) KernelDrops(uint64) {}
func (discard) QueueDepth(int)     {}
func (discard) SpoolBytes(int64)   {}

var (
	_ SourceReporter = discard{}
	_ SourceReporter = (*Source)(nil)
)

// Source is the registry's SourceReporter for one input. A nil *Source
// ignores every report.
type Source struct {
	kind, name                        string
	received, dropped, malformed, kdr atomic.Uint64
	queue, spool                      atomic.Int64
}

// Received implements SourceReporter.
func (s *Source) Received(n int) {
	if s != nil && n > 0 {
		s.received.Add(uint64(n))
	}
}

// Dropped implements SourceReporter.
func (s *Source) Dropped(n int) {
	if s != nil && n > 0 {
		s.dropped.Add(uint64(n))
	}
}

// Malformed implements SourceReporter.
func (s *Source) Malformed(n int) {
	if s != nil && n > 0 {
		s.malformed.Add(uint64(n))
	}
}

// KernelDrops implements SourceReporter: the total only grows.
func (s *Source) KernelDrops(total uint64) {
	if s == nil {
		return
	}
	for {
		old := s.kdr.Load()
		if total <= old || s.kdr.CompareAndSwap(old, total) {
			return
		}
	}
}

// QueueDepth implements SourceReporter.
func (s *Source) QueueDepth(n int) {
	if s != nil {
		s.queue.Store(int64(n))
	}
}

// SpoolBytes implements SourceReporter.
func (s *Source) SpoolBytes(n int64) {
	if s != nil {
		s.spool.Store(n)
	}
}

// Source returns the reporter of the input named name of the given kind
// ("pcap", "acdr", "hep", "syslog", ...), creating it on first use; the
// same kind and name give the same *Source. Both become labels, so name
// must come from the configuration (an interface, a listen address),
// never from the traffic.
func (r *Registry) Source(kind, name string) *Source { return r.sources.get(kind, name) }

// RemoveSource stops exporting the input (serve's reload removed it); a
// later Source of the same kind and name starts from zero, which
// Prometheus reads as a counter reset.
func (r *Registry) RemoveSource(kind, name string) {
	r.sources.mu.Lock()
	delete(r.sources.all, sourceKey{kind, name})
	r.sources.mu.Unlock()
}

type sourceKey struct{ kind, name string }

// sourceSet exports every Source at scrape time.
type sourceSet struct {
	mu  sync.Mutex
	all map[sourceKey]*Source

	received, dropped, malformed, kdr, queue, spool *prometheus.Desc
}

func newSourceSet() *sourceSet {
	labels := []string{"kind", "source"}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "source", name), help, labels, nil)
	}
	return &sourceSet{
		all:       map[sourceKey]*Source{},
		received:  d("received_total", "Packets or datagrams read from a live input."),
		dropped:   d("dropped_total", "Items a live input dropped itself (queue full, database too slow)."),
		malformed: d("malformed_total", "Items a live input could not parse and skipped."),
		kdr:       d("kernel_drops_total", "Packets the kernel dropped before sbcwatch read them (pcap/PACKET_STATISTICS)."),
		queue:     d("queue_depth", "Items waiting to be processed."),
		spool:     d("spool_bytes", "Bytes held in the on-disk spool."),
	}
}

func (ss *sourceSet) get(kind, name string) *Source {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	k := sourceKey{kind, name}
	if s := ss.all[k]; s != nil {
		return s
	}
	s := &Source{kind: kind, name: name}
	ss.all[k] = s
	return s
}

// Describe implements prometheus.Collector.
func (ss *sourceSet) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{ss.received, ss.dropped, ss.malformed, ss.kdr, ss.queue, ss.spool} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (ss *sourceSet) Collect(ch chan<- prometheus.Metric) {
	ss.mu.Lock()
	list := make([]*Source, 0, len(ss.all))
	for _, s := range ss.all {
		list = append(list, s)
	}
	ss.mu.Unlock()
	sort.Slice(list, func(i, j int) bool {
		if list[i].kind != list[j].kind {
			return list[i].kind < list[j].kind
		}
		return list[i].name < list[j].name
	})
	for _, s := range list {
		c := func(d *prometheus.Desc, v float64, t prometheus.ValueType) {
			ch <- prometheus.MustNewConstMetric(d, t, v, s.kind, s.name)
		}
		c(ss.received, float64(s.received.Load()), prometheus.CounterValue)
		c(ss.dropped, float64(s.dropped.Load()), prometheus.CounterValue)
		c(ss.malformed, float64(s.malformed.Load()), prometheus.CounterValue)
		c(ss.kdr, float64(s.kdr.Load()), prometheus.CounterValue)
		c(ss.queue, float64(s.queue.Load()), prometheus.GaugeValue)
		c(ss.spool, float64(s.spool.Load()), prometheus.GaugeValue)
	}
}
