package live

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxTCPConns bounds the exporter connections one TCP source serves at
// once; more are refused and counted.
const maxTCPConns = 64

// tcpIdle closes an exporter connection silent this long.
const tcpIdle = 10 * time.Minute

// UDPSource receives one item per datagram: an ACDR packet, one or more
// HEP packets, or one syslog message.
type UDPSource struct {
	kind Kind
	addr string
	conn *net.UDPConn

	datagrams, oversize atomic.Uint64
}

var _ Source = (*UDPSource)(nil)

// NewUDP returns a source of kind k listening on addr (host:port).
func NewUDP(k Kind, addr string) *UDPSource { return &UDPSource{kind: k, addr: addr} }

// Name is "<kind>-udp".
func (s *UDPSource) Name() string { return s.kind.String() + "-udp" }

// Addr is the bound address (valid after Start).
func (s *UDPSource) Addr() netip.AddrPort {
	if s.conn == nil {
		return netip.AddrPort{}
	}
	return s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Start binds the socket.
func (s *UDPSource) Start(ctx context.Context) error {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", s.addr)
	if err != nil {
		return fmt.Errorf("live: %s: %w", s.Name(), err)
	}
	s.conn = pc.(*net.UDPConn)
	_ = s.conn.SetReadBuffer(4 << 20) // best effort: absorbs bursts
	return nil
}

// Run reads datagrams until ctx ends.
func (s *UDPSource) Run(ctx context.Context, q *Queue) error {
	if s.conn == nil {
		return fmt.Errorf("live: %s: not started", s.Name())
	}
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	defer s.conn.Close()
	buf := make([]byte, 65536)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			select { // no hot loop on a persistent error
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		t := time.Now()
		s.datagrams.Add(1)
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		data := append([]byte(nil), buf[:n]...)
		if s.kind == KindSyslog {
			for _, body := range SyslogBodies(data) {
				q.Offer(Item{Kind: s.kind, Time: t, From: from, Data: body})
			}
			continue
		}
		q.Offer(Item{Kind: s.kind, Time: t, From: from, Data: data})
	}
}

// Counters: datagrams read.
func (s *UDPSource) Counters() map[string]uint64 {
	return map[string]uint64{"datagrams": s.datagrams.Load()}
}

// TCPSource accepts exporter connections and splits each byte stream
// into items:
//
//   - HEP: HEP v3 packets are self-delimiting ("HEP3" and a 16-bit
//     total length).
//   - ACDR: every packet is preceded by its length as a 16-bit
//     big-endian number (the framing of RFC 4571), since ACDR packets
//     carry no length of their own.
//   - syslog: RFC 6587, octet counting ("<len> <msg>") or, when a
//     message does not start with a digit, one message per line.
//
// A connection whose framing breaks is closed and counted.
type TCPSource struct {
	kind Kind
	addr string
	ln   net.Listener

	conns, refused, framingErrors, messages atomic.Uint64
	open                                    atomic.Int64
}

var _ Source = (*TCPSource)(nil)

// NewTCP returns a source of kind k accepting on addr (host:port).
func NewTCP(k Kind, addr string) *TCPSource { return &TCPSource{kind: k, addr: addr} }

// Name is "<kind>-tcp".
func (s *TCPSource) Name() string { return s.kind.String() + "-tcp" }

// Addr is the bound address (valid after Start).
func (s *TCPSource) Addr() netip.AddrPort {
	if s.ln == nil {
		return netip.AddrPort{}
	}
	return s.ln.Addr().(*net.TCPAddr).AddrPort()
}

// Start binds the listening socket.
func (s *TCPSource) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("live: %s: %w", s.Name(), err)
	}
	s.ln = ln
	return nil
}

