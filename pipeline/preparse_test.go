package pipeline

import (
	"net"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/sbcwatch/sbcwatch/tap"
)

func sipPayload(callID string) []byte {
	return []byte("INVITE sip:+4969987654@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK" + callID +
		"\r\nFrom: <sip:+493012345@198.51.100.7>;tag=a\r\nTo: <sip:+4969987654@192.0.2.10>\r\nCall-ID: " + callID +
		"\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
}

// frame serializes link/IP/UDP around payload.
func frame(t *testing.T, lt layers.LinkType, v6, vlan bool, frag bool, sport, dport uint16, payload []byte) tap.Packet {
	t.Helper()
	var ls []gopacket.SerializableLayer
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	var ipl gopacket.NetworkLayer
	et := layers.EthernetTypeIPv4
	if v6 {
		et = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
			SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
		ipl = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: net.IPv4(198, 51, 100, 7), DstIP: net.IPv4(192, 0, 2, 10)}
		if frag {
			ip.Flags = layers.IPv4MoreFragments
		}
		ipl = ip
		ls = append(ls, ip)
	}
	if err := udp.SetNetworkLayerForChecksum(ipl); err != nil {
		t.Fatal(err)
	}
	ls = append(ls, udp, gopacket.Payload(payload))
	switch lt {
	case layers.LinkTypeEthernet:
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: et}
		if vlan {
			eth.EthernetType = layers.EthernetTypeDot1Q
			ls = append([]gopacket.SerializableLayer{eth, &layers.Dot1Q{VLANIdentifier: 7, Type: et}}, ls...)
		} else {
			ls = append([]gopacket.SerializableLayer{eth}, ls...)
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	if lt == layers.LinkTypeLinuxSLL {
		// pkttype(2) hatype(2) halen(2) addr(8) protocol(2)
		sll := []byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, byte(et >> 8), byte(et)}
		data = append(sll, data...)
	}
	return tap.Packet{Data: data, LinkType: lt, Frame: 1,
		Info: gopacket.CaptureInfo{Timestamp: time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC), CaptureLength: len(data), Length: len(data)}}
}

