package tlsaudit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/tap"
)

// This file holds a small, test-only pcap/pcapng reader and TCP
// reassembler so the tests do not depend on the tap package (built
// concurrently). It handles Ethernet (with stacked VLAN tags), Linux
// SLL/SLL2, BSD NULL and raw IP, IPv4/IPv6 (no fragments), and TCP with
// retransmissions and out-of-order segments.

// capturesDir finds /work/shared/captures (env SBCWATCH_CAPTURES or
// ../shared/captures relative to the module root).
func capturesDir(t testing.TB) string {
	t.Helper()
	dir, ok := findCaptures()
	if !ok {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared captures not found at %s (set SBCWATCH_CAPTURES)", dir)
		}
		t.Skipf("shared captures not found at %s (set SBCWATCH_CAPTURES); skipping", dir)
	}
	return dir
}

// findCaptures returns the shared captures directory and whether it
// exists.
func findCaptures() (string, bool) {
	dir := os.Getenv("SBCWATCH_CAPTURES")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "shared", "captures")
	}
	_, err := os.Stat(filepath.Join(dir, "INDEX.md"))
	return dir, err == nil
}

type pkt struct {
	t     time.Time
	frame uint64
	link  uint16
	data  []byte
}

// readCapture reads every packet of a pcap or pcapng file (gzip too).
func readCapture(path string) ([]pkt, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(raw) > 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		if raw, err = io.ReadAll(zr); err != nil {
			return nil, err
		}
	}
	if len(raw) < 24 {
		return nil, errors.New("short file")
	}
	if binary.BigEndian.Uint32(raw) == 0x0a0d0d0a {
		return readPcapng(raw)
	}
	var bo binary.ByteOrder
	nano := false
	switch binary.LittleEndian.Uint32(raw) {
	case 0xa1b2c3d4:
		bo = binary.LittleEndian
	case 0xa1b23c4d:
		bo, nano = binary.LittleEndian, true
	default:
		switch binary.BigEndian.Uint32(raw) {
		case 0xa1b2c3d4:
			bo = binary.BigEndian
		case 0xa1b23c4d:
			bo, nano = binary.BigEndian, true
		default:
			return nil, errors.New("not a capture file")
		}
	}
	link := uint16(bo.Uint32(raw[20:]))
	var out []pkt
	for off := 24; off+16 <= len(raw); {
		sec, sub, n := bo.Uint32(raw[off:]), bo.Uint32(raw[off+4:]), int(bo.Uint32(raw[off+8:]))
		off += 16
		if off+n > len(raw) {
			break
		}
		ns := int64(sub) * 1000
		if nano {
			ns = int64(sub)
		}
		out = append(out, pkt{t: time.Unix(int64(sec), ns).UTC(), frame: uint64(len(out) + 1), link: link, data: raw[off : off+n]})
		off += n
	}
	return out, nil
}

func readPcapng(raw []byte) ([]pkt, error) {
	var bo binary.ByteOrder = binary.LittleEndian
	type iface struct {
		link uint16
		res  float64 // seconds per tick
	}
	var ifs []iface
	var out []pkt
	for off := 0; off+12 <= len(raw); {
		typ := binary.LittleEndian.Uint32(raw[off:])
		if typ == 0x0a0d0d0a {
			if binary.LittleEndian.Uint32(raw[off+8:]) == 0x1a2b3c4d {
				bo = binary.LittleEndian
			} else {
				bo = binary.BigEndian
			}
			ifs = nil
		}
		typ = bo.Uint32(raw[off:])
		blen := int(bo.Uint32(raw[off+4:]))
		if blen < 12 || off+blen > len(raw) {
			return out, fmt.Errorf("bad pcapng block at %d", off)
		}
		b := raw[off+8 : off+blen-4]
		switch typ {
		case 1: // IDB
			ifc := iface{link: bo.Uint16(b), res: 1e-6}
			for o := 8; o+4 <= len(b); {
				code, l := bo.Uint16(b[o:]), int(bo.Uint16(b[o+2:]))
				if code == 0 {
					break
				}
				if code == 9 && l == 1 && o+4 < len(b) {
					v := b[o+4]
					if v&0x80 == 0 {
						ifc.res = 1
						for range int(v) {
							ifc.res /= 10
						}
					} else {
						ifc.res = 1
						for range int(v & 0x7f) {
							ifc.res /= 2
						}
					}
				}
				o += 4 + (l+3)&^3
			}
			ifs = append(ifs, ifc)
		case 6: // EPB
			id := int(bo.Uint32(b))
			ts := uint64(bo.Uint32(b[4:]))<<32 | uint64(bo.Uint32(b[8:]))
			n := int(bo.Uint32(b[12:]))
			if id >= len(ifs) || 20+n > len(b) {
				return out, errors.New("bad EPB")
			}
			secs := float64(ts) * ifs[id].res
			whole := int64(secs)
			frac := int64((secs - float64(whole)) * 1e9)
			if ifs[id].res == 1e-6 { // exact
				whole, frac = int64(ts/1e6), int64(ts%1e6)*1000
			}
			if ifs[id].res == 1e-9 {
				whole, frac = int64(ts/1e9), int64(ts%1e9)
			}
			out = append(out, pkt{t: time.Unix(whole, frac).UTC(), frame: uint64(len(out) + 1), link: ifs[id].link, data: b[20 : 20+n]})
		case 3: // SPB
			if len(ifs) == 0 {
				return out, errors.New("SPB without IDB")
			}
			out = append(out, pkt{frame: uint64(len(out) + 1), link: ifs[0].link, data: b[4:]})
		}
		off += blen
	}
	return out, nil
}

