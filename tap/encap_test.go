package tap

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	in4Src = netip.MustParseAddrPort("52.114.132.46:5061")
	in4Dst = netip.MustParseAddrPort("192.0.2.10:5060")
	in6Src = netip.MustParseAddrPort("[2001:db8::1]:5062")
	in6Dst = netip.MustParseAddrPort("[2001:db8::2]:5063")
	outer4 = [2]net.IP{net.IPv4(10, 0, 0, 1).To4(), net.IPv4(10, 0, 0, 2).To4()}
	outer6 = [2]net.IP{net.ParseIP("fd00::1"), net.ParseIP("fd00::2")}
	sipMsg = []byte("OPTIONS sip:ping@192.0.2.10 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// ip4udp builds IPv4+UDP from s to d carrying payload.
func ip4udp(t testing.TB, s, d netip.AddrPort, payload []byte) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: s.Addr().AsSlice(), DstIP: d.Addr().AsSlice(), Id: 7}
	udp := &layers.UDP{SrcPort: layers.UDPPort(s.Port()), DstPort: layers.UDPPort(d.Port())}
	udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, udp, gopacket.Payload(payload))
}

func ip6udp(t testing.TB, s, d netip.AddrPort, payload []byte) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: s.Addr().AsSlice(), DstIP: d.Addr().AsSlice()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(s.Port()), DstPort: layers.UDPPort(d.Port())}
	udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, udp, gopacket.Payload(payload))
}

// ip4 wraps payload in an IPv4 header of protocol p.
func ip4(t testing.TB, p layers.IPProtocol, payload []byte) []byte {
	return serialize(t, &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: p, SrcIP: outer4[0], DstIP: outer4[1]}, gopacket.Payload(payload))
}

func ip6(t testing.TB, p layers.IPProtocol, payload []byte) []byte {
	return serialize(t, &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: p, SrcIP: outer6[0], DstIP: outer6[1]}, gopacket.Payload(payload))
}

func eth(etype uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b[0:6], []byte{0, 1, 2, 3, 4, 5})
	copy(b[6:12], []byte{0, 1, 2, 3, 4, 6})
	binary.BigEndian.PutUint16(b[12:], etype)
	return append(b, payload...)
}

func vlan(id uint16, inner uint16, payload []byte) []byte {
	b := make([]byte, 4, 4+len(payload))
	binary.BigEndian.PutUint16(b, id)
	binary.BigEndian.PutUint16(b[2:], inner)
	return append(b, payload...)
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// udpOuter wraps payload in outer IPv4/UDP to dport.
func udpOuter(t testing.TB, dport uint16, payload []byte) []byte {
	return ip4udp(t, netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), 40000), netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), dport), payload)
}

