package live

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/lab/acdrenc"
	"github.com/sbcwatch/sbcwatch/sip"
)

var (
	msProxy = netip.MustParseAddrPort("52.114.75.24:5061")
	sbcTLS  = netip.MustParseAddrPort("192.0.2.10:5061")
	carrier = netip.MustParseAddrPort("198.51.100.7:5060")
	sbcUDP  = netip.MustParseAddrPort("192.0.2.10:5060")
)

// msg is one SIP message of a test dialog with its original endpoints.
type msg struct {
	src, dst netip.AddrPort
	text     string
}

// dialog returns INVITE/100/200/ACK/BYE/200 between caller and callee;
// the BYE comes from the callee when byCallee is set.
func dialog(callID string, caller, callee netip.AddrPort, tr string, byCallee bool) []msg {
	from := fmt.Sprintf("<sip:+4915112345678@%s>;tag=caller-1", caller.Addr())
	to := fmt.Sprintf("<sip:+496912345@%s>", callee.Addr())
	toTag := to + ";tag=callee-1"
	via := fmt.Sprintf("SIP/2.0/%s %s;branch=z9hG4bK-%s-inv", tr, caller, callID)
	m := func(start string, hdrs ...string) string {
		return start + "\r\n" + strings.Join(hdrs, "\r\n") + "\r\nCall-ID: " + callID + "\r\nContent-Length: 0\r\n\r\n"
	}
	out := []msg{
		{caller, callee, m("INVITE sip:+496912345@"+callee.String()+" SIP/2.0", "Via: "+via, "Max-Forwards: 70",
			"From: "+from, "To: "+to, "CSeq: 1 INVITE", "Contact: <sip:"+caller.String()+">")},
		{callee, caller, m("SIP/2.0 100 Trying", "Via: "+via, "From: "+from, "To: "+to, "CSeq: 1 INVITE")},
		{callee, caller, m("SIP/2.0 200 OK", "Via: "+via, "From: "+from, "To: "+toTag, "CSeq: 1 INVITE",
			"Contact: <sip:"+callee.String()+">")},
		{caller, callee, m("ACK sip:"+callee.String()+" SIP/2.0", "Via: "+strings.Replace(via, "-inv", "-ack", 1),
			"Max-Forwards: 70", "From: "+from, "To: "+toTag, "CSeq: 1 ACK")},
	}
	if byCallee {
		bvia := fmt.Sprintf("SIP/2.0/%s %s;branch=z9hG4bK-%s-bye", tr, callee, callID)
		bfrom, bto := toTag, from
		out = append(out,
			msg{callee, caller, m("BYE sip:"+caller.String()+" SIP/2.0", "Via: "+bvia, "Max-Forwards: 70",
				"From: "+bfrom, "To: "+bto, "CSeq: 1 BYE", `Reason: Q.850;cause=16;text="Normal call clearing"`)},
			msg{caller, callee, m("SIP/2.0 200 OK", "Via: "+bvia, "From: "+bfrom, "To: "+bto, "CSeq: 1 BYE")})
	} else {
		bvia := strings.Replace(via, "-inv", "-bye", 1)
		out = append(out,
			msg{caller, callee, m("BYE sip:"+callee.String()+" SIP/2.0", "Via: "+bvia, "Max-Forwards: 70",
				"From: "+from, "To: "+toTag, "CSeq: 2 BYE")},
			msg{callee, caller, m("SIP/2.0 200 OK", "Via: "+bvia, "From: "+from, "To: "+toTag, "CSeq: 2 BYE")})
	}
	return out
}

