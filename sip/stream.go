package sip

import (
	"bytes"
	"errors"
	"io"

	gs "github.com/emiago/sipgo/sip"
)

// Stream parses one direction of a TCP (or decrypted TLS) connection.
// Bytes are written as they arrive, split anywhere; each complete message
// (framed by sipgo's stream parser on Content-Length) is handed to the
// callback with the Time and Frame of the chunk that held its last byte,
// as tshark does. CRLF keep-alives between messages are skipped. After
// garbage or a parse error the stream counts one error and resynchronises
// at the next line that is a plausible start line; it never gives up.
type Stream struct {
	p    *Parser
	ps   *gs.ParserStream
	emit func(*Message)

	// acc holds every byte since the start of the message being parsed
	// (or, while resyncing, since the line being examined); fed of them
	// have been written to ps. base is the stream offset of acc[0].
	acc  []byte
	fed  int
	base uint64
	// chunks records where each Write ended, to date messages.
	chunks []chunk
	resync bool
	// odd: the message at the start of acc has a head with bare LF or
	// lone CR line ends; it is framed by oddFrame, not by sipgo. oddFrom
	// and oddClean track how far oddHead has checked that head.
	odd      bool
	oddFrom  int
	oddClean bool
	errs     uint64
	// broken is set when a header of the message being parsed failed;
	// lastN is how far sipgo had got then. skip counts body bytes of an
	// oversized message still to discard.
	broken bool
	lastN  int
	skip   int
	// noNL is how many leading bytes of acc hold no LF (while resyncing).
	noNL int
	// hdrInit, hdrStart, hdrScan, hdrDone track whether acc holds the end
	// of the current message's header section (see headerOpen).
	hdrInit, hdrDone  bool
	hdrStart, hdrScan int
}

type chunk struct {
	end  uint64 // stream offset just past the chunk's last byte
	meta MessageMeta
}

// NewStream returns a Stream that calls emit for every message parsed.
func (p *Parser) NewStream(emit func(*Message)) *Stream {
	if emit == nil {
		emit = func(*Message) {}
	}
	return &Stream{p: p, ps: p.gp.NewSIPStream(), emit: emit}
}

// Errors is the number of parse errors and garbage runs seen so far.
func (s *Stream) Errors() uint64 { return s.errs }

// Write feeds the next bytes of the stream; meta.Time is the time of this
// chunk. data is not retained.
func (s *Stream) Write(meta MessageMeta, data []byte) {
	if len(data) == 0 {
		return
	}
	s.acc = append(s.acc, data...)
	if len(s.chunks) >= maxChunks {
		// Thousands of tiny writes inside one message: merge the oldest
		// two, so a message ending in the second is dated a write early.
		s.chunks[1].meta = s.chunks[0].meta
		s.chunks = s.chunks[1:]
	}
	s.chunks = append(s.chunks, chunk{end: s.base + uint64(len(s.acc)), meta: meta})
	s.process()
}

// Gap reports n bytes lost before the next Write (0 when the amount is
// unknown, for a stream picked up mid-connection): the partial message is
// dropped and the stream resynchronises at the next start line. A gap is
// not counted in Errors; the tap counts lost bytes.
func (s *Stream) Gap(n int) {
	if n < 0 {
		return
	}
	s.ps.Reset()
	s.fed = 0
	s.broken, s.lastN, s.skip, s.noNL = false, 0, 0, 0
	s.base += uint64(len(s.acc)) + uint64(n)
	s.acc = s.acc[:0]
	s.chunks = s.chunks[:0]
	s.resync, s.odd = true, false
	s.hdrInit, s.hdrDone = false, false
	s.oddFrom, s.oddClean = 0, false
}

var crlfcrlf = []byte("\r\n\r\n")

// headerOpen reports whether acc starts a message whose header section
// has not ended yet. It scans each byte about once per message.
func (s *Stream) headerOpen() bool {
	if s.hdrDone {
		return false
	}
	if !s.hdrInit {
		i := 0
		for i < len(s.acc) && (s.acc[i] == '\r' || s.acc[i] == '\n') {
			i++
		}
		if i == len(s.acc) {
			return false // keep-alives only
		}
		s.hdrInit, s.hdrStart, s.hdrScan = true, i, i
	}
	from := max(s.hdrScan-3, s.hdrStart)
	if bytes.Contains(s.acc[from:], crlfcrlf) {
		s.hdrDone = true
		return false
	}
	s.hdrScan = len(s.acc)
	return true
}

