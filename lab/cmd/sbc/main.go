// Command sbc is the lab's AudioCodes-like SBC, a B2BUA between a carrier
// (SIP over UDP) and Microsoft's Direct Routing proxy (SIP over TLS). It
// opens the Teams leg over TLS to the proxy, listens for Microsoft's new
// inbound TLS connections on 5061 with a per-scenario certificate policy
// (public certificate for its FQDN, default self-signed, expired, ...),
// answers REFERs per scenario (202 or 403; new INVITE to the Refer-To and
// NOTIFYs, or not), and exports every SIP message of the Teams leg as
// AudioCodes debug recording (ACDR) to a collector on UDP 925.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/sbcwatch/sbcwatch/lab/acdrenc"
	"github.com/sbcwatch/sbcwatch/lab/internal/labtls"
	"github.com/sbcwatch/sbcwatch/lab/internal/scenario"
	"github.com/sbcwatch/sbcwatch/lab/internal/sipx"
)

const (
	boardID      = 0x665997
	resetCounter = 5
	firstSession = 29
)

type exporter struct {
	mu   sync.Mutex
	conn *net.UDPConn
	seq  uint16
	sids sync.Map // Call-ID -> uint32
	n    int
}

func (e *exporter) export(raw []byte, callID string, src, dst netip.AddrPort, proto uint8, outgoing bool) {
	var sid uint32
	if v, ok := e.sids.Load(callID); ok {
		sid = v.(uint32)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p := acdrenc.Packet{Time: time.Now(), Seq: e.seq, BoardID: boardID, ResetCounter: resetCounter,
		Session: sid, Src: src, Dst: dst, Proto: proto, Outgoing: outgoing, Payload: raw}
	e.seq++
	b, err := p.Marshal()
	if err != nil {
		log.Printf("acdr: %v", err)
		return
	}
	if _, err := e.conn.Write(b); err != nil {
		log.Printf("acdr: send: %v", err)
		return
	}
	e.n++
}

type call struct {
	sid  uint32
	name string
	// Carrier leg.
	cID      string
	cInvite  *sipx.Msg // the carrier's INVITE (carrier called), else nil
	cLocal   string    // SBC's From/To value on the carrier leg (with tag)
	cRemote  string    // carrier's value (with tag once known)
	cTarget  string
	cCSeq    int
	cOurTag  string
	answered bool
	ended    bool
	active   *leg
}

type leg struct {
	c         *call
	id        string
	conn      *sipx.Conn
	local     string // SBC's From/To value with tag
	remote    string // Microsoft's value, with tag once known
	target    string // Microsoft's Contact URI
	cseq      int
	invite    *sipx.Msg
	sbcCaller bool
	from      *leg // set on a leg created by following a REFER
	referCSeq int
	ended     bool
}

type sbc struct {
	sc          scenario.Scenario
	t0          time.Time
	ids         sipx.IDs
	done        chan struct{}
	udp         *net.UDPConn
	carrier     *net.UDPAddr
	exp         *exporter
	acdrCarrier bool
	public      tls.Certificate
	def         tls.Certificate
	expired     tls.Certificate
	expiring    tls.Certificate
	roots       *x509.CertPool

	mu      sync.Mutex
	inbound int
	msConn  *sipx.Conn
	calls   map[string]*call // by carrier Call-ID
	legs    map[string]*leg  // by Teams Call-ID
	nextSID uint32
	optN    int
	conns   []*sipx.Conn
}

func main() {
	var f scenario.Flags
	f.Register(flag.CommandLine)
	acdrCarrier := flag.Bool("acdr-carrier", false, "also export the carrier leg (UDP) as ACDR")
	flag.Parse()
	log.SetPrefix("sbc: ")
	log.SetFlags(log.Lmicroseconds)
	if err := run(f, *acdrCarrier); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(f scenario.Flags, acdrCarrier bool) error {
	sc, t0, err := f.Resolve()
	if err != nil {
		return err
	}
	s := &sbc{sc: sc, t0: t0, ids: sipx.NewIDs("sbc/" + sc.Name), done: make(chan struct{}),
		calls: map[string]*call{}, legs: map[string]*leg{}, nextSID: firstSession, acdrCarrier: acdrCarrier}
	if s.public, err = labtls.Load(f.PKI, labtls.SBCPublic); err != nil {
		return err
	}
	if s.def, err = labtls.Load(f.PKI, labtls.SBCDefault); err != nil {
		return err
	}
	if s.expired, err = labtls.Load(f.PKI, labtls.SBCExpired); err != nil {
		return err
	}
	if s.expiring, err = labtls.Load(f.PKI, labtls.SBCExpiring); err != nil {
		return err
	}
	if s.roots, err = labtls.Roots(f.PKI); err != nil {
		return err
	}
	local := &net.UDPAddr{IP: net.ParseIP(scenario.SBCAddr)}
	col := &net.UDPAddr{IP: net.ParseIP(scenario.CollectorAddr), Port: scenario.ACDRPort}
	ac, err := net.DialUDP("udp4", local, col)
	if err != nil {
		return fmt.Errorf("acdr socket: %w", err)
	}
	defer ac.Close()
	s.exp = &exporter{conn: ac}
	s.carrier = &net.UDPAddr{IP: net.ParseIP(scenario.CarrierAddr), Port: scenario.CarrierPort}
	if s.udp, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(scenario.SBCAddr), Port: scenario.SBCUDPPort}); err != nil {
		return fmt.Errorf("udp listen: %w", err)
	}
	defer s.udp.Close()
	ln, err := net.Listen("tcp4", net.JoinHostPort(scenario.SBCAddr, fmt.Sprint(scenario.SBCTLSPort)))
	if err != nil {
		return fmt.Errorf("tls listen: %w", err)
	}
	defer ln.Close()
	go s.acceptLoop(ln)
	go s.udpLoop()

	if !scenario.At(t0, 0, s.done) {
		return nil
	}
	if err := s.dialMS(); err != nil {
		return err
	}
	go s.optionsLoop()
	scenario.At(t0, sc.Length, nil)
	close(s.done)
	s.mu.Lock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.exp.mu.Lock()
	log.Printf("done: %d ACDR packets exported", s.exp.n)
	s.exp.mu.Unlock()
	return nil
}