func TestEncapsulations(t *testing.T) {
	in4 := ip4udp(t, in4Src, in4Dst, sipMsg)
	in6 := ip6udp(t, in6Src, in6Dst, sipMsg)
	ethIn4 := eth(0x0800, in4)
	gre := func(flags, proto uint16, extra []byte, payload []byte) []byte {
		return cat(be16(flags), be16(proto), extra, payload)
	}
	erspan2 := cat(be32(0x1000_0001), be32(0x0000_0000)) // ver 1, session 1
	erspan3 := func(o bool, ft uint8) []byte {
		h := cat(be32(0x2000_0001), be32(0x1234_5678), be16(0))
		last := uint16(ft&0x1f) << 10
		if o {
			last |= 1
		}
		h = append(h, be16(last)...)
		if o {
			h = append(h, make([]byte, 8)...)
		}
		return h
	}
	sll := cat(be16(0), be16(1), be16(6), make([]byte, 8), be16(0x0800))
	sll2 := cat(be16(0x86dd), be16(0), be32(2), be16(1), []byte{0, 6}, make([]byte, 8))
	vx := cat([]byte{0x08, 0, 0, 0}, be32(42<<8))
	mpls := cat(be32(100<<12), be32(200<<12|1<<8|64))
	pppoe := cat([]byte{0x11, 0}, be16(1), be16(uint16(len(in4)+2)), be16(0x0021))
	hopByHop := cat([]byte{byte(layers.IPProtocolIPv6Destination), 0}, []byte{1, 4, 0, 0, 0, 0})
	destOpts := cat([]byte{byte(layers.IPProtocolUDP), 0}, []byte{1, 4, 0, 0, 0, 0})
	in6ext := func() []byte {
		b := append([]byte(nil), in6...)
		b[6] = 0 // hop-by-hop first
		hdr, rest := b[:40], b[40:]
		out := cat(hdr, hopByHop, destOpts, rest)
		binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
		return out
	}()

	cases := []struct {
		name   string
		lt     layers.LinkType
		frame  []byte
		v6     bool
		tunnel bool
	}{
		{"ethernet", layers.LinkTypeEthernet, ethIn4, false, false},
		{"ethernet ipv6", layers.LinkTypeEthernet, eth(0x86dd, in6), true, false},
		{"ipv6 extension headers", layers.LinkTypeEthernet, eth(0x86dd, in6ext), true, false},
		{"802.1Q", layers.LinkTypeEthernet, eth(0x8100, vlan(100, 0x0800, in4)), false, false},
		{"QinQ 88a8", layers.LinkTypeEthernet, eth(0x88a8, vlan(200, 0x8100, vlan(100, 0x0800, in4))), false, false},
		{"QinQ 9100", layers.LinkTypeEthernet, eth(0x9100, vlan(200, 0x8100, vlan(100, 0x86dd, in6))), true, false},
		{"MPLS", layers.LinkTypeEthernet, eth(0x8847, cat(mpls, in4)), false, false},
		{"PPPoE session", layers.LinkTypeEthernet, eth(0x8864, cat(pppoe, in4)), false, false},
		{"PPP", layers.LinkTypePPP, cat([]byte{0xff, 0x03}, be16(0x0057), in6), true, false},
		{"Linux SLL", layers.LinkTypeLinuxSLL, cat(sll, in4), false, false},
		{"Linux SLL2", layers.LinkTypeLinuxSLL2, cat(sll2, in6), true, false},
		{"raw 101", layers.LinkTypeRaw, in4, false, false},
		{"raw 101 ipv6", layers.LinkTypeRaw, in6, true, false},
		{"raw DLT 12", 12, in4, false, false},
		{"raw DLT 14", 14, in6, true, false},
		{"ipv4 228", layers.LinkTypeIPv4, in4, false, false},
		{"ipv6 229", layers.LinkTypeIPv6, in6, true, false},
		{"null little-endian", layers.LinkTypeNull, cat([]byte{2, 0, 0, 0}, in4), false, false},
		{"null big-endian", layers.LinkTypeNull, cat([]byte{0, 0, 0, 2}, in4), false, false},
		{"null ipv6 (30)", layers.LinkTypeNull, cat([]byte{30, 0, 0, 0}, in6), true, false},
		{"loop", layers.LinkTypeLoop, cat([]byte{0, 0, 0, 24}, in6), true, false},
		{"4in4", layers.LinkTypeEthernet, eth(0x0800, ip4(t, layers.IPProtocolIPv4, in4)), false, true},
		{"6in4", layers.LinkTypeEthernet, eth(0x0800, ip4(t, layers.IPProtocolIPv6, in6)), true, true},
		{"4in6", layers.LinkTypeEthernet, eth(0x86dd, ip6(t, layers.IPProtocolIPv4, in4)), false, true},
		{"GRE ipv4", layers.LinkTypeEthernet, eth(0x0800, ip4(t, layers.IPProtocolGRE, gre(0, 0x0800, nil, in4))), false, true},
		{"GRE key+seq+csum ipv6", layers.LinkTypeEthernet, eth(0x0800, ip4(t, layers.IPProtocolGRE, gre(0xb000, 0x86dd, make([]byte, 12), in6))), true, true},
		{"GRE TEB", layers.LinkTypeEthernet, eth(0x0800, ip4(t, layers.IPProtocolGRE, gre(0, 0x6558, nil, eth(0x8100, vlan(5, 0x0800, in4))))), false, true},
		{"ERSPAN I", layers.LinkTypeEthernet, eth(0x0800, ip4(t, layers.IPProtocolGRE, gre(0, 0x88be, nil, ethIn4))), false, true},
		{"ERSPAN II", layers.LinkTypeEthernet, eth(0x0800, ip4(t, layers.IPProtocolGRE, gre(0x1000, 0x88be, be32(9), cat(erspan2, ethIn4)))), false, true},
		{"ERSPAN III", layers.LinkTypeEthernet, eth(0x0800, ip4(t, layers.IPProtocolGRE, gre(0x1000, 0x22eb, be32(9), cat(erspan3(false, 0), ethIn4)))), false, true},
		{"ERSPAN III platform subheader", layers.LinkTypeEthernet, eth(0x0800, ip4(t, layers.IPProtocolGRE, gre(0x1000, 0x22eb, be32(9), cat(erspan3(true, 0), ethIn4)))), false, true},
		{"ERSPAN III over IPv6", layers.LinkTypeEthernet, eth(0x86dd, ip6(t, layers.IPProtocolGRE, gre(0x1000, 0x22eb, be32(9), cat(erspan3(true, 0), eth(0x86dd, in6))))), true, true},
		{"VXLAN 4789", layers.LinkTypeEthernet, eth(0x0800, udpOuter(t, 4789, cat(vx, ethIn4))), false, true},
		{"Geneve with options", layers.LinkTypeEthernet, eth(0x0800, udpOuter(t, 6081, cat([]byte{0x02, 0}, be16(0x6558), be32(7<<8), make([]byte, 8), ethIn4))), false, true},
		{"GRE source routes (RFC 1701)", layers.LinkTypeEthernet, eth(0x0800, ip4(t, layers.IPProtocolGRE, gre(0x4000, 0x0800, cat(make([]byte, 4), []byte{0x08, 0x00, 0, 4, 1, 2, 3, 4}, make([]byte, 4)), in4))), false, true},
		{"VXLAN 8472", layers.LinkTypeEthernet, eth(0x0800, udpOuter(t, 8472, cat(vx, eth(0x86dd, in6)))), true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &rec{}
			d := NewDecoder(r, Options{})
			ts := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
			d.Decode(Packet{Data: c.frame, LinkType: c.lt, Frame: 1, Info: gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(c.frame), Length: len(c.frame)}})
			d.Close()
			st := d.Stats()
			if st.Malformed != 0 || st.UnknownLink != 0 {
				t.Fatalf("malformed %d unknown %d", st.Malformed, st.UnknownLink)
			}
			var got *recDatagram
			for i := range r.datagrams {
				if bytes.Equal(r.datagrams[i].p, sipMsg) {
					got = &r.datagrams[i]
				}
			}
			if got == nil {
				t.Fatalf("payload not delivered; got %d datagrams", len(r.datagrams))
			}
			ws, wd := in4Src, in4Dst
			if c.v6 {
				ws, wd = in6Src, in6Dst
			}
			m := got.m
			if m.Src != ws || m.Dst != wd || m.Transport != UDP || m.Origin != OriginWire || m.Frame != 1 || !m.Time.Equal(ts) {
				t.Fatalf("meta %+v", m)
			}
			if (st.Tunnels == 1) != c.tunnel {
				t.Fatalf("tunnels = %d, want tunnel=%v", st.Tunnels, c.tunnel)
			}
		})
	}
}

