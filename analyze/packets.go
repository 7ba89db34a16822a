package analyze

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/sbcwatch/sbcwatch/pipeline"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tap"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// PacketLimits bounds the raw frames kept as evidence. Zero fields take
// the defaults.
type PacketLimits struct {
	// PerConn is the frames kept per TLS connection (default 64): the
	// first PerConn-8 and the last 8, so the handshake and the close are
	// both there however long the connection ran.
	PerConn int
	// PerCall is the frames kept for one call's SIP messages (default
	// 2000); MaxBytes bounds all kept frames together (default 256 MiB).
	PerCall  int
	MaxBytes int64
}

func (l *PacketLimits) defaults() {
	if l.PerConn <= 0 {
		l.PerConn = 64
	}
	if l.PerCall <= 0 {
		l.PerCall = 2000
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = 256 << 20
	}
}

// connTail is how many of a connection's PerConn frames are its last ones.
const connTail = 8

// keptConn collects the frames of one TCP connection (both directions),
// then of the TLS connection it turned out to be.
type keptConn struct {
	c          *tlsaudit.Conn
	until      time.Time // frames after this belong to a later connection
	last       uint64    // the last frame added (a frame is added once)
	head, tail []report.Packet
	tailAt     int // next slot of the tail ring
	bytes      int64
}

type tuple struct{ a, b netip.AddrPort }

// tupleOf is the same for both directions of a connection.
func tupleOf(src, dst netip.AddrPort) tuple {
	if src.Compare(dst) > 0 {
		src, dst = dst, src
	}
	return tuple{src, dst}
}

// keeper keeps, in the analysis pass itself, the raw frames that may end
// up behind a call: the frame that completed each SIP message (at most
// PerCall per Call-ID) and, per TCP connection, its first PerConn-8 and
// last 8 frames. At the end only the frames of the kept messages of the
// calls and of the TLS connections on their ladders (report.RelatedConns)
// are returned, in frame order, up to MaxBytes. What it holds meanwhile
// is bounded by holdLimit; frames past it are counted, not kept.
type keeper struct {
	lim     PacketLimits
	cur     tap.Packet
	sip     map[uint64]report.Packet
	perCall map[string]int
	tuples  map[tuple]*keptConn
	done    map[*tlsaudit.Conn]*keptConn
	held    int64
	dropped uint64
}

var _ pipeline.FrameHook = (*keeper)(nil)

func newKeeper(lim PacketLimits) *keeper {
	lim.defaults()
	return &keeper{lim: lim, sip: map[uint64]report.Packet{}, perCall: map[string]int{},
		tuples: map[tuple]*keptConn{}, done: map[*tlsaudit.Conn]*keptConn{}}
}

// holdLimit bounds the bytes held during the pass: the frames of every
// TCP connection and SIP message that might still turn out to matter.
func (k *keeper) holdLimit() int64 { return max(2*k.lim.MaxBytes, 64<<20) }

func (k *keeper) packet(p tap.Packet) { k.cur = p }

func (k *keeper) frame() report.Packet {
	return report.Packet{Time: k.cur.Info.Timestamp, Frame: k.cur.Frame, LinkType: int(k.cur.LinkType),
		Data: slices.Clone(k.cur.Data)}
}

// Segment implements pipeline.FrameHook.
func (k *keeper) Segment(frame uint64, t time.Time, src, dst netip.AddrPort) {
	if frame != k.cur.Frame {
		return
	}
	key := tupleOf(src, dst)
	r := k.tuples[key]
	if r != nil && r.c != nil && t.After(r.until) {
		r = nil // the TLS connection is over: a new one on the same ports
	}
	if r == nil {
		if old := k.tuples[key]; old != nil && old.c == nil {
			k.held -= old.bytes // never a TLS connection: let it go
		}
		r = &keptConn{}
		k.tuples[key] = r
	}
	if r.last == frame {
		return
	}
	if k.held+int64(len(k.cur.Data)) > k.holdLimit() {
		k.dropped++
		return
	}
	r.last = frame
	p := k.frame()
	if r.c != nil {
		p.ConnID, p.ConnStart = r.c.ID, r.c.FirstSeen
	}
	d := r.add(p, k.lim.PerConn)
	r.bytes += d
	k.held += d
}

// Message implements pipeline.FrameHook.
func (k *keeper) Message(m *sip.Message) {
	if m.Frame == 0 || m.Frame != k.cur.Frame || m.CallID == "" {
		return
	}
	if _, dup := k.sip[m.Frame]; dup || k.perCall[m.CallID] >= k.lim.PerCall {
		return
	}
	if k.held+int64(len(k.cur.Data)) > k.holdLimit() {
		k.dropped++
		return
	}
	p := k.frame()
	p.CallID = m.CallID
	k.sip[m.Frame] = p
	k.perCall[m.CallID]++
	k.held += int64(len(p.Data))
}

// conn takes a TLS connection as it ends: the frames of its ports become
// its frames, and its last ACKs (within 2 s) still join them.
func (k *keeper) conn(c *tlsaudit.Conn) {
	r := k.tuples[tupleOf(c.Client, c.Server)]
	if r == nil || r.c != nil || c.FirstFrame == 0 {
		return
	}
	r.c = c
	r.until = latest(c.FirstSeen, c.LastSeen).Add(2 * time.Second)
	for _, ps := range [][]report.Packet{r.head, r.tail} {
		for i := range ps {
			ps[i].ConnID, ps[i].ConnStart = c.ID, c.FirstSeen
		}
	}
	k.done[c] = r
}

// packets returns the frames behind the report's calls.
func (k *keeper) packets(r *report.Report) []report.Packet {
	var out []report.Packet
	for _, c := range r.CallRecords {
		n := 0
		for _, m := range c.Messages {
			if m == nil || m.Frame == 0 || n >= k.lim.PerCall {
				continue
			}
			if p, ok := k.sip[m.Frame]; ok && p.CallID == c.CallID {
				out = append(out, p)
				delete(k.sip, m.Frame)
				n++
			}
		}
	}
	seen := map[*tlsaudit.Conn]bool{}
	for _, call := range r.CallRecords {
		for _, c := range report.RelatedConns(call, r.Conns) {
			kc := k.done[c]
			if seen[c] || kc == nil {
				continue
			}
			seen[c] = true
			for _, p := range kc.frames() {
				if p.Frame >= c.FirstFrame && !p.Time.After(kc.until) {
					out = append(out, p)
				}
			}
		}
	}
	slices.SortStableFunc(out, func(a, b report.Packet) int { return cmp.Compare(a.Frame, b.Frame) })
	var bytes int64
	for i, p := range out {
		if bytes+int64(len(p.Data)) > k.lim.MaxBytes {
			return out[:i]
		}
		bytes += int64(len(p.Data))
	}
	return out
}

// add keeps p among the first per-connTail frames or in the tail ring and
// returns how many bytes more are held.
func (k *keptConn) add(p report.Packet, per int) int64 {
	if len(k.head) < per-connTail {
		k.head = append(k.head, p)
		return int64(len(p.Data))
	}
	if len(k.tail) < connTail {
		k.tail = append(k.tail, p)
		return int64(len(p.Data))
	}
	old := len(k.tail[k.tailAt].Data)
	k.tail[k.tailAt] = p
	k.tailAt = (k.tailAt + 1) % connTail
	return int64(len(p.Data) - old)
}

// frames returns the kept frames in capture order.
func (k *keptConn) frames() []report.Packet {
	out := slices.Clone(k.head)
	out = append(out, k.tail[k.tailAt:]...)
	return append(out, k.tail[:k.tailAt]...)
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
