package analyze

import (
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

// keepSlack is how far before the newest capture time a call or
// connection not seen yet may still be dated (packets slightly out of
// order, log lines merged in by time).
const keepSlack = 10 * time.Second

// tupleIdle is how long a TCP connection may be silent before the tap
// has closed it (tap's idle timeout, 2 min) and, were it TLS, the engine
// has handed it over: its frames are let go after this.
const tupleIdle = 3 * time.Minute

// keptConn collects the frames of one TCP connection (both directions),
// then of the TLS connection it turned out to be.
type keptConn struct {
	c          *tlsaudit.Conn
	ends       tuple     // its ports
	first      time.Time // its first frame
	lastT      time.Time // its latest frame
	until      time.Time // frames after this belong to a later connection
	last       uint64    // the last frame added (a frame is added once)
	head, tail []report.Packet
	tailAt     int // next slot of the tail ring
	bytes      int64
	plain      bool        // carried plain SIP: not TLS, nothing kept
	cands      []*sip.Call // decided calls whose ladder it may be on (open)
	claimed    bool        // on a decided call's ladder
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
// last 8 frames. Frames leave (to out) as the engine decides: a call's
// SIP frames when the call is let go, the frames of a TLS connection
// once it ended (and its last ACKs, 2 s, passed) and a decided call has
// it on its ladder (report.RelatedConns), in either order. What no call
// can still want is let go: a call's frames when it is decided, a TLS
// connection once no call still tracked started before it, a decided
// call's window once no connection can still start within it, a TCP
// connection that carried plain SIP or fell silent. So memory follows
// the calls and connections up at once, bounded by holdLimit (frames
// past it are counted in dropped, not kept); MaxBytes bounds what leaves
// (the rest counted too).
type keeper struct {
	lim     PacketLimits
	cur     tap.Packet
	eng     *pipeline.Engine      // what is still pending in it
	out     func([]report.Packet) // where chosen frames go
	hold    bool                  // batch: calls and connections all come at the end
	lastSIP uint64                // the last frame taken for a SIP message
	sip     map[string][]report.Packet
	perCall map[string]int
	tuples  map[tuple]*keptConn
	ended   []*keptConn // TLS connections over, frames not yet out or let go
	recent  []*sip.Call // decided calls (windows only) a connection may still join
	held    int64
	sent    int64
	dropped uint64
	now     time.Time
	trimmed time.Time
}

var _ frameKeeper = (*keeper)(nil)

func (k *keeper) setEngine(e *pipeline.Engine) { k.eng = e }

func newKeeper(lim PacketLimits, out func([]report.Packet)) *keeper {
	lim.defaults()
	return &keeper{lim: lim, out: out, sip: map[string][]report.Packet{}, perCall: map[string]int{},
		tuples: map[tuple]*keptConn{}}
}

// holdLimit bounds the bytes held during the pass: the frames of every
// TCP connection and SIP message that might still turn out to matter.
func (k *keeper) holdLimit() int64 { return max(2*k.lim.MaxBytes, 64<<20) }

// trimEvery is how much capture time passes between two trims.
const trimEvery = 5 * time.Second

// packet is the frame about to be decoded; now and then (every trimEvery
// of capture time) what no call can still want is let go.
func (k *keeper) packet(p tap.Packet) {
	k.cur = p
	if t := p.Info.Timestamp; t.After(k.now) {
		k.now = t
	}
	if k.now.Sub(k.trimmed) >= trimEvery {
		k.trimmed = k.now
		k.trim(false)
	}
}

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
			k.release(old) // never a TLS connection: let it go
		}
		r = &keptConn{first: t, ends: key}
		k.tuples[key] = r
	}
	if t.After(r.lastT) {
		r.lastT = t
	}
	if r.last == frame || r.plain {
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
	if m.Transport == "tcp" && m.Origin == "wire" {
		// Plain SIP on this TCP connection: it is no TLS connection.
		if r := k.tuples[tupleOf(m.Src, m.Dst)]; r != nil && r.c == nil && !r.plain {
			k.release(r)
			r.plain = true
		}
	}
	if m.Frame == 0 || m.Frame != k.cur.Frame || m.CallID == "" {
		return
	}
	if m.Frame == k.lastSIP || k.perCall[m.CallID] >= k.lim.PerCall {
		return
	}
	if k.held+int64(len(k.cur.Data)) > k.holdLimit() {
		k.dropped++
		return
	}
	p := k.frame()
	p.CallID = m.CallID
	k.lastSIP = m.Frame
	k.sip[m.CallID] = append(k.sip[m.CallID], p)
	k.perCall[m.CallID]++
	k.held += int64(len(p.Data))
}

// conn takes a TLS connection as it ends: the frames of its ports become
// its frames, and its last ACKs (within 2 s) still join them.
func (k *keeper) conn(c *tlsaudit.Conn) {
	r := k.tuples[tupleOf(c.Client, c.Server)]
	if r == nil || r.c != nil || r.plain || c.FirstFrame == 0 {
		return
	}
	r.c = c
	r.until = latest(c.FirstSeen, c.LastSeen).Add(2 * time.Second)
	for _, ps := range [][]report.Packet{r.head, r.tail} {
		for i := range ps {
			ps[i].ConnID, ps[i].ConnStart = c.ID, c.FirstSeen
		}
	}
	for _, w := range append(r.cands, k.recent...) {
		if related(w, c) {
			r.claimed = true
			break
		}
	}
	r.cands = nil
	k.ended = append(k.ended, r)
}