func (s *Stream) process() {
	for {
		if s.skip > 0 {
			k := min(s.skip, len(s.acc))
			s.drop(k)
			s.skip -= k
			if s.skip > 0 {
				s.trimChunks()
				return
			}
		}
		if s.resync {
			k, ok := s.findStart()
			s.drop(k)
			if !ok {
				s.noNL = len(s.acc)
				s.trimChunks()
				return
			}
			s.resync = false
		}
		if s.fed == 0 {
			// Keep-alives between messages never reach the parser, so a
			// long-lived connection cannot accumulate them.
			k := 0
			for k+1 < len(s.acc) && s.acc[k] == '\r' && s.acc[k+1] == '\n' {
				k += 2
			}
			s.drop(k)
			if len(s.acc) == 0 || (len(s.acc) == 1 && s.acc[0] == '\r') {
				s.trimChunks()
				return
			}
		}
		if !s.odd && s.oddHead() {
			// sipgo splits header lines on CRLF only and would let a
			// header swallow the next (or refuse the line): frame this
			// message by line ends read as tshark reads them instead.
			s.odd = true
			s.ps.Reset()
			s.fed = 0
			s.broken, s.lastN = false, 0
		}
		if s.odd {
			switch s.oddFrame() {
			case oddWait:
				s.trimChunks()
				return
			case oddDone:
				continue
			}
			s.odd = false
			s.fail(1)
			continue
		}
		if end := len(s.acc); s.fed < end {
			// sipgo decides whether a header line is folded by looking at
			// the byte after its CRLF; while the header section is open,
			// hold back a final LF so that byte is there when it decides.
			// The start line is never folded, so its LF goes through at
			// once and a bad start line fails however the bytes arrive.
			if s.acc[end-1] == '\n' && s.headerOpen() &&
				bytes.IndexByte(s.acc[s.hdrStart:end-1], '\n') >= 0 {
				end--
			}
			if end > s.fed {
				_, _ = s.ps.Write(s.acc[s.fed:end])
				s.fed = end
			}
		}
		gm, n, err := s.ps.ParseNext()
		switch {
		case err == nil:
			s.complete(gm, n)
		case errors.Is(err, io.ErrUnexpectedEOF):
			if len(s.acc) > s.p.max {
				// sipgo bounds what it buffers; keep ours bounded too.
				s.fail(len(s.acc))
				continue
			}
			s.trimChunks()
			return
		case errors.Is(err, gs.ErrMessageTooLarge) && gm != nil && gm.ContentLength() != nil && n > 0:
			// The headers are whole and say how long the body is: hand on
			// the headers, skip the body, and the framing holds.
			s.errs++
			s.broken = false
			body := int(*gm.ContentLength())
			s.deliver(gm, n)
			s.ps.Reset()
			s.fed = 0
			s.skip = body
		case gm != nil && n > s.lastN && !errors.Is(err, gs.ErrParseReadBodyIncomplete) && !errors.Is(err, gs.ErrMessageTooLarge):
			// A malformed header line: sipgo consumed it and stays in the
			// header section, so parsing on keeps the Content-Length
			// framing. The message is refused when it completes.
			s.broken = true
			s.lastN = n
		default:
			// A bad start line, no Content-Length, or no way forward:
			// skip what was consumed and look for the next start line.
			s.fail(max(n, 1))
		}
	}
}

// oddFrame results.
const (
	oddDone = iota // a message was framed (emitted or counted)
	oddWait        // more bytes are needed
	oddFail        // no framing: a framing error
)

// oddFrame frames the message at the start of acc whose head has bare LF
// or lone CR line ends: the head ends at the first empty line (lineEnd),
// the body is Content-Length bytes (required over TCP), and the message
// is parsed through repair. The framing does not depend on how the bytes
// were split.
func (s *Stream) oddFrame() int {
	head, body, hasEnd := splitHead(s.acc)
	if !hasEnd || len(body) == 0 && s.acc[len(s.acc)-1] == '\r' {
		// No empty line yet, or one that may still be a CRLF's CR.
		if len(s.acc) > s.p.max {
			return oddFail
		}
		return oddWait
	}
	lines, _, _ := headLines(head)
	cl, idx := contentLength(lines)
	if idx < 0 || cl < 0 {
		return oddFail // over TCP the body cannot be framed without it
	}
	hl := len(s.acc) - len(body)
	if hl+cl > s.p.max {
		return oddFail
	}
	if len(body) < cl {
		return oddWait
	}
	n := hl + cl
	raw := s.acc[:n]
	meta := s.metaAt(s.base + uint64(n) - 1)
	m, err := (*Message)(nil), error(nil)
	if fixed, what := repair(raw); what != nil {
		if m, err = s.p.parseOne(meta, fixed, raw); err == nil {
			m.Repaired = what
		}
	} else {
		m, err = s.p.parseOne(meta, raw, raw)
	}
	if err != nil {
		s.errs++
	} else {
		s.emit(m)
	}
	s.consume(n)
	s.fed, s.odd = 0, false
	s.ps.Reset()
	return oddDone
}

