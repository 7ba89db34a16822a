package syslog

import (
	"maps"
	"slices"
)

// TakeMessages returns the SIP messages completed since the last call
// and forgets them, for a long-running reader (serve) whose memory must
// not grow with the log.
func (p *Parser) TakeMessages() []*Message {
	out := p.res.Messages
	p.res.Messages = nil
	return out
}

// TakeSockets returns, in accept order, the sockets for which settled
// reports true (closed, or open long enough to judge) and forgets them;
// the others stay for the lines still to come. At most maxTracked
// sockets are kept: past that the oldest are returned as they are.
func (p *Parser) TakeSockets(settled func(*Socket) bool) []*Socket {
	var out, keep []*Socket
	for i, s := range p.res.Sockets {
		if settled(s) || len(p.res.Sockets)-i > maxTracked {
			out = append(out, s)
			continue
		}
		keep = append(keep, s)
	}
	p.res.Sockets = keep
	return out
}

// Flush ends the messages still being reassembled (as Result does), so
// the next TakeMessages returns them.
func (p *Parser) Flush() {
	for _, k := range slices.Sorted(maps.Keys(p.pending)) {
		p.flush(k)
	}
}

// Gaps returns the [S=] numbers found missing so far: datagrams lost
// between the device and this reader.
func (p *Parser) Gaps() int { return p.res.Gaps }
