// Package analyze is the offline pipeline behind `sbcwatch analyze`: it
// reads captures with tap, picks each payload's protocol by content, feeds
// SIP to the dialog tracker and TLS streams to the handshake tracker, then
// runs the TLS checks and the correlation rules and returns one
// report.Report. It uses capture timestamps as its only clock, so the same
// input always gives the same report. With more than one CPU, a second
// goroutine reads the captures ahead and parses their UDP SIP datagrams
// (see pipeline.Preparser) while the engine works: the same report.
//
// Stream hands the records to a pipeline.Sink as they are decided, in
// memory bounded by the calls up at once and the correlation windows;
// Files collects them into a report.Report (for small inputs and the
// tests). With Options.KeepPackets the raw frames behind each call leave
// with it, to a PacketSink (keeper says what is held meanwhile). A
// capture read from a stream (standard input, a FIFO) is handed to the
// engine packet by packet as it arrives, and the engine decides as its
// capture time passes, so findings come out while the stream runs.
package analyze

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/pipeline"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tap"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// ErrInput marks errors caused by the input (unreadable file, not a
// capture); the CLI maps them to exit status 2.
var ErrInput = errors.New("bad input")

// Options configures one analysis.
type Options struct {
	// Config holds thresholds, SBC names, Microsoft ranges and the trust
	// store; nil means config.Default().
	Config *config.Config
	// Progress, when set, is called now and then with bytes read so far
	// and the total size of the input files.
	Progress func(done, total int64)
	// KeepPackets, when set, keeps the raw frames behind the calls in
	// Report.Packets, within these limits, in the same single pass
	// (evidence for the store; see keeper); Stream hands them to a
	// PacketSink as the calls are decided.
	KeepPackets *PacketLimits

	// Streams are captures read once, as they arrive (standard input, a
	// FIFO), merged by time with the named files; the caller knows them
	// to be captures (pcap, pcapng, gzip) and closes them.
	Streams []tap.Stream

	// Logger receives the engine's one-time reports of internal errors;
	// nil discards them.
	Logger *slog.Logger

	// Sequential reads and parses every packet on the analysis goroutine.
	// Otherwise (and when GOMAXPROCS > 1) a second goroutine reads the
	// captures ahead and parses their plain UDP SIP datagrams while the
	// engine works on the packets before: the same report, sooner.
	Sequential bool

	// batch runs today's whole-input correlation (equivalence tests).
	batch bool
}

// expireEvery is how many packets pass between progress reports.
const expireEvery = 4096

// Files analyses capture files, AudioCodes SBC logs and directories of
// them as one input in time order: packets are read as a stream, and the
// SIP messages and TLS sockets of the logs are merged in by time. The
// report holds every record (for the tests, audit and small inputs);
// Stream is the bounded way.
func Files(ctx context.Context, paths []string, opt Options) (*report.Report, error) {
	col := &collector{}
	sum, err := Stream(ctx, paths, opt, col)
	if err != nil {
		return nil, err
	}
	r := col.report(!opt.batch)
	r.Stats, r.Warnings = sum.Stats, sum.Warnings
	r.Hints = append(r.Hints, sum.Hints...)
	if opt.KeepPackets != nil {
		r.Packets = col.packets
		slices.SortStableFunc(r.Packets, func(a, b report.Packet) int { return cmp.Compare(a.Frame, b.Frame) })
	}
	return r, nil
}

// Summary is what an analysis gives besides its records.
type Summary struct {
	Stats    report.Stats
	Hints    []string
	Warnings []string
}

// PacketSink is a pipeline.Sink that also takes the raw frames kept as
// evidence (Options.KeepPackets): a call's SIP frames right after the
// call, a TLS connection's frames once it is over and on a decided call's
// ladder (after the connection). Frames come in decision order, each
// once.
type PacketSink interface {
	pipeline.Sink
	Packets([]report.Packet)
}

// Tee hands every record to each of its sinks in turn, and kept frames
// (KeepPackets) to those that take them (`analyze --store` with an
// output: the report's spool and the store).
type Tee []pipeline.Sink

var _ PacketSink = Tee(nil)

// Packets hands ps to the sinks that are PacketSinks.
func (t Tee) Packets(ps []report.Packet) {
	for _, s := range t {
		if p, ok := s.(PacketSink); ok {
			p.Packets(ps)
		}
	}
}

// Call hands c to every sink.
func (t Tee) Call(c *sip.Call) {
	for _, s := range t {
		s.Call(c)
	}
}

// TLSConn hands c to every sink.
func (t Tee) TLSConn(c *tlsaudit.Conn) {
	for _, s := range t {
		s.TLSConn(c)
	}
}

// Finding hands f to every sink.
func (t Tee) Finding(f *finding.Finding) {
	for _, s := range t {
		s.Finding(f)
	}
}

