// Command msproxy plays Microsoft's Direct Routing SIP proxy in the lab. As
// a TLS server on 5061 (sip.pstnhub.microsoft.com) it answers the SBC's
// OPTIONS and INVITEs like an Auto Attendant or a user (100, 180, 200) and
// BYEs the original leg once a transfer completes. As a TLS client (TLS
// 1.2 only, Microsoft's suites, SNI = the SBC FQDN, validating against the
// lab CA) it opens new connections to the SBC: OPTIONS pings, Teams-
// originated calls, health-check probes that close right after the
// handshake, and REFER delivery from a Microsoft address outside
// the SBC's proxy set, retried three times within a second and once more
// after -late-retry, then given up, as in the field case.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sbcwatch/sbcwatch/lab/internal/labtls"
	"github.com/sbcwatch/sbcwatch/lab/internal/scenario"
	"github.com/sbcwatch/sbcwatch/lab/internal/sipx"
)

type dlg struct {
	id        string
	call      scenario.Call
	known     bool
	conn      *sipx.Conn // where Microsoft sends its in-dialog requests
	msLocal   string     // Microsoft's From/To value with tag
	sbcRemote string     // the SBC's value with tag once known
	sbcTarget string     // the SBC's Contact URI
	cseq      int
	outgoing  bool // Microsoft placed the call
	answered  bool
	ended     bool
	xfer      bool // the INVITE that follows a REFER
}

type ms struct {
	sc    scenario.Scenario
	t0    time.Time
	ids   sipx.IDs
	done  chan struct{}
	roots *x509.CertPool
	cert  tls.Certificate
	late  time.Duration

	mu      sync.Mutex
	dialogs map[string]*dlg
	conns   []*sipx.Conn
	optN    int
}

func main() {
	var f scenario.Flags
	f.Register(flag.CommandLine)
	late := flag.Duration("late-retry", scenario.LateRetry, "delay of the fourth (last) REFER delivery attempt after the third")
	flag.Parse()
	log.SetPrefix("msproxy: ")
	log.SetFlags(log.Lmicroseconds)
	if err := run(f, *late); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(f scenario.Flags, late time.Duration) error {
	sc, t0, err := f.Resolve()
	if err != nil {
		return err
	}
	p := &ms{sc: sc, t0: t0, ids: sipx.NewIDs("ms/" + sc.Name), done: make(chan struct{}), late: late, dialogs: map[string]*dlg{}}
	if p.cert, err = labtls.Load(f.PKI, labtls.MSProxy); err != nil {
		return err
	}
	if p.roots, err = labtls.Roots(f.PKI); err != nil {
		return err
	}
	ln, err := tls.Listen("tcp4", net.JoinHostPort(scenario.MSProxyAddr, fmt.Sprint(scenario.MSPort)), labtls.ServerConfig(p.cert))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			c := sipx.NewConn(raw)
			p.track(c)
			go p.readLoop(c)
		}
	}()
	go p.optionsLoop()
	for i, at := range sc.Probes {
		go p.probe(i+1, at)
	}
	for _, c := range sc.Calls {
		if c.From == scenario.FromTeams {
			go p.placeCall(c)
		}
	}
	scenario.At(t0, sc.Length, nil)
	close(p.done)
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	log.Print("done")
	return nil
}

func (p *ms) track(c *sipx.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *ms) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.done:
		return false
	}
}

// dial opens a new validating TLS connection from src to the SBC.
func (p *ms) dial(src string) (*sipx.Conn, time.Duration, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 3 * time.Second}
	start := time.Now()
	raw, err := d.Dial("tcp4", net.JoinHostPort(scenario.SBCAddr, fmt.Sprint(scenario.SBCTLSPort)))
	if err != nil {
		return nil, 0, fmt.Errorf("connect: %w", err)
	}
	tc := tls.Client(raw, labtls.ClientConfig(scenario.SBCFQDN, p.roots))
	_ = tc.SetDeadline(time.Now().Add(3 * time.Second))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, time.Since(start), fmt.Errorf("outgoing TLS negotiation failed: %w", err)
	}
	_ = tc.SetDeadline(time.Time{})
	c := sipx.NewConn(tc)
	p.track(c)
	go p.readLoop(c)
	return c, time.Since(start), nil
}

func (p *ms) readLoop(c *sipx.Conn) {
	for {
		m, err := c.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				select {
				case <-p.done:
				default:
					log.Printf("read %v: %v", c.Remote, err)
				}
			}
			c.Close()
			return
		}
		p.handle(c, m)
	}
}

func (p *ms) send(c *sipx.Conn, m *sipx.Msg) {
	if err := c.Send(m); err != nil {
		log.Print(err)
	}
}

