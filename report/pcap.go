package report

import (
	"fmt"
	"io"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// WritePcap writes packets, in the order given, as a capture Wireshark and
// tshark read: classic pcap with nanosecond timestamps when they share one
// link type, pcapng with one interface per link type when they do not.
// It returns the file format written ("pcap" or "pcapng").
func WritePcap(w io.Writer, packets []Packet) (string, error) {
	linkTypes := map[int]int{} // link type -> interface index
	var order []int
	for _, p := range packets {
		if _, ok := linkTypes[p.LinkType]; !ok {
			linkTypes[p.LinkType] = len(order)
			order = append(order, p.LinkType)
		}
	}
	if len(order) <= 1 {
		lt := layers.LinkTypeEthernet
		if len(order) == 1 {
			lt = layers.LinkType(order[0])
		}
		pw := pcapgo.NewWriterNanos(w)
		if err := pw.WriteFileHeader(snapLen, lt); err != nil {
			return "", fmt.Errorf("pcap: %w", err)
		}
		for _, p := range packets {
			if err := pw.WritePacket(captureInfo(p, 0), p.Data); err != nil {
				return "", fmt.Errorf("pcap: %w", err)
			}
		}
		return "pcap", nil
	}
	ng, err := pcapgo.NewNgWriterInterface(w, ngInterface(order[0]), pcapgo.DefaultNgWriterOptions)
	if err != nil {
		return "", fmt.Errorf("pcapng: %w", err)
	}
	for _, lt := range order[1:] {
		if _, err := ng.AddInterface(ngInterface(lt)); err != nil {
			return "", fmt.Errorf("pcapng: %w", err)
		}
	}
	for _, p := range packets {
		if err := ng.WritePacket(captureInfo(p, linkTypes[p.LinkType]), p.Data); err != nil {
			return "", fmt.Errorf("pcapng: %w", err)
		}
	}
	if err := ng.Flush(); err != nil {
		return "", fmt.Errorf("pcapng: %w", err)
	}
	return "pcapng", nil
}

// snapLen is the snapshot length written in headers; kept frames are
// never longer than what the capture held.
const snapLen = 262144

func ngInterface(lt int) pcapgo.NgInterface {
	return pcapgo.NgInterface{Name: fmt.Sprintf("sbcwatch-%d", lt), LinkType: layers.LinkType(lt),
		SnapLength: snapLen, TimestampResolution: 9}
}

func captureInfo(p Packet, iface int) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: len(p.Data),
		InterfaceIndex: iface}
}