// Run accepts connections until ctx ends; every connection is read by a
// goroutine owned by ctx.
func (s *TCPSource) Run(ctx context.Context, q *Queue) error {
	if s.ln == nil {
		return fmt.Errorf("live: %s: not started", s.Name())
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	live := map[net.Conn]bool{}
	stop := context.AfterFunc(ctx, func() {
		s.ln.Close()
		mu.Lock()
		for c := range live {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if s.open.Load() >= maxTCPConns {
			s.refused.Add(1)
			c.Close()
			continue
		}
		s.conns.Add(1)
		s.open.Add(1)
		mu.Lock()
		live[c] = true
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				c.Close()
				mu.Lock()
				delete(live, c)
				mu.Unlock()
				s.open.Add(-1)
			}()
			if err := s.serve(ctx, c, q); err != nil && ctx.Err() == nil {
				s.framingErrors.Add(1)
			}
		})
	}
}

// maxFrame bounds one framed item.
const maxFrame = 1 << 20

func (s *TCPSource) serve(ctx context.Context, c net.Conn, q *Queue) error {
	from := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	r := bufio.NewReaderSize(c, 64<<10)
	emit := func(b []byte) {
		s.messages.Add(1)
		q.Offer(Item{Kind: s.kind, Time: time.Now(), From: from, Data: b})
	}
	for ctx.Err() == nil {
		_ = c.SetReadDeadline(time.Now().Add(tcpIdle))
		var (
			b   []byte
			err error
		)
		switch s.kind {
		case KindHEP:
			b, err = readHEP(r)
		case KindACDR:
			b, err = readLenPrefixed(r)
		case KindSyslog:
			b, err = readSyslogFrame(r)
			if err == nil {
				for _, body := range SyslogBodies(b) {
					emit(body)
				}
				continue
			}
		default:
			return fmt.Errorf("live: %s: no framing for %s", s.Name(), s.kind)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil // idle: the exporter reconnects
			}
			return err
		}
		emit(b)
	}
	return nil
}

// Counters: connections accepted and refused (over the bound), framing
// errors, messages read.
func (s *TCPSource) Counters() map[string]uint64 {
	return map[string]uint64{"connections": s.conns.Load(), "refused": s.refused.Load(),
		"framing_errors": s.framingErrors.Load(), "messages": s.messages.Load(), "open": uint64(max(0, s.open.Load()))}
}

var errFraming = errors.New("framing broken")

func readHEP(r *bufio.Reader) ([]byte, error) {
	h, err := r.Peek(6)
	if err != nil {
		if len(h) == 0 && errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, err
	}
	if string(h[:4]) != "HEP3" {
		return nil, fmt.Errorf("%w: HEP: no HEP3 magic", errFraming)
	}
	n := int(binary.BigEndian.Uint16(h[4:]))
	if n < 6 {
		return nil, fmt.Errorf("%w: HEP: length %d", errFraming, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func readLenPrefixed(r *bufio.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if n == 0 {
		return nil, fmt.Errorf("%w: ACDR: zero length", errFraming)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// readSyslogFrame reads one RFC 6587 frame: octet counting when the
// frame starts with a digit, else up to the next LF (or NUL).
func readSyslogFrame(r *bufio.Reader) ([]byte, error) {
	for {
		c, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if c == '\n' || c == '\r' || c == 0 {
			continue // empty frames between messages
		}
		_ = r.UnreadByte()
		if c >= '1' && c <= '9' {
			digits, err := r.ReadSlice(' ')
			if err != nil {
				return nil, fmt.Errorf("%w: syslog: octet count: %w", errFraming, err)
			}
			n, err := strconv.Atoi(string(digits[:len(digits)-1]))
			if err != nil || n <= 0 || n > maxFrame {
				return nil, fmt.Errorf("%w: syslog: octet count %q", errFraming, digits)
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				return nil, err
			}
			return b, nil
		}
		var b []byte
		for {
			line, err := r.ReadSlice('\n')
			b = append(b, line...)
			if len(b) > maxFrame {
				return nil, fmt.Errorf("%w: syslog: line over %d bytes", errFraming, maxFrame)
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil && len(b) == 0 {
				return nil, err
			}
			for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == 0) {
				b = b[:len(b)-1]
			}
			return b, nil
		}
	}
}