// acdrPackets encodes a dialog as ACDR copies exported by the SBC at
// sbc: messages it sent are outgoing.
func acdrPackets(t *testing.T, d []msg, sbc netip.Addr, proto uint8) [][]byte {
	t.Helper()
	var out [][]byte
	for i, m := range d {
		p := acdrenc.Packet{Time: time.Now(), Seq: uint16(i), BoardID: 0x665997, ResetCounter: 1, Session: 7,
			Src: m.src, Dst: m.dst, Proto: proto, Outgoing: m.src.Addr() == sbc, Payload: []byte(m.text)}
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// hepPacket builds one HEP v3 packet (tap/hep.go's layout): IPv4, UDP,
// the given timestamp, payload type SIP.
func hepPacket(src, dst netip.AddrPort, ts time.Time, payload []byte) []byte {
	b := []byte("HEP3\x00\x00")
	chunk := func(typ uint16, v []byte) {
		var h [6]byte
		binary.BigEndian.PutUint16(h[2:], typ)
		binary.BigEndian.PutUint16(h[4:], uint16(6+len(v)))
		b = append(append(b, h[:]...), v...)
	}
	u16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	chunk(1, []byte{2})  // IPv4
	chunk(2, []byte{17}) // UDP
	chunk(3, s4[:])
	chunk(4, d4[:])
	chunk(7, u16(src.Port()))
	chunk(8, u16(dst.Port()))
	chunk(9, u32(uint32(ts.Unix())))
	chunk(10, u32(uint32(ts.Nanosecond()/1000)))
	chunk(11, []byte{1}) // SIP
	chunk(12, u32(2001)) // capture agent id
	chunk(15, payload)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	return b
}

// sink collects handed-over calls.
type sink struct {
	mu    sync.Mutex
	calls []*sip.Call
	block chan struct{} // when set, AddCall waits on it
}

func (s *sink) AddCall(c *sip.Call) {
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
}

func (s *sink) byID() map[string]*sip.Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]*sip.Call{}
	for _, c := range s.calls {
		m[c.CallID] = c
	}
	return m
}

// start runs l in the background; the returned function cancels it and
// returns Run's error, failing the test when Run does not return within
// two seconds.
func start(t *testing.T, l *Listener) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Run(ctx) }()
	select {
	case <-l.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatal("not ready")
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(2 * time.Second):
				t.Fatal("Run did not return promptly after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func send(t *testing.T, to netip.AddrPort, pkts [][]byte) {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range pkts {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // keep the dialog's order on arrival
	}
}

