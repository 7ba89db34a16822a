package syslog

import (
	"bufio"
	"bytes"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/sip"
)

// Options place the device clock in time and name the SBC's own address.
type Options struct {
	// Year of the device clock's dates (the log carries none).
	Year int
	// Location of the device clock; nil means UTC.
	Location *time.Location
	// Local is the SBC's SIP address, used as the local end of the SIP
	// messages (the log names only the SIP interface); zero when unknown.
	Local netip.Addr
	// MaxLines bounds the lines kept per socket (default 64).
	MaxLines int
}

// Socket is one connection the SBC accepted, as its log tells it.
type Socket struct {
	// SocketID is the SocketID= number; Handle the (#n) of the
	// SIPSocketReliable / TLSSocketAPI objects serving it.
	SocketID int
	Handle   int
	// TLS is set when a TLSSocketAPI was created for it or it was
	// accepted on a TLS listening socket.
	TLS bool
	// Peer is the remote address and port; LocalPort the SBC's port and
	// Interface the interface id from the allow-list line (-1 unknown).
	Peer      netip.AddrPort
	LocalPort int
	Interface int
	// Local is Options.Local with LocalPort, when both are known.
	Local netip.AddrPort
	// Accepted is the device time of the accept line; Closed of the
	// release (zero while open).
	Accepted time.Time
	Closed   time.Time
	// ClosedByPeer: the SBC saw the peer disconnect or reset.
	ClosedByPeer bool
	// Context is the TLS context lookup logged just before the accept.
	Context *ContextLookup
	// SIPMessages counts SIP messages logged on this socket.
	SIPMessages int
	// SID is the session id of its lines, when they carry one.
	SID string
	// Lines are its log lines as received (bounded by Options.MaxLines),
	// starting with the listening socket's lines that led to the accept.
	Lines []string
}

// ContextLookup is "SIPAppMngr::GetTlsContextIdForIpAddress: ProxySetId
// = -1, SIPInterface = 0, ContextID = 0": which TLS context the SBC chose
// for a new connection, and through which proxy set.
type ContextLookup struct {
	ProxySetID   int
	SIPInterface int
	ContextID    int
	Time         time.Time
	Line         string
}

// Message is one SIP message the SBC logged.
type Message struct {
	// Meta is ready for sip.Parser.ParseDatagram: device time, the peer
	// and Options.Local as Src/Dst by direction, transport, Origin
	// "syslog".
	Meta sip.MessageMeta
	// Incoming is the direction seen from the SBC.
	Incoming bool
	// Interface is the SIP interface's name; Conn the TO(#n) number;
	// SocketID when the line gives one (0 otherwise).
	Interface string
	Conn      int
	SocketID  int
	SID       string
	// Text is the message with CRLF line ends.
	Text []byte
	// Complete: the header block ended and Content-Length bytes of body
	// arrived. Gap: an [S=] number went missing while it was being
	// reassembled.
	Complete bool
	Gap      bool
}

// Result is everything read from a log.
type Result struct {
	Sockets  []*Socket // by accept time, then SocketID
	Messages []*Message
	// Lines counts lines read; Gaps the [S=] numbers missing.
	Lines int
	Gaps  int
}

var (
	reAccept    = regexp.MustCompile(`(SIPListeningSocket(TLS|TCP)?\(#\d+\))?::AcceptNewConnection - Incoming connection from (\S+) accepted\. SocketID=(\d+)`)
	reContext   = regexp.MustCompile(`GetTlsContextIdForIpAddress: ProxySetId = (-?\d+), SIPInterface = (-?\d+), ContextID = (-?\d+)`)
	reAllowlist = regexp.MustCompile(`AllowlistManager: (Adding|Removing) (\w+) Remote IP: ([0-9a-fA-F.:]+), Port: (\d+), Interface ID: (-?\d+), Local Port: (\d+)`)
	reNewSocket = regexp.MustCompile(`New (SIPSocketReliable|TLSSocketAPI) created (?:- )?\(#(\d+)\) - SocketID=(\d+)`)
	reReleased  = regexp.MustCompile(`SIPSocketReliable\(#(\d+)\) Released - SocketID=(\d+)`)
	reHandle    = regexp.MustCompile(`\(#(\d+)\)`)
	reSIPHeader = regexp.MustCompile(`---- (Incoming|Outgoing) SIP Message (?:from|to) (\S+) (?:to|from) SIPInterface #(\d+) \(([^)]*)\) (\w+) TO\(#(\d+)\)(?: SocketID\((\d+)\))? ----`)
)

