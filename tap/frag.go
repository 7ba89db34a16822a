package tap

import (
	"container/list"
	"net/netip"
	"sort"
	"time"
)

// fragKey identifies a datagram under reassembly (RFC 791: source,
// destination, protocol, identification; RFC 8200: source, destination,
// identification).
type fragKey struct {
	src, dst netip.Addr
	id       uint32
	proto    uint8
	v6       bool
}

type fragPart struct {
	off  int
	data []byte
}

type fragBuf struct {
	key     fragKey
	first   time.Time
	parts   []fragPart
	size    int // bytes held
	total   int // datagram length once the last fragment is in, else -1
	proto   uint8
	haveOff bool // the offset-0 fragment is in
	elem    *list.Element
}

// defrag reassembles IPv4 and IPv6 fragments, bounded by the number of
// datagrams in flight (oldest dropped first), by age on the capture clock,
// by fragments per datagram and by the 64 KiB datagram size.
// gopacket's ip4defrag bounds neither the number of datagrams nor their
// age unless polled, so one reassembler serves both versions.
type defrag struct {
	max     int
	timeout time.Duration
	m       map[fragKey]*fragBuf
	order   *list.List // of *fragBuf, oldest first
	held    int        // bytes held in all datagrams
}

const (
	maxFragsPerDatagram = 256
	maxDatagram         = 65535
	maxHeld             = 32 << 20
)

func newDefrag(max int, timeout time.Duration) *defrag {
	return &defrag{max: max, timeout: timeout, m: map[fragKey]*fragBuf{}, order: list.New()}
}

// add stores one fragment. It returns the whole payload and its protocol
// when the datagram is complete, and the number of fragments given up
// (evicted, invalid or timed out).
func (f *defrag) add(k fragKey, off int, more bool, data []byte, proto uint8, now time.Time) (whole []byte, wproto uint8, done bool, dropped int) {
	dropped = f.expire(now)
	end := off + len(data)
	if end > maxDatagram || (more && len(data)%8 != 0) {
		return nil, 0, false, dropped + 1 + f.remove(k)
	}
	b := f.m[k]
	if b == nil {
		for len(f.m) >= f.max {
			dropped += f.removeBuf(f.order.Front().Value.(*fragBuf))
		}
		b = &fragBuf{key: k, first: now, total: -1}
		b.elem = f.order.PushBack(b)
		f.m[k] = b
	}
	if len(b.parts) >= maxFragsPerDatagram {
		return nil, 0, false, dropped + 1 + f.removeBuf(b)
	}
	if !more {
		if b.total >= 0 && b.total != end {
			return nil, 0, false, dropped + 1 + f.removeBuf(b)
		}
		b.total = end
	}
	if off == 0 {
		b.haveOff = true
		b.proto = proto
	}
	b.parts = append(b.parts, fragPart{off: off, data: append([]byte(nil), data...)})
	b.size += len(data)
	f.held += len(data)
	for f.held > maxHeld && f.order.Front() != nil && f.order.Front().Value.(*fragBuf) != b {
		dropped += f.removeBuf(f.order.Front().Value.(*fragBuf))
	}
	if b.total < 0 || !b.haveOff || b.size < b.total {
		return nil, 0, false, dropped
	}
	// Check coverage of [0, total).
	sort.SliceStable(b.parts, func(i, j int) bool { return b.parts[i].off < b.parts[j].off })
	covered := 0
	for _, p := range b.parts {
		if p.off > covered {
			return nil, 0, false, dropped
		}
		if e := p.off + len(p.data); e > covered {
			covered = e
		}
	}
	if covered < b.total {
		return nil, 0, false, dropped
	}
	out := make([]byte, b.total)
	// Overlapping bytes: the fragment with the lowest offset wins (parts
	// are written from the highest offset down).
	for i := len(b.parts) - 1; i >= 0; i-- {
		p := b.parts[i]
		if p.off < len(out) {
			copy(out[p.off:], p.data)
		}
	}
	f.removeBuf(b)
	return out, b.proto, true, dropped
}

func (f *defrag) remove(k fragKey) int {
	if b := f.m[k]; b != nil {
		return f.removeBuf(b)
	}
	return 0
}

func (f *defrag) removeBuf(b *fragBuf) int {
	f.held -= b.size
	f.order.Remove(b.elem)
	delete(f.m, b.key)
	return len(b.parts)
}

// expire drops datagrams older than the timeout; it returns the number
// of fragments dropped.
func (f *defrag) expire(now time.Time) int {
	n := 0
	for e := f.order.Front(); e != nil; e = f.order.Front() {
		b := e.Value.(*fragBuf)
		if now.Sub(b.first) < f.timeout {
			break
		}
		n += f.removeBuf(b)
	}
	return n
}

// dropAll drops everything pending.
func (f *defrag) dropAll() int {
	n := 0
	for e := f.order.Front(); e != nil; e = f.order.Front() {
		n += f.removeBuf(e.Value.(*fragBuf))
	}
	return n
}
