package pipeline

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/audiocodes/syslog"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/correlate"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tap"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// Sink receives what the engine decides, as it decides it, from the
// goroutine that feeds the engine. It should not block for long.
type Sink interface {
	// Call is a call the engine let go: ended and past its linger, idle
	// past the dialog timeout, evicted by max_dialogs, or still open at
	// Close. A Call-ID seen again later is a new call.
	Call(*sip.Call)
	// TLSConn is a TLS connection that ended (closed, idle, evicted or
	// cut by Close). Its ID is unique within the engine (Conn.UID).
	TLSConn(*tlsaudit.Conn)
	// Finding is a finding decided at the watermark. A finding whose Key
	// was already sent is an update of that finding (more evidence, a
	// reference to a finding decided later) and replaces it. With
	// ProvisionalAfter, a Provisional finding is later replaced by its
	// confirmation or by its retraction (Retracted: withdraw it).
	Finding(*finding.Finding)
}

// Options configure an Engine.
type Options struct {
	// Config holds thresholds, limits, SBC names, Microsoft ranges and
	// the trust store; nil means config.Default().
	Config *config.Config
	// Sink receives calls, TLS connections and findings; required.
	Sink Sink
	// Logger receives the one-time reports of internal errors; nil
	// discards them.
	Logger *slog.Logger
	// ReceiveClock dates every SIP message by the time passed with its
	// datagram (ACDR, HEP) instead of the exporter's timestamp: the live
	// clock of serve. Offline analysis leaves it false and runs on
	// capture time.
	ReceiveClock bool
	// Linger is how long an ended call waits for late messages before it
	// is let go (0: the tracker's default, 32 s).
	Linger time.Duration
	// Frames, when set, is told what each frame carried as it is decoded,
	// so a caller can keep the raw frames behind calls and connections in
	// the same pass (analyze --keep-packets).
	Frames FrameHook
	// Batch holds every call and connection until Close and correlates
	// once over all of them: today's whole-input semantics, kept for the
	// equivalence tests. Memory then grows with the input.
	Batch bool
	// ProvisionalAfter, when positive, reports refer_delivery_failed
	// provisional that long after a call's last message, confirmed or
	// retracted at the correlation lag (correlate.StreamOptions; serve).
	// Zero (analyze): every finding is final when emitted.
	ProvisionalAfter time.Duration
}

// FrameHook learns, while a frame is decoded, what it carried.
type FrameHook interface {
	// Segment is called for every TCP segment (frame number, capture
	// time, direction).
	Segment(frame uint64, t time.Time, src, dst netip.AddrPort)
	// Message is called for every SIP message parsed; its Frame is the
	// frame that completed it (0 when unknown).
	Message(m *sip.Message)
}

// Stats are the engine's counters.
type Stats struct {
	// Decoder are the tap counters (packets, bytes, malformed frames...).
	Decoder tap.Stats
	// SIPMessages counts SIP messages parsed, SIPErrors payloads that
	// looked like SIP and did not parse.
	SIPMessages, SIPErrors uint64
	// Preparsed counts the UDP datagrams whose SIP parse was taken from
	// a Preparser (offline read-ahead) instead of done by the engine.
	Preparsed uint64
	// BadTime counts packets dated outside 1970..9999 (skipped, counted
	// as malformed in reports).
	BadTime uint64
	// TLSConns counts TCP streams judged TLS; TLSHandshakes connections
	// with a ClientHello.
	TLSConns, TLSHandshakes uint64
	// LogLines counts SBC log lines read; LogSockets the sockets in them.
	LogLines, LogSockets uint64
	// Calls, Conns and Findings count what went to the sink (a finding
	// updated counts once).
	Calls, Conns, Findings uint64
	// DialogsEvicted counts calls the SIP tracker let go early because
	// limits.max_dialogs was reached; CallsTruncated the calls whose
	// ladder lost messages to max_messages_per_call or max_kept_messages;
	// TLSEvicted the TLS connections finalized early because
	// max_tls_conns were tracked at once.
	DialogsEvicted, CallsTruncated, TLSEvicted uint64
	// Panics counts internal errors (a panic after the bytes were
	// decoded: in the tracker, the correlation or the sink). Each is a
	// bug; the first is logged with its stack.
	Panics uint64
	// Correlate are the streaming correlation's window and eviction
	// counters (zero in batch mode).
	Correlate correlate.StreamStats
}