// hook exports every Teams-leg message.
func (s *sbc) hook(c *sipx.Conn, raw []byte, m *sipx.Msg, outgoing bool) {
	src, dst := c.Remote, c.Local
	if outgoing {
		src, dst = c.Local, c.Remote
	}
	s.exp.export(raw, m.CallID(), src, dst, acdrenc.ProtoTCP, outgoing)
}

func (s *sbc) track(c *sipx.Conn) {
	c.Hook = s.hook
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
}

func (s *sbc) dialMS() error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(scenario.SBCAddr)}, Timeout: 3 * time.Second}
	raw, err := d.Dial("tcp4", net.JoinHostPort(scenario.MSProxyAddr, fmt.Sprint(scenario.MSPort)))
	if err != nil {
		return fmt.Errorf("dial Microsoft proxy: %w", err)
	}
	tc := tls.Client(raw, labtls.ClientConfig(scenario.MSProxyFQDN, s.roots))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return fmt.Errorf("TLS to Microsoft proxy: %w", err)
	}
	c := sipx.NewConn(tc)
	s.track(c)
	s.mu.Lock()
	s.msConn = c
	s.mu.Unlock()
	log.Printf("TLS leg to %v established", c.Remote)
	go s.readLoop(c)
	return nil
}

func (s *sbc) acceptLoop(ln net.Listener) {
	for {
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.inbound++
		n := s.inbound
		s.mu.Unlock()
		go s.serveInbound(raw, n)
	}
}

