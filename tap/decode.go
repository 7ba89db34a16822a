package tap

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"
)

// Options bounds and tunes a Decoder. Zero values take the defaults.
type Options struct {
	// MaxBufferedPagesPerConn and MaxBufferedPagesTotal bound the TCP
	// reassembly buffers (pages of about 1900 bytes; defaults 4096 and
	// 65536, as config.Limits). When a limit is hit the oldest waiting
	// bytes are pushed through and the hole is reported as a Gap.
	MaxBufferedPagesPerConn, MaxBufferedPagesTotal int
	// IdleTimeout closes a TCP connection with no packet for this long on
	// the capture clock (default 2m).
	IdleTimeout time.Duration
	// GapTimeout is how long (capture clock) out-of-order TCP bytes wait
	// for a missing segment before the hole is skipped (default 5s).
	GapTimeout time.Duration
	// ACDRPorts are the UDP/TCP ports of AudioCodes debug recording
	// (default 925).
	ACDRPorts []uint16
	// MaxFragments bounds the IP datagrams under reassembly at once
	// (default 4096); the oldest is dropped first.
	MaxFragments int
	// FragmentTimeout drops a datagram whose fragments did not all arrive
	// within this time on the capture clock (default 30s).
	FragmentTimeout time.Duration
	// MaxInflate bounds a decompressed HEP payload (default 1 MiB).
	MaxInflate int
	// MaxConns bounds the TCP connections tracked (default 200000). Over
	// it, connections idle for more than GapTimeout are closed early
	// (CloseIdle).
	MaxConns int
	// FlushEvery is the number of packets between two capture-clock
	// flushes of TCP and fragment state (default 1024); a flush also
	// happens whenever the capture clock moved by a second.
	FlushEvery int
	// Segment, when set, is called for every TCP segment (after tunnels
	// and fragments are peeled) with the frame that carried it and its
	// endpoints, before reassembly: a caller can tell which frames belong
	// to a connection.
	Segment func(frame uint64, t time.Time, src, dst netip.AddrPort)
	// HeadersOnly stops at Segment: no TCP reassembly and no payloads
	// handed on. For a pass that only picks frames out of a capture.
	HeadersOnly bool
}

