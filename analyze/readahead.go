package analyze

import (
	"context"
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

func newReadAhead(ctx context.Context, src tap.Source, pp pipeline.Preparser) *readAhead {
	ctx, cancel := context.WithCancel(ctx)
	r := &readAhead{
		out:    make(chan *batch, readBatches-2),
		free:   make(chan *batch, readBatches),
		cancel: cancel,
		ctx:    ctx,
	}
	r.done, r.total = src.Progress() // before the reader owns src
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(r.out)
		r.read(ctx, src, pp)
	}()
	return r
}

// read is the read-ahead goroutine.
func (r *readAhead) read(ctx context.Context, src tap.Source, pp pipeline.Preparser) {
	for {
		var b *batch
		select {
		case b = <-r.free:
		default:
			b = &batch{pkts: make([]tap.Packet, 0, readBatchSize), pre: make([]pipeline.Preparsed, readBatchSize)}
		}
		b.pkts, b.err = b.pkts[:0], nil
		for len(b.pkts) < readBatchSize {
			p, err := src.Next()
			if err != nil {
				b.err = err
				break
			}
			b.pkts = append(b.pkts, p)
		}
		b.done, b.total = src.Progress()
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