// pick applies the scenario's certificate policy to inbound connection n.
func (s *sbc) pick(peer netip.Addr, n int) (tls.Certificate, string) {
	switch s.sc.CertPolicy {
	case scenario.PolicyProxySet:
		for _, a := range scenario.ProxySet {
			if peer.String() == a {
				return s.public, "public (peer in proxy set)"
			}
		}
		return s.def, "default (ProxySetId = -1)"
	case scenario.PolicyEveryN:
		if s.sc.EveryN > 0 && n%s.sc.EveryN == 0 {
			return s.def, fmt.Sprintf("default (connection %d, every %d)", n, s.sc.EveryN)
		}
		return s.public, "public"
	case scenario.PolicyExpired:
		return s.expired, "public, expired"
	case scenario.PolicyExpiring:
		return s.expiring, "public, expiring soon"
	}
	return s.public, "public"
}

func (s *sbc) serveInbound(raw net.Conn, n int) {
	peer := raw.RemoteAddr().(*net.TCPAddr).AddrPort()
	cert, why := s.pick(peer.Addr().Unmap(), n)
	tc := tls.Server(raw, labtls.ServerConfig(cert))
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if err := tc.Handshake(); err != nil {
		log.Printf("inbound #%d from %v: served %s; handshake failed after %v: %v", n, peer, why, time.Since(start).Round(time.Millisecond), err)
		raw.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	log.Printf("inbound #%d from %v: served %s; established (SNI %q)", n, peer, why, tc.ConnectionState().ServerName)
	c := sipx.NewConn(tc)
	s.track(c)
	s.readLoop(c)
}

func (s *sbc) readLoop(c *sipx.Conn) {
	for {
		m, err := c.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				select {
				case <-s.done:
				default:
					log.Printf("read %v: %v", c.Remote, err)
				}
			}
			c.Close()
			return
		}
		s.mu.Lock()
		s.teams(c, m)
		s.mu.Unlock()
	}
}

func (s *sbc) udpLoop() {
	buf := make([]byte, 65535)
	for {
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		m, err := sipx.Parse(buf[:n])
		if err != nil {
			log.Printf("carrier %v: %v", from, err)
			continue
		}
		if s.acdrCarrier {
			s.exp.export(buf[:n], m.CallID(), from, netip.AddrPortFrom(netip.MustParseAddr(scenario.SBCAddr), scenario.SBCUDPPort), acdrenc.ProtoUDP, false)
		}
		s.mu.Lock()
		s.carrierMsg(m)
		s.mu.Unlock()
	}
}

func (s *sbc) sendCarrier(m *sipx.Msg) {
	raw := m.Bytes()
	if s.acdrCarrier {
		s.exp.export(raw, m.CallID(), netip.AddrPortFrom(netip.MustParseAddr(scenario.SBCAddr), scenario.SBCUDPPort), s.carrier.AddrPort(), acdrenc.ProtoUDP, true)
	}
	if _, err := s.udp.WriteToUDP(raw, s.carrier); err != nil {
		log.Printf("send to carrier: %v", err)
	}
}

func (s *sbc) send(c *sipx.Conn, m *sipx.Msg) {
	if c == nil {
		log.Printf("no connection for %s", m.StartLine)
		return
	}
	if err := c.Send(m); err != nil {
		log.Print(err)
	}
}

func (s *sbc) via(parts ...string) string {
	return "SIP/2.0/TLS " + scenario.SBCAddr + ":5061;alias;branch=" + s.ids.Branch(parts...)
}

func (s *sbc) contact(user string) string {
	if user == "" {
		return "<sip:" + scenario.SBCFQDN + ":5061;transport=tls>"
	}
	host := scenario.SBCFQDN
	if s.sc.ContactIP {
		host = scenario.SBCAddr
	}
	return "<sip:" + user + "@" + host + ":5061;transport=tls>"
}

func (s *sbc) newCall(name string) *call {
	c := &call{sid: s.nextSID, name: name}
	s.nextSID++
	return c
}

func (s *sbc) addLeg(l *leg) {
	s.legs[l.id] = l
	s.exp.sids.Store(l.id, l.c.sid)
}