func (o *Options) defaults() {
	if o.MaxBufferedPagesPerConn <= 0 {
		o.MaxBufferedPagesPerConn = 4096
	}
	if o.MaxBufferedPagesTotal <= 0 {
		o.MaxBufferedPagesTotal = 65536
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.GapTimeout <= 0 {
		o.GapTimeout = 5 * time.Second
	}
	if len(o.ACDRPorts) == 0 {
		o.ACDRPorts = []uint16{925}
	}
	if o.MaxFragments <= 0 {
		o.MaxFragments = 4096
	}
	if o.FragmentTimeout <= 0 {
		o.FragmentTimeout = 30 * time.Second
	}
	if o.MaxInflate <= 0 {
		o.MaxInflate = 1 << 20
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 200000
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = 1024
	}
}

// maxDepth bounds nested encapsulations (tunnel in tunnel in ...).
const maxDepth = 8

// Decoder turns packets into Handler calls. It is not safe for
// concurrent use: feed it from one goroutine, in capture order.
type Decoder struct {
	h     Handler
	opt   Options
	stats Stats

	acdrPorts map[uint16]bool
	frag      *defrag
	asm       *reassembly.Assembler
	conns     map[tupleKey]*connEntry
	closing   CloseReason
	flushing  bool

	// per packet
	cur       packetCtx
	tunneled  bool
	malformed bool

	sctpParts  map[sctpKey]*sctpPartial
	sinceFlush int
	lastFlush  time.Time
	tcp        layers.TCP
}

type packetCtx struct {
	ci    gopacket.CaptureInfo
	frame uint64
}

// NewDecoder returns a Decoder delivering to h.
func NewDecoder(h Handler, opt Options) *Decoder {
	opt.defaults()
	d := &Decoder{h: h, opt: opt, acdrPorts: map[uint16]bool{}, conns: map[tupleKey]*connEntry{}, closing: CloseIdle}
	for _, p := range opt.ACDRPorts {
		d.acdrPorts[p] = true
	}
	d.frag = newDefrag(opt.MaxFragments, opt.FragmentTimeout)
	pool := reassembly.NewStreamPool(&streamFactory{d: d})
	d.asm = reassembly.NewAssembler(pool)
	d.asm.MaxBufferedPagesPerConnection = opt.MaxBufferedPagesPerConn
	d.asm.MaxBufferedPagesTotal = opt.MaxBufferedPagesTotal
	return d
}

// Stats returns the counters so far.
func (d *Decoder) Stats() Stats { return d.stats }

// Decode decodes one packet. It never panics: a packet that makes the
// decoder fail is counted as malformed.
func (d *Decoder) Decode(p Packet) {
	ts := p.Info.Timestamp
	d.stats.Packets++
	d.stats.Bytes += uint64(len(p.Data))
	if d.stats.First.IsZero() || ts.Before(d.stats.First) {
		d.stats.First = ts
	}
	if ts.After(d.stats.Last) {
		d.stats.Last = ts
	}
	d.cur = packetCtx{ci: p.Info, frame: p.Frame}
	d.tunneled = false
	d.malformed = false
	d.safe(func() { d.link(p.LinkType, p.Data) })
	if d.malformed {
		d.stats.Malformed++
	}
	if d.tunneled {
		d.stats.Tunnels++
	}
	d.sinceFlush++
	if d.sinceFlush >= d.opt.FlushEvery || ts.Sub(d.lastFlush) >= time.Second {
		d.safe(func() { d.flush(ts, d.opt.IdleTimeout) })
	}
	if len(d.conns) > d.opt.MaxConns && d.stats.Packets%64 == 0 {
		// Too many connections: close those idle for GapTimeout (at
		// most every 64 packets, so a flood costs no scan per packet).
		d.safe(func() { d.flush(ts, d.opt.GapTimeout) })
	}
}

// safe runs f, turning a panic into a malformed count.
func (d *Decoder) safe(f func()) {
	defer func() {
		if r := recover(); r != nil {
			d.malformed = true
		}
	}()
	f()
}

// flush advances the capture clock: skips TCP holes older than
// GapTimeout, closes connections idle for IdleTimeout, expires fragments.
func (d *Decoder) flush(now time.Time, idle time.Duration) {
	d.sinceFlush = 0
	d.lastFlush = now
	d.closing = CloseIdle
	d.flushing = true
	defer func() { d.flushing = false }()
	tc := now.Add(-idle)
	d.asm.FlushWithOptions(reassembly.FlushOptions{T: now.Add(-d.opt.GapTimeout), TC: tc})
	d.flushing = false
	d.sweep(tc)
	d.stats.FragDropped += uint64(d.frag.expire(now))
}

// Close ends the capture: every open stream gets its remaining bytes and
// Close(CloseEnd); fragments still incomplete are counted as dropped.
func (d *Decoder) Close() {
	d.malformed = false
	d.safe(func() {
		d.closing = CloseEnd
		d.flushing = true
		d.asm.FlushAll()
		d.flushing = false
	})
	for _, e := range d.conns {
		if e.stream != nil && !e.stream.closed {
			e.stream.close(CloseEnd)
		}
	}
	d.stats.FragDropped += uint64(d.frag.dropAll())
	if d.malformed {
		d.stats.Malformed++
	}
}

// link peels the link layer.
func (d *Decoder) link(lt layers.LinkType, b []byte) {
	switch lt {
	case layers.LinkTypeEthernet:
		d.ethernet(b, 0)
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		// BSD loopback: a 4-byte address family, in host byte order for
		// DLT_NULL (either order here) and network order for DLT_LOOP.
		if len(b) < 4 {
			d.malformed = true
			return
		}
		fam := binary.LittleEndian.Uint32(b)
		if fam > 0xffff {
			fam = binary.BigEndian.Uint32(b)
		}
		switch fam {
		case 2:
			d.ip4(b[4:], 0)
		case 10, 23, 24, 26, 28, 30:
			d.ip6(b[4:], 0)
		default:
			d.stats.UnknownLink++
		}
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, 12, 14:
		d.ipByVersion(b, 0)
	case layers.LinkTypeLinuxSLL:
		// pkttype(2) hatype(2) halen(2) addr(8) protocol(2)
		if len(b) < 16 {
			d.malformed = true
			return
		}
		d.ethertype(binary.BigEndian.Uint16(b[14:]), b[16:], 0)
	case layers.LinkTypeLinuxSLL2:
		// protocol(2) reserved(2) ifindex(4) hatype(2) pkttype(1) halen(1) addr(8)
		if len(b) < 20 {
			d.malformed = true
			return
		}
		d.ethertype(binary.BigEndian.Uint16(b[0:]), b[20:], 0)
	case layers.LinkTypePPP:
		d.ppp(b, 0)
	default:
		d.stats.UnknownLink++
	}
}

func (d *Decoder) ethernet(b []byte, depth int) {
	if depth > maxDepth || len(b) < 14 {
		d.malformed = true
		return
	}
	d.ethertype(binary.BigEndian.Uint16(b[12:]), b[14:], depth)
}

// ethertype dispatches on an EtherType, peeling VLAN tags, MPLS and
// PPPoE on the way.
func (d *Decoder) ethertype(et uint16, b []byte, depth int) {
	for range maxDepth {
		switch et {
		case 0x8100, 0x88a8, 0x9100, 0x9200:
			if len(b) < 4 {
				d.malformed = true
				return
			}
			et, b = binary.BigEndian.Uint16(b[2:]), b[4:]
			continue
		case 0x0800:
			d.ip4(b, depth)
		case 0x86dd:
			d.ip6(b, depth)
		case 0x8847, 0x8848:
			d.mpls(b, depth)
		case 0x6558: // transparent Ethernet bridging (Geneve)
			d.ethernet(b, depth+1)
		case 0x8864:
			// PPPoE session: ver/type(1) code(1) session(2) length(2), PPP protocol.
			if len(b) < 6 {
				d.malformed = true
				return
			}
			n := int(binary.BigEndian.Uint16(b[4:]))
			b = b[6:]
			if n < len(b) {
				b = b[:n]
			}
			d.ppp(b, depth)
		default:
			d.stats.NonIP++
		}
		return
	}
}

func (d *Decoder) ppp(b []byte, depth int) {
	// Optional address/control 0xff 0x03, then a 1- or 2-byte protocol.
	if len(b) >= 2 && b[0] == 0xff && b[1] == 0x03 {
		b = b[2:]
	}
	if len(b) < 1 {
		d.malformed = true
		return
	}
	var proto uint16
	if b[0]&1 == 1 {
		proto, b = uint16(b[0]), b[1:]
	} else {
		if len(b) < 2 {
			d.malformed = true
			return
		}
		proto, b = binary.BigEndian.Uint16(b), b[2:]
	}
	switch proto {
	case 0x21:
		d.ip4(b, depth)
	case 0x57:
		d.ip6(b, depth)
	default:
		d.stats.NonIP++
	}
}

func (d *Decoder) mpls(b []byte, depth int) {
	for len(b) >= 4 {
		bottom := b[2]&1 == 1
		b = b[4:]
		if bottom {
			// No protocol field: guess from the IP version nibble; a
			// pseudowire control word (first nibble 0) precedes Ethernet.
			if len(b) > 0 && b[0]>>4 == 0 && len(b) >= 4 {
				d.ethernet(b[4:], depth+1)
				return
			}
			d.ipByVersion(b, depth)
			return
		}
	}
	d.malformed = true
}

func (d *Decoder) ipByVersion(b []byte, depth int) {
	if len(b) < 1 {
		d.malformed = true
		return
	}
	switch b[0] >> 4 {
	case 4:
		d.ip4(b, depth)
	case 6:
		d.ip6(b, depth)
	default:
		d.malformed = true
	}
}

// ip4 decodes an IPv4 packet, reassembling fragments.
func (d *Decoder) ip4(b []byte, depth int) {
	if depth > maxDepth {
		d.malformed = true
		return
	}
	if len(b) < 20 || b[0]>>4 != 4 {
		d.malformed = true
		return
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || total < ihl || len(b) < ihl {
		d.malformed = true
		return
	}
	if total < len(b) {
		b = b[:total] // Ethernet padding
	}
	src := netip.AddrFrom4([4]byte(b[12:16]))
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	proto := b[9]
	flags := binary.BigEndian.Uint16(b[6:])
	more := flags&0x2000 != 0
	off := int(flags&0x1fff) * 8
	payload := b[ihl:]
	if more || off != 0 {
		d.stats.Fragments++
		k := fragKey{src: src, dst: dst, id: uint32(binary.BigEndian.Uint16(b[4:])), proto: proto}
		whole, _, done, dropped := d.frag.add(k, off, more, payload, proto, d.cur.ci.Timestamp)
		d.stats.FragDropped += uint64(dropped)
		if !done {
			return
		}
		d.stats.Reassembled++
		payload = whole
	}
	d.transport(proto, src, dst, payload, depth)
}

// ip6 decodes an IPv6 packet, walking extension headers and reassembling
// fragments.
func (d *Decoder) ip6(b []byte, depth int) {
	if depth > maxDepth {
		d.malformed = true
		return
	}
	if len(b) < 40 || b[0]>>4 != 6 {
		d.malformed = true
		return
	}
	plen := int(binary.BigEndian.Uint16(b[4:]))
	src := netip.AddrFrom16([16]byte(b[8:24]))
	dst := netip.AddrFrom16([16]byte(b[24:40]))
	next := b[6]
	p := b[40:]
	if plen != 0 && plen < len(p) {
		p = p[:plen]
	}
	for range 16 {
		switch next {
		case 0, 43, 60, 135, 139, 140: // hop-by-hop, routing, destination, mobility, HIP, shim6
			if len(p) < 8 {
				d.malformed = true
				return
			}
			n := (int(p[1]) + 1) * 8
			if len(p) < n {
				d.malformed = true
				return
			}
			next, p = p[0], p[n:]
		case 51: // AH
			if len(p) < 8 {
				d.malformed = true
				return
			}
			n := (int(p[1]) + 2) * 4
			if len(p) < n {
				d.malformed = true
				return
			}
			next, p = p[0], p[n:]
		case 44: // fragment
			if len(p) < 8 {
				d.malformed = true
				return
			}
			d.stats.Fragments++
			fo := binary.BigEndian.Uint16(p[2:])
			k := fragKey{src: src, dst: dst, id: binary.BigEndian.Uint32(p[4:]), v6: true}
			whole, np, done, dropped := d.frag.add(k, int(fo&0xfff8), fo&1 == 1, p[8:], p[0], d.cur.ci.Timestamp)
			d.stats.FragDropped += uint64(dropped)
			if !done {
				return
			}
			d.stats.Reassembled++
			next, p = np, whole
		case 59: // no next header
			return
		default:
			d.transport(next, src, dst, p, depth)
			return
		}
	}
	d.malformed = true
}

// transport dispatches on the IP protocol.
func (d *Decoder) transport(proto uint8, src, dst netip.Addr, b []byte, depth int) {
	switch proto {
	case 17:
		d.udp(src, dst, b, depth)
	case 6:
		d.tcpSegment(src, dst, b)
	case 132:
		d.sctp(src, dst, b)
	case 4:
		d.tunneled = true
		d.ip4(b, depth+1)
	case 41:
		d.tunneled = true
		d.ip6(b, depth+1)
	case 47:
		d.tunneled = true
		d.gre(b, depth+1)
	default:
		d.stats.OtherIP++
	}
}

// gre decodes GRE (RFC 2784/2890, and the PPTP variant), with ERSPAN
// type I/II (0x88BE) and III (0x22EB) and transparent Ethernet bridging.
func (d *Decoder) gre(b []byte, depth int) {
	if depth > maxDepth || len(b) < 4 {
		d.malformed = true
		return
	}
	flags := binary.BigEndian.Uint16(b)
	proto := binary.BigEndian.Uint16(b[2:])
	n := 4
	if flags&0xc000 != 0 { // checksum or routing present: checksum+offset
		n += 4
	}
	if flags&0x2000 != 0 { // key
		n += 4
	}
	seq := flags&0x1000 != 0
	if seq {
		n += 4
	}
	if flags&7 == 1 && flags&0x0080 != 0 { // PPTP ack
		n += 4
	}
	if len(b) < n {
		d.malformed = true
		return
	}
	b = b[n:]
	if flags&0x4000 != 0 && flags&7 == 0 {
		// RFC 1701 source route entries, up to a null one.
		for {
			if len(b) < 4 {
				d.malformed = true
				return
			}
			af, l := binary.BigEndian.Uint16(b), int(b[3])
			if len(b) < 4+l {
				d.malformed = true
				return
			}
			b = b[4+l:]
			if af == 0 && l == 0 {
				break
			}
		}
	}
	switch proto {
	case 0x6558:
		d.ethernet(b, depth)
	case 0x88be:
		if !seq { // ERSPAN type I: no header
			d.ethernet(b, depth)
			return
		}
		if len(b) < 8 {
			d.malformed = true
			return
		}
		d.ethernet(b[8:], depth)
	case 0x22eb:
		if len(b) < 12 {
			d.malformed = true
			return
		}
		h := 12
		if b[11]&1 == 1 { // optional platform-specific subheader
			h += 8
		}
		ft := (b[10] >> 2) & 0x1f
		if len(b) < h {
			d.malformed = true
			return
		}
		if ft == 0 {
			d.ethernet(b[h:], depth)
		} else {
			d.ipByVersion(b[h:], depth)
		}
	case 0x880b:
		d.ppp(b, depth)
	default:
		d.ethertype(proto, b, depth)
	}
}

func (d *Decoder) udp(src, dst netip.Addr, b []byte, depth int) {
	if len(b) < 8 {
		d.malformed = true
		return
	}
	sp := binary.BigEndian.Uint16(b)
	dp := binary.BigEndian.Uint16(b[2:])
	n := int(binary.BigEndian.Uint16(b[4:]))
	payload := b[8:]
	if n >= 8 && n-8 < len(payload) {
		payload = payload[:n-8]
	}
	d.stats.UDPDatagrams++
	if d.opt.HeadersOnly {
		return
	}
	s := netip.AddrPortFrom(src, sp)
	t := netip.AddrPortFrom(dst, dp)
	switch {
	case len(payload) >= 4 && string(payload[:4]) == "HEP3":
		d.hep(s, payload)
	case d.acdrPorts[sp] || d.acdrPorts[dp]:
		d.acdr(s, payload)
	case (dp == 4789 || dp == 8472) && len(payload) >= 8 && payload[0]&0x08 != 0:
		d.tunneled = true
		d.ethernet(payload[8:], depth+1)
	case dp == 6081 && len(payload) >= 8 && payload[0]>>6 == 0:
		// Geneve: Ver(2) OptLen(6) flags(1) protocol(2) VNI(3) reserved(1), options.
		h := 8 + int(payload[0]&0x3f)*4
		if len(payload) < h {
			d.malformed = true
			return
		}
		d.tunneled = true
		d.ethertype(binary.BigEndian.Uint16(payload[2:]), payload[h:], depth+1)
	default:
		d.h.Datagram(Meta{
			Time: d.cur.ci.Timestamp, Src: s, Dst: t, Transport: UDP,
			Origin: OriginWire, Frame: d.cur.frame,
		}, payload)
	}
}

// sctp delivers each complete DATA chunk as a datagram.
func (d *Decoder) sctp(src, dst netip.Addr, b []byte) {
	if d.opt.HeadersOnly {
		return
	}
	if len(b) < 12 {
		d.malformed = true
		return
	}
	s := netip.AddrPortFrom(src, binary.BigEndian.Uint16(b))
	t := netip.AddrPortFrom(dst, binary.BigEndian.Uint16(b[2:]))
	b = b[12:]
	for len(b) >= 4 {
		typ, flags := b[0], b[1]
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n < 4 || n > len(b) {
			d.malformed = true
			return
		}
		if typ == 0 && n >= 16 { // DATA
			d.stats.SCTPChunks++
			tsn := binary.BigEndian.Uint32(b[4:])
			sid := binary.BigEndian.Uint16(b[8:])
			if msg, ok := d.sctpMsg(s, t, sid, tsn, flags, b[16:n]); ok {
				d.h.Datagram(Meta{
					Time: d.cur.ci.Timestamp, Src: s, Dst: t, Transport: SCTP,
					Origin: OriginWire, Frame: d.cur.frame,
				}, msg)
			}
		}
		pad := (n + 3) &^ 3
		if pad > len(b) {
			return
		}
		b = b[pad:]
	}
}

func (d *Decoder) tcpSegment(src, dst netip.Addr, b []byte) {
	if err := d.tcp.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		d.malformed = true
		return
	}
	d.stats.TCPSegments++
	t := &d.tcp
	s := netip.AddrPortFrom(src, uint16(t.SrcPort))
	r := netip.AddrPortFrom(dst, uint16(t.DstPort))
	if d.opt.Segment != nil {
		d.opt.Segment(d.cur.frame, d.cur.ci.Timestamp, s, r)
	}
	if d.opt.HeadersOnly {
		return
	}
	if d.acdrPorts[uint16(t.SrcPort)] || d.acdrPorts[uint16(t.DstPort)] {
		// As Wireshark does, one ACDR packet per segment.
		if len(t.Payload) > 0 {
			d.acdr(s, t.Payload)
		}
		return
	}
	d.assemble(s, r, t)
}

// sctpKey identifies one SCTP stream direction.
type sctpKey struct {
	src, dst netip.AddrPort
	sid      uint16
}

type sctpPartial struct {
	next uint32 // TSN expected
	buf  []byte
}

const (
	maxSCTPPartials = 1024
	maxSCTPMessage  = 1 << 18
)

// sctpMsg reassembles fragmented DATA chunks (B ... E, consecutive TSNs,
// RFC 9260 §6.9) of one stream; it returns a whole message when one ends.
// Out-of-order fragments drop the message (counted as malformed).
func (d *Decoder) sctpMsg(s, t netip.AddrPort, sid uint16, tsn uint32, flags uint8, data []byte) ([]byte, bool) {
	if flags&3 == 3 {
		return data, true
	}
	if d.sctpParts == nil {
		d.sctpParts = map[sctpKey]*sctpPartial{}
	}
	k := sctpKey{s, t, sid}
	if flags&2 != 0 { // B
		if len(d.sctpParts) >= maxSCTPPartials {
			clear(d.sctpParts)
		}
		d.sctpParts[k] = &sctpPartial{next: tsn + 1, buf: append([]byte(nil), data...)}
		return nil, false
	}
	p := d.sctpParts[k]
	if p == nil || p.next != tsn || len(p.buf)+len(data) > maxSCTPMessage {
		delete(d.sctpParts, k)
		d.malformed = true
		return nil, false
	}
	p.buf = append(p.buf, data...)
	p.next++
	if flags&1 != 0 { // E
		delete(d.sctpParts, k)
		return p.buf, true
	}
	return nil, false
}

// DecodeACDR decodes one ACDR packet received on a socket (sbcwatch serve
// listening for debug recording) from exporter at capture time t, as if
// it had been captured in a UDP datagram. It never panics.
func (d *Decoder) DecodeACDR(exporter netip.AddrPort, payload []byte, t time.Time) {
	d.copyAt(t, func() { d.acdr(exporter, payload) })
}

// DecodeHEP decodes one or more HEP v3 packets received on a UDP socket
// from exporter at time t (the HEP timestamp still wins when present).
func (d *Decoder) DecodeHEP(exporter netip.AddrPort, payload []byte, t time.Time) {
	d.copyAt(t, func() {
		if len(payload) < 4 || string(payload[:4]) != "HEP3" {
			d.stats.HEPSkipped++
			d.malformed = true
			return
		}
		d.hep(exporter, payload)
	})
}

func (d *Decoder) copyAt(t time.Time, f func()) {
	d.cur = packetCtx{ci: gopacket.CaptureInfo{Timestamp: t, CaptureLength: 0}}
	d.malformed = false
	d.safe(f)
	if d.malformed {
		d.stats.Malformed++
	}
	if d.stats.First.IsZero() || t.Before(d.stats.First) {
		d.stats.First = t
	}
	if t.After(d.stats.Last) {
		d.stats.Last = t
	}
}
