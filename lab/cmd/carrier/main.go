// Command carrier plays the PSTN carrier in the lab: a SIP UAC/UAS over UDP
// that places the scenario's carrier calls to the SBC (INVITE with SDP,
// ACK, BYE a fixed time after the answer, whether or not the call was
// transferred meanwhile) and answers the calls the SBC sends it for
// Teams-originated calls (100, 180, 200; BYE answered).
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"sync"
	"time"

	"github.com/sbcwatch/sbcwatch/lab/internal/scenario"
	"github.com/sbcwatch/sbcwatch/lab/internal/sipx"
)

type leg struct {
	call     scenario.Call
	invite   *sipx.Msg
	answered bool
	to       string
	target   string
}

type carrier struct {
	sc   scenario.Scenario
	t0   time.Time
	ids  sipx.IDs
	done chan struct{}
	conn *net.UDPConn
	sbc  *net.UDPAddr
	mu   sync.Mutex
	legs map[string]*leg
}

func main() {
	var f scenario.Flags
	f.Register(flag.CommandLine)
	flag.Parse()
	log.SetPrefix("carrier: ")
	log.SetFlags(log.Lmicroseconds)
	if err := run(f); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(f scenario.Flags) error {
	sc, t0, err := f.Resolve()
	if err != nil {
		return err
	}
	c := &carrier{sc: sc, t0: t0, ids: sipx.NewIDs("carrier/" + sc.Name), done: make(chan struct{}), legs: map[string]*leg{}}
	c.sbc = &net.UDPAddr{IP: net.ParseIP(scenario.SBCAddr), Port: scenario.SBCUDPPort}
	if c.conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(scenario.CarrierAddr), Port: scenario.CarrierPort}); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer c.conn.Close()
	go c.readLoop()
	for _, call := range sc.Calls {
		if call.From == scenario.FromCarrier {
			go c.place(call)
		}
	}
	scenario.At(t0, sc.Length, nil)
	close(c.done)
	log.Print("done")
	return nil
}

func (c *carrier) send(m *sipx.Msg) {
	if _, err := c.conn.WriteToUDP(m.Bytes(), c.sbc); err != nil {
		log.Printf("send: %v", err)
	}
}

func (c *carrier) via(parts ...string) string {
	return "SIP/2.0/UDP " + scenario.CarrierAddr + ":5060;branch=" + c.ids.Branch(parts...)
}

func (c *carrier) place(call scenario.Call) {
	if !scenario.At(c.t0, call.Start, c.done) {
		return
	}
	id := c.ids.Hex(24, "call", call.Name) + "@" + scenario.CarrierAddr
	inv := sipx.NewRequest("INVITE", "sip:"+call.Called+"@"+scenario.SBCAddr+":5060;user=phone")
	inv.Add("Via", c.via("inv", id))
	inv.Add("Max-Forwards", "70")
	inv.Add("From", "<sip:"+call.Caller+"@"+scenario.CarrierAddr+";user=phone>;tag="+c.ids.Hex(10, "tag", id))
	inv.Add("To", "<sip:"+call.Called+"@"+scenario.SBCAddr+";user=phone>")
	inv.Add("Call-ID", id).Add("CSeq", "1 INVITE")
	inv.Add("Contact", "<sip:"+call.Caller+"@"+scenario.CarrierAddr+":5060>")
	inv.Add("Allow", "INVITE,ACK,CANCEL,BYE,OPTIONS")
	inv.Add("User-Agent", "lab-carrier")
	inv.Add("Content-Type", "application/sdp")
	inv.Body = sipx.SDP("carrier", scenario.CarrierAddr, 20000+2*int(call.Start/time.Second), c.ids.Hex(8, "sdp", id))
	c.mu.Lock()
	c.legs[id] = &leg{call: call, invite: inv}
	c.mu.Unlock()
	log.Printf("call %s: INVITE %s to %s", call.Name, id, call.Called)
	c.send(inv)
}

func (c *carrier) readLoop() {
	buf := make([]byte, 65535)
	for {
		n, _, err := c.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		m, err := sipx.Parse(buf[:n])
		if err != nil {
			log.Print(err)
			continue
		}
		c.handle(m)
	}
}

func (c *carrier) handle(m *sipx.Msg) {
	id := m.CallID()
	c.mu.Lock()
	l := c.legs[id]
	c.mu.Unlock()
	if !m.IsRequest() {
		_, method := m.CSeq()
		if l == nil || method != "INVITE" || m.Status() < 200 || m.Status() >= 300 {
			return
		}
		c.mu.Lock()
		first := !l.answered
		l.answered = true
		l.to = m.Get("To")
		l.target = sipx.URI(m.Get("Contact"))
		c.mu.Unlock()
		ack := sipx.NewRequest("ACK", l.target)
		ack.Add("Via", c.via("ack", id))
		ack.Add("Max-Forwards", "70")
		ack.Add("From", l.invite.Get("From")).Add("To", l.to).Add("Call-ID", id).Add("CSeq", "1 ACK")
		c.send(ack)
		if first {
			log.Printf("call %s: answered, hanging up in %v", l.call.Name, l.call.HangupAfter)
			go func() {
				t := time.NewTimer(l.call.HangupAfter)
				defer t.Stop()
				select {
				case <-t.C:
				case <-c.done:
					return
				}
				bye := sipx.NewRequest("BYE", l.target)
				bye.Add("Via", c.via("bye", id))
				bye.Add("Max-Forwards", "70")
				bye.Add("From", l.invite.Get("From")).Add("To", l.to).Add("Call-ID", id).Add("CSeq", "2 BYE")
				log.Printf("call %s: caller hangs up", l.call.Name)
				c.send(bye)
			}()
		}
		return
	}
	switch m.Method() {
	case "INVITE":
		if l != nil {
			return
		}
		tag := c.ids.Hex(10, "tag", id)
		c.mu.Lock()
		c.legs[id] = &leg{invite: m}
		c.mu.Unlock()
		c.send(sipx.Response(m, 100, "Trying", ""))
		go func() {
			time.Sleep(100 * time.Millisecond)
			r := sipx.Response(m, 180, "Ringing", tag)
			r.Add("Contact", "<sip:"+scenario.CarrierAddr+":5060>")
			c.send(r)
			time.Sleep(400 * time.Millisecond)
			r = sipx.Response(m, 200, "OK", tag)
			r.Add("Contact", "<sip:"+scenario.CarrierAddr+":5060>")
			r.Add("Content-Type", "application/sdp")
			r.Body = sipx.SDP("carrier", scenario.CarrierAddr, 21000, c.ids.Hex(8, "sdp", id))
			c.send(r)
		}()
	case "ACK":
	case "BYE":
		c.send(sipx.Response(m, 200, "OK", ""))
	default:
		c.send(sipx.Response(m, 405, "Method Not Allowed", ""))
	}
}