type tcpSeg struct {
	src, dst netip.AddrPort
	seq      uint32
	syn, ack bool
	fin, rst bool
	payload  []byte
}

// decodeTCP peels the link and IP layers; ok is false for anything not
// TCP.
func decodeTCP(link uint16, b []byte) (s tcpSeg, ok bool) {
	var ethertype uint16
	switch link {
	case 1: // Ethernet
		if len(b) < 14 {
			return s, false
		}
		ethertype, b = binary.BigEndian.Uint16(b[12:]), b[14:]
		for (ethertype == 0x8100 || ethertype == 0x88a8 || ethertype == 0x9100) && len(b) >= 4 {
			ethertype, b = binary.BigEndian.Uint16(b[2:]), b[4:]
		}
	case 0: // NULL
		if len(b) < 4 {
			return s, false
		}
		fam := binary.LittleEndian.Uint32(b)
		if fam > 0xffff {
			fam = binary.BigEndian.Uint32(b)
		}
		ethertype, b = 0x0800, b[4:]
		if fam == 24 || fam == 28 || fam == 30 {
			ethertype = 0x86dd
		}
	case 113: // SLL
		if len(b) < 16 {
			return s, false
		}
		ethertype, b = binary.BigEndian.Uint16(b[14:]), b[16:]
	case 276: // SLL2
		if len(b) < 20 {
			return s, false
		}
		ethertype, b = binary.BigEndian.Uint16(b), b[20:]
	case 101, 12, 14, 228, 229: // raw IP
		if len(b) < 1 {
			return s, false
		}
		ethertype = 0x0800
		if b[0]>>4 == 6 {
			ethertype = 0x86dd
		}
	default:
		return s, false
	}
	var srcIP, dstIP netip.Addr
	switch ethertype {
	case 0x0800:
		if len(b) < 20 || b[0]>>4 != 4 {
			return s, false
		}
		ihl, total := int(b[0]&15)*4, int(binary.BigEndian.Uint16(b[2:]))
		if b[9] != 6 || binary.BigEndian.Uint16(b[6:])&0x3fff != 0 || total < ihl || total > len(b) {
			return s, false
		}
		srcIP, dstIP = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		b = b[ihl:total]
	case 0x86dd:
		if len(b) < 40 || b[6] != 6 {
			return s, false
		}
		pl := int(binary.BigEndian.Uint16(b[4:]))
		if 40+pl > len(b) {
			return s, false
		}
		srcIP, dstIP = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		b = b[40 : 40+pl]
	default:
		return s, false
	}
	if len(b) < 20 {
		return s, false
	}
	off := int(b[12]>>4) * 4
	if off < 20 || off > len(b) {
		return s, false
	}
	fl := b[13]
	return tcpSeg{
		src: netip.AddrPortFrom(srcIP, binary.BigEndian.Uint16(b)),
		dst: netip.AddrPortFrom(dstIP, binary.BigEndian.Uint16(b[2:])),
		seq: binary.BigEndian.Uint32(b[4:]),
		syn: fl&2 != 0, ack: fl&16 != 0, fin: fl&1 != 0, rst: fl&4 != 0,
		payload: b[off:],
	}, true
}

type rdir struct {
	init bool
	next uint32
	ooo  map[uint32][]byte
	fin  bool
}

