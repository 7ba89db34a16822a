// Package live is the streaming input of `sbcwatch serve`: it listens on
// UDP for the copies an SBC exports of its SIP — AudioCodes debug
// recording (ACDR, serve.acdr_listen, usually port 925) and HEP v3
// (serve.hep_listen, usually 9060) — decodes them with tap, parses them
// with sip and follows the dialogs with a sip.Tracker. Every call the
// tracker lets go (linger after its end over, idle timeout, eviction) is
// handed to a Sink as it goes, and the calls still tracked are handed
// over when the context ends.
//
// # Flow and bounds
//
// One reader goroutine per socket copies each datagram, with the
// exporter's address and the receive time, into one bounded queue
// (Options.QueueSize datagrams and Options.MaxQueueBytes bytes). A reader
// never waits: when the queue is full the datagram is dropped and
// counted (Stats.Dropped). One pipeline goroutine owns the tap.Decoder,
// the sip.Parser and the sip.Tracker (bounded by config limits:
// max_dialogs, max_messages_per_call, max_kept_messages,
// max_sip_message). When the context ends the sockets are closed, what
// is queued is decoded, the tracker is closed and its calls (still open
// ones with no end) go to the Sink before Run returns.
//
// # Clock
//
// Live mode runs on the wall clock of this host: every message is dated
// by the time its datagram was received (time.Now, with its monotonic
// reading), not by the exporter's timestamp — the ACDR counter is not a
// wall clock, and a HEP exporter's clock may be skewed, which would end
// calls early or late against the timeout. Dialog timeouts and the
// linger of ended calls are therefore measured against this host's
// clock (tracker.Expire runs every Options.ExpireEvery). Message order is
// arrival order; copies that the network reorders are tracked in the
// order they arrive.
//
// # Limits
//
// Only UDP is read (one ACDR packet, or one or more HEP packets, per
// datagram); ACDR and HEP over TCP are not. TLS connections are not
// seen (no packet capture here), so no TLS records or TLS findings come
// from live input, and live calls are not correlated (no findings are
// produced for them yet): they are stored with their messages only. The
// queue and the tracker are bounded, so memory is too; what does not fit
// is counted, never waited for.
//
// Exporters are not authenticated: any host that can reach the sockets
// can inject SIP copies. Bind acdr_listen and hep_listen to the address
// of the management network the SBC exports to, not to every interface.
package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tap"
)

// Sink receives the calls the tracker hands over. It is called from the
// pipeline goroutine only and should not block (store.Batcher.AddCall
// does not).
type Sink interface {
	AddCall(*sip.Call)
}

// Options tune a Listener. Zero values take the defaults.
type Options struct {
	// QueueSize bounds the datagrams waiting for the pipeline (default
	// 4096).
	QueueSize int
	// MaxQueueBytes bounds the bytes of those datagrams (default 32 MiB).
	MaxQueueBytes int64
	// ExpireEvery is how often ended and idle calls are let go (default
	// 5s, or a quarter of the dialog timeout when that is shorter).
	ExpireEvery time.Duration
	// StatsEvery is how often the counters are logged at debug level
	// (default 1m).
	StatsEvery time.Duration
	// Linger is how long an ended call waits for late messages before it
	// is handed over (default the tracker's, 32s).
	Linger time.Duration
}

// Stats are a Listener's counters.
type Stats struct {
	// Received counts datagrams read from the sockets, Dropped those not
	// queued because the queue was full.
	Received uint64 `json:"received"`
	Dropped  uint64 `json:"dropped"`
	// Skipped counts ACDR/HEP packets decoded but not delivered (other
	// media or payload types) or undecodable; Malformed the datagrams
	// that could not be decoded at all.
	Skipped   uint64 `json:"skipped"`
	Malformed uint64 `json:"malformed"`
	// Messages counts SIP messages parsed, ParseErrors payloads that
	// looked like SIP but did not parse, NotSIP payloads that were not
	// SIP.
	Messages    uint64 `json:"messages"`
	ParseErrors uint64 `json:"parse_errors"`
	NotSIP      uint64 `json:"not_sip"`
	// Calls counts calls handed to the Sink; Active the Call-IDs tracked.
	Calls  uint64 `json:"calls"`
	Active int64  `json:"active"`
}