// run feeds pkts to a fresh engine, pre-parsed with pres (nil: none),
// and returns the Call-IDs seen and the stats.
func runPre(t *testing.T, pkts []tap.Packet, pres []*Preparsed) ([]string, Stats) {
	t.Helper()
	sink := &collect{}
	e, err := New(Options{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pkts {
		var pre *Preparsed
		if pres != nil {
			pre = pres[i]
		}
		e.PacketPreparsed(p, pre)
	}
	st, _ := e.Close()
	var ids []string
	for _, c := range sink.calls {
		ids = append(ids, c.CallID)
	}
	return ids, st
}

// TestPreparseTakenOnlyForTheSameBytes: the pre-parse of plain UDP
// frames is used by the engine, others are not pre-parsed, and a
// pre-parse handed with the wrong frame is ignored.
func TestPreparseTakenOnlyForTheSameBytes(t *testing.T) {
	e, err := New(Options{Sink: &collect{}})
	if err != nil {
		t.Fatal(err)
	}
	pp := e.Preparser()
	cases := []struct {
		name string
		pkt  tap.Packet
		want bool // pre-parsed and taken
	}{
		{"ethernet-ipv4", frame(t, layers.LinkTypeEthernet, false, false, false, 5060, 5060, sipPayload("a")), true},
		{"vlan-ipv6", frame(t, layers.LinkTypeEthernet, true, true, false, 5060, 5061, sipPayload("b")), true},
		{"sll", frame(t, layers.LinkTypeLinuxSLL, false, false, false, 5060, 5060, sipPayload("c")), true},
		{"raw", frame(t, layers.LinkTypeRaw, false, false, false, 5060, 5060, sipPayload("d")), true},
		{"fragment", frame(t, layers.LinkTypeEthernet, false, false, true, 5060, 5060, sipPayload("e")), false},
		{"acdr-port", frame(t, layers.LinkTypeEthernet, false, false, false, 925, 5060, sipPayload("f")), false},
		{"not-sip", frame(t, layers.LinkTypeEthernet, false, false, false, 5060, 5060, []byte("hello world, not SIP")), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var pre Preparsed
			pp.Parse(c.pkt, &pre)
			if pre.ok != c.want {
				t.Fatalf("pre-parsed = %v, want %v", pre.ok, c.want)
			}
			idsSeq, stSeq := runPre(t, []tap.Packet{c.pkt}, nil)
			ids, st := runPre(t, []tap.Packet{c.pkt}, []*Preparsed{&pre})
			if want := map[bool]uint64{true: 1}[c.want]; st.Preparsed != want {
				t.Fatalf("engine took %d pre-parsed messages, want %d", st.Preparsed, want)
			}
			st.Preparsed = 0
			if st != stSeq || len(ids) != len(idsSeq) || (len(ids) > 0 && ids[0] != idsSeq[0]) {
				t.Fatalf("result differs: %v %+v, without pre-parse %v %+v", ids, st, idsSeq, stSeq)
			}
		})
	}
	t.Run("wrong-frame", func(t *testing.T) {
		a := frame(t, layers.LinkTypeEthernet, false, false, false, 5060, 5060, sipPayload("a@x"))
		b := frame(t, layers.LinkTypeEthernet, false, false, false, 5060, 5060, sipPayload("b@x"))
		var pa Preparsed
		pp.Parse(a, &pa)
		ids, st := runPre(t, []tap.Packet{b}, []*Preparsed{&pa})
		if st.Preparsed != 0 || len(ids) != 1 || ids[0] != "b@x" {
			t.Fatalf("a pre-parse of another frame was used: %v, %d taken", ids, st.Preparsed)
		}
		// Same bytes, another frame number: the meta differs.
		b2 := a
		b2.Frame = 2
		if _, st := runPre(t, []tap.Packet{b2}, []*Preparsed{&pa}); st.Preparsed != 0 {
			t.Fatal("a pre-parse with another meta was used")
		}
	})
}

// TestPreparseKeepsTheFrame: a pre-parsed message keeps its datagram
// inside the frame it came from (no copy), unless the frame is much
// bigger than the datagram; the message is the same either way.
func TestPreparseKeepsTheFrame(t *testing.T) {
	e, err := New(Options{Sink: &collect{}})
	if err != nil {
		t.Fatal(err)
	}
	pp := e.Preparser()
	inside := func(raw, frame []byte) bool {
		r, f := uintptr(unsafe.Pointer(unsafe.SliceData(raw))), uintptr(unsafe.Pointer(unsafe.SliceData(frame)))
		return len(raw) > 0 && r >= f && r < f+uintptr(len(frame))
	}
	pkt := frame(t, layers.LinkTypeEthernet, false, false, false, 5060, 5060, sipPayload("keep-1"))
	var pre Preparsed
	pp.Parse(pkt, &pre)
	if !pre.ok || pre.err != nil || pre.msg == nil {
		t.Fatalf("not pre-parsed: %+v", pre)
	}
	if !inside(pre.msg.Raw, pkt.Data) {
		t.Error("the message copied a frame it could keep")
	}
	ref, err := e.parser.ParseDatagram(pre.meta, pre.payload)
	if err != nil || !reflect.DeepEqual(ref, pre.msg) {
		t.Fatalf("kept-frame parse differs from ParseDatagram (%v)", err)
	}

	// The same frame in a buffer with a lot of room after it.
	big := make([]byte, len(pkt.Data), len(pkt.Data)+64<<10)
	copy(big, pkt.Data)
	pkt.Data = big
	pp.Parse(pkt, &pre)
	if !pre.ok || pre.msg == nil {
		t.Fatalf("not pre-parsed: %+v", pre)
	}
	if inside(pre.msg.Raw, big[:cap(big)]) {
		t.Error("a message pins a frame buffer 64 KiB bigger than its datagram")
	}
	if !reflect.DeepEqual(ref.CallID, pre.msg.CallID) || string(ref.Raw) != string(pre.msg.Raw) {
		t.Error("copied parse differs")
	}
}
