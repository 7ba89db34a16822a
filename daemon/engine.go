package daemon

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/gopacket/gopacket"

	"github.com/sbcwatch/sbcwatch/audiocodes/syslog"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/correlate"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/live"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tap"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// Sink receives what the engine decides, as it decides it. It is called
// from the engine goroutine only and must not block.
type Sink interface {
	Call(*sip.Call)
	Conn(*tlsaudit.Conn)
	Finding(*finding.Finding)
}

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
// rule, the SBC, the call or connection it is about and the time it was
// observed, never its summary text.
func FindingKey(f *finding.Finding) string {
	h := sha256.New()
	for _, s := range []string{f.Rule, f.SBC, f.CallID, f.Connection, f.Time.UTC().Format(time.RFC3339Nano)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// trackerEngine is the engine of serve: the tap decoder, the SIP dialog
// tracker, the TLS handshake tracker and a reader of AudioCodes syslog
// per exporter. Calls are judged by the correlation rules once they have
// ended and the give-up window after their end has passed, against the
// TLS connections and logged sockets of a bounded recent window.
type trackerEngine struct {
	cfg     *config.Config
	sink    Sink
	dec     *tap.Decoder
	parser  *sip.Parser
	tracker *sip.Tracker
	tls     *tlsaudit.Tracker
	logs    map[netip.Addr]*syslog.Parser
	now     time.Time

	// waiting are calls the tracker let go, until their judgment time.
	waiting []*sip.Call
	// conns, tlsFindings and sockets are the recent window the rules
	// look at.
	conns       []*tlsaudit.Conn
	tlsFindings []*finding.Finding
	sockets     []*syslog.Socket
	// emitted are the finding keys already handed to the sink (bounded).
	emitted    map[string]time.Time
	rulesExtra *optionsWatch

	n struct {
		messages, parseErrors, calls, conns, findings, logLines, logGaps, sockets, evicted uint64
	}
}

// Window and bounds of the recent records the rules look at.
const (
	recentWindow  = 15 * time.Minute
	maxRecent     = 20000
	maxEmitted    = 100000
	maxLogSources = 64
)

func newTrackerEngine(cfg *config.Config, sink Sink, ow *optionsWatch) (*trackerEngine, error) {
	roots, err := certcheck.LoadTrust(cfg.Trust, cfg.NoSystemRoots)
	if err != nil {
		return nil, err
	}
	e := &trackerEngine{cfg: cfg, sink: sink, logs: map[netip.Addr]*syslog.Parser{}, emitted: map[string]time.Time{}, rulesExtra: ow}
	e.parser = sip.NewParser(cfg.Limits.MaxSIPMessage)
	e.tracker = sip.NewTracker(sip.TrackerOptions{
		MaxDialogs:         cfg.Limits.MaxDialogs,
		MaxMessagesPerCall: cfg.Limits.MaxMessagesPerCall,
		MaxKeptMessages:    cfg.Limits.MaxKeptMessages,
		DialogTimeout:      cfg.DialogTimeout.D(),
		MaxRawBytes:        cfg.Limits.MaxSIPMessage,
		IsMicrosoft:        cfg.IsMicrosoft,
		IsMicrosoftHost:    cfg.IsMicrosoftHost,
		IsSBC:              cfg.IsSBCAddr,
		OnDone:             func(c *sip.Call) { e.waiting = append(e.waiting, c) },
	})
	e.tls = tlsaudit.NewTracker(tlsaudit.Options{
		IsMicrosoft: cfg.IsMicrosoft,
		SBCNames:    cfg.SBCFQDNs(),
		MaxConns:    cfg.Limits.MaxTLSConns,
		Check:       tlsaudit.CertChecker(roots, cfg.ExpiryWarning.D()),
	})
	e.dec = tap.NewDecoder(e, tap.Options{
		MaxBufferedPagesPerConn: cfg.Limits.MaxBufferedPagesPerConn,
		MaxBufferedPagesTotal:   cfg.Limits.MaxBufferedPagesTotal,
	})
	return e, nil
}

var _ Engine = (*trackerEngine)(nil)
var _ tap.Handler = (*trackerEngine)(nil)

func (e *trackerEngine) Feed(it live.Item) {
	if it.Time.After(e.now) {
		e.now = it.Time
	}
	switch it.Kind {
	case live.KindFrame:
		e.dec.Decode(tap.Packet{Data: it.Data, LinkType: it.LinkType,
			Info: gopacket.CaptureInfo{Timestamp: it.Time, CaptureLength: len(it.Data), Length: len(it.Data)}})
	case live.KindACDR:
		e.dec.DecodeACDR(it.From, it.Data, it.Time)
	case live.KindHEP:
		e.dec.DecodeHEP(it.From, it.Data, it.Time)
	case live.KindSyslog:
		e.logLines(it)
	}
	e.takeConns()
}

// Datagram implements tap.Handler: SIP to the tracker.
func (e *trackerEngine) Datagram(m tap.Meta, payload []byte) {
	if !sip.LooksLikeSIP(payload) {
		return
	}
	msg, err := e.parser.ParseDatagram(sip.MessageMeta{Time: m.Time, Frame: m.Frame, Src: m.Src, Dst: m.Dst,
		Transport: m.Transport.String(), Origin: m.Origin.String()}, payload)
	if err != nil {
		if !errors.Is(err, sip.ErrKeepAlive) {
			e.n.parseErrors++
		}
		return
	}
	e.observe(msg)
}

func (e *trackerEngine) observe(m *sip.Message) {
	e.n.messages++
	if e.rulesExtra != nil {
		e.rulesExtra.observe(m)
	}
	e.tracker.Observe(m)
}

// Stream implements tap.Handler: a TCP stream goes to the TLS tracker
// when its first bytes are TLS; SIP over plain TCP is not followed here.
func (e *trackerEngine) Stream(c tap.ConnInfo) tap.StreamConsumer {
	return &sniffer{e: e, info: c}
}

// logLines feeds one syslog message (possibly several lines) to the
// reader of its exporter.
func (e *trackerEngine) logLines(it live.Item) {
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
		var local netip.Addr
		if len(e.cfg.SBCs) > 0 && len(e.cfg.SBCs[0].Addresses) > 0 {
			local, _ = netip.ParseAddr(e.cfg.SBCs[0].Addresses[0])
		}
		p = syslog.NewParser(syslog.Options{Year: year, Location: loc, Local: local})
		e.logs[it.From.Addr()] = p
	}
	for line := range strings.SplitSeq(string(bytes.TrimRight(it.Data, "\n")), "\n") {
		e.n.logLines++
		p.Line(line)
	}
	e.takeLog(p, false)
}

func (e *trackerEngine) takeLog(p *syslog.Parser, all bool) {
	for _, m := range p.TakeMessages() {
		msg, err := e.parser.ParseDatagram(m.Meta, m.Text)
		if err != nil {
			e.n.parseErrors++
			continue
		}
		e.observe(msg)
	}
	socks := p.TakeSockets(func(s *syslog.Socket) bool { return all || !s.Closed.IsZero() })
	if len(socks) == 0 {
		return
	}
	e.n.sockets += uint64(len(socks))
	e.sockets = append(e.sockets, socks...)
	if over := len(e.sockets) - maxRecent; over > 0 {
		e.sockets = e.sockets[over:]
		e.n.evicted += uint64(over)
	}
	// tls_context_wrong needs only the log: judge the window now.
	for _, f := range correlate.Run(correlate.Input{SBCSockets: e.sockets, Config: e.cfg, TeamsContextID: e.cfg.TeamsTLSContextID}) {
		e.emit(f)
	}
}

// takeConns moves the TLS connections the tracker finished to the sink
// and the recent window, with their findings.
func (e *trackerEngine) takeConns() {
	conns := e.tls.TakeConns()
	if len(conns) == 0 {
		return
	}
	for _, c := range conns {
		e.n.conns++
		e.sink.Conn(c)
	}
	fs := tlsaudit.Findings(conns, tlsaudit.FindingOptions{})
	for _, f := range fs {
		e.emit(f)
	}
	e.conns = append(e.conns, conns...)
	e.tlsFindings = append(e.tlsFindings, fs...)
	e.trim()
}

func (e *trackerEngine) trim() {
	cut := e.now.Add(-recentWindow)
	i := 0
	for i < len(e.conns) && (len(e.conns)-i > maxRecent || e.conns[i].LastSeen.Before(cut)) {
		i++
	}
	e.conns = e.conns[i:]
	j := 0
	for j < len(e.tlsFindings) && (len(e.tlsFindings)-j > maxRecent || e.tlsFindings[j].Time.Before(cut)) {
		j++
	}
	e.tlsFindings = e.tlsFindings[j:]
}

// emit hands a finding to the sink once per key.
func (e *trackerEngine) emit(f *finding.Finding) {
	if f.SBC == "" && len(e.cfg.SBCs) == 1 {
		f.SBC = e.cfg.SBCs[0].Name
	}
	k := emitKey(f)
	if _, ok := e.emitted[k]; ok {
		return
	}
	if len(e.emitted) >= maxEmitted {
		for old := range e.emitted { // forget an arbitrary tenth
			delete(e.emitted, old)
			if len(e.emitted) < maxEmitted*9/10 {
				break
			}
		}
	}
	e.emitted[k] = e.now
	e.n.findings++
	e.sink.Finding(f)
}

// emitKey is FindingKey, except that grouped TLS findings (one per
// listener and certificate) are keyed by listener, since each batch of
// connections regroups them.
func emitKey(f *finding.Finding) string {
	if l, ok := f.Evidence["listener"].(string); ok && f.Rule != finding.TLSHandshakeFailed {
		g := *f
		g.Connection, g.Time = l, time.Time{}
		return FindingKey(&g)
	}
	return FindingKey(f)
}

// Advance moves the watermark to now: calls that ended long enough ago
// are judged, idle dialogs expire.
func (e *trackerEngine) Advance(now time.Time) {
	if now.After(e.now) {
		e.now = now
	}
	e.tracker.Expire(e.now)
	e.takeConns()
	e.judge(false)
	if e.rulesExtra != nil {
		for _, f := range e.rulesExtra.check(e.now) {
			e.emit(f)
		}
	}
}

// judgeAfter is when a call the tracker let go is judged. A call with
// REFERs waits for the give-up window after its end (the failed
// deliveries of its REFERs — inbound TLS from Microsoft — must have
// happened and closed) and for the REFER window after its last REFER (the
// new INVITE and NOTIFY); any other call is judged when it is let go.
func (e *trackerEngine) judgeAfter(c *sip.Call) time.Time {
	if len(c.Refers) == 0 {
		return time.Time{}
	}
	end := c.End
	if end.IsZero() {
		end = c.Last
	}
	at := end.Add(e.cfg.GiveUpWindow.D())
	for _, r := range c.Refers {
		if r != nil {
			if t := r.Time.Add(e.cfg.ReferWindow.D()); t.After(at) {
				at = t
			}
		}
	}
	return at
}

func (e *trackerEngine) judge(all bool) {
	keep := e.waiting[:0]
	var ready []*sip.Call
	for _, c := range e.waiting {
		if all || !e.now.Before(e.judgeAfter(c)) {
			ready = append(ready, c)
			continue
		}
		keep = append(keep, c)
	}
	e.waiting = keep
	for _, c := range ready {
		e.n.calls++
		e.sink.Call(c)
		in := correlate.Input{Calls: []*sip.Call{c}, Conns: e.conns, TLSFindings: e.tlsFindings, Config: e.cfg,
			SBCSockets: e.sockets, TeamsContextID: e.cfg.TeamsTLSContextID}
		for _, f := range correlate.Run(in) {
			if f.CallID == "" || f.CallID == c.CallID {
				e.emit(f)
			}
		}
	}
}

// Close ends the input: open streams and dialogs are closed and judged.
func (e *trackerEngine) Close() {
	e.dec.Close()
	e.tls.Flush()
	for _, p := range e.logs {
		p.Flush()
		e.takeLog(p, true)
	}
	e.takeConns()
	for _, c := range e.tracker.Close() {
		e.waiting = append(e.waiting, c)
	}
	e.judge(true)
}

func (e *trackerEngine) Counters() map[string]uint64 {
	st := e.dec.Stats()
	return map[string]uint64{
		"packets": st.Packets, "malformed": st.Malformed, "acdr_packets": st.ACDRPackets, "hep_packets": st.HEPPackets,
		"sip_messages": e.n.messages, "sip_errors": e.n.parseErrors, "calls": e.n.calls, "tls_conns": e.n.conns,
		"findings": e.n.findings, "log_lines": e.n.logLines, "log_sockets": e.n.sockets, "evicted": e.n.evicted,
		"calls_active": uint64(e.tracker.Active()), "calls_waiting": uint64(len(e.waiting)),
	}
}

// sniffer holds a TCP stream's first bytes until they say TLS (to the
// TLS tracker) or something else (ignored).
type sniffer struct {
	e       *trackerEngine
	info    tap.ConnInfo
	target  tap.StreamConsumer
	decided bool
	pending []sniffOp
	first   [2][]byte
}

type sniffOp struct {
	gap  bool
	dir  tap.Dir
	data []byte
	n    int
	t    time.Time
	ev   *tap.Event
}

func (s *sniffer) Data(dir tap.Dir, data []byte, t time.Time) {
	if s.decided {
		if s.target != nil {
			s.target.Data(dir, data, t)
		}
		return
	}
	s.pending = append(s.pending, sniffOp{dir: dir, data: append([]byte(nil), data...), t: t})
	s.first[dir] = append(s.first[dir], data[:min(len(data), 16)]...)
	b := s.first[dir]
	switch {
	case tlsaudit.LooksLikeTLS(b):
		s.start(s.e.tls.Stream(s.info))
	case len(b) >= 11 || len(s.pending) > 8:
		s.start(nil)
	}
}

func (s *sniffer) start(target tap.StreamConsumer) {
	s.decided, s.target = true, target
	if target != nil {
		for _, o := range s.pending {
			switch {
			case o.ev != nil:
				target.Event(*o.ev)
			case o.gap:
				target.Gap(o.dir, o.n, o.t)
			default:
				target.Data(o.dir, o.data, o.t)
			}
		}
	}
	s.pending, s.first = nil, [2][]byte{}
}

func (s *sniffer) Gap(dir tap.Dir, n int, t time.Time) {
	if s.decided {
		if s.target != nil {
			s.target.Gap(dir, n, t)
		}
		return
	}
	s.pending = append(s.pending, sniffOp{gap: true, dir: dir, n: n, t: t})
}

func (s *sniffer) Event(ev tap.Event) {
	if s.decided {
		if s.target != nil {
			s.target.Event(ev)
		}
		return
	}
	s.pending = append(s.pending, sniffOp{ev: &ev})
}

func (s *sniffer) Close(t time.Time, r tap.CloseReason) {
	if !s.decided {
		s.start(nil)
	}
	if s.target != nil {
		s.target.Close(t, r)
	}
}
