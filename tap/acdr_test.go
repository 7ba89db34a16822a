package tap

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/sbcwatch/sbcwatch/audiocodes/acdr"
)

var (
	sbcExporter = netip.MustParseAddrPort("10.0.0.1:40000")
	msProxy     = netip.MustParseAddrPort("52.114.132.46:5061")
	sbcSide     = netip.MustParseAddrPort("192.0.2.10:5061")
	referMsg    = []byte("REFER sip:192.0.2.10:5061;transport=tls SIP/2.0\r\nRefer-To: <sip:+1555@sip.pstnhub.microsoft.com>\r\n\r\n")
)

func acdrPacket(t testing.TB, p *acdr.Packet) []byte {
	t.Helper()
	b, err := acdr.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tcp4(t testing.TB, s, d netip.AddrPort, payload []byte) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: s.Addr().AsSlice(), DstIP: d.Addr().AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.Port()), DstPort: layers.TCPPort(d.Port()), Seq: 1, ACK: true, PSH: true}
	tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, tcp, gopacket.Payload(payload))
}

func TestACDR(t *testing.T) {
	sysExt := acdr.SystemExt{Src: msProxy, Dst: sbcSide, IPProtocol: 6, Outgoing: false}.Bytes()
	outExt := acdr.SystemExt{Src: sbcSide, Dst: msProxy, IPProtocol: 17, Outgoing: true}.Bytes()
	tlsExt := acdr.TLSExt{Src: msProxy, Dst: sbcSide, Application: acdr.TLSAppSIP}.Bytes()
	tlsTCPExt := acdr.TLSExt{Src: sbcSide, Dst: msProxy, Application: acdr.TLSAppTCP}.Bytes()
	type want struct {
		src, dst           netip.AddrPort
		tr                 Transport
		outgoing, incoming bool
	}
	cases := []struct {
		name string
		p    *acdr.Packet
		want *want // nil: skipped
	}{
		{"v5 SIP system raw incoming", &acdr.Packet{Version: 5, Trace: acdr.TraceSystem, Media: acdr.MediaSIP, Ext: sysExt, Payload: referMsg},
			&want{msProxy, sbcSide, TCP, false, true}},
		{"v9 SIP system raw outgoing", &acdr.Packet{Version: 9, Trace: acdr.TraceSystem, Media: acdr.MediaSIP, Ext: outExt, Payload: referMsg, SessionID: 77},
			&want{sbcSide, msProxy, UDP, true, false}},
		{"v7 SIP header added udp", &acdr.Packet{Version: 7, Extra: acdr.FlagHeaderAdded, Trace: acdr.TraceSystem, Media: acdr.MediaSIP, Ext: outExt, Payload: ip4udp(t, sbcSide, msProxy, referMsg)},
			&want{sbcSide, msProxy, UDP, true, false}},
		{"v8 SIP header added tcp", &acdr.Packet{Version: 8, Extra: acdr.FlagHeaderAdded, Trace: acdr.TraceSystem, Media: acdr.MediaSIP, Ext: sysExt, Payload: tcp4(t, msProxy, sbcSide, referMsg)},
			&want{msProxy, sbcSide, TCP, false, true}},
		{"v6 SIP header added ipv6 net2host", &acdr.Packet{Version: 6, Extra: acdr.FlagHeaderAdded | acdr.FlagIPv6, Trace: acdr.TraceNet2Host, Media: acdr.MediaSIP, Payload: ip6udp(t, in6Src, in6Dst, referMsg)},
			&want{in6Src, in6Dst, UDP, false, true}},
		{"v3 SIP host2net no extension", &acdr.Packet{Version: 3, Extra: acdr.LegacyNoFlags, Trace: acdr.TraceHost2Net, Media: acdr.MediaSIP, Payload: referMsg},
			&want{netip.AddrPort{}, netip.AddrPort{}, UDP, true, false}},
		{"v9 TLS app SIP", &acdr.Packet{Version: 9, Trace: acdr.TraceNet2Host, Media: acdr.MediaTLS, Ext: tlsExt, Payload: referMsg},
			&want{msProxy, sbcSide, TLS, false, true}},
		{"v9 TLSPeek app TCP port 5061", &acdr.Packet{Version: 9, Trace: acdr.TraceHost2Net, Media: acdr.MediaTLSPeek, Ext: tlsTCPExt, Payload: referMsg},
			&want{sbcSide, msProxy, TLS, true, false}},
		{"v9 TLS trace point System: direction unknown", &acdr.Packet{Version: 9, Trace: acdr.TraceSystem, Media: acdr.MediaTLS, Ext: tlsExt, Payload: referMsg},
			&want{msProxy, sbcSide, TLS, false, false}},
		{"v9 TLS header added", &acdr.Packet{Version: 9, Extra: acdr.FlagHeaderAdded, Trace: acdr.TraceNet2Host, Media: acdr.MediaTLS, Ext: tlsExt, Payload: tcp4(t, msProxy, sbcSide, referMsg)},
			&want{msProxy, sbcSide, TLS, false, true}},
		{"TLS app HTTP skipped", &acdr.Packet{Version: 9, Media: acdr.MediaTLS, Ext: acdr.TLSExt{Src: sbcSide, Dst: msProxy, Application: acdr.TLSAppHTTP}.Bytes(), Payload: []byte("GET / HTTP/1.1\r\n")}, nil},
		{"RTP skipped", &acdr.Packet{Version: 9, Trace: acdr.TraceNet2Dsp, Media: acdr.MediaRTP, Payload: []byte{0x80, 0, 0, 1}}, nil},
	}
	for _, c := range cases {
		for _, overTCP := range []bool{false, true} {
			name := c.name
			if overTCP {
				name += " over tcp"
			}
			t.Run(name, func(t *testing.T) {
				payload := acdrPacket(t, c.p)
				var frame []byte
				if overTCP {
					frame = tcp4(t, sbcExporter, netip.MustParseAddrPort("10.0.0.2:925"), payload)
				} else {
					frame = udpOuter(t, 925, payload)
				}
				ts := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
				r := &rec{}
				d := NewDecoder(r, Options{})
				d.Decode(Packet{Data: frame, LinkType: layers.LinkTypeRaw, Frame: 5, Info: gopacket.CaptureInfo{Timestamp: ts}})
				d.Close()
				st := d.Stats()
				if st.ACDRPackets != 1 || st.Malformed != 0 {
					t.Fatalf("stats %+v", st)
				}
				if len(r.streams) != 0 {
					t.Fatal("ACDR over TCP went to the stream reassembler")
				}
				if c.want == nil {
					if len(r.datagrams) != 0 || st.ACDRSkipped != 1 {
						t.Fatalf("not skipped: %d datagrams, %d skipped", len(r.datagrams), st.ACDRSkipped)
					}
					return
				}
				if len(r.datagrams) != 1 {
					t.Fatalf("%d datagrams", len(r.datagrams))
				}
				m, p := r.datagrams[0].m, r.datagrams[0].p
				w := c.want
				got := want{m.Src, m.Dst, m.Transport, m.Outgoing, m.Incoming}
				if got != *w || m.Origin != OriginACDR || m.Exporter != sbcExporter || !m.Time.Equal(ts) || m.Frame != 5 {
					t.Fatalf("meta %+v", m)
				}
				if !bytes.Equal(p, referMsg) {
					t.Fatalf("payload %q", p)
				}
			})
		}
	}
}

