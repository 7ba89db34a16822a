// Package audittest runs a fake SBC TLS listener on loopback for tests:
// it picks a certificate by SNI with a default context for everything
// else, can serve the default context to a fraction of connections for
// the right SNI (the "random default TLS context" fault), can restrict
// TLS versions, can require a client certificate, and answers SIP
// OPTIONS with a 200 OK built by sipgo (or stays silent).
package audittest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Config describes the fake SBC.
type Config struct {
	// ByName maps an SNI (lower case) to its certificate.
	ByName map[string]tls.Certificate
	// Default is served for no SNI or an unknown SNI.
	Default tls.Certificate
	// WrongEvery, when > 0, serves Default instead of the right
	// certificate on every n-th connection that asks for a name in ByName.
	WrongEvery int
	// MinVersion and MaxVersion restrict the versions (0: Go defaults).
	MinVersion, MaxVersion uint16
	// ClientCAs, when set, makes a client certificate mandatory and
	// verified against it.
	ClientCAs *x509.CertPool
	// SIP answers OPTIONS with 200 OK; SIPSilent reads them and never
	// answers. With neither, the server reads until the client closes.
	SIP, SIPSilent bool
	// SIPDelay is waited before answering.
	SIPDelay time.Duration
}

// SBC is a running fake SBC.
type SBC struct {
	// Addr is "127.0.0.1:port".
	Addr string
	// Handshakes counts completed handshakes; Options counts OPTIONS read.
	Handshakes, Options atomic.Int64

	mu      sync.Mutex
	served  map[string]int // SNI → connections asking for it
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	ln      net.Listener
	lastReq string
}

// Start listens on 127.0.0.1 and serves until the test ends.
func Start(t testing.TB, cfg Config) *SBC {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("audittest: listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &SBC{Addr: ln.Addr().String(), served: map[string]int{}, cancel: cancel, ln: ln}
	tc := &tls.Config{
		MinVersion: cfg.MinVersion,
		MaxVersion: cfg.MaxVersion,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := strings.ToLower(hello.ServerName)
			c, ok := cfg.ByName[name]
			if !ok {
				return &cfg.Default, nil
			}
			s.mu.Lock()
			s.served[name]++
			n := s.served[name]
			s.mu.Unlock()
			if cfg.WrongEvery > 0 && n%cfg.WrongEvery == 0 {
				return &cfg.Default, nil
			}
			return &c, nil
		},
	}
	if cfg.MinVersion != 0 && cfg.MinVersion < tls.VersionTLS12 {
		// Offer the legacy suites a TLS 1.0/1.1 client needs.
		for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
			tc.CipherSuites = append(tc.CipherSuites, cs.ID)
		}
	}
	if cfg.ClientCAs != nil {
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		tc.ClientCAs = cfg.ClientCAs
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(ctx, tls.Server(c, tc), cfg)
			}()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

// Close stops the listener and waits for the connections to end.
func (s *SBC) Close() {
	s.cancel()
	_ = s.ln.Close()
	s.wg.Wait()
}

// LastOptions returns the last OPTIONS request received, as text.
func (s *SBC) LastOptions() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastReq
}

func (s *SBC) serve(ctx context.Context, c *tls.Conn, cfg Config) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.HandshakeContext(ctx); err != nil {
		return
	}
	s.Handshakes.Add(1)
	if !cfg.SIP && !cfg.SIPSilent {
		_, _ = io.Copy(io.Discard, c)
		return
	}
	stream := sip.NewParser().NewSIPStream()
	defer stream.Close()
	buf := make([]byte, 8192)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			_, _ = stream.Write(buf[:n])
			for {
				msg, _, perr := stream.ParseNext()
				if errors.Is(perr, io.ErrUnexpectedEOF) || errors.Is(perr, io.EOF) {
					// need more bytes (io.EOF: the buffer is empty)
					break
				}
				if perr != nil {
					return
				}
				req, ok := msg.(*sip.Request)
				if !ok || req.Method != sip.OPTIONS {
					continue
				}
				s.Options.Add(1)
				s.mu.Lock()
				s.lastReq = req.String()
				s.mu.Unlock()
				if cfg.SIPSilent {
					continue
				}
				if cfg.SIPDelay > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(cfg.SIPDelay):
					}
				}
				res := sip.NewResponseFromRequest(req, 200, "OK", nil)
				res.AppendHeader(sip.NewHeader("Server", "audittest-sbc"))
				if _, err := io.WriteString(c, res.String()); err != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}