type rconn struct {
	info     tap.ConnInfo
	d        [2]rdir
	cons     tap.StreamConsumer
	decided  bool
	skip     bool
	closed   bool
	pending  []tap.Event
	lastTime time.Time
}

// replay feeds a capture's TCP connections that look like TLS (by their
// first payload) into the tracker, as the tap would.
func replay(t testing.TB, path string, tr *Tracker) int {
	t.Helper()
	return replayTo(t, path, tr.Stream)
}

// replayTo is replay with any consumer factory.
func replayTo(t testing.TB, path string, stream func(tap.ConnInfo) tap.StreamConsumer) int {
	t.Helper()
	pkts, err := readCapture(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	type key struct{ a, b netip.AddrPort }
	conns := map[key]*rconn{}
	var all []*rconn
	var last time.Time
	for _, p := range pkts {
		s, ok := decodeTCP(p.link, p.data)
		if !ok {
			continue
		}
		last = p.t
		k := key{s.src, s.dst}
		if s.dst.String() < s.src.String() {
			k = key{s.dst, s.src}
		}
		c := conns[k]
		if c != nil && c.closed && s.syn && !s.ack {
			c = nil // port reuse
		}
		if c == nil {
			c = &rconn{info: tap.ConnInfo{Client: s.src, Server: s.dst, FirstSeen: p.t, SawSYN: s.syn && !s.ack, Frame: p.frame}}
			if s.syn && s.ack {
				c.info.Client, c.info.Server = s.dst, s.src
			}
			conns[k] = c
			all = append(all, c)
		}
		if c.closed {
			continue
		}
		c.lastTime = p.t
		dir := tap.ClientToServer
		if s.src != c.info.Client {
			dir = tap.ServerToClient
		}
		d := &c.d[dir]
		event := func(kind tap.EventKind) {
			e := tap.Event{Kind: kind, Dir: dir, Time: p.t}
			if c.cons != nil {
				c.cons.Event(e)
			} else if !c.skip {
				c.pending = append(c.pending, e)
			}
		}
		if s.syn {
			if !d.init {
				d.init, d.next = true, s.seq+1
			}
			if s.ack {
				event(tap.EventSYNACK)
			} else {
				event(tap.EventSYN)
			}
		}
		if len(s.payload) > 0 {
			if !d.init {
				d.init, d.next = true, s.seq
			}
			deliver := func(b []byte) {
				if !c.decided {
					c.decided = true
					if LooksLikeTLS(b) {
						c.cons = stream(c.info)
						for _, e := range c.pending {
							c.cons.Event(e)
						}
					} else {
						c.skip = true
					}
					c.pending = nil
				}
				if c.cons != nil {
					c.cons.Data(dir, b, p.t)
				}
			}
			seq, pl := s.seq, s.payload
			if diff := int32(d.next - seq); diff > 0 { // retransmitted prefix
				if int(diff) >= len(pl) {
					pl = nil
				} else {
					pl, seq = pl[diff:], d.next
				}
			}
			if len(pl) > 0 {
				if seq == d.next {
					deliver(pl)
					d.next += uint32(len(pl))
					for {
						nb, ok := d.ooo[d.next]
						if !ok {
							break
						}
						delete(d.ooo, d.next)
						deliver(nb)
						d.next += uint32(len(nb))
					}
				} else {
					if d.ooo == nil {
						d.ooo = map[uint32][]byte{}
					}
					d.ooo[seq] = pl
				}
			}
		}
		if s.rst {
			event(tap.EventRST)
			c.closed = true
			if c.cons != nil {
				c.cons.Close(p.t, tap.CloseRST)
			}
			continue
		}
		if s.fin && !d.fin {
			d.fin = true
			event(tap.EventFIN)
			if c.d[0].fin && c.d[1].fin {
				c.closed = true
				if c.cons != nil {
					c.cons.Close(p.t, tap.CloseFIN)
				}
			}
		}
	}
	n := 0
	for _, c := range all {
		if c.cons == nil {
			continue
		}
		n++
		if !c.closed {
			// Report the lost bytes waiting out of order, as the tap would.
			for dir := range c.d {
				keys := make([]uint32, 0, len(c.d[dir].ooo))
				for k := range c.d[dir].ooo {
					keys = append(keys, k)
				}
				sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
				if len(keys) > 0 {
					c.cons.Gap(tap.Dir(dir), int(keys[0]-c.d[dir].next), c.lastTime)
				}
			}
			c.cons.Close(last, tap.CloseEnd)
		}
	}
	return n
}

// readLines is a helper for command output.
func readLines(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
