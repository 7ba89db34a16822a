package tap

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	cli = netip.MustParseAddrPort("52.114.132.46:49152")
	srv = netip.MustParseAddrPort("192.0.2.10:5061")
)

type seg struct {
	from          netip.AddrPort
	seq, ack      uint32
	syn, fin, rst bool
	ackf          bool
	data          []byte
}

func tcpFrame(t testing.TB, s seg) []byte {
	to := srv
	if s.from == srv {
		to = cli
	}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: s.from.Addr().AsSlice(), DstIP: to.Addr().AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.from.Port()), DstPort: layers.TCPPort(to.Port()), Seq: s.seq, Ack: s.ack, SYN: s.syn, FIN: s.fin, RST: s.rst, ACK: s.ackf, Window: 65535}
	tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, tcp, gopacket.Payload(s.data))
}

// feeder feeds segments to a decoder with a capture clock 1 ms apart.
type feeder struct {
	t     testing.TB
	d     *Decoder
	clock time.Time
	frame uint64
}

func newFeeder(t testing.TB, h Handler, opt Options) *feeder {
	return &feeder{t: t, d: NewDecoder(h, opt), clock: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}
}

func (f *feeder) feed(ss ...seg) {
	for _, s := range ss {
		f.clock = f.clock.Add(time.Millisecond)
		f.frame++
		b := tcpFrame(f.t, s)
		f.d.Decode(Packet{Data: b, LinkType: layers.LinkTypeRaw, Frame: f.frame, Info: gopacket.CaptureInfo{Timestamp: f.clock, CaptureLength: len(b), Length: len(b)}})
	}
}

// split cuts data (starting at sequence isn) into segments by mode.
func split(rng *rand.Rand, from netip.AddrPort, isn uint32, data []byte, mode string) []seg {
	var out []seg
	for off := 0; off < len(data); {
		n := len(data) - off
		switch mode {
		case "bytes":
			n = 1
		case "random":
			n = min(n, 1+rng.IntN(700))
		case "mss":
			n = min(n, 1460)
		}
		out = append(out, seg{from: from, seq: isn + uint32(off), data: data[off : off+n], ackf: true})
		off += n
	}
	return out
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

func TestTCPReassemblyShuffled(t *testing.T) {
	for _, mode := range []string{"bytes", "random", "mss", "coalesced"} {
		for trial := range 4 {
			t.Run(fmt.Sprintf("%s/%d", mode, trial), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(trial), 7))
				cdata := randomBytes(rng, 3000+rng.IntN(3000))
				sdata := randomBytes(rng, 2000+rng.IntN(3000))
				if mode == "bytes" {
					cdata, sdata = cdata[:600], sdata[:500]
				}
				const ciss, siss = 1000, 4000000000 // the server's wraps
				var body []seg
				body = append(body, split(rng, cli, ciss+1, cdata, mode)...)
				body = append(body, split(rng, srv, siss+1, sdata, mode)...)
				// Duplicates and overlaps carrying the same bytes.
				for range 1 + len(body)/5 {
					s := body[rng.IntN(len(body))]
					body = append(body, s)
					if len(s.data) > 2 {
						o := s
						o.data = s.data[1:]
						o.seq++
						body = append(body, o)
					}
				}
				// An overlap spanning two segments.
				a := rng.IntN(len(cdata) - 100)
				body = append(body, seg{from: cli, seq: ciss + 1 + uint32(a), data: cdata[a : a+100], ackf: true})
				rng.Shuffle(len(body), func(i, j int) { body[i], body[j] = body[j], body[i] })
				cfin := seg{from: cli, seq: ciss + 1 + uint32(len(cdata)), fin: true, ackf: true}
				// The client's FIN lands anywhere in the second half.
				at := len(body)/2 + rng.IntN(len(body)/2+1)
				body = slices.Insert(body, at, cfin)

				r := &rec{}
				f := newFeeder(t, r, Options{})
				f.feed(seg{from: cli, seq: ciss, syn: true}, seg{from: srv, seq: siss, ack: ciss + 1, syn: true, ackf: true}, seg{from: cli, seq: ciss + 1, ackf: true})
				f.feed(body...)
				f.feed(seg{from: srv, seq: siss + 1 + uint32(len(sdata)), fin: true, ackf: true}, seg{from: cli, seq: ciss + 2 + uint32(len(cdata)), ackf: true})
				f.d.Close()

				if len(r.streams) != 1 {
					t.Fatalf("%d streams", len(r.streams))
				}
				s := r.streams[0]
				if s.info.Client != cli || s.info.Server != srv || !s.info.SawSYN || s.info.Frame != 1 {
					t.Fatalf("conn info %+v", s.info)
				}
				if !bytes.Equal(s.data[ClientToServer].Bytes(), cdata) {
					t.Fatalf("client bytes differ: got %d want %d", s.data[ClientToServer].Len(), len(cdata))
				}
				if !bytes.Equal(s.data[ServerToClient].Bytes(), sdata) {
					t.Fatalf("server bytes differ: got %d want %d", s.data[ServerToClient].Len(), len(sdata))
				}
				if s.gaps != [2]int{} {
					t.Fatalf("gaps %v", s.gaps)
				}
				k := s.kinds()
				if len(k) != 4 || k[0] != EventSYN || k[1] != EventSYNACK || !slices.Contains(k, EventFIN) {
					t.Fatalf("events %v", k)
				}
				if s.closes != 1 || s.reason != CloseFIN {
					t.Fatalf("closes %d reason %v", s.closes, s.reason)
				}
				st := f.d.Stats()
				if st.TCPConns != 1 || st.TCPDropped != 0 || st.TCPSegments != f.frame {
					t.Fatalf("stats %+v", st)
				}
			})
		}
	}
}