// oddHead reports whether the message at the start of acc begins with a
// plausible start line and its head ends a line otherwise than with CRLF
// (a bare LF, a lone or doubled CR). It scans each byte about once per
// message, and trailing CRs decide nothing until the next byte arrives,
// so the answer does not depend on how the bytes were split.
func (s *Stream) oddHead() bool {
	if s.oddClean {
		return false
	}
	b := s.acc
	if s.oddFrom == 0 {
		first := bytes.IndexAny(b, "\r\n")
		if first < 0 {
			return false // the start line is not whole yet
		}
		if first == 0 || !isStartLine(b[:first]) {
			s.oddClean = true // not a message start: sipgo's path decides
			return false
		}
		s.oddFrom = first
	}
	for i := s.oddFrom; ; {
		j := bytes.IndexAny(b[i:], "\r\n")
		if j < 0 {
			s.oddFrom = len(b)
			return false
		}
		i += j
		switch {
		case b[i] == '\n':
			return true
		case i+1 == len(b):
			s.oddFrom = i // a CR at the end: wait for the next byte
			return false
		case b[i+1] != '\n':
			return true
		}
		// A CRLF at i; an empty line after it ends the head.
		switch {
		case i+2 == len(b), i+3 == len(b) && b[i+2] == '\r':
			s.oddFrom = i
			return false
		case b[i+2] == '\n':
			return true
		case b[i+2] == '\r' && b[i+3] == '\n':
			s.oddClean = true
			return false
		}
		i += 2
	}
}

// complete handles a message sipgo finished after n bytes of acc.
func (s *Stream) complete(gm gs.Message, n int) {
	if s.broken {
		s.errs++
		s.broken = false
		s.consume(n)
		return
	}
	s.deliver(gm, n)
}

// deliver builds and emits the message in acc[:n] and consumes it.
func (s *Stream) deliver(gm gs.Message, n int) {
	raw := bytes.TrimLeft(s.acc[:n], "\r\n")
	meta := s.metaAt(s.base + uint64(n) - 1)
	if m, err := s.p.build(meta, raw, gm); err == nil {
		s.emit(m)
	} else {
		s.errs++
	}
	s.consume(n)
}

// consume drops the n bytes of a finished message from acc.
func (s *Stream) consume(n int) {
	s.acc = s.acc[n:]
	s.fed -= n
	s.base += uint64(n)
	s.lastN, s.noNL = 0, 0
	s.hdrInit, s.hdrDone = false, false
	s.oddFrom, s.oddClean = 0, false
	if len(s.acc) == 0 {
		s.acc = s.acc[:0:0]
	}
}

// fail counts an error, resets the parser and resynchronises from offset
// from of acc.
func (s *Stream) fail(from int) {
	s.errs++
	s.ps.Reset()
	s.fed = 0
	s.broken, s.lastN = false, 0
	s.drop(min(from, len(s.acc)))
	s.resync = true
}

// findStart returns the offset in acc of the first complete line that is
// a plausible start line (ok), or the offset from which to keep looking
// once more bytes arrive (!ok).
func (s *Stream) findStart() (int, bool) {
	i := 0
	// acc[0] may sit mid-line after a gap or a failure: the first line
	// counts only if it starts the buffer and looks right.
	for i < len(s.acc) {
		from := 0
		if i == 0 {
			from = min(s.noNL, len(s.acc)) // already known to hold no LF
		}
		nl := bytes.IndexByte(s.acc[i+from:], '\n')
		if nl >= 0 {
			nl += from
		}
		if nl < 0 {
			if len(s.acc)-i > s.p.max {
				return len(s.acc), false
			}
			return i, false
		}
		line := bytes.TrimSuffix(s.acc[i:i+nl], []byte{'\r'})
		if isStartLine(line) {
			return i, true
		}
		i += nl + 1
	}
	return i, false
}

// drop discards the first k bytes of acc.
func (s *Stream) drop(k int) {
	if k <= 0 {
		return
	}
	s.acc = s.acc[k:]
	s.base += uint64(k)
	s.fed = max(0, s.fed-k)
	s.noNL = 0
	s.hdrInit, s.hdrDone = false, false
	s.oddFrom, s.oddClean = 0, false
	if len(s.acc) == 0 {
		s.acc = s.acc[:0:0]
	}
}

// metaAt returns the meta of the chunk holding stream offset off.
func (s *Stream) metaAt(off uint64) MessageMeta {
	for _, c := range s.chunks {
		if off < c.end {
			return c.meta
		}
	}
	if len(s.chunks) > 0 {
		return s.chunks[len(s.chunks)-1].meta
	}
	return MessageMeta{}
}

// trimChunks forgets chunks that end before acc starts.
// It also lets go of a large backing array once little of it is in use.
func (s *Stream) trimChunks() {
	i := 0
	for i < len(s.chunks)-1 && s.chunks[i].end <= s.base {
		i++
	}
	if i > 0 {
		s.chunks = append(s.chunks[:0], s.chunks[i:]...)
	}
	if cap(s.acc) > 64<<10 && cap(s.acc) > 4*len(s.acc) {
		s.acc = bytes.Clone(s.acc)
	}
}

// maxChunks bounds the write records kept for dating messages.
const maxChunks = 1024