func (p *ms) via(src string, parts ...string) string {
	return "SIP/2.0/TLS " + src + ":5061;branch=" + p.ids.Branch(parts...)
}

func (p *ms) contact(src, id string) string {
	return "<sip:" + src + ":5061;transport=tls;x-i=" + p.ids.GUID("x-i", id) + ";x-c=" + p.ids.Hex(32, "x-c", id) + "/s/1/" + p.ids.Hex(32, "x-c2", id) + ">"
}

func (p *ms) handle(c *sipx.Conn, m *sipx.Msg) {
	id := m.CallID()
	p.mu.Lock()
	d := p.dialogs[id]
	p.mu.Unlock()
	if !m.IsRequest() {
		p.response(c, d, m)
		return
	}
	switch m.Method() {
	case "OPTIONS":
		r := sipx.Response(m, 200, "OK", p.ids.Hex(32, "otag", id))
		r.Add("Allow", "INVITE,ACK,OPTIONS,CANCEL,BYE,NOTIFY,REFER")
		r.Add("Server", scenario.MSUserAgent)
		p.send(c, r)
	case "INVITE":
		if d == nil {
			p.answer(c, m)
		}
	case "ACK":
	case "BYE":
		p.send(c, sipx.Response(m, 200, "OK", ""))
		if d != nil {
			p.mu.Lock()
			d.ended = true
			p.mu.Unlock()
			log.Printf("BYE from SBC on %s (%s) Reason: %s", id, d.call.Name, m.Get("Reason"))
		}
	case "NOTIFY":
		p.send(c, sipx.Response(m, 200, "OK", ""))
		if d != nil && strings.HasPrefix(string(m.Body), "SIP/2.0 200") {
			go func() {
				if p.sleep(50 * time.Millisecond) {
					p.bye(d, "transfer completed")
				}
			}()
		}
	default:
		p.send(c, sipx.Response(m, 405, "Method Not Allowed", ""))
	}
}

// answer takes an INVITE from the SBC like an Auto Attendant, a user or,
// for the INVITE that follows a REFER, a Call Queue.
func (p *ms) answer(c *sipx.Conn, m *sipx.Msg) {
	id := m.CallID()
	d := &dlg{id: id, conn: c, sbcRemote: m.Get("From"), sbcTarget: sipx.URI(m.Get("Contact")), xfer: m.Get("Referred-By") != ""}
	d.msLocal = m.Get("To") + ";tag=" + p.ids.Hex(32, "tag", id)
	d.call, d.known = p.sc.CallByCaller(sipx.User(m.Get("From")))
	p.mu.Lock()
	p.dialogs[id] = d
	p.mu.Unlock()
	log.Printf("INVITE %s from %s to %s (call %s, transfer leg %v)", id, sipx.User(m.Get("From")), m.RequestURI(), d.call.Name, d.xfer)
	p.send(c, sipx.Response(m, 100, "Trying", ""))
	go func() {
		if !p.sleep(100 * time.Millisecond) {
			return
		}
		r := sipx.Response(m, 180, "Ringing", sipx.Tag(d.msLocal))
		r.Add("Contact", p.contact(scenario.MSProxyAddr, id))
		r.Add("Server", scenario.MSUserAgent)
		p.send(c, r)
		if !p.sleep(400 * time.Millisecond) {
			return
		}
		r = sipx.Response(m, 200, "OK", sipx.Tag(d.msLocal))
		r.Add("Contact", p.contact(scenario.MSProxyAddr, id))
		r.Add("Allow", "INVITE,ACK,OPTIONS,CANCEL,BYE,NOTIFY,REFER")
		r.Add("Server", scenario.MSUserAgent)
		r.Add("Content-Type", "application/sdp")
		r.Body = sipx.SDP("-", "52.114.250.17", 49154+2*len(id)%100, p.ids.Hex(8, "sdp", id))
		p.send(c, r)
		answered := time.Now()
		if d.xfer || !d.known || d.call.Transfer == nil {
			return
		}
		if !hasToken(m.Get("Allow"), "REFER") {
			log.Printf("INVITE %s: the SBC does not allow REFER; the transfer is done inside Teams", id)
			return
		}
		if !p.sleep(time.Until(answered.Add(d.call.Transfer.After))) {
			return
		}
		p.deliverRefer(d)
	}()
}

