package tap

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/sbcwatch/sbcwatch/audiocodes/acdr"
)

// FuzzDecodeFrame feeds arbitrary frames under every link type: the
// decoder must never panic (a recovered panic counts as malformed, so
// the fuzzer checks Malformed stays consistent too) nor deliver payloads
// bigger than the frame unless reassembled.
func FuzzDecodeFrame(f *testing.F) {
	in4 := ip4udp(f, in4Src, in4Dst, sipMsg)
	f.Add(uint8(0), eth(0x0800, in4))
	f.Add(uint8(1), in4)
	f.Add(uint8(2), eth(0x8100, vlan(1, 0x86dd, ip6udp(f, in6Src, in6Dst, sipMsg))))
	f.Add(uint8(0), eth(0x0800, ip4(f, layers.IPProtocolGRE, cat(be16(0x1000), be16(0x22eb), be32(1), make([]byte, 12), eth(0x0800, in4)))))
	f.Add(uint8(1), udpOuter(f, 9060, encodeHEP(in4Src, in4Dst, 17, time.Unix(5, 0), 1, sipMsg, true)))
	p, _ := acdr.Encode(&acdr.Packet{Version: 9, Extra: acdr.FlagHeaderAdded, Trace: acdr.TraceSystem, Media: acdr.MediaSIP, Ext: make([]byte, 14), Payload: in4})
	f.Add(uint8(1), udpOuter(f, 925, p))
	f.Add(uint8(1), tcpFrame(f, seg{from: cli, seq: 1, ackf: true, data: []byte("HEP3\x00\x07x")}))
	f.Add(uint8(3), cat([]byte{2, 0, 0, 0}, in4))
	// A few frames of the shared captures, when present.
	if dir := os.Getenv("SBCWATCH_CAPTURES"); dir != "" {
		for _, name := range []string{"heplify/sip_sctp.pcap", "sngrep/ipv6frag.pcap", "heplify/ipip0.pcap"} {
			if src, err := Open(filepath.Join(dir, name)); err == nil {
				for range 8 {
					pk, err := src.Next()
					if err != nil {
						break
					}
					f.Add(uint8(0), pk.Data)
				}
				src.Close()
			}
		}
	}
	lts := []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeRaw, layers.LinkTypeLinuxSLL, layers.LinkTypeNull, layers.LinkTypeLinuxSLL2, layers.LinkTypeLoop, layers.LinkTypePPP, 12}
	f.Fuzz(func(t *testing.T, lt uint8, frame []byte) {
		r := &rec{}
		d := NewDecoder(r, Options{MaxBufferedPagesPerConn: 2, MaxBufferedPagesTotal: 4, MaxFragments: 2})
		ts := time.Unix(1700000000, 0)
		done := make(chan struct{})
		go func() {
			defer close(done)
			// Twice, so the second copy meets the state the first one left.
			for i := range 2 {
				d.Decode(Packet{Data: frame, LinkType: lts[int(lt)%len(lts)], Frame: uint64(i + 1), Info: gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Second)}})
			}
			d.Close()
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("decoder hangs on lt=%d frame=%x", lt, frame)
		}
		st := d.Stats()
		if st.Packets != 2 || st.Malformed > 2 {
			t.Fatalf("stats %+v", st)
		}
		for _, s := range r.streams {
			if s.closes != 1 {
				t.Fatalf("stream closed %d times", s.closes)
			}
		}
		for _, dg := range r.datagrams {
			if dg.m.Origin == OriginWire && st.Reassembled == 0 && st.SCTPChunks == 0 && len(dg.p) > len(frame) {
				t.Fatalf("payload of %d bytes from a %d-byte frame", len(dg.p), len(frame))
			}
		}
	})
}

// TestDecodeNeverPanicsOnTruncation cuts real frames at every length.
func TestDecodeNeverPanicsOnTruncation(t *testing.T) {
	frames := [][]byte{
		eth(0x0800, ip4(t, layers.IPProtocolGRE, cat(be16(0x1000), be16(0x88be), be32(1), make([]byte, 8), eth(0x0800, ip4udp(t, in4Src, in4Dst, sipMsg))))),
		eth(0x86dd, ip6(t, layers.IPProtocolIPv4, ip4udp(t, in4Src, in4Dst, sipMsg))),
		udpOuter(t, 4789, cat([]byte{8, 0, 0, 0, 0, 0, 1, 0}, eth(0x0800, ip4udp(t, in4Src, in4Dst, sipMsg)))),
		tcpFrame(t, seg{from: cli, seq: 9, ackf: true, data: sipMsg}),
	}
	for _, fr := range frames {
		for n := 0; n <= len(fr); n++ {
			r := &rec{}
			d := NewDecoder(r, Options{})
			lt := layers.LinkTypeEthernet
			if fr[0]>>4 == 4 {
				lt = layers.LinkTypeRaw
			}
			d.Decode(Packet{Data: fr[:n], LinkType: lt, Info: gopacket.CaptureInfo{Timestamp: time.Unix(1, 0)}})
			d.Close()
			for _, dg := range r.datagrams {
				if !bytes.Contains(fr[:n], dg.p) {
					t.Fatalf("cut at %d: payload %q is not from the frame", n, dg.p)
				}
				if n < len(fr) && bytes.Equal(dg.p, sipMsg) && dg.m.Src == in4Src {
					t.Fatalf("cut at %d: whole message from a truncated frame", n)
				}
			}
			if st := d.Stats(); n < len(fr)/2 && st.Malformed == 0 && len(r.datagrams) == 0 && len(r.streams) == 0 {
				t.Fatalf("cut at %d: nothing delivered and nothing counted", n)
			}
		}
	}
}

