package analyze

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// writeTCPCapture writes one TCP direction's segments (no handshake) as a
// pcap and returns its path.
func writeTCPCapture(t *testing.T, segments ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mid.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 4, 1, 9, 55, 0, 0, time.UTC)
	seq := uint32(1000)
	for _, seg := range segments {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IPv4(192, 0, 2, 10), DstIP: net.IPv4(198, 51, 100, 7)}
		tcp := &layers.TCP{SrcPort: 5090, DstPort: 33093, Seq: seq, Ack: 1, ACK: true, PSH: true, Window: 65535}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(seg)); err != nil {
			t.Fatal(err)
		}
		ts = ts.Add(10 * time.Millisecond)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}, buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		seq += uint32(len(seg))
	}
	return path
}

func sipMsg(method, callID string) string {
	return method + " sip:bob@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.10:5090;branch=z9hG4bK" + callID + "\r\n" +
		"From: <sip:alice@192.0.2.10>;tag=1\r\nTo: <sip:bob@198.51.100.7>\r\nCall-ID: " + callID + "\r\nCSeq: 1 " + method + "\r\nContent-Length: 0\r\n\r\n"
}

// TestMidStreamSIP: a TCP connection picked up in the middle of a message
// (no SYN; the first bytes are the tail of an INVITE) still yields the
// complete messages that follow.
func TestMidStreamSIP(t *testing.T) {
	tail := "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	pcap := writeTCPCapture(t, tail+sipMsg("INVITE", "mid-1"), sipMsg("OPTIONS", "mid-2"))
	rep, err := Files(context.Background(), []string{pcap}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, c := range rep.Calls {
		got[c.CallID] = c.Messages
	}
	if got["mid-1"] != 1 || got["mid-2"] != 1 || len(got) != 2 {
		t.Fatalf("calls = %v, want mid-1 and mid-2 once each", got)
	}
}
