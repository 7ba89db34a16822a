package live

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
)

func run(t *testing.T, s Source, q *Queue) {
	t.Helper()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, q) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run: %v", s.Name(), err)
		}
	})
}

func take(t *testing.T, q *Queue, n int) []Item {
	t.Helper()
	var out []Item
	deadline := time.After(5 * time.Second)
	for len(out) < n {
		select {
		case it := <-q.C():
			q.Done(it)
			out = append(out, it)
		case <-deadline:
			t.Fatalf("got %d items, want %d", len(out), n)
		}
	}
	return out
}

// TestQueueBoundsAndCounts: a full queue drops and counts, by items and
// by bytes, and never blocks.
func TestQueueBoundsAndCounts(t *testing.T) {
	q := NewQueue(2, 1000)
	for range 5 {
		q.Offer(Item{Data: make([]byte, 10)})
	}
	if s := q.Stats(); s.Received != 5 || s.Dropped != 3 || s.Queued != 2 || s.Bytes != 20 {
		t.Fatalf("by items: %+v", s)
	}
	q = NewQueue(100, 25)
	for range 5 {
		q.Offer(Item{Data: make([]byte, 10)})
	}
	if s := q.Stats(); s.Dropped != 3 || s.Queued != 2 {
		t.Fatalf("by bytes: %+v", s)
	}
	it := <-q.C()
	q.Done(it)
	if s := q.Stats(); s.Bytes != 10 || s.Handled != 1 {
		t.Fatalf("after Done: %+v", s)
	}
}

// TestBindErrorNamesTheSource: a taken port fails Start with the source
// and the address named.
func TestBindErrorNamesTheSource(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = NewTCP(KindHEP, ln.Addr().String()).Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "hep-tcp") || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Start = %v", err)
	}
	err = NewCapture("nosuchif0", Filter{}, 1).Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "nosuchif0") {
		t.Fatalf("capture Start = %v", err)
	}
}

// TestUDPAndTCPFraming: the same payloads over UDP and over TCP (HEP
// self-delimited, ACDR length-prefixed, syslog octet-counted and
// line-framed) come out as the same items.
func TestUDPAndTCPFraming(t *testing.T) {
	hep := func(n int) []byte {
		b := make([]byte, n)
		copy(b, "HEP3")
		binary.BigEndian.PutUint16(b[4:], uint16(n))
		return b
	}
	// UDP: one item per datagram.
	u := NewUDP(KindACDR, "127.0.0.1:0")
	uq := NewQueue(16, 0)
	run(t, u, uq)
	c, err := net.Dial("udp", u.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("acdr-1"))
	c.Write([]byte("acdr-2"))
	c.Close()
	got := take(t, uq, 2)
	if string(got[0].Data) != "acdr-1" || got[1].Kind != KindACDR || !got[0].From.Addr().IsLoopback() || got[0].Time.IsZero() {
		t.Fatalf("udp items %+v", got)
	}

	for _, tc := range []struct {
		kind   Kind
		stream []byte
		want   []string
	}{
		{KindHEP, append(hep(10), hep(7)...), []string{string(hep(10)), string(hep(7))}},
		{KindACDR, append([]byte{0, 3, 'a', 'b', 'c', 0, 1}, 'z'), []string{"abc", "z"}},
		{KindSyslog, []byte("13 <13>[S=1] one<13>[S=2] two\n\n<13>[S=3] three\r\n"), []string{"<13>[S=1] one", "<13>[S=2] two", "<13>[S=3] three"}},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			s := NewTCP(tc.kind, "127.0.0.1:0")
			q := NewQueue(16, 0)
			run(t, s, q)
			c, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range tc.stream { // byte by byte: framing must not depend on segments
				c.Write([]byte{b})
			}
			c.Close()
			items := take(t, q, len(tc.want))
			for i, it := range items {
				if string(it.Data) != tc.want[i] || it.Kind != tc.kind {
					t.Errorf("item %d = %q, want %q", i, it.Data, tc.want[i])
				}
			}
		})
	}

	// Broken framing closes the connection and counts.
	s := NewTCP(KindHEP, "127.0.0.1:0")
	q := NewQueue(16, 0)
	run(t, s, q)
	c, err = net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	buf := make([]byte, 1)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err == nil {
		t.Fatal("connection with broken framing stayed open")
	}
	c.Close()
	for deadline := time.Now().Add(2 * time.Second); s.Counters()["framing_errors"] != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("counters %v", s.Counters())
		}
	}
}

