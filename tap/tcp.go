package tap

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"
)

// endpointConn is the endpoint type of the network flows handed to the
// assembler: an address (IPv4, or a 96-bit hash of an IPv6 address) plus
// a generation number, so that a 4-tuple reused after a close becomes a
// new assembler connection even while the old one is still pooled.
var endpointConn = gopacket.RegisterEndpointType(0x5bc1, gopacket.EndpointTypeMetadata{
	Name:      "sbcwatch-conn",
	Formatter: func(b []byte) string { return fmt.Sprintf("%x", b) },
})

func connEndpoint(a netip.Addr, gen uint32) gopacket.Endpoint {
	var raw [16]byte
	a = a.Unmap()
	if a.Is4() {
		v := a.As4()
		copy(raw[:4], v[:])
		raw[4] = 4
	} else {
		v := a.As16()
		h := fnv.New128a()
		h.Write(v[:])
		copy(raw[:12], h.Sum(nil))
	}
	binary.BigEndian.PutUint32(raw[12:], gen)
	return gopacket.NewEndpoint(endpointConn, raw[:])
}

// tupleKey is a connection's 4-tuple, ordered so both directions match.
type tupleKey struct{ a, b netip.AddrPort }

func makeTuple(s, d netip.AddrPort) tupleKey {
	if s.Compare(d) > 0 {
		s, d = d, s
	}
	return tupleKey{s, d}
}

// connEntry tracks one 4-tuple: the generation of its current
// assembler connection and the stream of that connection.
type connEntry struct {
	gen    uint32
	stream *tcpStream // the current one
	last   time.Time  // last packet on the tuple, any generation
}

// tcpCtx is the assembler context: capture info plus the real endpoints.
type tcpCtx struct {
	ci       gopacket.CaptureInfo
	src, dst netip.AddrPort
	frame    uint64
	key      tupleKey
}

func (c *tcpCtx) GetCaptureInfo() gopacket.CaptureInfo { return c.ci }

// assemble feeds one TCP segment to the assembler.
func (d *Decoder) assemble(src, dst netip.AddrPort, t *layers.TCP) {
	k := makeTuple(src, dst)
	e := d.conns[k]
	if e != nil && e.stream != nil && t.SYN && !t.ACK {
		s := e.stream
		// A SYN starts a new connection on this tuple unless it repeats
		// the current connection's SYN (same ISN), as in tshark.
		if !s.sawSYN || s.synSeq != t.Seq {
			if !s.closed {
				s.close(s.reason(CloseIdle))
			}
			e.gen++
			e.stream = nil
		}
	}
	gen := uint32(0)
	if e != nil {
		gen = e.gen
		if d.cur.ci.Timestamp.After(e.last) {
			e.last = d.cur.ci.Timestamp
		}
	}
	ctx := &tcpCtx{ci: d.cur.ci, src: src, dst: dst, frame: d.cur.frame, key: k}
	netFlow := gopacket.NewFlow(endpointConn, connEndpoint(src.Addr(), gen).Raw(), connEndpoint(dst.Addr(), gen).Raw())
	d.asm.AssembleWithContext(netFlow, t, ctx)
	if e = d.conns[k]; e != nil && e.stream != nil {
		e.stream.emitPending()
		e.stream.closeIfReset()
	}
}

// closeIfReset closes a reset connection once no byte seen before the
// reset is still waiting for a missing segment (those come first, or are
// skipped after GapTimeout).
func (s *tcpStream) closeIfReset() {
	if !s.rst || s.closed {
		return
	}
	for dir := range 2 {
		if s.started[dir] && s.start[dir].Add(s.done[dir]).Difference(s.maxEnd[dir]) > 0 {
			return
		}
	}
	s.close(CloseRST)
}

type streamFactory struct{ d *Decoder }

// New is called by the assembler for the first packet of a connection.
func (f *streamFactory) New(_, _ gopacket.Flow, t *layers.TCP, ac reassembly.AssemblerContext) reassembly.Stream {
	d := f.d
	c := ac.(*tcpCtx)
	s := &tcpStream{d: d, key: c.key, last: c.ci.Timestamp}
	info := ConnInfo{Client: c.src, Server: c.dst, FirstSeen: c.ci.Timestamp, Frame: c.frame}
	switch {
	case t.SYN && !t.ACK:
		info.SawSYN = true
		s.sawSYN = true
		s.synSeq = t.Seq
	case t.SYN && t.ACK:
		// The SYN is missing but the roles are known: the sender of the
		// SYN-ACK is the server.
		info.Client, info.Server = c.dst, c.src
		s.swap = true
	}
	s.client, s.server = info.Client, info.Server
	d.stats.TCPConns++
	e := d.conns[c.key]
	if e == nil {
		e = &connEntry{last: c.ci.Timestamp}
		d.conns[c.key] = e
	}
	e.stream = s
	s.cons = d.h.Stream(info)
	return s
}