func TestTCPEventTimes(t *testing.T) {
	r := &rec{}
	f := newFeeder(t, r, Options{})
	f.feed(seg{from: cli, seq: 10, syn: true})
	t0 := f.clock
	f.feed(seg{from: srv, seq: 50, ack: 11, syn: true, ackf: true})
	t1 := f.clock
	f.feed(seg{from: cli, seq: 11, ackf: true, data: []byte("hello")})
	t2 := f.clock
	f.feed(seg{from: srv, seq: 51, ackf: true, rst: true})
	t3 := f.clock
	f.feed(seg{from: cli, seq: 16, ackf: true, data: []byte("late")}) // after the reset: ignored
	f.d.Close()
	s := r.streams[0]
	want := []Event{{EventSYN, ClientToServer, t0}, {EventSYNACK, ServerToClient, t1}, {EventRST, ServerToClient, t3}}
	if !slices.Equal(s.events, want) {
		t.Fatalf("events %v, want %v", s.events, want)
	}
	if s.data[0].String() != "hello" || !s.times[0].Equal(t2) {
		t.Fatalf("data %q at %v", s.data[0].String(), s.times)
	}
	if s.closes != 1 || s.reason != CloseRST || !s.closeAt.Equal(t3) {
		t.Fatalf("close %d %v %v", s.closes, s.reason, s.closeAt)
	}
}

func TestTCPMidStreamAndSynAck(t *testing.T) {
	r := &rec{}
	f := newFeeder(t, r, Options{})
	// Picked up mid-stream: the server speaks first.
	f.feed(seg{from: srv, seq: 700, ackf: true, data: []byte("SIP/2.0 200 OK\r\n")})
	f.feed(seg{from: cli, seq: 90, ackf: true, data: []byte("ACK")})
	// Delivered at once, not when the capture ends.
	if len(r.streams) == 0 || r.streams[0].data[ClientToServer].Len() == 0 || r.streams[0].data[ServerToClient].Len() == 0 {
		t.Fatal("mid-stream bytes held back")
	}
	f.d.Close()
	if len(r.streams) != 1 {
		t.Fatalf("%d streams", len(r.streams))
	}
	s := r.streams[0]
	if s.info.SawSYN || s.info.Client != srv || s.info.Server != cli {
		t.Fatalf("info %+v", s.info)
	}
	if s.data[ClientToServer].String() != "SIP/2.0 200 OK\r\n" || s.data[ServerToClient].String() != "ACK" {
		t.Fatalf("data %q %q", s.data[0].String(), s.data[1].String())
	}
	if s.reason != CloseEnd || s.closes != 1 {
		t.Fatalf("reason %v closes %d", s.reason, s.closes)
	}

	// SYN-ACK first: the roles are known.
	r = &rec{}
	f = newFeeder(t, r, Options{})
	f.feed(seg{from: srv, seq: 5, ack: 1, syn: true, ackf: true}, seg{from: cli, seq: 1, ackf: true, data: []byte("x")})
	f.d.Close()
	s = r.streams[0]
	if s.info.Client != cli || s.info.Server != srv || s.info.SawSYN {
		t.Fatalf("syn-ack first: %+v", s.info)
	}
	if s.data[ClientToServer].String() != "x" || s.events[0] != (Event{EventSYNACK, ServerToClient, s.events[0].Time}) {
		t.Fatalf("syn-ack first: data %q events %v", s.data[0].String(), s.events)
	}
}