// Engine is one streaming analysis: feed it input, in time order, from
// one goroutine; results leave through the Sink. Not safe for
// concurrent use.
type Engine struct {
	cfg     *config.Config
	sink    Sink
	log     *slog.Logger
	recvClk bool
	// provisionalAfter is Options.ProvisionalAfter.
	provisionalAfter time.Duration
	frames           FrameHook
	check            func(chain []*x509.Certificate, names []string, at time.Time) *certcheck.Result

	dec     *tap.Decoder
	parser  *sip.Parser
	tracker *sip.Tracker
	tls     *tlsaudit.Tracker
	corr    *correlator

	now       time.Time  // receive time of the datagram being decoded (live)
	pre       *Preparsed // the frame being decoded, parsed ahead (offline)
	watermark time.Time
	sinceExp  uint64
	lastAdv   time.Time // watermark at the last advance
	panicked  bool
	closed    bool
	st        Stats
}

// Capture times outside these bounds cannot be real (and cannot be
// written as RFC 3339): such packets are counted as malformed.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// expireEvery is how many packets pass between watermark advances when
// the input is read as fast as it goes.
const expireEvery = 4096

// advanceAfter is how far the clock (capture time offline) moves before
// the watermark is advanced whatever the packet count: a slow stream
// (a capture arriving on a pipe) gets its decisions as its time passes,
// not only every expireEvery packets. Not every second: a correlation
// round costs about the size of its windows, and on a busy capture
// (6 000 calls up) rounds every second of capture time took twice the
// CPU of the whole analysis; 30 s leaves busy inputs on the packet
// count and delays a decision by at most 30 s of capture time after
// its windows (156 s) passed.
const advanceAfter = 30 * time.Second