// carrierMsg handles a message from the carrier.
func (s *sbc) carrierMsg(m *sipx.Msg) {
	id := m.CallID()
	if !m.IsRequest() {
		c := s.calls[id]
		if c == nil {
			return
		}
		_, method := m.CSeq()
		if method != "INVITE" {
			return
		}
		switch {
		case m.Status() == 180 && c.active != nil:
			r := sipx.Response(c.active.invite, 180, "Ringing", sipx.Tag(c.active.local))
			r.Add("Contact", s.contact(sipx.User(c.active.invite.Get("To"))))
			s.send(c.active.conn, r)
		case m.Status() == 200 && !c.answered:
			c.answered = true
			c.cRemote = m.Get("To")
			c.cTarget = sipx.URI(m.Get("Contact"))
			ack := sipx.NewRequest("ACK", c.cTarget)
			ack.Add("Via", "SIP/2.0/UDP "+scenario.SBCAddr+":5060;branch="+s.ids.Branch("cack", id))
			ack.Add("Max-Forwards", "70").Add("From", c.cLocal).Add("To", c.cRemote).Add("Call-ID", id)
			ack.Add("CSeq", "1 ACK")
			s.sendCarrier(ack)
			l := c.active
			r := sipx.Response(l.invite, 200, "OK", sipx.Tag(l.local))
			r.Add("Contact", s.contact(sipx.User(l.invite.Get("To"))))
			r.Add("Allow", s.sc.Allow())
			r.Add("Supported", "replaces,timer")
			r.Add("User-Agent", scenario.UserAgent)
			r.Add("Content-Type", "application/sdp")
			r.Body = sipx.SDP("AudiocodesGW", scenario.SBCAddr, 7000+2*int(c.sid), fmt.Sprint(c.sid))
			s.send(l.conn, r)
		}
		return
	}
	switch m.Method() {
	case "INVITE":
		if s.calls[id] != nil {
			return // retransmission
		}
		caller := sipx.User(m.Get("From"))
		called := sipx.User(m.Get("To"))
		name := caller
		if sc, ok := s.sc.CallByCaller(caller); ok {
			name = sc.Name
		}
		c := s.newCall(name)
		c.cID, c.cInvite = id, m
		c.cOurTag = s.ids.Hex(12, "ctag", id)
		s.calls[id] = c
		s.sendCarrier(sipx.Response(m, 100, "Trying", ""))
		l := &leg{c: c, id: scenario.TeamsCallID(s.ids.Hex(20, "teams", id)), conn: s.msConn, sbcCaller: true, cseq: 1}
		l.local = "<sip:" + caller + "@" + scenario.SBCFQDN + ";user=phone>;tag=" + s.ids.Hex(12, "ttag", l.id)
		l.remote = "<sip:" + called + "@" + scenario.MSProxyFQDN + ";user=phone>"
		inv := sipx.NewRequest("INVITE", "sip:"+called+"@"+scenario.MSProxyFQDN+":5061;user=phone;transport=tls")
		inv.Add("Via", s.via("inv", l.id))
		inv.Add("Max-Forwards", "69").Add("From", l.local).Add("To", l.remote).Add("Call-ID", l.id)
		inv.Add("CSeq", "1 INVITE")
		inv.Add("Contact", s.contact(caller))
		inv.Add("Allow", s.sc.Allow())
		inv.Add("Supported", "replaces,timer")
		inv.Add("User-Agent", scenario.UserAgent)
		inv.Add("Content-Type", "application/sdp")
		inv.Body = sipx.SDP("AudiocodesGW", scenario.SBCAddr, 6000+2*int(c.sid), fmt.Sprint(c.sid))
		l.invite = inv
		c.active = l
		s.addLeg(l)
		log.Printf("call %s (sid %d): carrier %s -> Teams %s", name, c.sid, id, l.id)
		s.send(l.conn, inv)
	case "ACK":
	case "BYE":
		c := s.calls[id]
		s.sendCarrier(sipx.Response(m, 200, "OK", ""))
		if c == nil || c.ended {
			return
		}
		c.ended = true
		if l := c.active; l != nil && !l.ended {
			s.byeTeams(l)
		}
	default:
		s.sendCarrier(sipx.Response(m, 405, "Method Not Allowed", ""))
	}
}