func testConfig() *config.Config {
	cfg := config.Default()
	cfg.Serve.ACDRListen = "127.0.0.1:0"
	cfg.Serve.HEPListen = "127.0.0.1:0"
	return cfg
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestACDRAndHEPDialogs sends one dialog as ACDR and one as HEP: both
// calls reach the sink once their linger is over, with every message,
// answered, ended by the right side, dated by the receive time.
func TestACDRAndHEPDialogs(t *testing.T) {
	s := &sink{}
	l := New(testConfig(), s, nil, Options{Linger: 200 * time.Millisecond, ExpireEvery: 50 * time.Millisecond})
	stop := start(t, l)
	acdrAddr, hepAddr := l.Addrs()
	if !acdrAddr.IsValid() || acdrAddr.Port() == 0 || !hepAddr.IsValid() || hepAddr.Port() == 0 {
		t.Fatalf("addrs %v %v", acdrAddr, hepAddr)
	}
	before := time.Now()

	send(t, acdrAddr, acdrPackets(t, dialog("acdr-call-1", msProxy, sbcTLS, "TLS", true), sbcTLS.Addr(), acdrenc.ProtoTCP))
	// The exporter's clock is far off: live mode ignores it.
	skewed := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	var hep [][]byte
	for _, m := range dialog("hep-call-1", carrier, sbcUDP, "UDP", false) {
		hep = append(hep, hepPacket(m.src, m.dst, skewed, []byte(m.text)))
	}
	send(t, hepAddr, hep)

	waitFor(t, "two calls handed over", func() bool { return len(s.byID()) == 2 })
	calls := s.byID()
	for id, want := range map[string]struct {
		endedBy, origin, transport string
		caller, callee             netip.AddrPort
	}{
		"acdr-call-1": {"callee", "acdr", "tcp", msProxy, sbcTLS},
		"hep-call-1":  {"caller", "hep", "udp", carrier, sbcUDP},
	} {
		c := calls[id]
		if c == nil {
			t.Fatalf("%s missing; got %v", id, calls)
		}
		if c.MessageCount != 6 || len(c.Messages) != 6 || !c.Answered || c.EndedBy != want.endedBy || c.EndReason != "BYE" {
			t.Errorf("%s: count %d kept %d answered %v ended_by %q reason %q", id, c.MessageCount, len(c.Messages), c.Answered, c.EndedBy, c.EndReason)
		}
		if c.Caller != want.caller || c.Callee != want.callee {
			t.Errorf("%s: caller %v callee %v, want %v %v", id, c.Caller, c.Callee, want.caller, want.callee)
		}
		for i, m := range c.Messages {
			if m.Origin != want.origin || m.Transport != want.transport {
				t.Errorf("%s message %d: origin %s transport %s", id, i, m.Origin, m.Transport)
			}
			if m.Time.Before(before) || m.Time.After(time.Now()) {
				t.Errorf("%s message %d dated %v, not by its receive time", id, i, m.Time)
			}
		}
	}
	if c := calls["acdr-call-1"]; c.Q850Cause != 16 {
		t.Errorf("acdr call Q.850 cause %d", c.Q850Cause)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Received != 12 || st.Dropped != 0 || st.Messages != 12 || st.ParseErrors != 0 || st.Calls != 2 || st.Active != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestOpenCallsHandedOverAtEnd: a call still ringing when the context
// ends goes to the sink from Close, open (no end).
func TestOpenCallsHandedOverAtEnd(t *testing.T) {
	cfg := testConfig()
	cfg.Serve.HEPListen = ""
	s := &sink{}
	l := New(cfg, s, nil, Options{})
	stop := start(t, l)
	acdrAddr, hepAddr := l.Addrs()
	if hepAddr.IsValid() {
		t.Fatalf("HEP bound at %v though not configured", hepAddr)
	}
	d := dialog("ringing-1", msProxy, sbcTLS, "TLS", true)[:2]
	send(t, acdrAddr, acdrPackets(t, d, sbcTLS.Addr(), acdrenc.ProtoTCP))
	send(t, acdrAddr, [][]byte{[]byte("not an ACDR packet")})
	waitFor(t, "three datagrams decoded", func() bool { st := l.Stats(); return st.Messages == 2 && st.Malformed == 1 })
	if n := len(s.byID()); n != 0 {
		t.Fatalf("%d calls handed over while open", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	c := s.byID()["ringing-1"]
	if c == nil || c.MessageCount != 2 || c.Answered || c.EndedBy != "" || !c.End.IsZero() {
		t.Fatalf("open call at end: %+v", c)
	}
}

// TestFloodDropsAndCounts: with the pipeline blocked, readers keep
// reading and drop what does not fit the queue (by count and by bytes);
// nothing deadlocks and cancellation returns promptly.
func TestFloodDropsAndCounts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		o         Options
		size      int
		maxQueued uint64
	}{
		{"count", Options{QueueSize: 4}, 200, 4},
		{"bytes", Options{QueueSize: 1024, MaxQueueBytes: 1000}, 300, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Serve.HEPListen = ""
			l := New(cfg, &sink{}, nil, tc.o)
			entered := make(chan struct{})
			release := make(chan struct{})
			var once sync.Once
			l.beforeDecode = func() {
				once.Do(func() { close(entered) })
				<-release
			}
			stop := start(t, l)
			addr, _ := l.Addrs()
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			payload := make([]byte, tc.size)
			const n = 2000
			for i := range n {
				if _, err := c.Write(payload); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					<-entered // the pipeline holds the first datagram
				}
			}
			// Wait until the readers stopped receiving (the kernel may drop
			// some of the burst too).
			var last uint64
			waitFor(t, "the burst to be read", func() bool {
				cur := l.Stats().Received
				settled := cur == last && cur > tc.maxQueued+10
				last = cur
				time.Sleep(50 * time.Millisecond)
				return settled
			})
			st := l.Stats()
			if st.Dropped == 0 || st.Received-st.Dropped > tc.maxQueued+1 {
				t.Fatalf("received %d dropped %d: more than %d+1 queued", st.Received, st.Dropped, tc.maxQueued)
			}
			if q := l.queuedBytes.Load(); q > int64(tc.maxQueued)*int64(tc.size) {
				t.Fatalf("%d bytes queued", q)
			}
			// Cancel while blocked, then let the pipeline go: Run drains the
			// few queued datagrams and returns.
			done := make(chan error, 1)
			go func() { done <- stop() }()
			time.Sleep(50 * time.Millisecond)
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := l.Stats(); got.Skipped+got.Malformed != got.Received-got.Dropped {
				t.Errorf("after drain: %+v (every queued garbage datagram should count as skipped or malformed)", got)
			}
		})
	}
}

// TestListenError: a taken address fails Run with the address named.
func TestListenError(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cfg := testConfig()
	cfg.Serve.HEPListen = pc.LocalAddr().String()
	err = New(cfg, &sink{}, nil, Options{}).Run(context.Background())
	var opErr *net.OpError
	if err == nil || !strings.Contains(err.Error(), pc.LocalAddr().String()) || !errors.As(err, &opErr) {
		t.Fatalf("Run = %v", err)
	}
}

// TestNothingConfigured: no listen address, nothing to do.
func TestNothingConfigured(t *testing.T) {
	if err := Run(context.Background(), config.Default(), &sink{}, nil); err != nil {
		t.Fatal(err)
	}
}
