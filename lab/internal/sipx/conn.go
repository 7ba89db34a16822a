package sipx

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Conn is a SIP stream connection (TLS or TCP) with serialised writes and
// an optional hook that sees every message sent or received (the SBC uses
// it for its ACDR export).
type Conn struct {
	C      net.Conn
	R      *bufio.Reader
	Local  netip.AddrPort
	Remote netip.AddrPort
	// Hook, when set, is called for every message read or written, with
	// the exact bytes and whether the message was sent by this side.
	Hook func(c *Conn, raw []byte, m *Msg, outgoing bool)
	mu   sync.Mutex
}

// NewConn wraps an established connection.
func NewConn(c net.Conn) *Conn {
	return &Conn{C: c, R: bufio.NewReader(c), Local: addrPort(c.LocalAddr()), Remote: addrPort(c.RemoteAddr())}
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// Send writes one message.
func (c *Conn) Send(m *Msg) error {
	raw := m.Bytes()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Hook != nil {
		c.Hook(c, raw, m, true)
	}
	_ = c.C.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.C.Write(raw); err != nil {
		return fmt.Errorf("sipx: send %s to %v: %w", m.StartLine, c.Remote, err)
	}
	return nil
}

// Recv reads one message.
func (c *Conn) Recv() (*Msg, error) {
	m, err := Read(c.R)
	if err != nil {
		return nil, err
	}
	if c.Hook != nil {
		c.Hook(c, m.Bytes(), m, false)
	}
	return m, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.C.Close() }