// Parser reads lines one at a time; Result returns what it found.
type Parser struct {
	opt      Options
	res      Result
	bySockID map[int]*Socket
	byHandle map[int]*Socket
	// preamble holds listening-socket lines since the last accept;
	// lookup the context lookup waiting for its accept line.
	preamble []string
	lookup   *ContextLookup
	current  *Socket
	lastKey  string // session of the latest SIP message header
	// pending SIP messages by session id ("" for lines without one).
	pending map[string]*pendingMsg
	lastSeq int
}

type pendingMsg struct {
	msg  *Message
	text strings.Builder
}

// NewParser returns a parser with the given options.
func NewParser(opt Options) *Parser {
	if opt.MaxLines <= 0 {
		opt.MaxLines = 64
	}
	return &Parser{
		opt:      opt,
		bySockID: map[int]*Socket{},
		byHandle: map[int]*Socket{},
		pending:  map[string]*pendingMsg{},
		lastSeq:  -1,
	}
}

// Parse reads a whole log.
func Parse(r io.Reader, opt Options) (*Result, error) {
	p := NewParser(opt)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		p.Line(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return p.Result(), nil
}

// Line feeds one line.
func (p *Parser) Line(raw string) {
	if strings.TrimSpace(raw) == "" {
		// Inside a datagram with real line breaks, an empty line is the
		// one between a message's headers and its body.
		if pm := p.pending[p.lastKey]; pm != nil {
			pm.text.WriteString("\n")
		}
		return
	}
	l := ParseLine(raw, p.opt.Year, p.opt.Location)
	p.res.Lines++
	if l.Seq >= 0 {
		if p.lastSeq >= 0 && l.Seq > p.lastSeq+1 {
			// [S=] numbers every datagram of the device: a missing one
			// may have held a piece of any message under way.
			p.res.Gaps += l.Seq - p.lastSeq - 1
			for _, pm := range p.pending {
				pm.msg.Gap = true
			}
		}
		p.lastSeq = l.Seq
	}
	if p.sipLine(l) {
		return
	}
	p.socketLine(l)
}

// when is the best time a line gives: the device clock.
func when(l Line) time.Time { return l.DevTime }

func (p *Parser) socketLine(l Line) {
	t := l.Text
	switch {
	case listening(t) && !strings.Contains(t, "AcceptNewConnection"):
		if len(p.preamble) < p.opt.MaxLines {
			p.preamble = append(p.preamble, l.Raw)
		}
		return
	}
	if !strings.Contains(t, "Socket") && !strings.Contains(t, "(#") && !strings.Contains(t, "ContextId") {
		return // not about sockets: skip the regular expressions
	}
	if m := find(reNewSocket, t, " created "); m != nil {
		h, id := atoi(m[2], 0), atoi(m[3], 0)
		p.prune()
		s := p.bySockID[id]
		if s == nil {
			s = &Socket{SocketID: id, Handle: h, Interface: -1, SID: l.SID}
			p.bySockID[id] = s
			s.Lines = append(s.Lines, p.preamble...)
			p.preamble = nil
			p.current = s
		}
		s.Handle = h
		if m[1] == "TLSSocketAPI" {
			s.TLS = true
		}
		p.byHandle[h] = s
		p.add(s, l)
		return
	}
	if m := find(reContext, t, "GetTlsContextIdForIpAddress"); m != nil {
		p.lookup = &ContextLookup{
			ProxySetID:   atoi(m[1], 0),
			SIPInterface: atoi(m[2], 0),
			ContextID:    atoi(m[3], 0),
			Time:         when(l),
			Line:         l.Raw,
		}
		if s := p.opening(); s != nil {
			p.add(s, l)
		}
		return
	}
	if m := find(reAllowlist, t, "AllowlistManager"); m != nil {
		peer, err := netip.ParseAddr(m[3])
		if err != nil {
			return
		}
		ap := netip.AddrPortFrom(peer, uint16(atoi(m[4], 0)))
		if m[1] == "Adding" {
			if s := p.opening(); s != nil {
				s.Peer, s.Interface, s.LocalPort = ap, atoi(m[5], -1), atoi(m[6], 0)
				if p.opt.Local.IsValid() && s.LocalPort > 0 {
					s.Local = netip.AddrPortFrom(p.opt.Local, uint16(s.LocalPort))
				}
				if strings.Contains(m[2], "TLS") {
					s.TLS = true
				}
				p.add(s, l)
			}
			return
		}
		if s := p.byPeer(ap); s != nil {
			p.add(s, l)
		}
		return
	}
	if m := find(reAccept, t, "AcceptNewConnection"); m != nil {
		id := atoi(m[4], 0)
		s := p.bySockID[id]
		if s == nil {
			s = &Socket{SocketID: id, Handle: -1, Interface: -1, SID: l.SID}
			s.Lines = append(s.Lines, p.preamble...)
			p.bySockID[id] = s
		}
		p.preamble = nil
		p.current = nil
		if ap, err := netip.ParseAddrPort(m[3]); err == nil {
			s.Peer = ap
		}
		if m[2] == "TLS" {
			s.TLS = true
		}
		s.Accepted = when(l)
		if p.lookup != nil && (s.Accepted.IsZero() || p.lookup.Time.IsZero() || s.Accepted.Sub(p.lookup.Time) < time.Second) {
			s.Context = p.lookup
		}
		p.lookup = nil
		p.add(s, l)
		p.res.Sockets = append(p.res.Sockets, s)
		return
	}
	if m := find(reReleased, t, " Released "); m != nil {
		h, id := atoi(m[1], 0), atoi(m[2], 0)
		s := p.bySockID[id]
		if s == nil {
			s = p.byHandle[h]
		}
		if s != nil {
			s.Closed = when(l)
			p.add(s, l)
		}
		return
	}
	if m := find(reHandle, t, "(#"); m != nil && !listening(t) {
		if s := p.byHandle[atoi(m[1], 0)]; s != nil {
			if strings.Contains(t, "HandleDisconnectEvent(EVENT_RECEIVER_DISCONNECT)") || strings.Contains(t, "socket close/reset") {
				s.ClosedByPeer = true
			}
			p.add(s, l)
		}
	}
}

// find runs re only on text holding the literal it needs.
func find(re *regexp.Regexp, text, literal string) []string {
	if !strings.Contains(text, literal) {
		return nil
	}
	return re.FindStringSubmatch(text)
}

// listening reports whether a line is about the listening socket (the
// lines before an accept) rather than a connection.
func listening(t string) bool {
	return strings.HasPrefix(t, "SIPListeningSocket") || strings.HasPrefix(t, "TlsThresholdManager::")
}

// maxTracked bounds the sockets kept for matching later lines; closed
// ones go first.
const maxTracked = 4096

func (p *Parser) prune() {
	if len(p.bySockID) < maxTracked {
		return
	}
	for id, s := range p.bySockID {
		if !s.Closed.IsZero() {
			delete(p.bySockID, id)
		}
	}
	for h, s := range p.byHandle {
		if !s.Closed.IsZero() {
			delete(p.byHandle, h)
		}
	}
}

// opening is the socket being set up: created, not yet accepted.
func (p *Parser) opening() *Socket {
	return p.current
}

func (p *Parser) byPeer(ap netip.AddrPort) *Socket {
	for i := len(p.res.Sockets) - 1; i >= 0; i-- {
		if s := p.res.Sockets[i]; s.Peer == ap {
			return s
		}
	}
	return nil
}

func (p *Parser) add(s *Socket, l Line) {
	if len(s.Lines) < p.opt.MaxLines {
		s.Lines = append(s.Lines, l.Raw)
	}
}

// sipLine handles SIP message header lines and their continuations; it
// reports whether the line belonged to a SIP message.
func (p *Parser) sipLine(l Line) bool {
	key := l.SID
	var m []int
	if strings.Contains(l.Text, " SIP Message ") {
		m = reSIPHeader.FindStringSubmatchIndex(l.Text)
	}
	if m != nil {
		p.flush(key)
		sub := func(i int) string {
			if m[2*i] < 0 {
				return ""
			}
			return l.Text[m[2*i]:m[2*i+1]]
		}
		msg := &Message{
			Incoming:  sub(1) == "Incoming",
			Interface: sub(4),
			Conn:      atoi(sub(6), 0),
			SocketID:  atoi(sub(7), 0),
			SID:       l.SID,
		}
		peer, _ := netip.ParseAddrPort(sub(2))
		var local netip.AddrPort
		if p.opt.Local.IsValid() {
			local = netip.AddrPortFrom(p.opt.Local, 0)
		}
		msg.Meta = sip.MessageMeta{Time: l.DevTime, Transport: strings.ToLower(sub(5)), Origin: "syslog"}
		if msg.Incoming {
			msg.Meta.Src, msg.Meta.Dst = peer, local
		} else {
			msg.Meta.Src, msg.Meta.Dst = local, peer
		}
		pm := &pendingMsg{msg: msg}
		p.lastKey = key
		lead := len(l.cont) - len(strings.TrimLeft(l.cont, " \t"))
		pm.text.WriteString(strings.TrimLeft(l.cont[lead+m[1]:], " "))
		p.pending[key] = pm
		if p.complete(pm) {
			p.flush(key)
		}
		if s := p.socketFor(msg); s != nil {
			s.SIPMessages++
		}
		return true
	}
	if trailerOnly(l) {
		// The [Time:] stamp alone on a line ends a datagram that held
		// real line breaks: the line break before it was the message's.
		if pm := p.pending[p.lastKey]; pm != nil {
			pm.text.WriteString("\n")
			p.flush(p.lastKey)
			return true
		}
	}
	sep := ""
	if bare(l) {
		// A line with no envelope at all is the rest of a datagram that
		// held real line breaks: it continues the latest message.
		key, sep = p.lastKey, "\n"
	}
	pm := p.pending[key]
	if pm == nil {
		return false
	}
	if newEvent(l) {
		// A new log event: the message ended without its full body.
		p.flush(key)
		return false
	}
	pm.text.WriteString(sep)
	pm.text.WriteString(l.cont)
	if pm.text.Len() > sip.DefaultMaxMessage || p.complete(pm) {
		p.flush(key)
	}
	return true
}

// bare reports whether a line has no envelope at all.
func bare(l Line) bool {
	return l.Pri < 0 && l.Recv == "" && l.Host == "" && l.Seq < 0 && l.SID == "" && l.BID == "" && l.N < 0 && l.DevTime.IsZero()
}

// trailerOnly reports whether a line is just a [Time:] stamp.
func trailerOnly(l Line) bool {
	return l.Text == "" && !l.DevTime.IsZero() && l.Pri < 0 && l.Recv == "" && l.Host == "" && l.Seq < 0 && l.SID == "" && l.BID == "" && l.N < 0
}

// newEvent reports whether a line starts a new log event rather than
// continuing a split SIP message: it has an (N n) counter, or, without a
// session id to tie pieces together, a receive or device time.
func newEvent(l Line) bool {
	if l.N >= 0 {
		return true
	}
	return l.SID == "" && (l.Recv != "" || !l.DevTime.IsZero())
}

// socketFor finds the socket a message travelled on.
func (p *Parser) socketFor(m *Message) *Socket {
	if s := p.bySockID[m.SocketID]; m.SocketID != 0 && s != nil {
		return s
	}
	if s := p.byHandle[m.Conn]; s != nil {
		return s
	}
	peer := m.Meta.Src
	if !m.Incoming {
		peer = m.Meta.Dst
	}
	if m.Meta.Transport == "tcp" || m.Meta.Transport == "tls" {
		return p.byPeer(peer)
	}
	return nil
}

// complete reports whether a pending message has its whole body.
func (p *Parser) complete(pm *pendingMsg) bool {
	text := pm.msg.Text
	if text == nil {
		text = sipText(pm.text.String())
	}
	head, body, ok := bytes.Cut(text, []byte("\r\n\r\n"))
	if !ok {
		return false
	}
	return len(body) >= contentLength(head)
}

// contentLength reads Content-Length (or l:) from a header block, 0 when
// absent or unreadable.
func contentLength(head []byte) int {
	for _, line := range strings.Split(string(head), "\r\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		if strings.EqualFold(name, "Content-Length") || name == "l" || name == "L" {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
				return n
			}
		}
	}
	return 0
}