// TestSyslogBodies: RFC 5424 and RFC 3164 headers (as util-linux logger
// writes them) come off; AudioCodes' own framing is kept.
func TestSyslogBodies(t *testing.T) {
	body := "09:55:05.314 SIPListeningSocketTLS(#0)::AcceptNewConnection - Incoming connection from 52.114.75.24:8576 accepted. SocketID=7535 [Time:04-01@09:55:04.717]"
	for _, tc := range []struct{ in, want string }{
		{`<13>1 2026-12-06T17:40:00.123456+00:00 host sbc - - [timeQuality tzKnown="1" isSynced="0" x="a\"]b"] ` + body, "<13>" + body},
		{"<13>1 2026-12-06T17:40:00Z host sbc 42 ID1 - \xef\xbb\xbf" + body, "<13>" + body},
		{"<13>Dec  6 17:40:00 host sbc: " + body, "<13>" + body},
		{"<13>Dec 16 17:40:00 host sbc[123]: " + body + "\n", "<13>" + body},
		{"<142>[S=2217] [SID=a:b:c] (N 1) text [Time:04-01@09:55:04.717]", "<142>[S=2217] [SID=a:b:c] (N 1) text [Time:04-01@09:55:04.717]"},
		{"<13>1 2026-12-06T17:40:00Z host sbc - - [broken " + body, "<13>[broken " + body},
		{"<13>1 2026-12-06T17:40:00Z host sbc 1 2 [S=2217] [SID=a] text", "<13>[S=2217] [SID=a] text"},
	} {
		got := SyslogBodies([]byte(tc.in))
		if len(got) != 1 || string(got[0]) != tc.want {
			t.Errorf("SyslogBodies(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := SyslogBodies([]byte("\n")); got != nil {
		t.Errorf("empty message: %q", got)
	}
}

// frame builds an Ethernet frame (optionally 802.1Q-tagged).
func frame(t *testing.T, vlan bool, src, dst string, proto layers.IPProtocol, sport, dport uint16, frag bool) []byte {
	t.Helper()
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	var ls []gopacket.SerializableLayer
	et := layers.EthernetTypeIPv4
	if s.Is6() {
		et = layers.EthernetTypeIPv6
	}
	if vlan {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, eth, &layers.Dot1Q{VLANIdentifier: 7, Type: et})
	} else {
		eth.EthernetType = et
		ls = append(ls, eth)
	}
	var nl gopacket.NetworkLayer
	if s.Is4() {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
		if frag {
			ip.FragOffset = 100
		}
		nl = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
		nl = ip
		ls = append(ls, ip)
	}
	switch proto {
	case layers.IPProtocolUDP:
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		u.SetNetworkLayerForChecksum(nl)
		ls = append(ls, u)
	case layers.IPProtocolTCP:
		tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Window: 1000}
		tc.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tc)
	}
	ls = append(ls, gopacket.Payload("payload"))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestFilterProgram runs the assembled filter in x/net/bpf's VM: SIP,
// TLS, ACDR and HEP of the SBC pass, RTP and other hosts are dropped,
// with and without a VLAN tag, over IPv4 and IPv6.
func TestFilterProgram(t *testing.T) {
	f := Filter{Hosts: []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")}, Ports: DefaultPorts}
	prog, err := f.Program()
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	udp, tcp := layers.IPProtocolUDP, layers.IPProtocolTCP
	for _, vlan := range []bool{false, true} {
		for _, tc := range []struct {
			name       string
			src, dst   string
			proto      layers.IPProtocol
			sport, dpt uint16
			frag       bool
			keep       bool
		}{
			{"sip udp to sbc", "52.114.75.24", "192.0.2.10", udp, 5060, 5060, false, true},
			{"tls from sbc", "192.0.2.10", "52.114.75.24", tcp, 40000, 5061, false, true},
			{"acdr to collector", "192.0.2.10", "198.51.100.5", udp, 50000, 925, false, true},
			{"hep", "192.0.2.10", "198.51.100.5", udp, 50000, 9060, false, true},
			{"rtp of the sbc", "192.0.2.10", "52.114.75.24", udp, 20000, 50000, false, false},
			{"sip of another host", "198.51.100.7", "52.114.75.24", udp, 5060, 5060, false, false},
			{"later fragment of the sbc", "52.114.75.24", "192.0.2.10", udp, 0, 0, true, true},
			{"sip over ipv6", "2603:1063::1", "2001:db8::10", tcp, 40000, 5061, false, true},
			{"rtp over ipv6", "2001:db8::10", "2603:1063::1", udp, 20000, 30000, false, false},
			{"ipv6 other host", "2001:db8::11", "2603:1063::1", tcp, 40000, 5061, false, false},
		} {
			b := frame(t, vlan, tc.src, tc.dst, tc.proto, tc.sport, tc.dpt, tc.frag)
			n, err := vm.Run(b)
			if err != nil {
				t.Fatal(err)
			}
			if (n > 0) != tc.keep {
				t.Errorf("vlan=%v %s: kept=%v, want %v", vlan, tc.name, n > 0, tc.keep)
			}
		}
	}
	// KeepUDP keeps the RTP of the SBC; no hosts keeps every host.
	f.KeepUDP = true
	prog, _ = f.Program()
	vm, _ = bpf.NewVM(prog)
	if n, _ := vm.Run(frame(t, false, "192.0.2.10", "52.114.75.24", udp, 20000, 50000, false)); n == 0 {
		t.Error("keep_rtp: RTP dropped")
	}
	prog, _ = Filter{}.Program()
	vm, _ = bpf.NewVM(prog)
	if n, _ := vm.Run(frame(t, false, "198.51.100.7", "52.114.75.24", udp, 5060, 5060, false)); n == 0 {
		t.Error("no hosts: SIP of any host should pass")
	}
	if _, err := (Filter{Hosts: f.Hosts}).Assemble(); err != nil {
		t.Fatal(err)
	}
	_ = fmt.Sprint()
}