func TestACDRPortsOption(t *testing.T) {
	p := acdrPacket(t, &acdr.Packet{Version: 5, Trace: acdr.TraceSystem, Media: acdr.MediaSIP, Ext: acdr.SystemExt{Src: msProxy, Dst: sbcSide, IPProtocol: 17}.Bytes(), Payload: referMsg})
	frame := udpOuter(t, 5000, p)
	for _, ports := range [][]uint16{nil, {5000}} {
		r := &rec{}
		d := NewDecoder(r, Options{ACDRPorts: ports})
		d.Decode(Packet{Data: frame, LinkType: layers.LinkTypeRaw, Info: gopacket.CaptureInfo{Timestamp: time.Unix(1, 0)}})
		acdrSeen := d.Stats().ACDRPackets == 1
		if acdrSeen != (ports != nil) || len(r.datagrams) != 1 {
			t.Fatalf("ports %v: acdr %v, %d datagrams", ports, acdrSeen, len(r.datagrams))
		}
	}
	// Garbage on the ACDR port is counted, not delivered.
	r := &rec{}
	d := NewDecoder(r, Options{})
	d.Decode(Packet{Data: udpOuter(t, 925, []byte{0x3f, 1, 2}), LinkType: layers.LinkTypeRaw, Info: gopacket.CaptureInfo{Timestamp: time.Unix(1, 0)}})
	if st := d.Stats(); st.Malformed != 1 || st.ACDRSkipped != 1 || len(r.datagrams) != 0 {
		t.Fatalf("garbage: %+v", st)
	}
}

func TestDecodeCopiesFromSockets(t *testing.T) {
	r := &rec{}
	d := NewDecoder(r, Options{})
	ts := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	p := acdrPacket(t, &acdr.Packet{Version: 9, Trace: acdr.TraceSystem, Media: acdr.MediaSIP, Ext: acdr.SystemExt{Src: msProxy, Dst: sbcSide, IPProtocol: 6}.Bytes(), Payload: referMsg})
	d.DecodeACDR(sbcExporter, p, ts)
	d.DecodeHEP(sbcExporter, encodeHEP(msProxy, sbcSide, 6, ts.Add(-time.Second), 1, referMsg, false), ts)
	d.DecodeHEP(sbcExporter, []byte("not hep"), ts)
	d.DecodeACDR(sbcExporter, []byte{0x77}, ts)
	st := d.Stats()
	if len(r.datagrams) != 2 || st.ACDRPackets != 1 || st.HEPPackets != 1 || st.Malformed != 2 || st.Packets != 0 {
		t.Fatalf("%d datagrams, stats %+v", len(r.datagrams), st)
	}
	a, h := r.datagrams[0].m, r.datagrams[1].m
	if a.Origin != OriginACDR || !a.Time.Equal(ts) || a.Src != msProxy || a.Exporter != sbcExporter || !a.Incoming {
		t.Fatalf("acdr %+v", a)
	}
	if h.Origin != OriginHEP || !h.Time.Equal(ts.Add(-time.Second)) || h.Dst != sbcSide {
		t.Fatalf("hep %+v", h)
	}
}