// flush emits the pending message of a session.
func (p *Parser) flush(key string) {
	pm := p.pending[key]
	if pm == nil {
		return
	}
	delete(p.pending, key)
	text := sipText(pm.text.String())
	if len(bytes.TrimSpace(text)) > 0 && !bytes.Contains(text, []byte("\r\n\r\n")) {
		// The log dropped the empty line that ends the headers.
		text = append(bytes.TrimRight(text, "\r\n"), "\r\n\r\n"...)
	}
	pm.msg.Text = text
	pm.msg.Complete = p.complete(pm)
	if pm.msg.Complete {
		head, _, _ := bytes.Cut(pm.msg.Text, []byte("\r\n\r\n"))
		pm.msg.Text = pm.msg.Text[:len(head)+4+contentLength(head)] // drop what trails the body
	}
	if len(bytes.TrimSpace(pm.msg.Text)) == 0 {
		return
	}
	p.res.Messages = append(p.res.Messages, pm.msg)
}

// sipText decodes the log's escapes (#012 newline, #015 carriage return,
// any #ooo octal) and writes every line end as CRLF, as on the wire.
func sipText(s string) []byte {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			n, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b = append(b, byte(n))
			i += 3
			continue
		}
		b = append(b, s[i])
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	b = bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
	lines := bytes.Split(b, []byte("\n"))
	for i, l := range lines {
		if len(bytes.TrimSpace(l)) == 0 {
			lines[i] = nil // "#012 #012": the empty line logged as a space
		}
	}
	b = bytes.Join(lines, []byte("\r\n"))
	return bytes.TrimLeft(b, " \r\n")
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return s[0] <= '3'
}

// Result flushes pending messages and returns everything found, sockets
// by accept time then SocketID.
func (p *Parser) Result() *Result {
	keys := make([]string, 0, len(p.pending))
	for k := range p.pending {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p.flush(k)
	}
	slices.SortStableFunc(p.res.Sockets, func(x, y *Socket) int {
		if c := x.Accepted.Compare(y.Accepted); c != 0 {
			return c
		}
		return x.SocketID - y.SocketID
	})
	out := p.res
	return &out
}

// SIP parses the logged SIP messages with p (incomplete ones too: the
// parser judges them) in log order, for a sip.Tracker; errs counts those
// it refused.
func (r *Result) SIP(p *sip.Parser) (msgs []*sip.Message, errs int) {
	for _, m := range r.Messages {
		msg, err := p.ParseDatagram(m.Meta, m.Text)
		if err != nil {
			errs++
			continue
		}
		msgs = append(msgs, msg)
	}
	return msgs, errs
}
