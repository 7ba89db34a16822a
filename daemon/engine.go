package daemon

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/gopacket/gopacket"

	"github.com/sbcwatch/sbcwatch/audiocodes/syslog"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/live"
	"github.com/sbcwatch/sbcwatch/pipeline"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tap"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// Sink receives what the engine decides, as it decides it (it is the
// pipeline's Sink). It is called from the engine goroutine only and must
// not block.
type Sink = pipeline.Sink

// Engine turns the items of every source into calls, TLS connections and
// findings. It is driven by one goroutine: Feed for each item, Advance as
// the wall clock moves (the watermark), Close once at the end.
type Engine interface {
	Feed(it live.Item)
	Advance(now time.Time)
	Close()
	Counters() map[string]uint64
}

// FindingKey is a finding's identity across updates and processes: the
// engine's Key (finding.KeyOf: rule, call, connection, time and the
// distinguishing evidence, never the summary).
func FindingKey(f *finding.Finding) string {
	if f.Key != "" {
		return f.Key
	}
	return finding.KeyOf(f)
}

// liveEngine is the one streaming engine (package pipeline) on the
// receive clock, with a reader of AudioCodes syslog per exporter in
// front of it and the live-only rule options_missing beside it.
type liveEngine struct {
	cfg  *config.Config
	eng  *pipeline.Engine
	sink Sink
	logs map[netip.Addr]*syslog.Parser
	opts *optionsWatch
	now  time.Time

	logLines, logGaps, logSources uint64
}

var _ Engine = (*liveEngine)(nil)

// maxLogSources bounds the exporters whose syslog is read.
const maxLogSources = 64

func newLiveEngine(cfg *config.Config, sink Sink, ow *optionsWatch, log *slog.Logger) (*liveEngine, error) {
	e := &liveEngine{cfg: cfg, sink: sink, logs: map[netip.Addr]*syslog.Parser{}, opts: ow}
	eng, err := pipeline.New(pipeline.Options{Config: cfg, Sink: watchSink{e}, Logger: log, ReceiveClock: true,
		ProvisionalAfter: max(0, cfg.Serve.ProvisionalAfter.D())})
	if err != nil {
		return nil, err
	}
	e.eng = eng
	return e, nil
}

// watchSink passes everything on and lets options_missing see the
// OPTIONS transactions as the tracker lets them go.
type watchSink struct{ e *liveEngine }

func (w watchSink) Call(c *sip.Call) {
	if w.e.opts != nil {
		w.e.opts.observeCall(c)
	}
	w.e.sink.Call(c)
}
func (w watchSink) TLSConn(c *tlsaudit.Conn)   { w.e.sink.TLSConn(c) }
func (w watchSink) Finding(f *finding.Finding) { w.e.sink.Finding(w.e.named(f)) }

// named gives a finding the SBC's name when one SBC is configured.
func (e *liveEngine) named(f *finding.Finding) *finding.Finding {
	if f.SBC == "" && len(e.cfg.SBCs) == 1 {
		f.SBC = e.cfg.SBCs[0].Name
	}
	return f
}

func (e *liveEngine) Feed(it live.Item) {
	if it.Time.After(e.now) {
		e.now = it.Time
	}
	switch it.Kind {
	case live.KindFrame:
		e.eng.Packet(tap.Packet{Data: it.Data, LinkType: it.LinkType,
			Info: gopacket.CaptureInfo{Timestamp: it.Time, CaptureLength: len(it.Data), Length: len(it.Data)}})
	case live.KindACDR:
		e.eng.ACDR(it.From, it.Data, it.Time)
	case live.KindHEP:
		e.eng.HEP(it.From, it.Data, it.Time)
	case live.KindSyslog:
		e.syslog(it)
	}
}

