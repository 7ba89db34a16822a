package analyze

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/sbcwatch/sbcwatch/report"
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

// keptConn collects the frames of one TLS connection on a call's ladder.
type keptConn struct {
	c          *tlsaudit.Conn
	until      time.Time // frames after this belong to a later connection
	head, tail []report.Packet
	tailAt     int // next slot of the tail ring
}

// keepPackets reads the captures a second time and returns the frames
// behind the report: every frame that carried a kept SIP message of a
// call, and the frames of the TLS connections on the calls' ladders
// (report.RelatedConns). Frame numbers are those of the first pass (the
// same files merged the same way). SIP read from SBC logs has no frame.
// SIP/TCP messages bring the frame that completed them, not every
// segment, and a fragmented datagram its last fragment only.
func keepPackets(ctx context.Context, captures []string, r *report.Report, lim PacketLimits) ([]report.Packet, error) {
	lim.defaults()
	byFrame := map[uint64]string{} // frame -> Call-ID
	for _, c := range r.CallRecords {
		n := 0
		for _, m := range c.Messages {
			if m == nil || m.Frame == 0 || n >= lim.PerCall {
				continue
			}
			if _, dup := byFrame[m.Frame]; !dup {
				byFrame[m.Frame] = c.CallID
				n++
			}
		}
	}
	type tuple struct{ a, b netip.AddrPort }
	byTuple := map[tuple][]*keptConn{}
	var conns []*keptConn
	seen := map[*tlsaudit.Conn]bool{}
	for _, call := range r.CallRecords {
		for _, c := range report.RelatedConns(call, r.Conns) {
			if seen[c] || c.FirstFrame == 0 {
				continue
			}
			seen[c] = true
			// The last ACKs of a close come just after the last payload.
			k := &keptConn{c: c, until: latest(c.FirstSeen, c.LastSeen).Add(2 * time.Second)}
			conns = append(conns, k)
			key := tuple{c.Client, c.Server}
			byTuple[key] = append(byTuple[key], k)
		}
	}
	if len(byFrame) == 0 && len(conns) == 0 {
		return nil, nil
	}

	// hit is where the current frame goes (set by the Segment hook).
	var hit *keptConn
	dec := tap.NewDecoder(discard{}, tap.Options{
		HeadersOnly: true,
		Segment: func(frame uint64, t time.Time, src, dst netip.AddrPort) {
			ks := byTuple[tuple{src, dst}]
			if ks == nil {
				ks = byTuple[tuple{dst, src}]
			}
			for _, k := range ks {
				if frame >= k.c.FirstFrame && !t.After(k.until) {
					hit = k
					return
				}
			}
		},
	})
	src, err := tap.Open(captures...)
	if err != nil {
		return nil, fmt.Errorf("keep packets: %w", err)
	}
	defer src.Close()
	var out []report.Packet
	var bytes int64
	for n := 0; ; n++ {
		if n%expireEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		pkt, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			break // the first pass reported the damage
		}
		callID, isSIP := byFrame[pkt.Frame]
		hit = nil
		if len(conns) > 0 {
			dec.Decode(pkt)
		}
		if !isSIP && hit == nil {
			continue
		}
		if bytes+int64(len(pkt.Data)) > lim.MaxBytes {
			break
		}
		p := report.Packet{Time: pkt.Info.Timestamp, Frame: pkt.Frame, LinkType: int(pkt.LinkType),
			Data: slices.Clone(pkt.Data)}
		switch {
		case isSIP:
			p.CallID = callID
			out = append(out, p)
			bytes += int64(len(p.Data))
		default:
			p.ConnID, p.ConnStart = hit.c.ID, hit.c.FirstSeen
			bytes += hit.add(p, lim.PerConn)
		}
	}
	for _, k := range conns {
		out = append(out, k.frames()...)
	}
	slices.SortStableFunc(out, func(a, b report.Packet) int {
		return cmp.Compare(a.Frame, b.Frame)
	})
	return out, nil
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

// discard is a tap.Handler that takes nothing (the pass only picks
// frames).
type discard struct{}

func (discard) Datagram(tap.Meta, []byte)              {}
func (discard) Stream(tap.ConnInfo) tap.StreamConsumer { return nil }