// Stream analyses like Files, but hands each call, TLS connection and
// finding to sink as the engine decides it (a finding sent again with
// the same ID is an update) and keeps none of them: memory is bounded by
// the calls up at once and the correlation windows, not by the input.
// With Options.KeepPackets, sink must be a PacketSink: the frames behind
// each call leave with it (see keeper), and the frames dropped by the
// limits are counted in the stats (keep_packets_dropped).
func Stream(ctx context.Context, paths []string, opt Options, sink pipeline.Sink) (Summary, error) {
	if opt.KeepPackets == nil {
		return run(ctx, paths, opt, sink, nil)
	}
	ps, ok := sink.(PacketSink)
	if !ok {
		return Summary{}, errors.New("analyze: stream: keep-packets needs a sink that takes packets")
	}
	k := newKeeper(*opt.KeepPackets, ps.Packets)
	k.hold = opt.batch
	sum, err := run(ctx, paths, opt, keeperSink{k, ps}, k)
	if err == nil && k.dropped > 0 {
		sum.Stats.Extra["keep_packets_dropped"] = k.dropped
	}
	return sum, err
}

// keeperSink tells the keeper of each call and TLS connection after the
// sink had it.
type keeperSink struct {
	k *keeper
	s PacketSink
}

var _ pipeline.Sink = keeperSink{}

func (x keeperSink) Call(c *sip.Call) {
	x.s.Call(c)
	x.k.call(c)
}

func (x keeperSink) TLSConn(c *tlsaudit.Conn) {
	x.s.TLSConn(c)
	x.k.conn(c)
}

func (x keeperSink) Finding(f *finding.Finding) { x.s.Finding(f) }

// frameKeeper sees every frame before the engine decodes it, and what
// the engine makes of it (pipeline.FrameHook): the keeper.
type frameKeeper interface {
	pipeline.FrameHook
	packet(tap.Packet)
	setEngine(*pipeline.Engine)
	close()
}

// run reads the input through one engine feeding sink; keep, when set,
// sees every frame as it is decoded.
func run(ctx context.Context, paths []string, opt Options, sink pipeline.Sink, keep frameKeeper) (Summary, error) {
	cfg := opt.Config
	if cfg == nil {
		cfg = config.Default()
	}
	in, err := classify(paths)
	if err != nil {
		return Summary{}, fmt.Errorf("%w: %w", ErrInput, err)
	}
	captures, logs := in.captures, in.logs
	if len(captures) == 0 && len(logs) == 0 && len(opt.Streams) == 0 {
		return Summary{}, fmt.Errorf("%w: no files in %s", ErrInput, strings.Join(paths, ", "))
	}
	po := pipeline.Options{Config: cfg, Sink: sink, Batch: opt.batch, Logger: opt.Logger}
	if keep != nil {
		po.Frames = keep
	}
	eng, err := pipeline.New(po)
	if err != nil {
		return Summary{}, fmt.Errorf("%w: %w", ErrInput, err)
	}
	if keep != nil {
		keep.setEngine(eng)
	}
	warnings := append([]string(nil), in.warnings...)
	var li *logInput
	if len(logs) > 0 {
		if li, err = readLogs(ctx, in, cfg, eng.Parser()); err != nil {
			if ctx.Err() != nil {
				return Summary{}, err // interrupted
			}
			return Summary{}, fmt.Errorf("%w: %w", ErrInput, err)
		}
		warnings = append(warnings, li.warnings...)
		for _, s := range li.sockets {
			eng.Socket(s)
		}
		eng.SIPErrors(li.errs)
		eng.LogLines(li.lines)
	}
	logMsgs := func(until time.Time, all bool) {
		for li != nil && len(li.msgs) > 0 && (all || !li.msgs[0].Time.After(until)) {
			eng.Message(li.msgs[0])
			li.msgs[0] = nil
			li.msgs = li.msgs[1:]
		}
	}
	if len(captures) == 0 && len(opt.Streams) == 0 && (li == nil || li.lines == 0) {
		return Summary{}, fmt.Errorf("%w: no capture or SBC log in %s (%s)", ErrInput, strings.Join(paths, ", "), strings.Join(warnings, "; "))
	}
	var damaged []string
	if len(captures) > 0 || len(opt.Streams) > 0 {
		src, err := tap.OpenWith(captures, opt.Streams...)
		if err != nil {
			return Summary{}, fmt.Errorf("%w: %w", ErrInput, err)
		}
		defer src.Close()
		var f feed = direct{src}
		if useReadAhead(opt) {
			f = newReadAhead(ctx, src, eng.Preparser(), len(opt.Streams) > 0)
		}
		defer f.stop() // before src.Close
		var n uint64
		for {
			if n%expireEvery == 0 {
				if err := ctx.Err(); err != nil {
					return Summary{}, err
				}
				if opt.Progress != nil {
					opt.Progress(f.progress())
				}
			}
			pkt, pre, err := f.next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if ctx.Err() != nil {
					return Summary{}, ctx.Err()
				}
				return Summary{}, fmt.Errorf("%w: %w", ErrInput, err)
			}
			logMsgs(pkt.Info.Timestamp, false)
			if keep != nil {
				keep.packet(pkt)
			}
			eng.PacketPreparsed(pkt, pre)
			n++
		}
		f.stop()
		if opt.Progress != nil {
			opt.Progress(src.Progress())
		}
		// A stream cut by the end of ctx reads as a capture that ended
		// early: say interrupted instead.
		if err := ctx.Err(); err != nil {
			return Summary{}, err
		}
		// A file that ended early is a warning (the report covers what
		// came before the damage); captures that gave nothing at all are
		// an error.
		damaged = src.Warnings()
		if err := damage(&warnings, damaged, n, li); err != nil {
			return Summary{}, err
		}
	}
	logMsgs(time.Time{}, true)
	st, hints := eng.Close()
	if keep != nil {
		keep.close()
	}
	rs := reportStats(st)
	noteInputs(rs.Extra, li, damaged)
	return Summary{Stats: rs, Hints: hints, Warnings: warnings}, nil
}