func TestTCPReuseAfterClose(t *testing.T) {
	r := &rec{}
	f := newFeeder(t, r, Options{})
	conn := func(isn uint32, msg string) {
		f.feed(seg{from: cli, seq: isn, syn: true},
			seg{from: srv, seq: 9000, ack: isn + 1, syn: true, ackf: true},
			seg{from: cli, seq: isn + 1, ackf: true, data: []byte(msg)},
			seg{from: cli, seq: isn + 1 + uint32(len(msg)), fin: true, ackf: true},
			seg{from: srv, seq: 9001, fin: true, ackf: true},
			seg{from: cli, seq: isn + 2 + uint32(len(msg)), ackf: true})
	}
	conn(100, "first")
	conn(5000, "second")
	// A retransmitted SYN (same ISN) of a reset attempt stays one stream.
	f.feed(seg{from: cli, seq: 7777, syn: true}, seg{from: srv, seq: 0, ack: 7778, rst: true, ackf: true}, seg{from: cli, seq: 7777, syn: true})
	f.d.Close()
	if len(r.streams) != 3 {
		t.Fatalf("%d streams, want 3", len(r.streams))
	}
	for i, want := range []string{"first", "second", ""} {
		s := r.streams[i]
		if s.data[0].String() != want || s.closes != 1 {
			t.Fatalf("stream %d: %q closes %d", i, s.data[0].String(), s.closes)
		}
	}
	if r.streams[0].reason != CloseFIN || r.streams[2].reason != CloseRST {
		t.Fatalf("reasons %v %v", r.streams[0].reason, r.streams[2].reason)
	}
}

func TestTCPIdleClose(t *testing.T) {
	r := &rec{}
	f := newFeeder(t, r, Options{IdleTimeout: time.Minute})
	f.feed(seg{from: cli, seq: 1, syn: true}, seg{from: cli, seq: 2, ackf: true, data: []byte("a")})
	last := f.clock
	// Unrelated traffic three minutes later moves the capture clock.
	f.clock = f.clock.Add(3 * time.Minute)
	b := ip4udp(t, in4Src, in4Dst, []byte("tick"))
	f.d.Decode(Packet{Data: b, LinkType: layers.LinkTypeRaw, Info: gopacket.CaptureInfo{Timestamp: f.clock}})
	s := r.streams[0]
	if s.closes != 1 || s.reason != CloseIdle || !s.closeAt.Equal(last) {
		t.Fatalf("closes %d reason %v at %v", s.closes, s.reason, s.closeAt)
	}
	f.d.Close()
	if s.closes != 1 {
		t.Fatalf("closed again at end: %d", s.closes)
	}
}

// TestTCPBufferLimit: a hole that never fills, with a tiny page limit,
// must not buffer the rest of the stream: bytes are pushed through, the
// hole is reported as a gap and counted as dropped.
func TestTCPBufferLimit(t *testing.T) {
	r := &rec{}
	f := newFeeder(t, r, Options{MaxBufferedPagesPerConn: 4, MaxBufferedPagesTotal: 8, GapTimeout: time.Hour})
	f.feed(seg{from: cli, seq: 0, syn: true}, seg{from: cli, seq: 1, ackf: true, data: []byte("head")})
	const hole = 1000
	chunk := bytes.Repeat([]byte("z"), 1000)
	seq := uint32(1 + 4 + hole)
	for range 200 {
		f.feed(seg{from: cli, seq: seq, ackf: true, data: chunk})
		seq += uint32(len(chunk))
	}
	s := r.streams[0]
	got := s.data[ClientToServer].Len()
	// Before the end of the capture, all but a few pages went through.
	if got < 4+200*1000-8*1900 {
		t.Fatalf("only %d bytes delivered before close: buffering is unbounded", got)
	}
	if s.gaps[ClientToServer] != hole {
		t.Fatalf("gap %d, want %d", s.gaps[ClientToServer], hole)
	}
	if st := f.d.Stats(); st.TCPDropped != hole {
		t.Fatalf("dropped %d, want %d", st.TCPDropped, hole)
	}
	f.d.Close()
	if s.data[ClientToServer].Len() != 4+200*1000 {
		t.Fatalf("delivered %d", s.data[ClientToServer].Len())
	}
}