// fragments4 splits an IPv4 datagram's payload into fragments of size n.
func fragments4(t testing.TB, whole []byte, n int) [][]byte {
	ihl := int(whole[0]&0x0f) * 4
	payload := whole[ihl:]
	var out [][]byte
	for off := 0; off < len(payload); off += n {
		end := min(off+n, len(payload))
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocol(whole[9]), SrcIP: whole[12:16], DstIP: whole[16:20], Id: 0x4242, FragOffset: uint16(off / 8)}
		if end < len(payload) {
			ip.Flags = layers.IPv4MoreFragments
		}
		out = append(out, serialize(t, ip, gopacket.Payload(payload[off:end])))
	}
	return out
}

func fragments6(t testing.TB, whole []byte, n int) [][]byte {
	next := whole[6]
	payload := whole[40:]
	var out [][]byte
	for off := 0; off < len(payload); off += n {
		end := min(off+n, len(payload))
		fo := uint16(off)
		if end < len(payload) {
			fo |= 1
		}
		fh := cat([]byte{next, 0}, be16(fo), be32(0xabcdef))
		b := cat(whole[:40], fh, payload[off:end])
		b[6] = 44
		binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
		out = append(out, b)
	}
	return out
}

func TestFragmentReassembly(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 400) // 6400 bytes
	for _, v6 := range []bool{false, true} {
		var frags [][]byte
		if v6 {
			frags = fragments6(t, ip6udp(t, in6Src, in6Dst, big), 1448)
		} else {
			frags = fragments4(t, ip4udp(t, in4Src, in4Dst, big), 1480)
		}
		// Out of order, with a duplicate.
		order := []int{2, 0, 4, 1, 1, 3}
		r := &rec{}
		d := NewDecoder(r, Options{})
		ts := time.Unix(1700000000, 0)
		for i, k := range order {
			if k >= len(frags) {
				t.Fatalf("only %d fragments", len(frags))
			}
			d.Decode(Packet{Data: frags[k], LinkType: layers.LinkTypeRaw, Frame: uint64(i + 1), Info: gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Millisecond)}})
		}
		d.Close()
		st := d.Stats()
		if len(r.datagrams) != 1 || !bytes.Equal(r.datagrams[0].p, big) {
			t.Fatalf("v6=%v: %d datagrams", v6, len(r.datagrams))
		}
		if st.Fragments != uint64(len(order)) || st.Reassembled != 1 {
			t.Fatalf("v6=%v: stats %+v", v6, st)
		}
	}
}