// deliverRefer tries to deliver the REFER over new connections.
func (p *ms) deliverRefer(d *dlg) {
	delays := append(append([]time.Duration(nil), scenario.ReferRetries...), p.late)
	for attempt := 1; ; attempt++ {
		p.mu.Lock()
		ended := d.ended
		p.mu.Unlock()
		if ended {
			log.Printf("REFER for %s: dialog ended, no more attempts", d.id)
			return
		}
		c, took, err := p.dial(scenario.MSReferAddr)
		if err == nil {
			log.Printf("REFER for %s: attempt %d connected in %v", d.id, attempt, took.Round(time.Millisecond))
			p.sendRefer(c, d)
			return
		}
		log.Printf("REFER for %s: attempt %d failed after %v: %v", d.id, attempt, took.Round(time.Millisecond), err)
		if attempt > len(delays) {
			log.Printf("REFER for %s: giving up: 504 Unable to deliver REFER: outgoing TLS negotiation failed", d.id)
			return
		}
		if !p.sleep(delays[attempt-1]) {
			return
		}
	}
}

func (p *ms) sendRefer(c *sipx.Conn, d *dlg) {
	p.mu.Lock()
	d.cseq++
	cseq := d.cseq
	p.mu.Unlock()
	t := d.call.Transfer.Target
	r := sipx.NewRequest("REFER", d.sbcTarget)
	r.Add("Via", p.via(scenario.MSReferAddr, "refer", d.id))
	r.Add("Max-Forwards", "70")
	r.Add("From", d.msLocal).Add("To", d.sbcRemote).Add("Call-ID", d.id)
	r.Add("CSeq", fmt.Sprintf("%d REFER", cseq))
	r.Add("Contact", p.contact(scenario.MSReferAddr, d.id))
	r.Add("Refer-To", "<sip:"+t+"@"+scenario.MSProxyFQDN+";user=phone;x-m=8:orgid:"+p.ids.GUID("cq", t)+";x-t="+scenario.TenantID+">")
	tt := base64.RawURLEncoding.EncodeToString([]byte("sip:" + scenario.MSProxyFQDN + ";x-i=" + p.ids.GUID("x-i", d.id)))
	r.Add("Referred-By", "<sip:"+scenario.MSProxyFQDN+";x-m=8:orgid:"+p.ids.GUID("aa", d.call.Called)+";x-t="+scenario.TenantID+";x-ti="+p.ids.GUID("x-ti", d.id)+";x-tt="+tt+">")
	r.Add("Server", scenario.MSUserAgent)
	p.send(c, r)
}

// bye ends a dialog from Microsoft's side on its connection.
func (p *ms) bye(d *dlg, why string) {
	p.mu.Lock()
	if d.ended {
		p.mu.Unlock()
		return
	}
	d.ended = true
	d.cseq++
	cseq := d.cseq
	p.mu.Unlock()
	src := scenario.MSProxyAddr
	if d.outgoing {
		src = scenario.MSCallsAddr
	}
	b := sipx.NewRequest("BYE", d.sbcTarget)
	b.Add("Via", p.via(src, "bye", d.id))
	b.Add("Max-Forwards", "70")
	b.Add("From", d.msLocal).Add("To", d.sbcRemote).Add("Call-ID", d.id)
	b.Add("CSeq", fmt.Sprintf("%d BYE", cseq))
	b.Add("Server", scenario.MSUserAgent)
	log.Printf("BYE to SBC on %s (%s): %s", d.id, d.call.Name, why)
	p.send(d.conn, b)
}

func (p *ms) response(c *sipx.Conn, d *dlg, m *sipx.Msg) {
	_, method := m.CSeq()
	switch method {
	case "REFER":
		log.Printf("REFER for %s answered %s", m.CallID(), m.StartLine)
		if m.Status() >= 200 {
			go func() {
				if p.sleep(100 * time.Millisecond) {
					c.Close()
				}
			}()
		}
	case "INVITE":
		if d == nil || !d.outgoing {
			return
		}
		if m.Status() >= 200 && m.Status() < 300 {
			p.mu.Lock()
			first := !d.answered
			d.answered = true
			d.sbcRemote = m.Get("To")
			d.sbcTarget = sipx.URI(m.Get("Contact"))
			p.mu.Unlock()
			ack := sipx.NewRequest("ACK", d.sbcTarget)
			ack.Add("Via", p.via(scenario.MSCallsAddr, "ack", d.id))
			ack.Add("Max-Forwards", "70")
			ack.Add("From", d.msLocal).Add("To", d.sbcRemote).Add("Call-ID", d.id).Add("CSeq", "1 ACK")
			p.send(c, ack)
			if first {
				go func() {
					if p.sleep(d.call.HangupAfter) {
						p.bye(d, "Teams user hung up")
					}
				}()
			}
		}
	}
}