// Listener is one live input. Build it with New, then call Run once.
type Listener struct {
	cfg  *config.Config
	sink Sink
	log  *slog.Logger
	o    Options

	ready    chan struct{}
	acdrAddr netip.AddrPort
	hepAddr  netip.AddrPort

	received, dropped, skipped, malformed atomic.Uint64
	messages, parseErrors, notSIP, calls  atomic.Uint64
	active                                atomic.Int64
	queuedBytes                           atomic.Int64

	// beforeDecode, when set (tests), runs in the pipeline before each
	// datagram is decoded.
	beforeDecode func()
}

// item is one received datagram.
type item struct {
	acdr     bool
	exporter netip.AddrPort
	payload  []byte
	t        time.Time
}

// Run listens as cfg.Serve says and feeds sink until ctx ends; see the
// package documentation. It returns nil when neither acdr_listen nor
// hep_listen is set.
func Run(ctx context.Context, cfg *config.Config, sink Sink, log *slog.Logger) error {
	return New(cfg, sink, log, Options{}).Run(ctx)
}

// New returns a Listener; log may be nil.
func New(cfg *config.Config, sink Sink, log *slog.Logger, o Options) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.MaxQueueBytes <= 0 {
		o.MaxQueueBytes = 32 << 20
	}
	if o.ExpireEvery <= 0 {
		o.ExpireEvery = 5 * time.Second
		if d := cfg.DialogTimeout.D() / 4; d > 0 && d < o.ExpireEvery {
			o.ExpireEvery = max(d, 100*time.Millisecond)
		}
	}
	if o.StatsEvery <= 0 {
		o.StatsEvery = time.Minute
	}
	return &Listener{cfg: cfg, sink: sink, log: log.With("component", "live"), o: o, ready: make(chan struct{})}
}

// Ready is closed once the sockets are bound (Addrs is then valid). It
// stays open when binding fails: Run returns that error.
func (l *Listener) Ready() <-chan struct{} { return l.ready }

// Addrs returns the bound ACDR and HEP addresses (invalid when not
// listening); valid once Ready is closed.
func (l *Listener) Addrs() (acdr, hep netip.AddrPort) { return l.acdrAddr, l.hepAddr }

// Stats returns the counters; safe from any goroutine.
func (l *Listener) Stats() Stats {
	return Stats{
		Received: l.received.Load(), Dropped: l.dropped.Load(),
		Skipped: l.skipped.Load(), Malformed: l.malformed.Load(),
		Messages: l.messages.Load(), ParseErrors: l.parseErrors.Load(), NotSIP: l.notSIP.Load(),
		Calls: l.calls.Load(), Active: l.active.Load(),
	}
}

// Run binds the sockets, reads and decodes until ctx ends, then drains
// the queue, hands the remaining calls to the sink and returns.
func (l *Listener) Run(ctx context.Context) error {
	type sock struct {
		conn *net.UDPConn
		acdr bool
	}
	var socks []sock
	closeAll := func() {
		for _, s := range socks {
			s.conn.Close()
		}
	}
	for _, spec := range []struct {
		name, addr string
		acdr       bool
		out        *netip.AddrPort
	}{
		{"acdr", l.cfg.Serve.ACDRListen, true, &l.acdrAddr},
		{"hep", l.cfg.Serve.HEPListen, false, &l.hepAddr},
	} {
		if spec.addr == "" {
			continue
		}
		var lc net.ListenConfig
		pc, err := lc.ListenPacket(ctx, "udp", spec.addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("live: %s listen %s: %w", spec.name, spec.addr, err)
		}
		conn := pc.(*net.UDPConn)
		_ = conn.SetReadBuffer(4 << 20) // best effort: absorbs bursts
		*spec.out = conn.LocalAddr().(*net.UDPAddr).AddrPort()
		socks = append(socks, sock{conn, spec.acdr})
		l.log.Info("listening for exported SIP", "kind", spec.name, "addr", spec.out.String())
	}
	if len(socks) == 0 {
		return nil
	}
	close(l.ready)

	queue := make(chan item, l.o.QueueSize)
	var readers sync.WaitGroup
	for _, s := range socks {
		// Closing the socket when ctx ends unblocks its reader.
		stop := context.AfterFunc(ctx, func() { s.conn.Close() })
		defer stop()
		readers.Go(func() { l.read(ctx, s.conn, s.acdr, queue) })
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.pipeline(queue)
	}()
	readers.Wait()
	closeAll()
	close(queue) // the pipeline drains what is queued, then finishes
	<-done
	return nil
}

