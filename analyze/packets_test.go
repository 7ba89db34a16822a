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

// TestKeepPacketsSameAsBefore: the streaming keeper (frames chosen as
// each call is decided, everything else let go when its window passed)
// keeps exactly the frames the keeper that held every frame to the end
// chose from the whole report (oldkeeper_test.go): on every lab capture,
// every shared capture and a generated capture longer than every window,
// with TLS connections on the calls' ladders.
func TestKeepPacketsSameAsBefore(t *testing.T) {
	lab := filepath.Join("..", "testdata", "lab")
	labCfg, err := config.Load(filepath.Join(lab, "sbcwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type input struct {
		path string
		cfg  *config.Config
	}
	var inputs []input
	caps, _ := filepath.Glob(filepath.Join(lab, "*.pcap"))
	for _, c := range caps {
		inputs = append(inputs, input{c, labCfg})
	}
	for _, c := range allCaptures(t, capturesDir(t)) {
		inputs = append(inputs, input{c, config.Default()})
	}
	// The generated carrier stands in for Microsoft here, so its calls
	// have an SBC side and the generated TLS connections to the SBC are
	// on their ladders.
	busyCfg := config.Default()
	busyCfg.SBCs = []config.SBC{{Name: "gen", Addresses: []string{"192.0.2.10"}}}
	busyCfg.MicrosoftRanges = append(slices.Clone(config.DefaultMicrosoftRanges), "198.51.100.0/24")
	inputs = append(inputs, input{busyCapture(t, "1500", "150"), busyCfg})
	ctx := context.Background()
	total := 0
	for _, in := range inputs {
		t.Run(filepath.Base(in.path), func(t *testing.T) {
			opt := Options{Config: in.cfg, KeepPackets: &PacketLimits{}}
			old, err := oldFiles(ctx, []string{in.path}, opt)
			if err != nil {
				t.Skipf("not a capture sbcwatch reads: %v", err)
			}
			rep, err := Files(ctx, []string{in.path}, opt)
			if err != nil {
				t.Fatal(err)
			}
			key := func(ps []report.Packet) []string {
				var out []string
				for _, p := range ps {
					out = append(out, strconv.FormatUint(p.Frame, 10)+" "+p.Time.UTC().String()+" call="+p.CallID+
						" conn="+p.ConnID+"@"+p.ConnStart.UTC().String()+" "+strconv.Itoa(p.LinkType)+" "+string(p.Data))
				}
				return out
			}
			want, got := key(old.Packets), key(rep.Packets)
			if !slices.Equal(want, got) {
				onlyOld, onlyNew := diffLists(slices.Sorted(slices.Values(want)), slices.Sorted(slices.Values(got)))
				t.Fatalf("kept %d frames, before %d; only before: %d (first %.200q), only now: %d (first %.200q)",
					len(got), len(want), len(onlyOld), first(onlyOld), len(onlyNew), first(onlyNew))
			}
			if rep.Stats.Extra["keep_packets_dropped"] != 0 {
				t.Errorf("dropped %d frames", rep.Stats.Extra["keep_packets_dropped"])
			}
			total += len(got)
			n := 0
			for _, p := range rep.Packets {
				if p.ConnID != "" {
					n++
				}
			}
			if filepath.Base(in.path) == "busy.pcap" {
				// Longer than every window: connections claimed and let
				// go mid-stream, not at the end.
				t.Logf("busy: %d frames, %d of TLS connections", len(got), n)
				if n == 0 {
					t.Error("no TLS connection frames kept on the generated capture: the test proves nothing about them")
				}
			}
		})
	}
	t.Logf("%d frames compared", total)
	if total < 500 {
		t.Errorf("only %d frames compared", total)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
