package analyze

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tap"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// signalSink reports the first finding about a call on found.
type signalSink struct {
	found chan *finding.Finding
}

func (s *signalSink) Call(*sip.Call)         {}
func (s *signalSink) TLSConn(*tlsaudit.Conn) {}
func (s *signalSink) Finding(f *finding.Finding) {
	if f.CallID == "" {
		return
	}
	select {
	case s.found <- f:
	default:
	}
}

// TestSlowStreamDecidesBeforeEnd: a capture arriving slowly on a pipe (a
// few hundred packets, far fewer than the engine's packet batch) gets its
// call's finding as soon as capture time has passed the rule's windows,
// while the pipe is still open: the offline clock advances with capture
// time (every 30 s of it), not only every few thousand packets.
func TestSlowStreamDecidesBeforeEnd(t *testing.T) {
	for _, seq := range []bool{true, false} {
		name := "read-ahead"
		if seq {
			name = "sequential"
		}
		t.Run(name, func(t *testing.T) { testSlowStream(t, seq) })
	}
}

func testSlowStream(t *testing.T, sequential bool) {
	dir := filepath.Join("..", "testdata", "lab")
	cfg, err := config.Load(filepath.Join(dir, "sbcwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "refer_not_followed.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	w := pcapgo.NewWriter(pw)
	write := make(chan error, 1)
	var last time.Time
	go func() {
		// The capture, then one unrelated datagram 10 minutes later: the
		// clock passes the call's windows (156 s); the pipe stays open.
		err := w.WriteFileHeader(65535, rd.LinkType())
		for err == nil {
			var data []byte
			var ci gopacket.CaptureInfo
			data, ci, err = rd.ReadPacketData()
			if errors.Is(err, io.EOF) {
				err = nil
				break
			}
			if err == nil {
				last = ci.Timestamp
				err = w.WritePacket(ci, data)
			}
		}
		if err == nil {
			err = w.WritePacket(fillerPacket(t, last.Add(10*time.Minute)))
		}
		write <- err
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := &signalSink{found: make(chan *finding.Finding, 1)}
	done := make(chan error, 1)
	go func() {
		_, err := Stream(ctx, nil, Options{Config: cfg, Sequential: sequential,
			Streams: []tap.Stream{{Name: "pipe", R: pr}}}, sink)
		done <- err
	}()
	if err := <-write; err != nil {
		t.Fatalf("writing the pipe: %v", err)
	}
	select {
	case f := <-sink.found:
		t.Logf("decided with the pipe open: %s %s", f.Rule, f.CallID)
		if f.Rule != finding.ReferNotFollowed {
			t.Errorf("first call finding %s, want %s", f.Rule, finding.ReferNotFollowed)
		}
	case err := <-done:
		t.Fatalf("analysis ended before the pipe closed: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no finding 20 s after the capture's clock passed the call's windows; the pipe is still open")
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("analysis: %v", err)
	}
}

// fillerPacket is a UDP datagram that is no SIP, dated at.
func fillerPacket(t *testing.T, at time.Time) (gopacket.CaptureInfo, []byte) {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(198, 51, 100, 1), DstIP: net.IPv4(198, 51, 100, 2)}
	udp := &layers.UDP{SrcPort: 9, DstPort: 9}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload("filler")); err != nil {
		t.Fatal(err)
	}
	return gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}, buf.Bytes()
}
