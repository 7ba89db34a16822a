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

	"github.com/sbcwatch/sbcwatch/audiocodes/syslog"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/correlate"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tap"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
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
}

// expireEvery is how many packets pass between dialog expiry sweeps.
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
	p, err := New(cfg)
	if err != nil {
		return nil, err
	}
	p.warnings = append(p.warnings, in.warnings...)
	var li *logInput
	if len(logs) > 0 {
		if li, err = readLogs(in, cfg, p.parser); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInput, err)
		}
		p.warnings = append(p.warnings, li.warnings...)
		p.sockets = li.sockets
		p.sipErrs += uint64(li.errs)
		p.logLines = li.lines
	}
	logMsgs := func(until time.Time, all bool) {
		for li != nil && len(li.msgs) > 0 && (all || !li.msgs[0].Time.After(until)) {
			p.observe(li.msgs[0])
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
type Pipeline struct {
	cfg      *config.Config
	dec      *tap.Decoder
	parser   *sip.Parser
	tracker  *sip.Tracker
	tls      *tlsaudit.Tracker
	sipMsgs  uint64
	sipErrs  uint64
	tlsConns uint64
	lastTime time.Time
	packets  uint64
	streams  []*dispatcher
	sockets  []*syslog.Socket
	logLines int
	badTime  uint64
	warnings []string
}

// Capture times outside these bounds cannot be real (and cannot be
// written as RFC 3339): such packets are counted as malformed.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// New builds a pipeline from a validated configuration.
func New(cfg *config.Config) (*Pipeline, error) {
	roots, err := certcheck.LoadTrust(cfg.Trust, cfg.NoSystemRoots)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	p := &Pipeline{cfg: cfg}
	p.parser = sip.NewParser(cfg.Limits.MaxSIPMessage)
	p.tracker = sip.NewTracker(sip.TrackerOptions{
		MaxDialogs:         cfg.Limits.MaxDialogs,
		MaxMessagesPerCall: cfg.Limits.MaxMessagesPerCall,
		MaxKeptMessages:    cfg.Limits.MaxKeptMessages,
		DialogTimeout:      cfg.DialogTimeout.D(),
		MaxRawBytes:        cfg.Limits.MaxSIPMessage,
		IsMicrosoft:        cfg.IsMicrosoft,
		IsMicrosoftHost:    cfg.IsMicrosoftHost,
		IsSBC:              cfg.IsSBCAddr,
		MessagesOwned:      true, // every Message comes fresh from a parser
	})
	warn := cfg.ExpiryWarning.D()
	p.tls = tlsaudit.NewTracker(tlsaudit.Options{
		IsMicrosoft: cfg.IsMicrosoft,
		SBCNames:    cfg.SBCFQDNs(),
		MaxConns:    cfg.Limits.MaxTLSConns,
		Check:       tlsaudit.CertChecker(roots, warn),
	})
	p.dec = tap.NewDecoder(p, tap.Options{
		MaxBufferedPagesPerConn: cfg.Limits.MaxBufferedPagesPerConn,
		MaxBufferedPagesTotal:   cfg.Limits.MaxBufferedPagesTotal,
	})
	return p, nil
}

// Packet decodes one captured packet.
func (p *Pipeline) Packet(pkt tap.Packet) {
	if t := pkt.Info.Timestamp; t.Before(minTime) || t.After(maxTime) {
		p.badTime++
		return
	}
	p.dec.Decode(pkt)
	p.packets++
	if t := pkt.Info.Timestamp; t.After(p.lastTime) {
		p.lastTime = t
	}
	if p.packets%expireEvery == 0 {
		p.tracker.Expire(p.lastTime)
	}
}

// Datagram implements tap.Handler: one UDP/SCTP payload or exported copy.
func (p *Pipeline) Datagram(m tap.Meta, payload []byte) {
	if !sip.LooksLikeSIP(payload) {
		return
	}
	msg, err := p.parser.ParseDatagram(metaOf(m), payload)
	if err != nil {
		p.sipErrs++
		return
	}
	p.observe(msg)
}

func (p *Pipeline) observe(m *sip.Message) {
	p.sipMsgs++
	p.tracker.Observe(m)
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

// Stream implements tap.Handler: a TCP connection whose protocol is
// decided by its first bytes.
func (p *Pipeline) Stream(c tap.ConnInfo) tap.StreamConsumer {
	d := &dispatcher{p: p, info: c}
	return d
}

// Finish ends the capture: flushes streams, closes dialogs, runs the
// rules and returns the report.
func (p *Pipeline) Finish() *report.Report {
	p.dec.Close()
	p.tls.Flush() // streams the tap never closed end as incomplete
	for _, d := range p.streams {
		p.sipErrs += d.errors()
	}
	calls := p.tracker.Close()
	conns := p.tls.Conns()
	tlsFindings := tlsaudit.Findings(conns, tlsaudit.FindingOptions{})
	sortFindings(tlsFindings)
	for i, f := range tlsFindings {
		f.ID = fmt.Sprintf("F%d", i+1)
	}
	in := correlate.Input{
		Calls:          calls,
		Conns:          conns,
		TLSFindings:    tlsFindings,
		Config:         p.cfg,
		SBCSockets:     p.sockets,
		TeamsContextID: p.cfg.TeamsTLSContextID,
	}
	callFindings := correlate.Run(in)
	all := append(append([]*finding.Finding{}, tlsFindings...), callFindings...)
	sortFindings(all)

	st := p.dec.Stats()
	r := report.Build(calls, conns, all)
	r.Stats.Packets = st.Packets
	r.Stats.Bytes = st.Bytes
	r.Stats.SIPMessages = p.sipMsgs
	r.Stats.SIPErrors = p.sipErrs
	r.Stats.Malformed = st.Malformed + p.badTime
	r.Warnings = p.warnings
	r.Stats.TCPDropped = st.TCPDropped
	if !st.First.IsZero() && !st.Last.IsZero() {
		r.Stats.Seconds = st.Last.Sub(st.First).Seconds()
	}
	for _, c := range conns {
		if c.Hello != nil {
			r.Stats.TLSHandshakes++
		}
	}
	r.Stats.Extra = map[string]uint64{
		"unknown_link":  st.UnknownLink,
		"fragments":     st.Fragments,
		"reassembled":   st.Reassembled,
		"frag_dropped":  st.FragDropped,
		"tcp_conns":     st.TCPConns,
		"udp_datagrams": st.UDPDatagrams,
		"hep_packets":   st.HEPPackets,
		"acdr_packets":  st.ACDRPackets,
		"tunneled":      st.Tunnels,
		"log_lines":     uint64(p.logLines),
	}
	r.Hints = append(r.Hints, correlate.Hints(in)...)
	if len(calls) == 0 && len(conns) > 0 {
		r.Hints = append(r.Hints, "This capture holds TLS connections but no SIP: the signaling is encrypted. "+
			"Export the SBC's SIP as AudioCodes debug recording (ACDR) or HEP to the capture point to see the dialogs.")
	}
	return r
}

// sortFindings orders findings for the report (finding.Less).
func sortFindings(fs []*finding.Finding) {
	sort.SliceStable(fs, func(i, j int) bool { return finding.Less(fs[i], fs[j]) })
}