// TestTCPGapTimeout: without limits, a hole is skipped after GapTimeout
// on the capture clock.
func TestTCPGapTimeout(t *testing.T) {
	r := &rec{}
	f := newFeeder(t, r, Options{GapTimeout: time.Second})
	f.feed(seg{from: cli, seq: 0, syn: true}, seg{from: cli, seq: 1, ackf: true, data: []byte("ab")})
	f.feed(seg{from: cli, seq: 13, ackf: true, data: []byte("after the hole")})
	f.clock = f.clock.Add(2 * time.Second)
	f.feed(seg{from: srv, seq: 77, ack: 1, ackf: true})
	f.clock = f.clock.Add(2 * time.Second)
	f.feed(seg{from: srv, seq: 77, ack: 1, ackf: true})
	s := r.streams[0]
	if s.data[0].String() != "abafter the hole" || s.gaps[0] != 10 {
		t.Fatalf("data %q gaps %v", s.data[0].String(), s.gaps)
	}
	f.d.Close()
}

// TestTCPMaxConns: over MaxConns, connections idle for GapTimeout are
// closed early, so a flood of connections is bounded.
func TestTCPMaxConns(t *testing.T) {
	r := &rec{}
	f := newFeeder(t, r, Options{MaxConns: 10, GapTimeout: time.Second})
	for i := range 300 {
		c := netip.AddrPortFrom(cli.Addr(), uint16(20000+i))
		f.clock = f.clock.Add(100 * time.Millisecond)
		b := tcpFrame(t, seg{from: c, seq: 1, syn: true})
		f.d.Decode(Packet{Data: b, LinkType: layers.LinkTypeRaw, Info: gopacket.CaptureInfo{Timestamp: f.clock}})
		if n := len(f.d.conns); n > 10+64+1 {
			t.Fatalf("%d connections tracked after %d", n, i)
		}
	}
	closed := 0
	for _, s := range r.streams {
		if s.closes == 1 {
			if s.reason != CloseIdle {
				t.Fatalf("reason %v", s.reason)
			}
			closed++
		}
	}
	if closed < 200 {
		t.Fatalf("only %d of 300 closed early", closed)
	}
	f.d.Close()
}

// TestTCPResetWaitsForQueuedBytes: the server's certificate arrives out
// of order around the client's reset; every byte is delivered before the
// stream closes.
func TestTCPResetWaitsForQueuedBytes(t *testing.T) {
	cert1, cert2 := bytes.Repeat([]byte("1"), 1400), bytes.Repeat([]byte("2"), 900)
	for _, lateFirst := range []bool{true, false} {
		r := &rec{}
		f := newFeeder(t, r, Options{GapTimeout: time.Second})
		f.feed(seg{from: cli, seq: 10, syn: true}, seg{from: srv, seq: 500, ack: 11, syn: true, ackf: true},
			seg{from: cli, seq: 11, ackf: true, data: []byte("hello")},
			seg{from: srv, seq: 501 + 1400, ackf: true, data: cert2},
			seg{from: cli, seq: 16, ackf: true, rst: true})
		rstAt := f.clock
		s := r.streams[0]
		if s.closes != 0 {
			t.Fatal("closed while the server's first segment is missing")
		}
		if lateFirst {
			f.feed(seg{from: srv, seq: 501, ackf: true, data: cert1})
		} else {
			// Never comes: the hole is skipped after GapTimeout.
			f.clock = f.clock.Add(2 * time.Second)
			b := ip4udp(t, in4Src, in4Dst, []byte("tick"))
			f.d.Decode(Packet{Data: b, LinkType: layers.LinkTypeRaw, Info: gopacket.CaptureInfo{Timestamp: f.clock}})
		}
		want := append(append([]byte(nil), cert1...), cert2...)
		if !lateFirst {
			want = cert2
		}
		if !bytes.Equal(s.data[ServerToClient].Bytes(), want) || s.closes != 1 || s.reason != CloseRST {
			t.Fatalf("lateFirst=%v: %d server bytes, closes %d reason %v", lateFirst, s.data[1].Len(), s.closes, s.reason)
		}
		if k := s.kinds(); k[len(k)-1] != EventRST || !s.events[len(k)-1].Time.Equal(rstAt) {
			t.Fatalf("events %v", s.events)
		}
		f.d.Close()
	}
}
