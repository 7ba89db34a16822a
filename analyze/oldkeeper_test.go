package analyze

// The keeper as it was before it streamed (main before issue 10's last
// part): it held every frame to the end and chose them from the whole
// report. The test oracle for the streaming keeper.

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/sbcwatch/sbcwatch/pipeline"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tap"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// oldCollector is the collector that told the old keeper of each TLS
// connection.
type oldCollector struct {
	collector
	keep *oldKeeper
}

func (c *oldCollector) TLSConn(x *tlsaudit.Conn) {
	c.collector.TLSConn(x)
	c.keep.conn(x)
}

var _ pipeline.Sink = (*oldCollector)(nil)

// oldFiles is Files with KeepPackets as it was: the report and the
// frames chosen at the end.
func oldFiles(ctx context.Context, paths []string, opt Options) (*report.Report, error) {
	col := &oldCollector{keep: newOldKeeper(*opt.KeepPackets)}
	opt.KeepPackets = nil
	sum, err := run(ctx, paths, opt, col, col.keep)
	if err != nil {
		return nil, err
	}
	r := col.report(true)
	r.Stats, r.Warnings = sum.Stats, sum.Warnings
	r.Packets = col.keep.packets(r)
	return r, nil
}

// oldKeptConn collects the frames of one TCP connection (both directions),
// then of the TLS connection it turned out to be.
type oldKeptConn struct {
	c          *tlsaudit.Conn
	until      time.Time // frames after this belong to a later connection
	last       uint64    // the last frame added (a frame is added once)
	head, tail []report.Packet
	tailAt     int // next slot of the tail ring
	bytes      int64
}

// keeper keeps, in the analysis pass itself, the raw frames that may end
// up behind a call: the frame that completed each SIP message (at most
// PerCall per Call-ID) and, per TCP connection, its first PerConn-8 and
// last 8 frames. At the end only the frames of the kept messages of the
// calls and of the TLS connections on their ladders (report.RelatedConns)
// are returned, in frame order, up to MaxBytes. What it holds meanwhile
// is bounded by holdLimit; frames past it are counted, not kept.
type oldKeeper struct {
	lim     PacketLimits
	cur     tap.Packet
	sip     map[uint64]report.Packet
	perCall map[string]int
	tuples  map[tuple]*oldKeptConn
	done    map[*tlsaudit.Conn]*oldKeptConn
	held    int64
	dropped uint64
}

var _ frameKeeper = (*oldKeeper)(nil)

func (k *oldKeeper) setEngine(*pipeline.Engine) {}
func (k *oldKeeper) close()                     {}

func newOldKeeper(lim PacketLimits) *oldKeeper {
	lim.defaults()
	return &oldKeeper{lim: lim, sip: map[uint64]report.Packet{}, perCall: map[string]int{},
		tuples: map[tuple]*oldKeptConn{}, done: map[*tlsaudit.Conn]*oldKeptConn{}}
}

// holdLimit bounds the bytes held during the pass: the frames of every
// TCP connection and SIP message that might still turn out to matter.
func (k *oldKeeper) holdLimit() int64 { return max(2*k.lim.MaxBytes, 64<<20) }

func (k *oldKeeper) packet(p tap.Packet) { k.cur = p }

func (k *oldKeeper) frame() report.Packet {
	return report.Packet{Time: k.cur.Info.Timestamp, Frame: k.cur.Frame, LinkType: int(k.cur.LinkType),
		Data: slices.Clone(k.cur.Data)}
}

// Segment implements pipeline.FrameHook.
func (k *oldKeeper) Segment(frame uint64, t time.Time, src, dst netip.AddrPort) {
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
		r = &oldKeptConn{}
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
func (k *oldKeeper) Message(m *sip.Message) {
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
func (k *oldKeeper) conn(c *tlsaudit.Conn) {
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
func (k *oldKeeper) packets(r *report.Report) []report.Packet {
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
func (k *oldKeptConn) add(p report.Packet, per int) int64 {
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
func (k *oldKeptConn) frames() []report.Packet {
	out := slices.Clone(k.head)
	out = append(out, k.tail[k.tailAt:]...)
	return append(out, k.tail[:k.tailAt]...)
}
