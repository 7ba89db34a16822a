// Package live holds the inputs of `sbcwatch serve`: sockets that receive
// what an SBC exports (AudioCodes debug recording, HEP v3, AudioCodes
// syslog, over UDP and TCP) and packet capture on network interfaces
// (AF_PACKET, TPACKET_V3, with a kernel BPF filter built from the
// configuration).
//
// Every input is a Source. A Source binds in Start (so a port in use, a
// missing interface or a missing CAP_NET_RAW stops serve at once, with
// one line), then Run copies what it receives, stamped with the receive
// time of this host, into its own bounded Queue. A Source never waits
// for its queue: when the queue is full, the item is dropped and
// counted, so a flooded input cannot slow the others down. The daemon
// drains the queues into the one engine.
package live

import (
	"context"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// Kind says what an Item holds.
type Kind uint8

const (
	// KindFrame is a captured link-layer frame (Item.LinkType says which).
	KindFrame Kind = iota
	// KindACDR is one AudioCodes debug recording packet.
	KindACDR
	// KindHEP is one or more HEP v3 packets.
	KindHEP
	// KindSyslog is the AudioCodes body of one syslog message (its
	// RFC 3164 or RFC 5424 header already taken off).
	KindSyslog
)

func (k Kind) String() string {
	switch k {
	case KindFrame:
		return "frame"
	case KindACDR:
		return "acdr"
	case KindHEP:
		return "hep"
	case KindSyslog:
		return "syslog"
	}
	return "unknown"
}

// Item is one unit received by a source.
type Item struct {
	Kind Kind
	// Time is when this host received it (wall clock, with the monotonic
	// reading): the engine's clock in serve.
	Time time.Time
	// From is the exporter's address (zero for captured frames).
	From netip.AddrPort
	// Data is owned by the item.
	Data []byte
	// LinkType of a captured frame.
	LinkType layers.LinkType
}

// Source is one input of serve.
type Source interface {
	// Name identifies the source in logs, /readyz and /metrics, for
	// example "acdr-udp" or "capture-eth0".
	Name() string
	// Start binds (sockets, interfaces); its error stops serve.
	Start(ctx context.Context) error
	// Run reads until ctx ends, offering every item to q; it returns
	// nil when ctx ended, an error when the input broke.
	Run(ctx context.Context, q *Queue) error
	// Counters returns source-specific counters (connections, kernel
	// drops, framing errors), read from any goroutine.
	Counters() map[string]uint64
}

// Queue is a source's bounded queue: at most Cap items and MaxBytes
// bytes wait. Offer never blocks.
type Queue struct {
	ch       chan Item
	maxBytes int64
	bytes    atomic.Int64

	received, dropped, taken atomic.Uint64
	report                   Reporter
}

// Reporter receives a queue's counts as they happen (the metrics
// registry's per-source reporter).
type Reporter interface {
	Received(n int)
	Dropped(n int)
}

// ReportTo makes the queue report its received and dropped items to r;
// call it before the queue is used.
func (q *Queue) ReportTo(r Reporter) { q.report = r }

// NewQueue returns a queue of capacity n items and maxBytes bytes
// (defaults 4096 and 32 MiB when not positive).
func NewQueue(n int, maxBytes int64) *Queue {
	if n <= 0 {
		n = 4096
	}
	if maxBytes <= 0 {
		maxBytes = 32 << 20
	}
	return &Queue{ch: make(chan Item, n), maxBytes: maxBytes}
}

// Offer queues it, or drops and counts it when the queue is full; it
// reports whether it was queued.
func (q *Queue) Offer(it Item) bool {
	q.received.Add(1)
	if q.report != nil {
		q.report.Received(1)
	}
	n := int64(len(it.Data))
	if q.bytes.Add(n) > q.maxBytes {
		q.bytes.Add(-n)
		q.drop()
		return false
	}
	select {
	case q.ch <- it:
		return true
	default:
		q.bytes.Add(-n)
		q.drop()
		return false
	}
}

func (q *Queue) drop() {
	q.dropped.Add(1)
	if q.report != nil {
		q.report.Dropped(1)
	}
}

// C is where the queued items come out.
func (q *Queue) C() <-chan Item { return q.ch }

// Done marks an item taken from C as handled (it frees its bytes).
func (q *Queue) Done(it Item) {
	q.bytes.Add(-int64(len(it.Data)))
	q.taken.Add(1)
}

// QueueStats are a queue's counters.
type QueueStats struct {
	Received uint64 `json:"received"`
	Dropped  uint64 `json:"dropped"`
	Handled  uint64 `json:"handled"`
	Queued   int    `json:"queued"`
	Bytes    int64  `json:"queued_bytes"`
}

// Stats returns the counters; safe from any goroutine.
func (q *Queue) Stats() QueueStats {
	return QueueStats{Received: q.received.Load(), Dropped: q.dropped.Load(), Handled: q.taken.Load(),
		Queued: len(q.ch), Bytes: q.bytes.Load()}
}