// probe is a health check at offset at: a new validating TLS connection
// from MSCallsAddr that is closed with close_notify right after the
// handshake, without SIP.
func (p *ms) probe(n int, at time.Duration) {
	if !scenario.At(p.t0, at, p.done) {
		return
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(scenario.MSCallsAddr)}, Timeout: 3 * time.Second}
	start := time.Now()
	raw, err := d.Dial("tcp4", net.JoinHostPort(scenario.SBCAddr, fmt.Sprint(scenario.SBCTLSPort)))
	if err != nil {
		log.Printf("probe %d: connect: %v", n, err)
		return
	}
	tc := tls.Client(raw, labtls.ClientConfig(scenario.SBCFQDN, p.roots))
	_ = tc.SetDeadline(time.Now().Add(3 * time.Second))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		log.Printf("probe %d: failed after %v: %v", n, time.Since(start).Round(time.Millisecond), err)
		return
	}
	// Close sends close_notify (an encrypted alert) and then FIN.
	err = tc.Close()
	log.Printf("probe %d: handshake done in %v, closed with close_notify (%v)", n, time.Since(start).Round(time.Millisecond), err)
}

// placeCall is a Teams user calling the PSTN over a new connection.
func (p *ms) placeCall(call scenario.Call) {
	if !scenario.At(p.t0, call.Start, p.done) {
		return
	}
	c, took, err := p.dial(scenario.MSCallsAddr)
	if err != nil {
		log.Printf("call %s: %v", call.Name, err)
		return
	}
	log.Printf("call %s: connected in %v", call.Name, took.Round(time.Millisecond))
	id := p.ids.Hex(32, "call", call.Name)
	d := &dlg{id: id, call: call, known: true, conn: c, outgoing: true}
	d.msLocal = "<sip:" + call.Caller + "@" + scenario.MSProxyFQDN + ";user=phone>;tag=" + p.ids.Hex(32, "tag", id)
	d.sbcRemote = "<sip:" + call.Called + "@" + scenario.SBCFQDN + ";user=phone>"
	d.cseq = 1
	p.mu.Lock()
	p.dialogs[id] = d
	p.mu.Unlock()
	inv := sipx.NewRequest("INVITE", "sip:"+call.Called+"@"+scenario.SBCFQDN+":5061;user=phone;transport=tls")
	inv.Add("Via", p.via(scenario.MSCallsAddr, "inv", id))
	inv.Add("Max-Forwards", "70")
	inv.Add("From", d.msLocal).Add("To", d.sbcRemote).Add("Call-ID", id).Add("CSeq", "1 INVITE")
	inv.Add("Contact", p.contact(scenario.MSCallsAddr, id))
	inv.Add("Allow", "INVITE,ACK,OPTIONS,CANCEL,BYE,NOTIFY,REFER")
	inv.Add("Server", scenario.MSUserAgent)
	inv.Add("Content-Type", "application/sdp")
	inv.Body = sipx.SDP("-", "52.114.250.18", 49170, p.ids.Hex(8, "sdp", id))
	p.send(c, inv)
}

// optionsLoop pings the SBC over a connection of its own from the proxy
// address (the SBC's proxy set), reconnecting when it has none.
func (p *ms) optionsLoop() {
	var c *sipx.Conn
	for n := 0; ; n++ {
		at := 300*time.Millisecond + time.Duration(n)*p.sc.OptionsEvery
		if n > 0 && (p.sc.OptionsEvery <= 0 || at > p.sc.Length-2*time.Second) {
			return
		}
		if !scenario.At(p.t0, at, p.done) {
			return
		}
		if c == nil {
			var err error
			var took time.Duration
			c, took, err = p.dial(scenario.MSProxyAddr)
			if err != nil {
				log.Printf("OPTIONS %d: %v", n+1, err)
				continue
			}
			log.Printf("OPTIONS connection up in %v", took.Round(time.Millisecond))
		}
		id := p.ids.Hex(32, "options", fmt.Sprint(n))
		o := sipx.NewRequest("OPTIONS", "sip:"+scenario.SBCFQDN+":5061;transport=tls")
		o.Add("Via", p.via(scenario.MSProxyAddr, "opt", id))
		o.Add("Max-Forwards", "70")
		o.Add("From", "<sip:"+scenario.MSProxyFQDN+":5061>;tag="+p.ids.Hex(32, "otag", id))
		o.Add("To", "<sip:"+scenario.SBCFQDN+">")
		o.Add("Call-ID", id).Add("CSeq", "1 OPTIONS")
		o.Add("Contact", "<sip:"+scenario.MSProxyFQDN+":5061;transport=tls>")
		o.Add("Server", scenario.MSUserAgent)
		p.send(c, o)
	}
}

func hasToken(list, tok string) bool {
	for _, t := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}
