package analyze

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/internal/testtool"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/tap"
)

// TestKeepPackets: on the failing-transfer lab capture, the frames kept
// for the blamed call are exactly its SIP messages' frames and the frames
// of the TLS connections on its ladder, byte for byte as captured; written
// as a pcap they read back in tshark, and analysed again they give the
// same verdict on the same call.
func TestKeepPackets(t *testing.T) {
	dir := filepath.Join("..", "testdata", "lab")
	capture := filepath.Join(dir, "transfer_fails_default_cert.pcap")
	cfg, err := config.Load(filepath.Join(dir, "sbcwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Files(context.Background(), []string{capture}, Options{Config: cfg, KeepPackets: &PacketLimits{}})
	if err != nil {
		t.Fatal(err)
	}
	blamed := blamedCall(t, rep)

	// The frames as the capture holds them, and (decoded by gopacket, not
	// by the tap) every TCP 4-tuple's frames; the lab never reuses ports.
	frames := map[uint64][]byte{}
	byTuple := map[string][]uint64{}
	src, err := tap.Open(capture)
	if err != nil {
		t.Fatal(err)
	}
	for {
		p, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		frames[p.Frame] = slices.Clone(p.Data)
		pk := gopacket.NewPacket(p.Data, p.LinkType, gopacket.Default)
		if tcp, ok := pk.Layer(layers.LayerTypeTCP).(*layers.TCP); ok && pk.NetworkLayer() != nil {
			nf := pk.NetworkLayer().NetworkFlow()
			a := net.JoinHostPort(nf.Src().String(), strconv.Itoa(int(tcp.SrcPort)))
			b := net.JoinHostPort(nf.Dst().String(), strconv.Itoa(int(tcp.DstPort)))
			byTuple[a+"->"+b] = append(byTuple[a+"->"+b], p.Frame)
			byTuple[b+"->"+a] = append(byTuple[b+"->"+a], p.Frame)
		}
	}
	src.Close()

	var wantSIP, gotSIP []uint64
	var call *report.Packet
	for _, c := range rep.CallRecords {
		if c.CallID != blamed {
			continue
		}
		for _, m := range c.Messages {
			wantSIP = append(wantSIP, m.Frame)
		}
		related := report.RelatedConns(c, rep.Conns)
		if len(related) < 2 {
			t.Fatalf("blamed call has %d related TLS connections", len(related))
		}
		for _, conn := range related {
			var got []uint64
			for _, p := range rep.Packets {
				if p.ConnID == conn.ID && p.ConnStart.Equal(conn.FirstSeen) {
					got = append(got, p.Frame)
				}
			}
			// A short failed handshake is kept whole, both ways: SYN to
			// the last ACK.
			if want := byTuple[conn.ID]; len(want) < 5 || !slices.Equal(got, want) {
				t.Errorf("connection %s: kept frames %v, the capture has %v", conn.ID, got, want)
			}
		}
	}
	slices.Sort(wantSIP)
	for i, p := range rep.Packets {
		if p.CallID == blamed {
			gotSIP = append(gotSIP, p.Frame)
			call = &rep.Packets[i]
		}
		if want := frames[p.Frame]; string(want) != string(p.Data) {
			t.Fatalf("frame %d: kept bytes differ from the capture's", p.Frame)
		}
		if i > 0 && rep.Packets[i-1].Frame >= p.Frame {
			t.Fatalf("packets not in frame order at %d", i)
		}
	}
	if call == nil || !slices.Equal(gotSIP, wantSIP) {
		t.Fatalf("SIP frames of %s: kept %v, want %v", blamed, gotSIP, wantSIP)
	}

	// The call's evidence as a capture of its own.
	var mine []report.Packet
	relatedIDs := map[string]bool{}
	for _, c := range rep.CallRecords {
		if c.CallID == blamed {
			for _, conn := range report.RelatedConns(c, rep.Conns) {
				relatedIDs[conn.ID] = true
			}
		}
	}
	for _, p := range rep.Packets {
		if p.CallID == blamed || relatedIDs[p.ConnID] {
			mine = append(mine, p)
		}
	}
	out := filepath.Join(t.TempDir(), "evidence.pcap")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	format, err := report.WritePcap(f, mine)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if format != "pcap" {
		t.Errorf("one link type written as %s", format)
	}
	again, err := Files(context.Background(), []string{out}, Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if got := blamedCall(t, again); got != blamed {
		t.Fatalf("re-analysed evidence blames %s, want %s", got, blamed)
	}

	// tshark reads the file and sees every kept frame and the ClientHellos.
	tshark := testtool.Need(t, "tshark")
	b, err := exec.Command(tshark, "-r", out, "-T", "fields", "-e", "frame.number", "-e", "tls.handshake.type").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	hellos := 0
	for _, l := range lines {
		if f := strings.Split(l, "\t"); len(f) == 2 && slices.Contains(strings.Split(f[1], ","), "1") {
			hellos++
		}
	}
	if len(lines) != len(mine) || hellos < len(relatedIDs) {
		t.Fatalf("tshark: %d frames (want %d), %d ClientHellos (want >= %d)", len(lines), len(mine), hellos, len(relatedIDs))
	}
}

// blamedCall returns the Call-ID of the one refer_delivery_failed finding.
func blamedCall(t *testing.T, rep *report.Report) string {
	t.Helper()
	var ids []string
	for _, f := range rep.Findings {
		if f.Rule == finding.ReferDeliveryFailed && f.CallID != "" {
			ids = append(ids, f.CallID)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("refer_delivery_failed on %v, want one call", ids)
	}
	return ids[0]
}

// TestKeepPacketsLimits: the per-connection bound keeps the first frames
// and the last ones, and the byte bound stops collecting.
func TestKeepPacketsLimits(t *testing.T) {
	dir := filepath.Join("..", "testdata", "lab")
	capture := filepath.Join(dir, "transfer_fails_default_cert.pcap")
	cfg, err := config.Load(filepath.Join(dir, "sbcwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	full, err := Files(context.Background(), []string{capture}, Options{Config: cfg, KeepPackets: &PacketLimits{}})
	if err != nil {
		t.Fatal(err)
	}
	small, err := Files(context.Background(), []string{capture}, Options{Config: cfg,
		KeepPackets: &PacketLimits{PerConn: connTail + 1}})
	if err != nil {
		t.Fatal(err)
	}
	perConn := func(r *report.Report) map[string][]uint64 {
		m := map[string][]uint64{}
		for _, p := range r.Packets {
			if p.ConnID != "" {
				k := p.ConnID + p.ConnStart.String()
				m[k] = append(m[k], p.Frame)
			}
		}
		return m
	}
	fullConns, smallConns := perConn(full), perConn(small)
	if len(fullConns) == 0 || len(fullConns) != len(smallConns) {
		t.Fatalf("connections with frames: full %d, limited %d", len(fullConns), len(smallConns))
	}
	for k, all := range fullConns {
		got := smallConns[k]
		want := all
		if len(all) > connTail+1 {
			want = append([]uint64{all[0]}, all[len(all)-connTail:]...)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: limited to %v, want %v (of %v)", k, got, want, all)
		}
	}
	tiny, err := Files(context.Background(), []string{capture}, Options{Config: cfg,
		KeepPackets: &PacketLimits{MaxBytes: 1500}})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, p := range tiny.Packets {
		n += len(p.Data)
	}
	if n > 1500 || len(tiny.Packets) == 0 || len(tiny.Packets) >= len(full.Packets) {
		t.Fatalf("1500-byte bound: %d packets, %d bytes (full: %d packets)", len(tiny.Packets), n, len(full.Packets))
	}
}
