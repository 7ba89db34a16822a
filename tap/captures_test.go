package tap

import (
	"encoding/hex"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// tsharkFacts are the per-capture counts tshark gives.
type tsharkFacts struct {
	frames, udp, tcpStreams, sctpData, nonIP int
}

func tsharkFactsOf(t *testing.T, file string) tsharkFacts {
	t.Helper()
	out := tshark(t, "-n", "-r", file, "-T", "fields", "-E", "separator=|",
		"-e", "frame.number", "-e", "udp.srcport", "-e", "icmp.type", "-e", "icmpv6.type",
		"-e", "tcp.stream", "-e", "sctp.chunk_type", "-e", "ip.version", "-e", "ipv6.version")
	var f tsharkFacts
	streams := map[string]bool{}
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		c := strings.Split(line, "|")
		if len(c) < 8 || c[0] == "" {
			continue
		}
		f.frames++
		if c[6] == "" && c[7] == "" {
			f.nonIP++
		}
		if c[1] != "" && c[2] == "" && c[3] == "" {
			f.udp++
		}
		if c[4] != "" {
			streams[c[4]] = true
		}
		for _, ct := range strings.Split(c[5], ",") {
			if ct == "0" {
				f.sctpData++
			}
		}
	}
	f.tcpStreams = len(streams)
	return f
}

// TestCapturesAgainstTshark decodes every shared capture and compares
// the counts tshark can check: frames, UDP datagrams, TCP connections,
// SCTP DATA chunks. No frame may be malformed, every stream must be
// closed exactly once.
func TestCapturesAgainstTshark(t *testing.T) {
	for _, file := range oracleFiles(t) {
		name := fileName(t, file)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r, st := decodeAll(t, Options{}, file)
			want := tsharkFactsOf(t, file)
			if int(st.Packets) != want.frames {
				t.Errorf("frames: got %d, tshark %d", st.Packets, want.frames)
			}
			if int(st.UDPDatagrams) != want.udp {
				t.Errorf("udp datagrams: got %d, tshark %d", st.UDPDatagrams, want.udp)
			}
			if int(st.TCPConns) != want.tcpStreams || len(r.streams) != want.tcpStreams {
				t.Errorf("tcp connections: got %d (%d streams), tshark %d", st.TCPConns, len(r.streams), want.tcpStreams)
			}
			if int(st.SCTPChunks) != want.sctpData {
				t.Errorf("sctp data chunks: got %d, tshark %d", st.SCTPChunks, want.sctpData)
			}
			if int(st.NonIP) != want.nonIP {
				t.Errorf("frames without IP: got %d, tshark %d", st.NonIP, want.nonIP)
			}
			if st.Malformed != 0 || st.UnknownLink != 0 {
				t.Errorf("malformed %d, unknown link %d", st.Malformed, st.UnknownLink)
			}
			for _, s := range r.streams {
				if s.closes != 1 {
					t.Errorf("stream %v->%v closed %d times", s.info.Client, s.info.Server, s.closes)
				}
			}
			if st.First.IsZero() || st.Last.Before(st.First) {
				t.Errorf("first/last %v %v", st.First, st.Last)
			}
		})
	}
}

// TestSCTPCapture: the INVITE of sip_sctp.pcap spans two DATA chunks.
func TestSCTPCapture(t *testing.T) {
	r, _ := decodeAll(t, Options{}, filepath.Join(capturesDir(t), "heplify", "sip_sctp.pcap"))
	var starts []string
	for _, d := range r.datagrams {
		if d.m.Transport != SCTP || d.m.Origin != OriginWire {
			t.Fatalf("meta %+v", d.m)
		}
		line, _, _ := strings.Cut(string(d.p), "\r\n")
		starts = append(starts, line)
	}
	if len(starts) != 4 || !strings.HasPrefix(starts[0], "INVITE ") || !strings.HasPrefix(starts[3], "ACK ") {
		t.Fatalf("messages %q", starts)
	}
	// tshark reassembles the INVITE to the same length.
	out := strings.TrimSpace(tshark(t, "-n", "-r", filepath.Join(capturesDir(t), "heplify", "sip_sctp.pcap"), "-Y", "sip.Method == \"INVITE\"", "-T", "fields", "-e", "sip.Content-Length"))
	inv := string(r.datagrams[0].p)
	_, body, _ := strings.Cut(inv, "\r\n\r\n")
	if out == "" || out != strconv.Itoa(len(body)) {
		t.Fatalf("INVITE body %d bytes, tshark Content-Length %q", len(body), out)
	}
}

// BenchmarkDecodeCapture measures decoding of the largest shared capture.
func BenchmarkDecodeCapture(b *testing.B) {
	file := filepath.Join(capturesDir(b), "heplify", "rtp_rtcp_sip.pcap")
	src, err := Open(file)
	if err != nil {
		b.Fatal(err)
	}
	var pkts []Packet
	var size int64
	for {
		p, err := src.Next()
		if err != nil {
			break
		}
		pkts = append(pkts, p)
		size += int64(len(p.Data))
	}
	src.Close()
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		d := NewDecoder(&rec{}, Options{})
		for _, p := range pkts {
			d.Decode(p)
		}
		d.Close()
	}
}

// TestUDPPayloadsMatchTshark compares every UDP payload delivered from
// the wire (after IP reassembly and tunnels) with tshark's udp.payload,
// frame by frame.
func TestUDPPayloadsMatchTshark(t *testing.T) {
	for _, file := range oracleFiles(t) {
		name := fileName(t, file)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r, st := decodeAll(t, Options{}, file)
			if st.UDPDatagrams == 0 || st.HEPPackets > 0 {
				return
			}
			ours := map[uint64]string{}
			for _, d := range r.datagrams {
				if d.m.Origin == OriginWire && d.m.Transport == UDP {
					ours[d.m.Frame] = hex.EncodeToString(d.p)
				}
			}
			out := tshark(t, "-n", "-r", file, "-T", "fields", "-e", "frame.number", "-e", "udp.payload", "-Y", "udp && !icmp && !icmpv6")
			n := 0
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				num, payload, _ := strings.Cut(line, "\t")
				if i := strings.LastIndexByte(payload, ','); i >= 0 {
					payload = payload[i+1:] // innermost UDP of a tunnel
				}
				payload = strings.ReplaceAll(payload, ":", "")
				f, _ := strconv.ParseUint(num, 10, 64)
				if got, ok := ours[f]; !ok || got != payload {
					t.Errorf("frame %s: payload differs (ours %d hex chars, tshark %d)", num, len(got), len(payload))
					continue
				}
				n++
			}
			if n != len(ours) {
				t.Errorf("%d payloads checked, we delivered %d", n, len(ours))
			}
		})
	}
}