// posConsumer checks each direction's Data and Gap calls against the
// original bytes: a gap advances the position, data must match there.
type posConsumer struct {
	t      *testing.T
	orig   [2][]byte
	pos    [2]int
	gaps   int
	closes int
}

func (c *posConsumer) Data(dir Dir, b []byte, _ time.Time) {
	p := c.pos[dir]
	if p+len(b) > len(c.orig[dir]) || !bytes.Equal(c.orig[dir][p:p+len(b)], b) {
		c.t.Fatalf("dir %v: %d bytes at %d do not match the original", dir, len(b), p)
	}
	c.pos[dir] += len(b)
}
func (c *posConsumer) Gap(dir Dir, n int, _ time.Time) { c.pos[dir] += n; c.gaps += n }
func (c *posConsumer) Event(Event)                     {}
func (c *posConsumer) Close(time.Time, CloseReason)    { c.closes++ }

type posHandler struct{ c *posConsumer }

func (h posHandler) Datagram(Meta, []byte)          {}
func (h posHandler) Stream(ConnInfo) StreamConsumer { return h.c }

// FuzzTCPReassembly cuts two byte streams into segments, shuffles them,
// drops and duplicates some (all chosen by the fuzzer) and checks that
// whatever is delivered sits at its place in the original, that a stream
// with nothing dropped comes out whole, and that Close comes once.
func FuzzTCPReassembly(f *testing.F) {
	f.Add(uint64(1), uint64(0), uint16(100), uint8(3))
	f.Add(uint64(2), uint64(0xf0f0), uint16(2000), uint8(1))
	f.Add(uint64(3), uint64(1<<5), uint16(3000), uint8(200))
	f.Fuzz(func(t *testing.T, seed, dropMask uint64, size uint16, maxSeg uint8) {
		rng := rand.New(rand.NewPCG(seed, 1))
		n := int(size)%4000 + 1
		ms := int(maxSeg)%64 + 1
		c := &posConsumer{t: t}
		c.orig[0], c.orig[1] = randomBytes(rng, n), randomBytes(rng, n/2+1)
		var body []seg
		for dir, from := range []netip.AddrPort{cli, srv} {
			isn := uint32(100 + dir*1_000_000)
			for off := 0; off < len(c.orig[dir]); {
				l := min(1+rng.IntN(ms), len(c.orig[dir])-off)
				body = append(body, seg{from: from, seq: isn + 1 + uint32(off), ackf: true, data: c.orig[dir][off : off+l]})
				off += l
			}
		}
		dropped := false
		var kept []seg
		for i, s := range body {
			if i < 64 && dropMask&(1<<i) != 0 {
				dropped = true
				continue
			}
			kept = append(kept, s)
			if rng.IntN(8) == 0 {
				kept = append(kept, s)
			}
		}
		rng.Shuffle(len(kept), func(i, j int) { kept[i], kept[j] = kept[j], kept[i] })
		// Tiny page limits may skip holes (their bytes then come too late),
		// default limits must not.
		for _, tiny := range []bool{true, false} {
			opt := Options{}
			if tiny {
				opt = Options{MaxBufferedPagesPerConn: 3, MaxBufferedPagesTotal: 5}
			}
			c.pos, c.gaps, c.closes = [2]int{}, 0, 0
			fd := newFeeder(t, posHandler{c}, opt)
			fd.feed(seg{from: cli, seq: 100, syn: true}, seg{from: srv, seq: 1_000_100, ack: 101, syn: true, ackf: true})
			fd.feed(kept...)
			fd.d.Close()
			if c.closes != 1 {
				t.Fatalf("closed %d times", c.closes)
			}
			st := fd.d.Stats()
			if int(st.TCPDropped) != c.gaps {
				t.Fatalf("TCPDropped=%d, gaps reported %d", st.TCPDropped, c.gaps)
			}
			if !tiny && !dropped && (c.pos[0] != len(c.orig[0]) || c.pos[1] != len(c.orig[1]) || c.gaps != 0) {
				t.Fatalf("nothing dropped but positions %v of %d/%d, gaps %d", c.pos, len(c.orig[0]), len(c.orig[1]), c.gaps)
			}
		}
	})
}