func (s *sbc) byeTeams(l *leg) {
	l.ended = true
	l.cseq++
	bye := sipx.NewRequest("BYE", l.target)
	bye.Add("Via", s.via("bye", l.id))
	bye.Add("Max-Forwards", "70").Add("From", l.local).Add("To", l.remote).Add("Call-ID", l.id)
	bye.Add("CSeq", fmt.Sprintf("%d BYE", l.cseq))
	bye.Add("Allow", s.sc.Allow())
	bye.Add("User-Agent", scenario.UserAgent)
	if s.sc.MediaErrorBye {
		bye.Add("Reason", `Q.850 ;cause=22 ;text="`+s.ids.GUID("reason", l.id)+`;MediaError"`)
	} else {
		bye.Add("Reason", `Q.850 ;cause=16 ;text="Normal call clearing"`)
	}
	log.Printf("call %s: BYE to Microsoft on %s", l.c.name, l.id)
	s.send(l.conn, bye)
}

func (s *sbc) byeCarrier(c *call) {
	if c.ended {
		return
	}
	c.ended = true
	c.cCSeq++
	bye := sipx.NewRequest("BYE", c.cTarget)
	bye.Add("Via", "SIP/2.0/UDP "+scenario.SBCAddr+":5060;branch="+s.ids.Branch("cbye", c.cID))
	bye.Add("Max-Forwards", "70").Add("Call-ID", c.cID)
	if c.cInvite != nil { // the carrier called: we are the callee
		bye.Add("From", c.cInvite.Get("To")+";tag="+c.cOurTag).Add("To", c.cInvite.Get("From"))
	} else {
		bye.Add("From", c.cLocal).Add("To", c.cRemote)
	}
	bye.Add("CSeq", fmt.Sprintf("%d BYE", c.cCSeq))
	s.sendCarrier(bye)
}

// teams handles a message from Microsoft on connection conn.
func (s *sbc) teams(conn *sipx.Conn, m *sipx.Msg) {
	id := m.CallID()
	l := s.legs[id]
	if !m.IsRequest() {
		s.teamsResponse(l, m)
		return
	}
	switch m.Method() {
	case "OPTIONS":
		r := sipx.Response(m, 200, "OK", s.ids.Hex(12, "otag", id))
		r.Add("Contact", s.contact(""))
		r.Add("Allow", s.sc.Allow())
		r.Add("Accept", "application/sdp, application/simple-message-summary, message/sipfrag")
		r.Add("User-Agent", scenario.UserAgent)
		s.send(conn, r)
	case "INVITE":
		if l != nil {
			return
		}
		s.teamsInvite(conn, m)
	case "ACK":
	case "BYE":
		s.send(conn, sipx.Response(m, 200, "OK", ""))
		if l == nil || l.ended {
			return
		}
		l.ended = true
		if l == l.c.active {
			s.byeCarrier(l.c)
		}
	case "REFER":
		s.refer(conn, l, m)
	case "NOTIFY":
		s.send(conn, sipx.Response(m, 200, "OK", ""))
	default:
		s.send(conn, sipx.Response(m, 405, "Method Not Allowed", ""))
	}
}