// tcpStream adapts one assembler connection to a StreamConsumer.
type tcpStream struct {
	d              *Decoder
	key            tupleKey
	client, server netip.AddrPort
	cons           StreamConsumer
	swap           bool // assembler's client-to-server is our server-to-client
	sawSYN         bool
	synSeq         uint32
	last           time.Time

	fin     [2]bool
	rst     bool
	closed  bool
	pending []Event

	// Sequence bookkeeping per direction, to know whether bytes seen are
	// still waiting in the assembler when a reset arrives.
	started [2]bool
	start   [2]reassembly.Sequence // first sequence number of the stream
	maxEnd  [2]reassembly.Sequence // end of the furthest segment seen
	done    [2]int                 // bytes delivered or skipped

	mode [2]uint8 // 0 unknown, 1 plain, 2 HEP
	hep  [2]hepStream
}

func (s *tcpStream) dir(ad reassembly.TCPFlowDirection) Dir {
	if (ad == reassembly.TCPDirClientToServer) != s.swap {
		return ClientToServer
	}
	return ServerToClient
}

func (s *tcpStream) event(e Event) {
	if s.cons != nil {
		s.cons.Event(e)
	}
}

// Accept sees every segment of the connection, in capture order: it
// emits control events and forces the start of a stream picked up
// mid-connection.
func (s *tcpStream) Accept(t *layers.TCP, ci gopacket.CaptureInfo, ad reassembly.TCPFlowDirection, nextSeq reassembly.Sequence, start *bool, _ reassembly.AssemblerContext) bool {
	if s.closed {
		return false
	}
	dir := s.dir(ad)
	ts := ci.Timestamp
	if ts.After(s.last) {
		s.last = ts
	}
	seq := reassembly.Sequence(t.Seq)
	if !s.started[dir] {
		s.started[dir] = true
		if t.SYN {
			seq = seq.Add(1)
		}
		s.start[dir], s.maxEnd[dir] = seq, seq
	}
	if end := reassembly.Sequence(t.Seq).Add(len(t.Payload)); s.maxEnd[dir].Difference(end) > 0 {
		s.maxEnd[dir] = end
	}
	if t.SYN {
		k := EventSYN
		if t.ACK {
			k = EventSYNACK
		}
		s.event(Event{Kind: k, Dir: dir, Time: ts})
	}
	if t.RST && !s.rst {
		s.rst = true
		s.event(Event{Kind: EventRST, Dir: dir, Time: ts})
	}
	if t.FIN && !s.fin[dir] {
		s.fin[dir] = true
		// Delivered after this segment's bytes (see assemble).
		s.pending = append(s.pending, Event{Kind: EventFIN, Dir: dir, Time: ts})
	}
	if nextSeq == -1 && !t.SYN {
		*start = true
	}
	return true
}

// ReassembledSG delivers in-order bytes, reporting skipped ones as a gap.
func (s *tcpStream) ReassembledSG(sg reassembly.ScatterGather, _ reassembly.AssemblerContext) {
	ad, _, _, skip := sg.Info()
	dir := s.dir(ad)
	n, _ := sg.Lengths()
	ts := sg.CaptureInfo(0).Timestamp
	if n > 0 {
		if t := sg.CaptureInfo(n - 1).Timestamp; t.After(ts) {
			ts = t
		}
	}
	defer s.closeIfReset()
	if skip > 0 {
		s.done[dir] += skip
		s.d.stats.TCPDropped += uint64(skip)
		if s.cons != nil && !s.closed {
			s.cons.Gap(dir, skip, ts)
		}
		if s.mode[dir] == 2 {
			s.hep[dir].reset()
		}
	}
	if n == 0 || s.closed {
		return
	}
	s.done[dir] += n
	data := sg.Fetch(n)
	if s.mode[dir] == 0 {
		s.mode[dir] = 1
		if skip <= 0 && len(data) >= 4 && string(data[:4]) == "HEP3" {
			s.mode[dir] = 2
		}
	}
	if s.mode[dir] == 2 {
		exporter := s.client
		if dir == ServerToClient {
			exporter = s.server
		}
		s.hep[dir].feed(s.d, exporter, data)
		return
	}
	if s.cons != nil {
		s.cons.Data(dir, data, ts)
	}
}

// ReassemblyComplete is called once both directions ended (FIN/RST) or
// the connection was flushed (idle, end of capture). A connection ended
// by FINs stays pooled until it is idle, so that its last ACKs are not
// taken for a new connection; a new SYN on it starts a new generation.
func (s *tcpStream) ReassemblyComplete(_ reassembly.AssemblerContext) bool {
	s.emitPending()
	if !s.closed {
		s.close(s.reason(s.d.closing))
	}
	return s.d.flushing
}

// sweep forgets the 4-tuples whose connections are over and idle: the
// assembler removed those at the same flush.
func (d *Decoder) sweep(tc time.Time) {
	for k, e := range d.conns {
		if (e.stream == nil || e.stream.closed) && e.last.Before(tc) {
			delete(d.conns, k)
		}
	}
}

func (s *tcpStream) emitPending() {
	if s.closed {
		s.pending = s.pending[:0]
		return
	}
	for _, e := range s.pending {
		s.event(e)
	}
	s.pending = s.pending[:0]
}

// reason picks the close reason: a reset or FIN seen wins over def.
func (s *tcpStream) reason(def CloseReason) CloseReason {
	switch {
	case s.rst:
		return CloseRST
	case s.fin[0] || s.fin[1]:
		return CloseFIN
	}
	return def
}

func (s *tcpStream) close(r CloseReason) {
	if s.closed {
		return
	}
	s.emitPending()
	s.closed = true
	if s.cons != nil {
		s.cons.Close(s.last, r)
	}
}
