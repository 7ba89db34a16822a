package analyze

import (
	"context"
	"errors"
	"runtime"
	"sync"

	"github.com/sbcwatch/sbcwatch/pipeline"
	"github.com/sbcwatch/sbcwatch/tap"
)

// feed is where the analysis loop takes its packets from: straight from
// the source, or from the read-ahead goroutine.
type feed interface {
	// next returns the next packet and, maybe, its SIP datagram parsed
	// ahead; io.EOF at the end.
	next() (tap.Packet, *pipeline.Preparsed, error)
	// progress is the source's Progress (as of the last batch read).
	progress() (done, total int64)
	// stop ends the read-ahead goroutine, if any, and waits for it; the
	// source may be closed after.
	stop()
}

// direct reads the source on the analysis goroutine.
type direct struct{ src tap.Source }

func (d direct) next() (tap.Packet, *pipeline.Preparsed, error) {
	p, err := d.src.Next()
	return p, nil, err
}
func (d direct) progress() (int64, int64) { return d.src.Progress() }
func (d direct) stop()                    {}

// Read-ahead bounds: batches of readBatchSize packets, at most
// readBatches of them read ahead of the engine (about a thousand frames,
// a few MB).
const (
	readBatchSize = 256
	readBatches   = 4
)

// batch is packets read in a row, their SIP datagrams pre-parsed, and
// what ended the batch early (io.EOF or a read error), if anything.
type batch struct {
	pkts        []tap.Packet
	pre         []pipeline.Preparsed
	err         error
	done, total int64
}

// readAhead reads the source and pre-parses the SIP datagrams of plain
// UDP frames on a second goroutine, owned by the analysis context, while
// the engine decodes the previous batch: decoding state (TCP,
// fragments), the tracker and the correlation stay on the analysis
// goroutine, in frame order. The result is the same as direct's (see
// pipeline.Preparsed).
type readAhead struct {
	out    chan *batch
	free   chan *batch
	cancel context.CancelFunc
	wg     sync.WaitGroup

	cur         *batch
	i           int
	end         error // set once the last batch was consumed
	ctx         context.Context
	done, total int64 // progress before the first batch
}

// useReadAhead says whether a second goroutine can help.
func useReadAhead(opt Options) bool {
	return !opt.Sequential && runtime.GOMAXPROCS(0) > 1
}

// newReadAhead starts the read-ahead. With live set (the input has a
// stream: standard input, a FIFO), a batch goes to the engine as soon as
// no more packets are waiting, so a slow stream's packets are not held
// back until a batch fills.
func newReadAhead(ctx context.Context, src tap.Source, pp pipeline.Preparser, live bool) *readAhead {
	ctx, cancel := context.WithCancel(ctx)
	r := &readAhead{
		out:    make(chan *batch, readBatches-2),
		free:   make(chan *batch, readBatches),
		cancel: cancel,
		ctx:    ctx,
	}
	r.done, r.total = src.Progress() // before the reader owns src
	next := src.Next
	progress := src.Progress
	if live {
		// A pump reads the source packet by packet; the reader takes
		// what has arrived, without waiting for a full batch.
		pumped := make(chan pumpedPacket, readBatchSize)
		var last pumpedPacket
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer close(pumped)
			for {
				p, err := src.Next()
				done, total := src.Progress()
				select {
				case pumped <- pumpedPacket{p, err, done, total}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}()
		take := func(wait bool) (pumpedPacket, bool) {
			if wait {
				x, ok := <-pumped
				if !ok {
					return pumpedPacket{err: context.Canceled}, true
				}
				return x, true
			}
			select {
			case x, ok := <-pumped:
				if !ok {
					return pumpedPacket{err: context.Canceled}, true
				}
				return x, true
			default:
				return pumpedPacket{}, false
			}
		}
		// The first packet of a batch is waited for; the rest only
		// while they are there.
		first := true
		next = func() (tap.Packet, error) {
			x, ok := take(first)
			if !ok {
				first = true
				return tap.Packet{}, errBatchEnd
			}
			first = false
			last = x
			if x.err != nil {
				first = true
			}
			return x.p, x.err
		}
		progress = func() (int64, int64) { first = true; return last.done, last.total }
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(r.out)
		r.read(ctx, next, progress, pp)
	}()
	return r
}

// pumpedPacket is one result of Source.Next, with the progress after it.
type pumpedPacket struct {
	p           tap.Packet
	err         error
	done, total int64
}

// errBatchEnd ends a batch early: no more packets are waiting (live).
var errBatchEnd = errors.New("analyze: read-ahead: nothing waiting")

// read is the read-ahead goroutine.
func (r *readAhead) read(ctx context.Context, next func() (tap.Packet, error), progress func() (int64, int64), pp pipeline.Preparser) {
	for {
		var b *batch
		select {
		case b = <-r.free:
		default:
			b = &batch{pkts: make([]tap.Packet, 0, readBatchSize), pre: make([]pipeline.Preparsed, readBatchSize)}
		}
		b.pkts, b.err = b.pkts[:0], nil
		for len(b.pkts) < readBatchSize {
			p, err := next()
			if errors.Is(err, errBatchEnd) {
				break
			}
			if err != nil {
				b.err = err
				break
			}
			b.pkts = append(b.pkts, p)
		}
		b.done, b.total = progress()
		for i := range b.pkts {
			pp.Parse(b.pkts[i], &b.pre[i])
		}
		select {
		case r.out <- b:
		case <-ctx.Done():
			return
		}
		if b.err != nil {
			return
		}
	}
}

func (r *readAhead) next() (tap.Packet, *pipeline.Preparsed, error) {
	for {
		if r.end != nil {
			return tap.Packet{}, nil, r.end
		}
		if r.cur != nil && r.i < len(r.cur.pkts) {
			i := r.i
			r.i++
			return r.cur.pkts[i], &r.cur.pre[i], nil
		}
		if r.cur != nil {
			if r.cur.err != nil {
				r.end = r.cur.err
				continue
			}
			clear(r.cur.pre) // drop the messages the engine did not take
			select {
			case r.free <- r.cur:
			default:
			}
		}
		b, ok := <-r.out
		if !ok {
			// Only a cancelled context stops the reader before the end.
			if r.end = r.ctx.Err(); r.end == nil {
				r.end = context.Canceled
			}
			continue
		}
		r.cur, r.i = b, 0
	}
}

func (r *readAhead) progress() (int64, int64) {
	if r.cur == nil {
		return r.done, r.total
	}
	return r.cur.done, r.cur.total
}

func (r *readAhead) stop() {
	r.cancel()
	r.wg.Wait()
}