func (s *sbc) teamsInvite(conn *sipx.Conn, m *sipx.Msg) {
	caller := sipx.User(m.Get("From"))
	called := sipx.User(m.Get("To"))
	name := caller
	if sc, ok := s.sc.CallByCaller(caller); ok {
		name = sc.Name
	}
	c := s.newCall(name)
	l := &leg{c: c, id: m.CallID(), conn: conn, invite: m, target: sipx.URI(m.Get("Contact"))}
	l.local = m.Get("To") + ";tag=" + s.ids.Hex(12, "ttag", l.id)
	l.remote = m.Get("From")
	c.active = l
	s.addLeg(l)
	s.send(conn, sipx.Response(m, 100, "Trying", ""))
	c.cID = s.ids.Hex(20, "carrier", l.id) + "@" + scenario.SBCAddr
	c.cLocal = "<sip:" + caller + "@" + scenario.SBCAddr + ";user=phone>;tag=" + s.ids.Hex(12, "ctag", c.cID)
	c.cRemote = "<sip:" + called + "@" + scenario.CarrierAddr + ";user=phone>"
	c.cCSeq = 1
	s.calls[c.cID] = c
	inv := sipx.NewRequest("INVITE", "sip:"+called+"@"+scenario.CarrierAddr+":5060;user=phone")
	inv.Add("Via", "SIP/2.0/UDP "+scenario.SBCAddr+":5060;branch="+s.ids.Branch("cinv", c.cID))
	inv.Add("Max-Forwards", "69").Add("From", c.cLocal).Add("To", c.cRemote).Add("Call-ID", c.cID)
	inv.Add("CSeq", "1 INVITE")
	inv.Add("Contact", "<sip:"+caller+"@"+scenario.SBCAddr+":5060>")
	inv.Add("Allow", "INVITE,ACK,CANCEL,BYE,OPTIONS")
	inv.Add("User-Agent", scenario.UserAgent)
	inv.Add("Content-Type", "application/sdp")
	inv.Body = sipx.SDP("AudiocodesGW", scenario.SBCAddr, 6000+2*int(c.sid), fmt.Sprint(c.sid))
	log.Printf("call %s (sid %d): Teams %s -> carrier %s", name, c.sid, l.id, c.cID)
	s.sendCarrier(inv)
}

func (s *sbc) teamsResponse(l *leg, m *sipx.Msg) {
	if l == nil {
		return
	}
	_, method := m.CSeq()
	if method != "INVITE" || !l.sbcCaller {
		return
	}
	c := l.c
	switch {
	case m.Status() == 180 && l.from == nil && c.cInvite != nil:
		r := sipx.Response(c.cInvite, 180, "Ringing", c.cOurTag)
		r.Add("Contact", "<sip:"+scenario.SBCAddr+":5060>")
		s.sendCarrier(r)
	case m.Status() >= 200 && m.Status() < 300:
		if l.remote == "" || sipx.Tag(l.remote) == "" {
			l.remote = m.Get("To")
		}
		first := l.target == ""
		l.target = sipx.URI(m.Get("Contact"))
		ack := sipx.NewRequest("ACK", l.target)
		ack.Add("Via", s.via("ack", l.id))
		ack.Add("Max-Forwards", "70").Add("From", l.local).Add("To", l.remote).Add("Call-ID", l.id)
		ack.Add("CSeq", "1 ACK")
		s.send(l.conn, ack)
		if !first {
			return // retransmitted 200
		}
		if l.from != nil {
			// Transfer completed: tell the transferor and switch legs.
			s.notify(l.from, "SIP/2.0 200 OK", true)
			c.active = l
			return
		}
		if c.cInvite != nil && !c.answered {
			c.answered = true
			r := sipx.Response(c.cInvite, 200, "OK", c.cOurTag)
			r.Add("Contact", "<sip:"+scenario.SBCAddr+":5060>")
			r.Add("Allow", "INVITE,ACK,CANCEL,BYE,OPTIONS")
			r.Add("Content-Type", "application/sdp")
			r.Body = sipx.SDP("AudiocodesGW", scenario.SBCAddr, 7000+2*int(c.sid), fmt.Sprint(c.sid))
			s.sendCarrier(r)
		}
	case m.Status() >= 300:
		log.Printf("call %s: INVITE %s answered %d", c.name, l.id, m.Status())
	}
}