// read copies datagrams into queue until the socket is closed; it never
// waits for the queue.
func (l *Listener) read(ctx context.Context, conn *net.UDPConn, acdr bool, queue chan<- item) {
	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Warn("live: read failed", "addr", conn.LocalAddr().String(), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond): // no hot loop on a persistent error
			}
			continue
		}
		t := time.Now()
		l.received.Add(1)
		if l.queuedBytes.Add(int64(n)) > l.o.MaxQueueBytes {
			l.queuedBytes.Add(-int64(n))
			l.dropped.Add(1)
			continue
		}
		it := item{acdr: acdr, exporter: netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), payload: append([]byte(nil), buf[:n]...), t: t}
		select {
		case queue <- it:
		default:
			l.queuedBytes.Add(-int64(n))
			l.dropped.Add(1)
		}
	}
}

// handler is the tap.Handler of the pipeline: SIP copies to the tracker.
type handler struct {
	l       *Listener
	parser  *sip.Parser
	tracker *sip.Tracker
	now     time.Time // receive time of the datagram being decoded
}

func (h *handler) Datagram(m tap.Meta, payload []byte) {
	if !sip.LooksLikeSIP(payload) {
		h.l.notSIP.Add(1)
		return
	}
	mm := sip.MessageMeta{
		Time:      h.now, // live mode: the receive time (see the package doc)
		Src:       m.Src,
		Dst:       m.Dst,
		Transport: m.Transport.String(),
		Origin:    m.Origin.String(),
	}
	msg, err := h.parser.ParseDatagram(mm, payload)
	if err != nil {
		if !errors.Is(err, sip.ErrKeepAlive) {
			h.l.parseErrors.Add(1)
		}
		return
	}
	h.l.messages.Add(1)
	h.tracker.Observe(msg)
}

// Stream is never called for datagram copies; TCP is not read live.
func (h *handler) Stream(tap.ConnInfo) tap.StreamConsumer { return nil }

// pipeline decodes the queue until it is closed, then hands the calls
// still tracked to the sink.
func (l *Listener) pipeline(queue <-chan item) {
	cfg := l.cfg
	h := &handler{l: l, parser: sip.NewParser(cfg.Limits.MaxSIPMessage)}
	h.tracker = sip.NewTracker(sip.TrackerOptions{
		MaxDialogs:         cfg.Limits.MaxDialogs,
		MaxMessagesPerCall: cfg.Limits.MaxMessagesPerCall,
		MaxKeptMessages:    cfg.Limits.MaxKeptMessages,
		DialogTimeout:      cfg.DialogTimeout.D(),
		MaxRawBytes:        cfg.Limits.MaxSIPMessage,
		Linger:             l.o.Linger,
		IsMicrosoft:        cfg.IsMicrosoft,
		IsMicrosoftHost:    cfg.IsMicrosoftHost,
		IsSBC:              cfg.IsSBCAddr,
		OnDone:             l.handOver,
	})
	dec := tap.NewDecoder(h, tap.Options{})
	var seen tap.Stats
	account := func() {
		st := dec.Stats()
		l.skipped.Add((st.ACDRSkipped + st.HEPSkipped) - (seen.ACDRSkipped + seen.HEPSkipped))
		l.malformed.Add(st.Malformed - seen.Malformed)
		seen = st
		l.active.Store(int64(h.tracker.Active()))
	}
	expire := time.NewTicker(l.o.ExpireEvery)
	defer expire.Stop()
	stats := time.NewTicker(l.o.StatsEvery)
	defer stats.Stop()
	for {
		select {
		case it, ok := <-queue:
			if !ok {
				dec.Close()
				account()
				calls := h.tracker.Close()
				for _, c := range calls {
					l.handOver(c)
				}
				l.active.Store(0)
				l.log.Info("live input stopped", l.statsAttrs()...)
				return
			}
			l.queuedBytes.Add(-int64(len(it.payload)))
			if l.beforeDecode != nil {
				l.beforeDecode()
			}
			h.now = it.t
			if it.acdr {
				dec.DecodeACDR(it.exporter, it.payload, it.t)
			} else {
				dec.DecodeHEP(it.exporter, it.payload, it.t)
			}
			account()
		case <-expire.C:
			h.tracker.Expire(time.Now())
			account()
		case <-stats.C:
			l.log.Debug("live input", l.statsAttrs()...)
		}
	}
}

func (l *Listener) handOver(c *sip.Call) {
	l.calls.Add(1)
	l.sink.AddCall(c)
}

func (l *Listener) statsAttrs() []any {
	s := l.Stats()
	return []any{"received", s.Received, "dropped", s.Dropped, "skipped", s.Skipped, "malformed", s.Malformed,
		"messages", s.Messages, "parse_errors", s.ParseErrors, "not_sip", s.NotSIP, "calls", s.Calls, "active", s.Active}
}