func TestFragmentBounds(t *testing.T) {
	r := &rec{}
	d := NewDecoder(r, Options{MaxFragments: 4, FragmentTimeout: time.Second})
	ts := time.Unix(1700000000, 0)
	// 10 datagrams whose last fragment never comes: at most 4 are held.
	for i := range 10 {
		f := fragments4(t, ip4udp(t, in4Src, in4Dst, bytes.Repeat([]byte{byte(i)}, 3000)), 1480)
		f0 := append([]byte(nil), f[0]...)
		binary.BigEndian.PutUint16(f0[4:], uint16(i)) // distinct IDs
		d.Decode(Packet{Data: f0, LinkType: layers.LinkTypeRaw, Info: gopacket.CaptureInfo{Timestamp: ts}})
	}
	if n := len(d.frag.m); n != 4 {
		t.Fatalf("held %d datagrams, want 4", n)
	}
	if st := d.Stats(); st.FragDropped != 6 {
		t.Fatalf("dropped %d, want 6", st.FragDropped)
	}
	// Age: two seconds later every held datagram expires.
	d.Decode(Packet{Data: ip4udp(t, in4Src, in4Dst, []byte("x")), LinkType: layers.LinkTypeRaw, Info: gopacket.CaptureInfo{Timestamp: ts.Add(2 * time.Second)}})
	if n := len(d.frag.m); n != 0 {
		t.Fatalf("held %d datagrams after timeout", n)
	}
	if st := d.Stats(); st.FragDropped != 10 {
		t.Fatalf("dropped %d, want 10", st.FragDropped)
	}
}

func TestIPv6FragCapture(t *testing.T) {
	file := filepath.Join(capturesDir(t), "sngrep", "ipv6frag.pcap")
	r, st := decodeAll(t, Options{}, file)
	if st.Reassembled != 2 {
		t.Fatalf("reassembled %d, want 2", st.Reassembled)
	}
	big := 0
	for _, dg := range r.datagrams {
		if bytes.HasPrefix(dg.p, []byte("INVITE ")) && len(dg.p) > 1500 {
			big++
			if !bytes.Contains(dg.p, []byte("\r\n\r\nv=0")) {
				t.Errorf("INVITE of %d bytes has no SDP", len(dg.p))
			}
		}
	}
	if big == 0 {
		t.Fatalf("no big INVITE out of %d datagrams", len(r.datagrams))
	}
	// tshark agrees on the reassembled lengths.
	out := tshark(t, "-n", "-r", file, "-Y", "sip.Method == \"INVITE\"", "-T", "fields", "-e", "udp.length")
	for _, dg := range r.datagrams {
		if bytes.HasPrefix(dg.p, []byte("INVITE ")) && len(dg.p) > 1500 {
			if !bytes.Contains([]byte(out), []byte(strconv.Itoa(len(dg.p)+8))) {
				t.Errorf("tshark has no INVITE of udp.length %d: %q", len(dg.p)+8, out)
			}
		}
	}
}

// TestRealFragments: kernel-fragmented IPv4 and IPv6 SIP INVITEs.
func TestRealFragments(t *testing.T) {
	r, st := decodeAll(t, Options{}, filepath.Join("testdata", "ipfrag-real.pcap"))
	if st.Fragments != 6 || st.Reassembled != 2 || st.FragDropped != 0 || st.Malformed != 0 {
		t.Fatalf("stats %+v", st)
	}
	var ids []string
	for _, d := range r.datagrams {
		if i := bytes.Index(d.p, []byte("Call-ID: ")); i >= 0 {
			id, _, _ := bytes.Cut(d.p[i+9:], []byte("\r\n"))
			ids = append(ids, string(id))
			if len(d.p) < 3000 || !bytes.HasSuffix(d.p, []byte("z\r\n")) {
				t.Fatalf("%s: %d bytes", id, len(d.p))
			}
		}
	}
	if len(ids) != 2 || ids[0] != "frag-v4@lab" || ids[1] != "frag-v6@lab" {
		t.Fatalf("INVITEs %q", ids)
	}
	if st.OtherIP == 0 {
		t.Fatal("ICMPv6 not counted")
	}
}

// TestNestingBound: twenty IP-in-IP levels exceed the bound; the frame is
// malformed, nothing is delivered; eight levels still decode.
func TestNestingBound(t *testing.T) {
	for _, levels := range []int{8, 20} {
		b := ip4udp(t, in4Src, in4Dst, sipMsg)
		for range levels {
			b = ip4(t, layers.IPProtocolIPv4, b)
		}
		r := &rec{}
		d := NewDecoder(r, Options{})
		d.Decode(Packet{Data: b, LinkType: layers.LinkTypeRaw, Info: gopacket.CaptureInfo{Timestamp: time.Unix(1, 0)}})
		st := d.Stats()
		if levels == 8 && (len(r.datagrams) != 1 || st.Malformed != 0 || st.Tunnels != 1) {
			t.Fatalf("8 levels: %d datagrams, %+v", len(r.datagrams), st)
		}
		if levels == 20 && (len(r.datagrams) != 0 || st.Malformed != 1) {
			t.Fatalf("20 levels: %d datagrams, %+v", len(r.datagrams), st)
		}
	}
}