func (s *sbc) refer(conn *sipx.Conn, l *leg, m *sipx.Msg) {
	if l == nil || l.ended {
		s.send(conn, sipx.Response(m, 481, "Call/Transaction Does Not Exist", ""))
		return
	}
	referTo := m.Get("Refer-To")
	log.Printf("call %s: REFER on %s to %s from %v", l.c.name, l.id, referTo, conn.Remote)
	if s.sc.ReferResponse != 202 {
		r := sipx.Response(m, s.sc.ReferResponse, "Forbidden", "")
		r.Add("User-Agent", scenario.UserAgent)
		s.send(conn, r)
		return
	}
	r := sipx.Response(m, 202, "Accepted", "")
	r.Add("Contact", s.contact(""))
	r.Add("User-Agent", scenario.UserAgent)
	s.send(conn, r)
	l.referCSeq, _ = m.CSeq()
	s.notify(l, "SIP/2.0 100 Trying", false)
	if !s.sc.FollowRefer {
		log.Printf("call %s: REFER accepted, not followed (scenario)", l.c.name)
		return
	}
	target := sipx.URI(referTo)
	n := &leg{c: l.c, id: scenario.TeamsCallID(s.ids.Hex(20, "xfer", l.id)), conn: s.msConn, sbcCaller: true, cseq: 1, from: l}
	n.local = "<sip:" + sipx.User(l.local) + "@" + scenario.SBCFQDN + ";user=phone>;tag=" + s.ids.Hex(12, "ttag", n.id)
	n.remote = "<sip:" + sipx.User(target) + "@" + scenario.MSProxyFQDN + ";user=phone>"
	inv := sipx.NewRequest("INVITE", target)
	inv.Add("Via", s.via("inv", n.id))
	inv.Add("Max-Forwards", "69").Add("From", n.local).Add("To", n.remote).Add("Call-ID", n.id)
	inv.Add("CSeq", "1 INVITE")
	inv.Add("Contact", s.contact(sipx.User(l.local)))
	if rb := m.Get("Referred-By"); rb != "" {
		inv.Add("Referred-By", rb)
	}
	inv.Add("Allow", s.sc.Allow())
	inv.Add("Supported", "replaces,timer")
	inv.Add("User-Agent", scenario.UserAgent)
	inv.Add("Content-Type", "application/sdp")
	inv.Body = sipx.SDP("AudiocodesGW", scenario.SBCAddr, 6100+2*int(l.c.sid), fmt.Sprint(l.c.sid)+"1")
	n.invite = inv
	s.addLeg(n)
	log.Printf("call %s: following REFER with INVITE %s", l.c.name, n.id)
	s.send(n.conn, inv)
}

func (s *sbc) notify(l *leg, frag string, final bool) {
	l.cseq++
	nt := sipx.NewRequest("NOTIFY", l.target)
	nt.Add("Via", s.via("notify", l.id, fmt.Sprint(l.cseq)))
	nt.Add("Max-Forwards", "70").Add("From", l.local).Add("To", l.remote).Add("Call-ID", l.id)
	nt.Add("CSeq", fmt.Sprintf("%d NOTIFY", l.cseq))
	nt.Add("Contact", s.contact(""))
	nt.Add("Event", fmt.Sprintf("refer;id=%d", l.referCSeq))
	if final {
		nt.Add("Subscription-State", "terminated;reason=noresource")
	} else {
		nt.Add("Subscription-State", "active;expires=60")
	}
	nt.Add("User-Agent", scenario.UserAgent)
	nt.Add("Content-Type", "message/sipfrag;version=2.0")
	nt.Body = []byte(frag + "\r\n")
	s.send(l.conn, nt)
}

func (s *sbc) optionsLoop() {
	for {
		s.mu.Lock()
		s.optN++
		n := s.optN
		c := s.msConn
		s.mu.Unlock()
		id := scenario.TeamsCallID(s.ids.Hex(20, "options", fmt.Sprint(n)))
		o := sipx.NewRequest("OPTIONS", "sip:"+scenario.MSProxyFQDN+":5061;transport=tls")
		o.Add("Via", s.via("opt", id))
		o.Add("Max-Forwards", "70")
		o.Add("From", "<sip:"+scenario.SBCFQDN+":5061>;tag="+s.ids.Hex(12, "otag", id))
		o.Add("To", "<sip:"+scenario.MSProxyFQDN+">")
		o.Add("Call-ID", id).Add("CSeq", "1 OPTIONS")
		o.Add("Contact", s.contact(""))
		o.Add("Allow", s.sc.Allow())
		o.Add("User-Agent", scenario.UserAgent)
		s.send(c, o)
		if s.sc.OptionsEvery <= 0 {
			return
		}
		next := time.Duration(n) * s.sc.OptionsEvery
		if next > s.sc.Length-2*time.Second || !scenario.At(s.t0, next, s.done) {
			return
		}
	}
}
