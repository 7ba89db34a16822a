package tlsaudit

import (
	"container/list"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/tap"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// Bounds on per-connection state.
const (
	// MaxHandshakeBuffer caps the buffered handshake bytes of one
	// direction; past it the direction's handshake is no longer parsed
	// (anomaly), while records, alerts and CCS still are.
	MaxHandshakeBuffer = 256 << 10
	// MaxAlerts and MaxAnomalies cap the slices of one Conn.
	MaxAlerts    = 32
	MaxAnomalies = 32
	// MaxChain caps the certificates kept from one Certificate message.
	MaxChain = 16
	// DefaultMaxConns applies when Options.MaxConns is zero.
	DefaultMaxConns = 200000
)

// Options configures a Tracker.
type Options struct {
	// IsMicrosoft says whether an address is one of Microsoft's (for
	// FromMicrosoft/ToMicrosoft); nil means none is.
	IsMicrosoft func(netip.Addr) bool
	// Check judges a served chain for the given names at the handshake
	// time; nil leaves Conn.Check unset (no certificate verdicts).
	// CertChecker adapts certcheck.Check.
	Check func(chain []*x509.Certificate, names []string, at time.Time) *certcheck.Result
	// SBCNames are the configured SBC FQDNs, checked when the client sent
	// no SNI.
	SBCNames []string
	// MaxConns bounds the connections tracked at once; when a new one
	// would exceed it, the oldest is finalized (as incomplete, with an
	// anomaly). Zero means DefaultMaxConns.
	MaxConns int
}

// Tracker follows TLS connections fed by the tap and keeps the finished
// records. It is not safe for concurrent use; the tap calls it from one
// goroutine.
type Tracker struct {
	o    Options
	live *list.List // of *stream, oldest first
	done []*Conn
	// certs interns parsed certificates by the SHA-256 of their DER: an
	// SBC serves the same few certificates on every connection, so each
	// is parsed and held once (bounded by maxInterned).
	certs map[[32]byte]*x509.Certificate
}

// maxInterned bounds the certificate intern table; past it the table
// starts again (certificates already handed out stay valid).
const maxInterned = 4096

// parseCert returns the parsed certificate for der, parsing it once.
func (t *Tracker) parseCert(der []byte) (*x509.Certificate, error) {
	k := sha256.Sum256(der)
	if c, ok := t.certs[k]; ok {
		return c, nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if t.certs == nil || len(t.certs) >= maxInterned {
		t.certs = map[[32]byte]*x509.Certificate{}
	}
	t.certs[k] = c
	return c, nil
}

// NewTracker returns a Tracker.
func NewTracker(o Options) *Tracker {
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	return &Tracker{o: o, live: list.New()}
}

// Stream returns the consumer for one TCP connection already judged TLS
// by content. When the capture holds no SYN, the client and server roles
// are taken from content: the side that sends ClientHello (or does not
// send ServerHello) is the client.
func (t *Tracker) Stream(info tap.ConnInfo) tap.StreamConsumer {
	for t.live.Len() >= t.o.MaxConns {
		old := t.live.Front().Value.(*stream)
		old.anomaly("evicted: more than %d TLS connections tracked at once", t.o.MaxConns)
		old.finish()
	}
	s := &stream{t: t, info: info, last: info.FirstSeen}
	s.elem = t.live.PushBack(s)
	return s
}

// Flush finalizes every connection still open (as if the capture ended
// now). The tap normally closes each stream itself; Flush is for callers
// that stop early.
func (t *Tracker) Flush() {
	for t.live.Len() > 0 {
		t.live.Front().Value.(*stream).finish()
	}
}

// OldestOpen returns the earliest first packet of a connection not yet
// taken (still tracked, or finalized and not yet returned by TakeConns);
// ok is false when there is none.
func (t *Tracker) OldestOpen() (first time.Time, ok bool) {
	for _, c := range t.done {
		if !ok || c.FirstSeen.Before(first) {
			first, ok = c.FirstSeen, true
		}
	}
	// Streams are listed in the order they started.
	if f := t.live.Front(); f != nil {
		if fs := f.Value.(*stream).info.FirstSeen; !ok || fs.Before(first) {
			first, ok = fs, true
		}
	}
	return first, ok
}

// Live returns the number of connections still being tracked.
func (t *Tracker) Live() int { return t.live.Len() }

// Conns returns the finalized connections sorted by FirstSeen, then ID.
func (t *Tracker) Conns() []*Conn {
	out := append([]*Conn(nil), t.done...)
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].FirstSeen.Equal(out[j].FirstSeen) {
			return out[i].FirstSeen.Before(out[j].FirstSeen)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// TakeConns returns the finalized connections like Conns and forgets
// them, so a long-running capture (serve) keeps memory bounded.
func (t *Tracker) TakeConns() []*Conn {
	out := t.Conns()
	t.done = nil
	return out
}

// CertChecker adapts certcheck.Check to Options.Check: roots nil means
// the system roots; warn is the expiry warning window (0: certcheck's
// default). Verdicts are cached by chain, names and check minute, since
// an SBC serves the same chain on every connection and chain verification
// is the costly part; a Result is shared and must not be changed. The
// cache is bounded and the returned func is not safe for concurrent use.
func CertChecker(roots *x509.CertPool, warn time.Duration) func([]*x509.Certificate, []string, time.Time) *certcheck.Result {
	cache := map[string]*certcheck.Result{}
	return func(chain []*x509.Certificate, names []string, at time.Time) *certcheck.Result {
		h := sha256.New()
		for _, c := range chain {
			h.Write(c.Raw)
		}
		for _, n := range names {
			h.Write([]byte{0})
			h.Write([]byte(n))
		}
		key := string(h.Sum(nil)) + at.UTC().Truncate(time.Minute).String()
		if r, ok := cache[key]; ok {
			return r
		}
		r := certcheck.Check(chain, certcheck.Options{Roots: roots, Names: names, At: at, ExpiryWarning: warn})
		if len(cache) >= maxInterned {
			clear(cache)
		}
		cache[key] = r
		return r
	}
}

// dirState is the parser state of one direction (indexed by tap.Dir).
type dirState struct {
	bytes   uint64
	records int
	hdr     []byte // partial record header (< 5 bytes)
	body    []byte // body of the current record being collected
	rtype   uint8  // type of the current record
	rlen    int    // length of the current record
	inRec   bool   // a record header has been read
	collect bool   // the body is buffered (else skipped)
	need    int    // body bytes still to come

	hs     []byte // handshake reassembly buffer
	hsDead bool   // handshake parsing stopped (limit or error)
	dead   bool   // record parsing stopped (not TLS, gap)

	ccs        bool // sent ChangeCipherSpec (TLS <= 1.2: encrypted from now on)
	ccsSeen    bool // sent a ChangeCipherSpec record at all (1.3: compat)
	finished   bool
	encRecords int // encrypted records after the switch
	postFin    int // TLS 1.3 encrypted records after the handshake completed
}

type alertRec struct {
	a   Alert
	dir tap.Dir
}

// stream follows one TCP connection.
type stream struct {
	t    *Tracker
	elem *list.Element
	info tap.ConnInfo
	done bool

	swap       bool // tap's ClientToServer is really the TLS server
	rolesKnown bool
	d          [2]dirState

	hello  *ClientHello
	sh     serverHello
	shSeen bool // a (non-HRR) ServerHello was parsed
	hrr    bool // a HelloRetryRequest was parsed
	hrrSH  serverHello
	// certTooLarge is the length of a server Certificate message too
	// large to reassemble (0 when none).
	certTooLarge int
	tls13        bool
	chain        []*x509.Certificate
	certReq      bool
	clientCert   bool
	alerts       []alertRec
	alertsCapped bool
	anomalies    []string
	established  bool
	appData      bool
	earlyData    bool // application data seen before the handshake completed

	synTime, helloTime, certTime, last time.Time

	// The first closing act: FIN, RST or an ending alert.
	closeSet   bool
	closeDir   tap.Dir
	closeKind  string // "fin", "rst", "alert"
	finRstTime time.Time
	finRstSet  bool
	alertTime  time.Time
	// endingAlert: an alert decided the outcome (see README).
	endingAlert bool
}

func (s *stream) anomaly(format string, args ...any) {
	switch {
	case len(s.anomalies) < MaxAnomalies:
		s.anomalies = append(s.anomalies, fmt.Sprintf(format, args...))
	case len(s.anomalies) == MaxAnomalies:
		s.anomalies = append(s.anomalies, "more anomalies not recorded")
	}
}

// isClient reports whether tap direction d is the TLS client's.
func (s *stream) isClient(d tap.Dir) bool { return (d == tap.ClientToServer) != s.swap }

func (s *stream) role(d tap.Dir) string {
	if s.isClient(d) {
		return "client"
	}
	return "server"
}

// fixRoles decides the roles from content when the SYN was not seen:
// sender of d is the client when client is true.
func (s *stream) fixRoles(d tap.Dir, client bool, what string) {
	if s.rolesKnown {
		if s.isClient(d) != client {
			s.anomaly("%s sent by the %s", what, s.role(d))
		}
		return
	}
	s.rolesKnown = true
	if s.info.SawSYN {
		if s.isClient(d) != client {
			s.anomaly("%s sent by the %s (the side that did not send SYN)", what, s.role(d))
		}
		return
	}
	s.swap = (d == tap.ClientToServer) != client
}

func (s *stream) touch(t time.Time) {
	if t.After(s.last) {
		s.last = t
	}
}

// Data implements tap.StreamConsumer.
func (s *stream) Data(dir tap.Dir, data []byte, t time.Time) {
	if s.done || dir > tap.ServerToClient {
		return
	}
	s.touch(t)
	d := &s.d[dir]
	d.bytes += uint64(len(data))
	if d.dead {
		return
	}
	if d.records == 0 && !d.inRec && len(d.hdr) == 0 && len(data) > 0 && data[0]&0x80 != 0 {
		if isSSLv2Hello(data) {
			s.fixRoles(dir, true, "SSLv2 ClientHello")
			s.anomaly("SSLv2-compatible ClientHello (version 0x%02x%02x) from the %s; not parsed", data[3], data[4], s.role(dir))
			d.dead = true
			return
		}
	}
	for len(data) > 0 && !d.dead {
		if !d.inRec {
			need := 5 - len(d.hdr)
			if len(data) < need {
				d.hdr = append(d.hdr, data...)
				return
			}
			d.hdr = append(d.hdr, data[:need]...)
			data = data[need:]
			h := d.hdr
			d.hdr = d.hdr[:0]
			typ, rlen := h[0], int(h[3])<<8|int(h[4])
			if typ < recordCCS || typ > recordHeartbeat || h[1] != 3 || h[2] > 4 || rlen > maxRecordLen {
				s.anomaly("%s stream: not a TLS record (bytes % x) after %d records; parsing stopped",
					s.role(dir), h, d.records)
				d.dead = true
				return
			}
			d.inRec, d.rtype, d.rlen, d.need = true, typ, rlen, rlen
			d.collect = s.wantBody(dir, typ)
			d.body = d.body[:0]
			if !d.collect {
				s.record(dir, typ, rlen, nil, t)
			}
		}
		n := min(d.need, len(data))
		if d.collect {
			d.body = append(d.body, data[:n]...)
		}
		data = data[n:]
		d.need -= n
		if d.need == 0 {
			d.inRec = false
			d.records++
			if d.collect {
				s.record(dir, d.rtype, d.rlen, d.body, t)
			}
			if cap(d.body) > 4096 {
				d.body = nil
			}
		}
	}
}

// encrypted reports whether records of type typ from dir are encrypted.
func (s *stream) encrypted(dir tap.Dir, typ uint8) bool {
	if s.tls13 {
		// In TLS 1.3 every protected record is type 23; 21 and 22 are
		// plaintext, 20 is the compatibility CCS.
		return typ == recordAppData
	}
	return s.d[dir].ccs && typ != recordCCS
}

func (s *stream) wantBody(dir tap.Dir, typ uint8) bool {
	switch typ {
	case recordHandshake, recordAlert:
		return !s.encrypted(dir, typ)
	case recordCCS:
		return true
	}
	return false
}

// record handles one record; body is nil for records not buffered.
func (s *stream) record(dir tap.Dir, typ uint8, rlen int, body []byte, t time.Time) {
	d := &s.d[dir]
	switch typ {
	case recordCCS:
		d.ccsSeen = true
		if !s.tls13 {
			d.ccs = true
		}
	case recordAlert:
		if s.encrypted(dir, typ) {
			s.alert(dir, Alert{Time: t, Encrypted: true}, t)
			return
		}
		if len(body)%2 != 0 || len(body) == 0 {
			s.anomaly("%s alert record of %d bytes", s.role(dir), len(body))
		}
		for i := 0; i+1 < len(body); i += 2 {
			lvl, desc := int(body[i]), int(body[i+1])
			s.alert(dir, Alert{Time: t, Level: lvl, Description: desc, Name: AlertName(desc)}, t)
		}
	case recordHandshake:
		if s.encrypted(dir, typ) {
			d.encRecords++
			if d.encRecords == 1 {
				d.finished = true // the first record after CCS is Finished
				s.checkEstablished()
			}
			return
		}
		s.handshakeBytes(dir, body, t)
	case recordAppData:
		if s.tls13 && s.shSeen {
			s.record13(dir, rlen, t)
			return
		}
		if !s.established && !s.earlyData {
			s.earlyData = true
			s.anomaly("%s application data before the handshake completed", s.role(dir))
		}
		s.appData = true
	}
}

// isTLS13Family reports TLS 1.3 and its drafts (0x7fxx) and Facebook's
// experimental Fizz versions (0xfbxx), which share the 1.3 record layer.
func isTLS13Family(v uint16) bool {
	return v == tls.VersionTLS13 || v>>8 == 0x7f || v>>8 == 0xfb
}

// record13 interprets a TLS 1.3 protected record (see README: TLS 1.3).
func (s *stream) record13(dir tap.Dir, rlen int, t time.Time) {
	d := &s.d[dir]
	d.encRecords++
	if s.established {
		d.postFin++
		if s.isClient(dir) || d.postFin > 2 {
			s.appData = true
		}
		return
	}
	if !s.isClient(dir) {
		return // server's encrypted flight (EncryptedExtensions..Finished)
	}
	// 2-byte alert + inner content type + AEAD tag (8 bytes for
	// TLS_AES_128_CCM_8_SHA256, else 16). A Finished is at least 53.
	tag := 16
	if s.sh.cipher == 0x1305 {
		tag = 8
	}
	if rlen == 2+1+tag {
		s.alert(dir, Alert{Time: t, Encrypted: true}, t)
		return
	}
	if s.d[1-dir].encRecords > 0 {
		// The client answers the server's Finished with its own.
		d.finished = true
		s.d[1-dir].finished = true
		s.checkEstablished()
	}
}

func (s *stream) alert(dir tap.Dir, a Alert, t time.Time) {
	if len(s.alerts) < MaxAlerts {
		s.alerts = append(s.alerts, alertRec{a: a, dir: dir})
	} else if !s.alertsCapped {
		s.alertsCapped = true
		s.anomaly("more than %d alerts; later ones not recorded", MaxAlerts)
	}
	// What ends a handshake (see README, Outcome rules): a fatal alert; a
	// plaintext close_notify, user_canceled or alert of unknown level
	// before it completed; an encrypted alert before it completed, when it
	// is the closing act (no FIN/RST before it). A warning such as
	// unrecognized_name does not: the peers carry on. An encrypted alert
	// after both Finished is how a completed connection closes (most
	// likely close_notify: probes and health checks close without data).
	fatal := !a.Encrypted && a.Level != 1
	closeWarning := !a.Encrypted && a.Level == 1 && (a.Description == 0 || a.Description == 90)
	ending := fatal || (closeWarning && !s.established) ||
		(a.Encrypted && !s.established && !s.appData && !s.finRstSet)
	if a.Encrypted || fatal {
		s.closing(dir, "alert")
		if s.alertTime.IsZero() {
			s.alertTime = t
		}
	}
	if ending && !s.appData {
		s.endingAlert = true
		if s.alertTime.IsZero() {
			s.alertTime = t
		}
	}
}

func (s *stream) closing(dir tap.Dir, kind string) {
	if !s.closeSet {
		s.closeSet, s.closeDir, s.closeKind = true, dir, kind
	}
}

func (s *stream) checkEstablished() {
	if s.d[0].finished && s.d[1].finished {
		s.established = true
	}
}

// handshakeBytes appends plaintext handshake bytes and parses complete
// messages.
func (s *stream) handshakeBytes(dir tap.Dir, b []byte, t time.Time) {
	d := &s.d[dir]
	if d.hsDead {
		return
	}
	if len(d.hs)+len(b) > MaxHandshakeBuffer {
		if len(d.hs) >= 4 {
			s.tooLarge(dir, d.hs[0], int(d.hs[1])<<16|int(d.hs[2])<<8|int(d.hs[3]))
		}
		s.anomaly("%s handshake exceeds %d buffered bytes; not parsed further", s.role(dir), MaxHandshakeBuffer)
		d.hsDead, d.hs = true, nil
		return
	}
	d.hs = append(d.hs, b...)
	consumed := false
	for len(d.hs) >= 4 {
		typ := d.hs[0]
		n := int(d.hs[1])<<16 | int(d.hs[2])<<8 | int(d.hs[3])
		if n > MaxHandshakeBuffer {
			s.tooLarge(dir, typ, n)
			s.anomaly("%s handshake message type %d claims %d bytes; not parsed further", s.role(dir), typ, n)
			d.hsDead, d.hs = true, nil
			return
		}
		if len(d.hs) < 4+n {
			break
		}
		s.message(dir, typ, d.hs[4:4+n], t)
		d.hs = d.hs[4+n:]
		consumed = true
	}
	// Copy the remainder only when messages were consumed, so a message
	// arriving in many tiny records is appended in amortized linear time.
	switch {
	case len(d.hs) == 0:
		d.hs = nil
	case consumed:
		d.hs = append([]byte(nil), d.hs...)
	}
}

// tooLarge notes a handshake message of n bytes that will not be
// reassembled; a server Certificate is reported (Conn.CertMessageTooLarge).
func (s *stream) tooLarge(dir tap.Dir, typ uint8, n int) {
	if typ == hsCertificate && !s.isClient(dir) && !s.tls13 && s.certTooLarge == 0 {
		s.certTooLarge = n
	}
}

// message handles one plaintext handshake message.
func (s *stream) message(dir tap.Dir, typ uint8, body []byte, t time.Time) {
	switch typ {
	case hsClientHello:
		s.fixRoles(dir, true, "ClientHello")
		if s.hello != nil {
			return // a second ClientHello (after HelloRetryRequest): keep the first
		}
		h, err := ParseClientHello(body)
		if err != nil {
			s.anomaly("%v", err)
			return
		}
		s.hello, s.helloTime = h, t
	case hsServerHello:
		s.fixRoles(dir, false, "ServerHello")
		sh, warn, err := parseServerHello(body)
		if err != nil {
			s.anomaly("%v", err)
			return
		}
		if warn != "" {
			s.anomaly("%s", warn)
		}
		if sh.hrr {
			// TLS 1.3 from here on: the client's compatibility CCS before
			// its second ClientHello must not count as a key change.
			// Version and cipher come from the second ServerHello; the
			// HelloRetryRequest's stand in when that one is missing (a
			// capture that ends, or holds it before the retry).
			s.hrr, s.hrrSH = true, sh
			s.tls13 = s.tls13 || isTLS13Family(sh.version)
			return
		}
		if s.shSeen {
			s.anomaly("second ServerHello ignored")
			return
		}
		s.sh, s.shSeen = sh, true
		s.tls13 = isTLS13Family(sh.version)
	case hsCertificate:
		if s.tls13 {
			return
		}
		ders, err := parseCertificateList(body)
		if err != nil {
			s.anomaly("%s %v", s.role(dir), err)
		}
		if s.isClient(dir) {
			s.clientCert = s.clientCert || len(ders) > 0
			return
		}
		if s.chain != nil {
			s.anomaly("second server Certificate message ignored")
			return
		}
		if len(ders) > MaxChain {
			s.anomaly("server chain of %d certificates; first %d kept", len(ders), MaxChain)
			ders = ders[:MaxChain]
		}
		s.chain = []*x509.Certificate{}
		for i, der := range ders {
			c, err := s.t.parseCert(der)
			if err != nil {
				s.anomaly("server certificate %d does not parse: %v", i, err)
				continue
			}
			s.chain = append(s.chain, c)
		}
		s.certTime = t
	case hsCertificateRequest:
		if !s.isClient(dir) {
			s.certReq = true
		}
	}
}

// Gap implements tap.StreamConsumer: record boundaries are lost, so the
// direction is no longer parsed.
func (s *stream) Gap(dir tap.Dir, n int, t time.Time) {
	if s.done || dir > tap.ServerToClient {
		return
	}
	s.touch(t)
	d := &s.d[dir]
	if !d.dead {
		s.anomaly("%s stream: %d bytes missing from the capture; parsing stopped", s.role(dir), n)
		d.dead = true
	}
}

// Event implements tap.StreamConsumer.
func (s *stream) Event(e tap.Event) {
	if s.done {
		return
	}
	s.touch(e.Time)
	switch e.Kind {
	case tap.EventSYN:
		if s.synTime.IsZero() {
			s.synTime = e.Time
		}
	case tap.EventFIN, tap.EventRST:
		kind := "fin"
		if e.Kind == tap.EventRST {
			kind = "rst"
		}
		s.closing(e.Dir, kind)
		if !s.finRstSet {
			s.finRstSet, s.finRstTime = true, e.Time
		}
	}
}

// Close implements tap.StreamConsumer.
func (s *stream) Close(t time.Time, reason tap.CloseReason) {
	if s.done {
		return
	}
	if reason == tap.CloseFIN || reason == tap.CloseRST {
		s.touch(t)
	}
	if reason == tap.CloseIdle {
		s.anomaly("idle timeout")
	}
	s.finish()
}

// SNIIsIP reports whether an SNI value is an IP address literal (with
// or without brackets), which RFC 6066 section 3 forbids.
func SNIIsIP(sni string) bool {
	_, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(sni, "["), "]"))
	return err == nil
}

// finish builds the Conn record and hands it to the tracker.
func (s *stream) finish() {
	if s.done {
		return
	}
	s.done = true
	s.t.live.Remove(s.elem)
	ci, si := tap.ClientToServer, tap.ServerToClient
	client, server := s.info.Client, s.info.Server
	if s.swap {
		ci, si = si, ci
		client, server = server, client
		s.anomaly("roles taken from content (no SYN; the first packet came from the server)")
	}
	c := &Conn{
		ID:             client.String() + "->" + server.String(),
		Client:         client,
		Server:         server,
		FirstSeen:      s.info.FirstSeen,
		LastSeen:       s.last,
		SawSYN:         s.info.SawSYN,
		FirstFrame:     s.info.Frame,
		Hello:          s.hello,
		CertRequested:  s.certReq,
		ClientCertSent: s.clientCert,
		ClientCCS:      s.d[ci].ccsSeen,
		ServerCCS:      s.d[si].ccsSeen,
		ClientFinished: s.d[ci].finished,
		ServerFinished: s.d[si].finished,
		Established:    s.established,
		AppData:        s.appData,
		BytesC2S:       s.d[ci].bytes,
		BytesS2C:       s.d[si].bytes,
		Anomalies:      s.anomalies,
	}
	if s.hello != nil {
		c.SNI = s.hello.SNI
	}
	c.HelloRetry = s.hrr
	c.CertMessageTooLarge = s.certTooLarge
	if !s.shSeen && s.hrr {
		s.sh, s.shSeen = s.hrrSH, true
	}
	if s.shSeen {
		c.VersionCode = s.sh.version
		c.Version = VersionName(s.sh.version)
		c.CipherCode = s.sh.cipher
		c.Cipher = tls.CipherSuiteName(s.sh.cipher)
		c.CertEncrypted = s.tls13
	}
	if len(s.chain) > 0 {
		c.Chain = s.chain
	}
	for _, a := range s.alerts {
		a.a.From = s.role(a.dir)
		c.Alerts = append(c.Alerts, a.a)
		if !a.a.Encrypted && a.a.Level == 1 && a.a.Description != 0 && a.a.Description != 90 {
			c.Warnings = append(c.Warnings, a.a.Name+" ("+a.a.From+")")
		}
	}
	switch {
	case s.endingAlert:
		c.Outcome = OutcomeAlert
	case s.established:
		c.Outcome = OutcomeEstablished
	case s.closeKind == "rst":
		c.Outcome = OutcomeReset
	case s.closeKind == "fin":
		c.Outcome = OutcomeClosed
	default:
		c.Outcome = OutcomeIncomplete
	}
	if s.closeSet {
		c.ClosedBy = s.role(s.closeDir)
	}
	start := s.info.FirstSeen
	switch {
	case !s.synTime.IsZero():
		start = s.synTime
	case !s.info.SawSYN && !s.helloTime.IsZero():
		start = s.helloTime
	}
	end := s.last
	switch {
	case s.finRstSet:
		end = s.finRstTime
	case !s.alertTime.IsZero():
		end = s.alertTime
	}
	if end.After(start) {
		c.Duration = end.Sub(start)
	}
	if f := s.t.o.IsMicrosoft; f != nil {
		c.FromMicrosoft = f(client.Addr().Unmap())
		c.ToMicrosoft = f(server.Addr().Unmap())
	}
	if s.t.o.Check != nil && len(c.Chain) > 0 {
		// An IP address in the SNI (RFC 6066 allows host names only) is
		// not a name to check: the SBC's names are, as without SNI.
		names := s.t.o.SBCNames
		if c.SNI != "" && !SNIIsIP(c.SNI) {
			names = []string{c.SNI}
		}
		at := s.certTime
		if at.IsZero() {
			at = c.FirstSeen
		}
		c.Check = s.t.o.Check(c.Chain, names, at)
	}
	s.t.done = append(s.t.done, c)
	// Drop parser state.
	s.d = [2]dirState{}
	s.chain, s.alerts = nil, nil
}