// Pipeline is one analysis in progress: feed it packets, then Finish.
// It drives a pipeline.Engine and collects what leaves it into a report.
type Pipeline struct {
	eng *pipeline.Engine
	col *collector
}

// collector is the sink that keeps every record for the report.
type collector struct {
	calls    []*sip.Call
	conns    []*tlsaudit.Conn
	findings []*finding.Finding
	seen     map[string]int // finding ID -> index: a repeat is an update
	packets  []report.Packet
}

var _ PacketSink = (*collector)(nil)

func (c *collector) Call(x *sip.Call)           { c.calls = append(c.calls, x) }
func (c *collector) TLSConn(x *tlsaudit.Conn)   { c.conns = append(c.conns, x) }
func (c *collector) Packets(ps []report.Packet) { c.packets = append(c.packets, ps...) }
func (c *collector) Finding(f *finding.Finding) {
	if c.seen == nil {
		c.seen = map[string]int{}
	}
	if i, ok := c.seen[f.ID]; ok && f.ID != "" {
		c.findings[i] = f
		return
	}
	c.seen[f.ID] = len(c.findings)
	c.findings = append(c.findings, f)
}

// report builds the report; streamed findings were numbered in decision
// order and are renumbered in report order.
func (c *collector) report(streamed bool) *report.Report {
	fs := c.findings
	if streamed {
		sortFindings(fs)
		report.Renumber(fs)
	}
	return report.Build(c.calls, c.conns, fs)
}

// New builds a pipeline from a validated configuration.
func New(cfg *config.Config) (*Pipeline, error) {
	col := &collector{}
	eng, err := pipeline.New(pipeline.Options{Config: cfg, Sink: col})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	return &Pipeline{eng: eng, col: col}, nil
}

// Packet decodes one captured packet.
func (p *Pipeline) Packet(pkt tap.Packet) { p.eng.Packet(pkt) }

// Finish ends the capture: flushes streams, closes dialogs, takes the
// remaining decisions and returns the report.
func (p *Pipeline) Finish() *report.Report {
	st, hints := p.eng.Close()
	r := p.col.report(true)
	r.Stats = reportStats(st)
	r.Hints = append(r.Hints, hints...)
	return r
}

// reportStats is the report's view of the engine's counters.
func reportStats(st pipeline.Stats) report.Stats {
	dst := st.Decoder
	r := report.Stats{
		Packets:       dst.Packets,
		Bytes:         dst.Bytes,
		SIPMessages:   st.SIPMessages,
		SIPErrors:     st.SIPErrors,
		Malformed:     dst.Malformed + st.BadTime,
		TCPDropped:    dst.TCPDropped,
		TLSHandshakes: st.TLSHandshakes,
	}
	if !dst.First.IsZero() && !dst.Last.IsZero() {
		r.Seconds = dst.Last.Sub(dst.First).Seconds()
	}
	cs := st.Correlate
	r.Extra = map[string]uint64{
		"unknown_link":           dst.UnknownLink,
		"fragments":              dst.Fragments,
		"reassembled":            dst.Reassembled,
		"frag_dropped":           dst.FragDropped,
		"tcp_conns":              dst.TCPConns,
		"udp_datagrams":          dst.UDPDatagrams,
		"hep_packets":            dst.HEPPackets,
		"acdr_packets":           dst.ACDRPackets,
		"tunneled":               dst.Tunnels,
		"log_lines":              st.LogLines,
		"internal_errors":        st.Panics,
		"dialogs_evicted":        st.DialogsEvicted,
		"calls_truncated":        st.CallsTruncated,
		"tls_conns_evicted":      st.TLSEvicted,
		"window_calls_evicted":   cs.EvictedCalls,
		"window_conns_evicted":   cs.EvictedConns,
		"window_sockets_evicted": cs.EvictedSockets,
		"window_events_evicted":  cs.EvictedEvents,
		"window_calls_peak":      uint64(cs.PeakCalls),
		"window_conns_peak":      uint64(cs.PeakConns),
	}
	return r
}

// sortFindings orders findings for the report (finding.Less).
func sortFindings(fs []*finding.Finding) {
	sort.SliceStable(fs, func(i, j int) bool { return finding.Less(fs[i], fs[j]) })
}
