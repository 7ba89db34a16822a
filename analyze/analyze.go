// Package analyze is the offline pipeline behind `sbcwatch analyze`: it
// reads captures with tap, picks each payload's protocol by content, feeds
// SIP to the dialog tracker and TLS streams to the handshake tracker, then
// runs the TLS checks and the correlation rules and returns one
// report.Report. It uses capture timestamps as its only clock, so the same
// input always gives the same report.
package analyze

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	// KeepPackets, when set, reads the captures a second time and puts
	// the raw frames behind the calls in Report.Packets, within these
	// limits (evidence for the store; see keepPackets).
	KeepPackets *PacketLimits

	// batch runs today's whole-input correlation (equivalence tests).
	batch bool
}

// expireEvery is how many packets pass between progress reports.
const expireEvery = 4096

// Files analyses capture files, AudioCodes SBC logs and directories of
// them as one input in time order: packets are read as a stream, and the
// SIP messages and TLS sockets of the logs are merged in by time.
func Files(ctx context.Context, paths []string, opt Options) (*report.Report, error) {
	cfg := opt.Config
	if cfg == nil {
		cfg = config.Default()
	}
	in, err := classify(paths)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	captures, logs := in.captures, in.logs
	if len(captures) == 0 && len(logs) == 0 {
		return nil, fmt.Errorf("%w: no files in %s", ErrInput, strings.Join(paths, ", "))
	}
	p, err := newPipeline(cfg, opt.batch)
	if err != nil {
		return nil, err
	}
	p.warnings = append(p.warnings, in.warnings...)
	var li *logInput
	if len(logs) > 0 {
		if li, err = readLogs(ctx, in, cfg, p.eng.Parser()); err != nil {
			if ctx.Err() != nil {
				return nil, err // interrupted
			}
			return nil, fmt.Errorf("%w: %w", ErrInput, err)
		}
		p.warnings = append(p.warnings, li.warnings...)
		for _, s := range li.sockets {
			p.eng.Socket(s)
		}
		p.eng.SIPErrors(li.errs)
		p.eng.LogLines(li.lines)
	}
	logMsgs := func(until time.Time, all bool) {
		for li != nil && len(li.msgs) > 0 && (all || !li.msgs[0].Time.After(until)) {
			p.eng.Message(li.msgs[0])
			li.msgs = li.msgs[1:]
		}
	}
	if len(captures) == 0 {
		if li == nil || li.lines == 0 {
			return nil, fmt.Errorf("%w: no capture or SBC log in %s (%s)", ErrInput, strings.Join(paths, ", "), strings.Join(p.warnings, "; "))
		}
		logMsgs(time.Time{}, true)
		return noteInputs(p.Finish(), li, nil), nil
	}
	src, err := tap.Open(captures...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	defer src.Close()
	var n uint64
	for {
		if n%expireEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if opt.Progress != nil {
				opt.Progress(src.Progress())
			}
		}
		pkt, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInput, err)
		}
		logMsgs(pkt.Info.Timestamp, false)
		p.Packet(pkt)
		n++
	}
	logMsgs(time.Time{}, true)
	if opt.Progress != nil {
		opt.Progress(src.Progress())
	}
	// A file that ended early is a warning (the report covers what came
	// before the damage); captures that gave nothing at all are an error.
	if err := damage(p, src.Warnings(), n, li); err != nil {
		return nil, err
	}
	r := noteInputs(p.Finish(), li, src.Warnings())
	if opt.KeepPackets != nil {
		if r.Packets, err = keepPackets(ctx, captures, r, *opt.KeepPackets); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Pipeline is one analysis in progress: feed it packets, then Finish.
// It drives a pipeline.Engine and collects what leaves it into a report.
type Pipeline struct {
	batch    bool
	eng      *pipeline.Engine
	col      *collector
	warnings []string
}

// collector is the sink that builds the report.
type collector struct {
	calls    []*sip.Call
	conns    []*tlsaudit.Conn
	findings []*finding.Finding
	seen     map[string]int // finding ID -> index: a repeat is an update
}

var _ pipeline.Sink = (*collector)(nil)

func (c *collector) Call(x *sip.Call)         { c.calls = append(c.calls, x) }
func (c *collector) TLSConn(x *tlsaudit.Conn) { c.conns = append(c.conns, x) }
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

// New builds a pipeline from a validated configuration.
func New(cfg *config.Config) (*Pipeline, error) { return newPipeline(cfg, false) }

// newPipeline builds a streaming pipeline, or with batch today's
// whole-input one (for the equivalence tests).
func newPipeline(cfg *config.Config, batch bool) (*Pipeline, error) {
	col := &collector{}
	eng, err := pipeline.New(pipeline.Options{Config: cfg, Sink: col, Batch: batch})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	return &Pipeline{eng: eng, col: col, batch: batch}, nil
}

// Packet decodes one captured packet.
func (p *Pipeline) Packet(pkt tap.Packet) { p.eng.Packet(pkt) }

// Finish ends the capture: flushes streams, closes dialogs, runs the
// rules and returns the report.
func (p *Pipeline) Finish() *report.Report {
	st, hints := p.eng.Close()
	fs := p.col.findings
	if !p.batch {
		// Decided in stream order: the report lists them most severe
		// first and numbers them in that order.
		sortFindings(fs)
		report.Renumber(fs)
	}
	r := report.Build(p.col.calls, p.col.conns, fs)
	dst := st.Decoder
	r.Stats.Packets = dst.Packets
	r.Stats.Bytes = dst.Bytes
	r.Stats.SIPMessages = st.SIPMessages
	r.Stats.SIPErrors = st.SIPErrors
	r.Stats.Malformed = dst.Malformed + st.BadTime
	r.Warnings = p.warnings
	r.Stats.TCPDropped = dst.TCPDropped
	if !dst.First.IsZero() && !dst.Last.IsZero() {
		r.Stats.Seconds = dst.Last.Sub(dst.First).Seconds()
	}
	r.Stats.TLSHandshakes = st.TLSHandshakes
	r.Stats.Extra = map[string]uint64{
		"unknown_link":  dst.UnknownLink,
		"fragments":     dst.Fragments,
		"reassembled":   dst.Reassembled,
		"frag_dropped":  dst.FragDropped,
		"tcp_conns":     dst.TCPConns,
		"udp_datagrams": dst.UDPDatagrams,
		"hep_packets":   dst.HEPPackets,
		"acdr_packets":  dst.ACDRPackets,
		"tunneled":      dst.Tunnels,
		"log_lines":     st.LogLines,
	}
	r.Hints = append(r.Hints, hints...)
	return r
}

// sortFindings orders findings for the report (finding.Less).
func sortFindings(fs []*finding.Finding) {
	sort.SliceStable(fs, func(i, j int) bool { return finding.Less(fs[i], fs[j]) })
}