// syslog feeds one syslog message (possibly several lines) to the reader
// of its exporter, and what it completed to the engine.
func (e *liveEngine) syslog(it live.Item) {
	p := e.logs[it.From.Addr()]
	if p == nil {
		if len(e.logs) >= maxLogSources {
			return
		}
		loc := time.UTC
		if e.cfg.LogTimezone != "" {
			if l, err := time.LoadLocation(e.cfg.LogTimezone); err == nil {
				loc = l
			}
		}
		year := e.cfg.LogYear
		if year == 0 {
			year = it.Time.In(loc).Year()
		}
		// The SBC's own address is the local end of its logged messages:
		// the exporter's when it is a configured SBC address, else the
		// first configured one.
		var local netip.Addr
		if e.cfg.IsSBCAddr(it.From.Addr()) {
			local = it.From.Addr().Unmap()
		} else if len(e.cfg.SBCs) > 0 && len(e.cfg.SBCs[0].Addresses) > 0 {
			local, _ = netip.ParseAddr(e.cfg.SBCs[0].Addresses[0])
		}
		p = syslog.NewParser(syslog.Options{Year: year, Location: loc, Local: local})
		e.logs[it.From.Addr()] = p
		e.logSources++
	}
	gaps := p.Gaps()
	n := 0
	for line := range strings.SplitSeq(string(bytes.TrimRight(it.Data, "\n")), "\n") {
		n++
		p.Line(line)
	}
	e.logLines += uint64(n)
	e.logGaps += uint64(p.Gaps() - gaps)
	e.eng.LogLines(n)
	e.takeLog(p, false)
}

func (e *liveEngine) takeLog(p *syslog.Parser, all bool) {
	for _, m := range p.TakeMessages() {
		msg, err := e.eng.Parser().ParseDatagram(m.Meta, m.Text)
		if err != nil {
			e.eng.SIPErrors(1)
			continue
		}
		e.eng.Message(msg)
	}
	for _, s := range p.TakeSockets(func(s *syslog.Socket) bool { return all || !s.Closed.IsZero() }) {
		e.eng.Socket(s)
	}
}

// Advance moves the watermark (the wall clock) and checks
// options_missing.
func (e *liveEngine) Advance(now time.Time) {
	if now.After(e.now) {
		e.now = now
	}
	e.eng.Advance(e.now)
	if e.opts != nil {
		for _, f := range e.opts.check(e.now) {
			e.sink.Finding(e.named(f))
		}
	}
}

// Close ends the input: log messages under way, open streams and dialogs
// are closed and decided.
func (e *liveEngine) Close() {
	for _, p := range e.logs {
		p.Flush()
		e.takeLog(p, true)
	}
	e.eng.Close()
}

func (e *liveEngine) Counters() map[string]uint64 {
	st := e.eng.Stats()
	return map[string]uint64{
		"packets": st.Decoder.Packets, "malformed": st.Decoder.Malformed, "acdr_packets": st.Decoder.ACDRPackets,
		"hep_packets": st.Decoder.HEPPackets, "sip_messages": st.SIPMessages, "sip_errors": st.SIPErrors,
		"tls_conns": st.TLSConns, "calls": st.Calls, "conns": st.Conns, "findings": st.Findings,
		"panics": st.Panics, "log_lines": e.logLines, "log_lost_datagrams": e.logGaps, "log_sockets": st.LogSockets, "log_sources": e.logSources,
		"evicted_calls": st.Correlate.EvictedCalls, "evicted_conns": st.Correlate.EvictedConns,
		"evicted_sockets":      st.Correlate.EvictedSockets,
		"findings_provisional": st.Correlate.Provisional, "findings_confirmed": st.Correlate.Confirmed,
		"findings_retracted": st.Correlate.Retracted,
	}
}

// setConfig makes what the engine decides from now on follow cfg
// (reload); see pipeline.Engine.SetConfig. Exporters whose syslog is
// already being read keep their log_year, log_timezone and SBC address;
// exporters heard from later take the new ones. Call it with the engine
// goroutine held (Daemon.engMu).
func (e *liveEngine) setConfig(cfg *config.Config) error {
	if err := e.eng.SetConfig(cfg); err != nil {
		return err
	}
	e.cfg = cfg
	return nil
}
