package pipeline

import (
	"bytes"
	"time"

	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tap"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// probeLimit is how many bytes per direction a stream may carry before
// its protocol must be known; past it the stream is ignored.
const probeLimit = 8192

type protocol uint8

const (
	undecided protocol = iota
	protoTLS
	protoSIP
	protoWS
	protoOther
)

// op is one buffered call on a stream whose protocol is not yet known.
type op struct {
	kind byte // 'd' data, 'g' gap, 'e' event
	dir  tap.Dir
	data []byte
	n    int
	t    time.Time
	ev   tap.Event
}

// dispatcher holds a TCP stream's first bytes until its content says
// what it is, then hands everything, in order, to the right consumer.
type dispatcher struct {
	p        *Engine
	info     tap.ConnInfo
	proto    protocol
	pending  []op
	seen     [2]int
	target   tap.StreamConsumer
	sipDirs  [2]*sip.Stream
	ws       [2]*wsStream
	sipOwned bool
	counted  bool // SIP parse errors added to the stats
}

func (d *dispatcher) Data(dir tap.Dir, data []byte, t time.Time) {
	if d.proto == undecided {
		d.pending = append(d.pending, op{kind: 'd', dir: dir, data: append([]byte(nil), data...), t: t})
		d.seen[dir] += len(data)
		d.decide()
		return
	}
	d.deliver(op{kind: 'd', dir: dir, data: data, t: t})
}

func (d *dispatcher) Gap(dir tap.Dir, n int, t time.Time) {
	if d.proto == undecided {
		d.pending = append(d.pending, op{kind: 'g', dir: dir, n: n, t: t})
		return
	}
	d.deliver(op{kind: 'g', dir: dir, n: n, t: t})
}

func (d *dispatcher) Event(e tap.Event) {
	if d.proto == undecided {
		d.pending = append(d.pending, op{kind: 'e', ev: e})
		return
	}
	d.deliver(op{kind: 'e', ev: e})
}

func (d *dispatcher) Close(t time.Time, reason tap.CloseReason) {
	if d.proto == undecided {
		d.decideAtClose()
	}
	if d.target != nil {
		d.target.Close(t, reason)
	}
	if d.proto == protoSIP && !d.counted {
		d.counted = true
		d.p.st.SIPErrors += d.errors()
	}
	d.pending = nil
}

// firstBytes returns the buffered bytes of one direction (up to limit).
func (d *dispatcher) firstBytes(dir tap.Dir) []byte {
	var b []byte
	for _, o := range d.pending {
		if o.kind == 'd' && o.dir == dir {
			b = append(b, o.data...)
			if len(b) >= 64 {
				break
			}
		}
	}
	return b
}

func (d *dispatcher) decide() {
	for _, dir := range []tap.Dir{tap.ClientToServer, tap.ServerToClient} {
		b := d.firstBytes(dir)
		if len(b) == 0 {
			continue
		}
		switch {
		case tlsaudit.LooksLikeTLS(b):
			d.start(protoTLS)
			return
		case sip.LooksLikeSIP(b):
			d.start(protoSIP)
			return
		case looksLikeWebSocketUpgrade(b):
			d.start(protoWS)
			return
		}
		if len(b) >= 16 && !plausiblePrefix(b) {
			if d.info.SawSYN {
				d.start(protoOther)
				return
			}
			// Picked up mid-stream: the first bytes may be the tail of a
			// message; a SIP start line further on decides it.
			if midStreamSIP(d.allBytes(dir)) {
				d.start(protoSIP)
				return
			}
		}
	}
	if d.seen[0] > probeLimit || d.seen[1] > probeLimit {
		d.start(protoOther)
	}
}

// allBytes returns every buffered byte of one direction.
func (d *dispatcher) allBytes(dir tap.Dir) []byte {
	var b []byte
	for _, o := range d.pending {
		if o.kind == 'd' && o.dir == dir {
			b = append(b, o.data...)
		}
	}
	return b
}

// midStreamSIP reports whether a SIP start line begins after some line
// end in b.
func midStreamSIP(b []byte) bool {
	for i := bytes.IndexByte(b, '\n'); i >= 0 && i+1 < len(b); {
		if sip.LooksLikeSIP(b[i+1:]) {
			return true
		}
		j := bytes.IndexByte(b[i+1:], '\n')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// plausiblePrefix is true while the bytes could still become SIP or TLS
// (too short to tell, or only keep-alive CRLFs so far).
func plausiblePrefix(b []byte) bool {
	for _, c := range b {
		if c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

func (d *dispatcher) decideAtClose() {
	d.decide()
	if d.proto == undecided && !d.info.SawSYN {
		for _, dir := range []tap.Dir{tap.ClientToServer, tap.ServerToClient} {
			if midStreamSIP(d.allBytes(dir)) {
				d.start(protoSIP)
				return
			}
		}
	}
	if d.proto == undecided {
		d.start(protoOther)
	}
}

// start fixes the protocol and replays the buffered calls.
func (d *dispatcher) start(p protocol) {
	d.proto = p
	switch p {
	case protoTLS:
		d.p.st.TLSConns++
		d.target = d.p.tls.Stream(d.info)
	case protoSIP:
		for i := range d.sipDirs {
			d.sipDirs[i] = d.p.parser.NewStream(d.p.observe)
			if !d.info.SawSYN {
				d.sipDirs[i].Gap(0) // picked up mid-connection: resync first
			}
		}
	case protoWS:
		for i := range d.ws {
			d.ws[i] = &wsStream{}
		}
	}
	pend := d.pending
	d.pending = nil
	for _, o := range pend {
		d.deliver(o)
	}
}

func (d *dispatcher) deliver(o op) {
	switch d.proto {
	case protoTLS:
		switch o.kind {
		case 'd':
			d.target.Data(o.dir, o.data, o.t)
		case 'g':
			d.target.Gap(o.dir, o.n, o.t)
		case 'e':
			d.target.Event(o.ev)
		}
	case protoSIP:
		s := d.sipDirs[o.dir]
		switch o.kind {
		case 'd':
			s.Write(d.meta(o.dir, o.t), o.data)
		case 'g':
			s.Gap(o.n)
		}
	case protoWS:
		if o.kind != 'd' {
			return
		}
		for _, payload := range d.ws[o.dir].write(o.data) {
			if !sip.LooksLikeSIP(payload) {
				continue
			}
			m := d.meta(o.dir, o.t)
			m.Transport = "ws"
			msg, err := d.p.parser.ParseDatagram(m, payload)
			if err != nil {
				d.p.st.SIPErrors++
				continue
			}
			d.p.observe(msg)
		}
	}
}

func (d *dispatcher) meta(dir tap.Dir, t time.Time) sip.MessageMeta {
	m := sip.MessageMeta{Time: t, Transport: "tcp", Origin: "wire", Src: d.info.Client, Dst: d.info.Server}
	if dir == tap.ServerToClient {
		m.Src, m.Dst = d.info.Server, d.info.Client
	}
	return m
}

func (d *dispatcher) errors() uint64 {
	var n uint64
	for _, s := range d.sipDirs {
		if s != nil {
			n += s.Errors()
		}
	}
	return n
}