// call takes a call as it is decided: the frames of its kept messages
// leave now, and the TLS connections on its ladder are claimed (their
// frames leave once they are over).
func (k *keeper) call(c *sip.Call) {
	frames := k.sip[c.CallID]
	delete(k.sip, c.CallID)
	delete(k.perCall, c.CallID)
	for _, p := range frames {
		k.held -= int64(len(p.Data))
	}
	var out []report.Packet
	n := 0
	for _, m := range c.Messages {
		if m == nil || m.Frame == 0 || n >= k.lim.PerCall {
			continue
		}
		if i := slices.IndexFunc(frames, func(p report.Packet) bool { return p.Frame == m.Frame }); i >= 0 {
			out = append(out, frames[i])
			frames[i].Frame = 0 // taken once
			n++
		}
	}
	k.emit(out)

	w := &sip.Call{Start: c.Start, End: c.End, Last: c.Last, SBCSide: c.SBCSide, MicrosoftAddr: c.MicrosoftAddr}
	for _, r := range k.ended {
		if !r.claimed && related(w, r.c) {
			r.claimed = true
		}
	}
	for _, r := range k.tuples {
		if r.c == nil && !r.plain && relatedAt(w, r.first, r) {
			r.cands = append(r.cands, w)
		}
	}
	k.recent = append(k.recent, w)
}

// related says whether conn is on the ladder of (a window of) call.
func related(call *sip.Call, conn *tlsaudit.Conn) bool {
	return len(report.RelatedConns(call, []*tlsaudit.Conn{conn})) == 1
}

// relatedAt is related for a connection not over yet: first seen at
// first, between the ports of r (either way round: the test is
// symmetric).
func relatedAt(call *sip.Call, first time.Time, r *keptConn) bool {
	return related(call, &tlsaudit.Conn{FirstSeen: first, Client: r.ends.a, Server: r.ends.b})
}

// trim sends the frames of claimed connections that are over and lets
// go what no call can still want; all (end of input) ends everything.
func (k *keeper) trim(all bool) {
	cut := k.now.Add(-keepSlack)
	var oldestCall time.Time
	if k.eng != nil && !all {
		oldestCall, _ = k.eng.Pending()
	}
	keep := k.ended[:0]
	for _, r := range k.ended {
		ready := all || k.now.After(r.until)
		switch {
		case ready && r.claimed:
			k.emit(r.frames())
			k.release(r)
		case ready && !k.hold && (all || r.c.FirstSeen.Before(cut) && (oldestCall.IsZero() || r.c.FirstSeen.Before(oldestCall))):
			k.release(r) // no call still to come can have it on its ladder
		default:
			keep = append(keep, r)
			continue
		}
		if k.tuples[tupleOf(r.c.Client, r.c.Server)] == r {
			delete(k.tuples, tupleOf(r.c.Client, r.c.Server))
		}
	}
	clear(k.ended[len(keep):])
	k.ended = keep
	if k.hold && !all {
		return
	}
	k.recent = slices.DeleteFunc(k.recent, func(w *sip.Call) bool {
		return all || ladderEnd(w).Before(cut)
	})
	for key, r := range k.tuples {
		if r.c == nil && (all || r.lastT.Before(k.now.Add(-tupleIdle))) {
			k.release(r) // silent past the tap's idle timeout: not TLS
			delete(k.tuples, key)
		}
	}
}

// ladderEnd is the end of the window report.RelatedConns looks in.
func ladderEnd(call *sip.Call) time.Time {
	end := call.End
	if end.IsZero() {
		end = call.Last
	}
	return end.Add(5 * time.Second)
}

// frames returns a TLS connection's frames that belong to it, in
// capture order.
func (r *keptConn) frames() []report.Packet {
	var out []report.Packet
	for _, p := range r.all() {
		if p.Frame >= r.c.FirstFrame && !p.Time.After(r.until) {
			out = append(out, p)
		}
	}
	return out
}

// release lets go of a connection's frames.
func (k *keeper) release(r *keptConn) {
	k.held -= r.bytes
	r.bytes, r.head, r.tail, r.tailAt = 0, nil, nil, 0
}

// emit sends frames on, within MaxBytes (the rest is counted).
func (k *keeper) emit(ps []report.Packet) {
	out := ps[:0]
	for _, p := range ps {
		if k.sent+int64(len(p.Data)) > k.lim.MaxBytes {
			k.dropped++
			continue
		}
		k.sent += int64(len(p.Data))
		out = append(out, p)
	}
	if len(out) > 0 && k.out != nil {
		k.out(out)
	}
}

// close ends the input: every connection over is sent or let go.
func (k *keeper) close() { k.trim(true) }

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

// all returns the kept frames in capture order.
func (k *keptConn) all() []report.Packet {
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