// New builds an engine from a validated configuration. The only error
// is a trust store that does not load.
func New(o Options) (*Engine, error) {
	cfg := o.Config
	if cfg == nil {
		cfg = config.Default()
	}
	if o.Sink == nil {
		return nil, fmt.Errorf("pipeline: new: no sink")
	}
	roots, err := certcheck.LoadTrust(cfg.Trust, cfg.NoSystemRoots)
	if err != nil {
		return nil, fmt.Errorf("pipeline: trust store: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, sink: o.Sink, log: log, recvClk: o.ReceiveClock, frames: o.Frames,
		provisionalAfter: o.ProvisionalAfter}
	e.parser = sip.NewParser(cfg.Limits.MaxSIPMessage)
	to := sip.TrackerOptions{
		MaxDialogs:         cfg.Limits.MaxDialogs,
		MaxMessagesPerCall: cfg.Limits.MaxMessagesPerCall,
		MaxKeptMessages:    cfg.Limits.MaxKeptMessages,
		DialogTimeout:      cfg.DialogTimeout.D(),
		MaxRawBytes:        cfg.Limits.MaxSIPMessage,
		Linger:             o.Linger,
		// Through e.cfg, so that SetConfig reaches the tracker.
		IsMicrosoft:     func(a netip.Addr) bool { return e.cfg.IsMicrosoft(a) },
		IsMicrosoftHost: func(h string) bool { return e.cfg.IsMicrosoftHost(h) },
		IsSBC:           func(a netip.Addr) bool { return e.cfg.IsSBCAddr(a) },
		MessagesOwned:   true, // every Message comes fresh from a parser, read-only after
	}
	if !o.Batch {
		to.OnDone = e.callDone
	}
	e.tracker = sip.NewTracker(to)
	e.check = tlsaudit.CertChecker(roots, cfg.ExpiryWarning.D())
	e.tls = tlsaudit.NewTracker(tlsaudit.Options{
		IsMicrosoft: func(a netip.Addr) bool { return e.cfg.IsMicrosoft(a) },
		SBCNames:    cfg.SBCFQDNs(),
		MaxConns:    cfg.Limits.MaxTLSConns,
		Check: func(chain []*x509.Certificate, names []string, at time.Time) *certcheck.Result {
			return e.check(chain, names, at)
		},
	})
	e.corr = newCorrelator(e, o.Batch)
	topt := tap.Options{
		MaxBufferedPagesPerConn: cfg.Limits.MaxBufferedPagesPerConn,
		MaxBufferedPagesTotal:   cfg.Limits.MaxBufferedPagesTotal,
	}
	if o.Frames != nil {
		topt.Segment = o.Frames.Segment
	}
	e.dec = tap.NewDecoder(handler{e}, topt)
	return e, nil
}

// Config returns the configuration the engine runs with.
func (e *Engine) Config() *config.Config { return e.cfg }

// Watermark is the engine's clock: the latest capture time seen offline,
// the latest receive time or Advance live.
func (e *Engine) Watermark() time.Time { return e.watermark }

// Packet decodes one captured frame (offline: its capture time is the
// clock).
func (e *Engine) Packet(pkt tap.Packet) { e.PacketPreparsed(pkt, nil) }

// PacketPreparsed is Packet for a frame whose SIP datagram a Preparser
// may have parsed ahead (pre may be nil). The result is the same as
// Packet's: the engine uses pre only for the very bytes and meta it
// would have parsed itself.
func (e *Engine) PacketPreparsed(pkt tap.Packet, pre *Preparsed) {
	if t := pkt.Info.Timestamp; t.Before(minTime) || t.After(maxTime) {
		e.st.BadTime++
		return
	}
	e.now = pkt.Info.Timestamp
	e.pre = pre
	e.dec.Decode(pkt)
	e.pre = nil
	e.tick(pkt.Info.Timestamp)
}

// ACDR decodes one AudioCodes debug-recording datagram from exporter,
// received at recv (live).
func (e *Engine) ACDR(exporter netip.AddrPort, payload []byte, recv time.Time) {
	e.now = recv
	e.dec.DecodeACDR(exporter, payload, recv)
	e.tick(recv)
}

// HEP decodes one datagram of HEP v3 packets from exporter, received at
// recv (live).
func (e *Engine) HEP(exporter netip.AddrPort, payload []byte, recv time.Time) {
	e.now = recv
	e.dec.DecodeHEP(exporter, payload, recv)
	e.tick(recv)
}

// Message feeds one SIP message that did not come from a packet (an SBC
// log line), dated by its own time.
func (e *Engine) Message(m *sip.Message) {
	e.observe(m)
	e.tick(m.Time)
}

// Socket feeds one TLS socket from the SBC's own log
// (audiocodes/syslog), for tls_context_wrong and for the connections a
// capture lacks.
func (e *Engine) Socket(s *syslog.Socket) {
	if s == nil {
		return
	}
	e.st.LogSockets++
	e.guard(func() { e.corr.addSocket(s) })
}

// LogLines adds n to the log lines read (for the stats).
func (e *Engine) LogLines(n int) { e.st.LogLines += uint64(n) }

// SIPErrors adds n to the SIP parse errors (messages from a log that did
// not parse).
func (e *Engine) SIPErrors(n int) { e.st.SIPErrors += uint64(n) }

// Parser is the SIP parser, for callers that parse SIP from logs.
func (e *Engine) Parser() *sip.Parser { return e.parser }

// tick moves the watermark forward to t and, now and then, lets the
// trackers and the correlation act on it.
func (e *Engine) tick(t time.Time) {
	if t.After(e.watermark) {
		e.watermark = t
	}
	e.sinceExp++
	if e.sinceExp >= expireEvery || e.watermark.Sub(e.lastAdv) >= advanceAfter {
		e.advance()
	}
}

// Advance moves the watermark to now (live: a timer on the receive
// clock) and takes the decisions it allows.
func (e *Engine) Advance(now time.Time) {
	if now.After(e.watermark) {
		e.watermark = now
	}
	e.sinceExp, e.lastAdv = 0, e.watermark
	e.guard(func() {
		e.tracker.Expire(e.watermark)
		e.takeConns()
		e.corr.advance(e.watermark)
	})
}

func (e *Engine) advance() {
	e.sinceExp, e.lastAdv = 0, e.watermark
	e.guard(func() {
		e.tracker.Expire(e.watermark)
		e.takeConns()
		e.corr.advance(e.watermark)
	})
}

// takeConns moves finished TLS connections to the correlation.
func (e *Engine) takeConns() {
	for _, c := range e.tls.TakeConns() {
		if c.Hello != nil {
			e.st.TLSHandshakes++
		}
		if slices.ContainsFunc(c.Anomalies, func(a string) bool { return strings.HasPrefix(a, "evicted:") }) {
			e.st.TLSEvicted++
		}
		e.corr.addConn(c)
	}
}

// Close ends the input: flushes streams, lets every call and connection
// go, takes every remaining decision and returns the final counters.
// Hints are the advice sentences for what the input could not settle.
func (e *Engine) Close() (Stats, []string) {
	if e.closed {
		return e.Stats(), nil
	}
	e.closed = true
	e.dec.Close()
	e.tls.Flush() // streams the tap never closed end as incomplete
	var hints []string
	var calls []*sip.Call
	e.guard(func() { calls = e.tracker.Close() })
	for _, c := range calls {
		e.guard(func() { e.callDone(c) })
	}
	e.guard(func() {
		e.takeConns()
		hints = e.corr.close()
	})
	return e.Stats(), hints
}

// Pending says what has not left the engine yet, for a caller that
// holds things for calls and connections still to come (analyze
// --keep-packets): the earliest start of a call still tracked and the
// earliest first packet of a TLS connection not yet handed to the sink;
// each is zero when there is none. A call or connection that starts
// later than these is dated by a packet not yet fed.
func (e *Engine) Pending() (call, conn time.Time) {
	for _, c := range e.tracker.Open() {
		if call.IsZero() || c.Start.Before(call) {
			call = c.Start
		}
	}
	conn, _ = e.tls.OldestOpen()
	return call, conn
}

// Stats returns the counters so far.
func (e *Engine) Stats() Stats {
	s := e.st
	s.Decoder = e.dec.Stats()
	s.Correlate = e.corr.stats()
	s.DialogsEvicted = e.tracker.Evicted()
	return s
}

// callDone takes a call the tracker let go.
func (e *Engine) callDone(c *sip.Call) {
	if c.Truncated {
		e.st.CallsTruncated++
	}
	e.corr.addCall(c)
}

func (e *Engine) observe(m *sip.Message) {
	e.st.SIPMessages++
	if e.frames != nil {
		e.frames.Message(m)
	}
	e.guard(func() {
		e.tracker.Observe(m)
		e.corr.observe(m)
	})
}

// guard runs downstream work (everything after the bytes were decoded).
// A panic there is a bug, not a malformed packet: it is counted in
// Stats.Panics, the first one is logged with its stack, and the input
// goes on.
func (e *Engine) guard(f func()) {
	defer func() {
		if r := recover(); r != nil {
			e.st.Panics++
			if !e.panicked {
				e.panicked = true
				e.log.Error("pipeline: internal error (bug); later ones are only counted",
					"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}
		}
	}()
	f()
}

// handler is the tap.Handler: it picks each payload's protocol.
type handler struct{ e *Engine }

var _ tap.Handler = handler{}

// Datagram implements tap.Handler: one UDP/SCTP payload or exported copy.
func (h handler) Datagram(m tap.Meta, payload []byte) {
	if !sip.LooksLikeSIP(payload) {
		return
	}
	e := h.e
	mm := metaOf(m)
	if e.recvClk {
		mm.Time = e.now
	}
	msg, ok, err := e.pre.take(mm, payload)
	if ok {
		e.st.Preparsed++
	} else {
		msg, err = e.parser.ParseDatagram(mm, payload)
	}
	if err != nil {
		e.st.SIPErrors++
		return
	}
	e.observe(msg)
}

// Stream implements tap.Handler: a TCP connection whose protocol is
// decided by its first bytes.
func (h handler) Stream(c tap.ConnInfo) tap.StreamConsumer {
	return &dispatcher{p: h.e, info: c}
}

func metaOf(m tap.Meta) sip.MessageMeta {
	return sip.MessageMeta{
		Time:      m.Time,
		Frame:     m.Frame,
		Src:       m.Src,
		Dst:       m.Dst,
		Transport: m.Transport.String(),
		Origin:    m.Origin.String(),
	}
}
