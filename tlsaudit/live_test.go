package tlsaudit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/tap"
)

// The tests in this file run real Go crypto/tls peers on loopback at test
// time, with no capture: a relay between them hands every chunk it
// forwards, and each FIN it sees, to the tracker, the way the tap would.
// They need no root, no tcpdump and no committed bytes, so the outcome
// rules are checked against whatever crypto/tls does today.

// relay accepts one connection at a time on a loopback port and forwards
// it to target, feeding tr.
type relay struct {
	ln     net.Listener
	target string
	mu     *sync.Mutex // serialises the tracker (not safe for concurrent use)
	tr     *Tracker
}

func newRelay(t *testing.T, target string, tr *Tracker, mu *sync.Mutex) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &relay{ln: ln, target: target, mu: mu, tr: tr}
}

// serveOne relays the next connection until both directions end.
func (r *relay) serveOne(ctx context.Context) error {
	c, err := r.ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	var d net.Dialer
	s, err := d.DialContext(ctx, "tcp", r.target)
	if err != nil {
		return err
	}
	defer s.Close()
	info := tap.ConnInfo{
		Client:    netip.MustParseAddrPort(c.RemoteAddr().String()),
		Server:    netip.MustParseAddrPort(r.ln.Addr().String()),
		FirstSeen: time.Now(), SawSYN: true,
	}
	r.mu.Lock()
	st := r.tr.Stream(info)
	st.Event(tap.Event{Kind: tap.EventSYN, Dir: tap.ClientToServer, Time: info.FirstSeen})
	r.mu.Unlock()
	var wg sync.WaitGroup
	pipe := func(dir tap.Dir, from, to net.Conn) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := from.Read(buf)
			if n > 0 {
				r.mu.Lock()
				st.Data(dir, buf[:n], time.Now())
				r.mu.Unlock()
				if _, werr := to.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				kind := tap.EventFIN
				if !errors.Is(err, io.EOF) {
					kind = tap.EventRST
				}
				r.mu.Lock()
				st.Event(tap.Event{Kind: kind, Dir: dir, Time: time.Now()})
				r.mu.Unlock()
				if tc, ok := to.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				return
			}
		}
	}
	wg.Add(2)
	go pipe(tap.ClientToServer, c, s)
	go pipe(tap.ServerToClient, s, c)
	wg.Wait()
	r.mu.Lock()
	st.Close(time.Now(), tap.CloseFIN)
	r.mu.Unlock()
	return nil
}

// liveCert makes a CA-signed leaf for name and the pool trusting the CA.
func liveCert(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "live CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)},
		ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}, pool
}

// TestLivePeers: Go clients and servers on loopback. Probes that complete
// and close with close_notify without data (TLS 1.0, 1.1, 1.2, either side
// closing first) are established; a client rejecting the certificate
// fails; a forced HelloRetryRequest (server P-256 only) completes with
// version and cipher known.
func TestLivePeers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cert, roots := liveCert(t, "sbc.example.test")
	_, otherRoots := liveCert(t, "other.example.test")

	type tc struct {
		name       string
		server     *tls.Config
		client     *tls.Config
		serverShut bool // the server closes right after the handshake
		wantErr    bool
		check      func(*Conn) bool
	}
	probe := func(version string, by string) func(*Conn) bool {
		return func(c *Conn) bool {
			return c.Outcome == OutcomeEstablished && !c.Failed() && !c.AppData && c.Version == version &&
				c.ClosedBy == by && len(c.Alerts) > 0 && c.Alerts[0].Encrypted && c.Alerts[0].From == by
		}
	}
	cases := []tc{}
	for _, v := range []struct {
		code uint16
		name string
	}{{tls.VersionTLS10, "TLS 1.0"}, {tls.VersionTLS11, "TLS 1.1"}, {tls.VersionTLS12, "TLS 1.2"}} {
		cases = append(cases, tc{name: "probe " + v.name,
			server: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: v.code, MaxVersion: v.code},
			client: &tls.Config{ServerName: "sbc.example.test", RootCAs: roots, MinVersion: v.code, MaxVersion: v.code},
			check:  probe(v.name, "client")})
	}
	cases = append(cases,
		tc{name: "server closes first",
			server:     &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12},
			client:     &tls.Config{ServerName: "sbc.example.test", RootCAs: roots},
			serverShut: true, check: probe("TLS 1.2", "server")},
		tc{name: "certificate rejected",
			server:  &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12},
			client:  &tls.Config{ServerName: "sbc.example.test", RootCAs: otherRoots},
			wantErr: true,
			check: func(c *Conn) bool {
				return c.Failed() && c.Outcome == OutcomeAlert && c.AlertSummary() == "fatal bad_certificate (42) from client"
			}},
		tc{name: "hello retry",
			server: &tls.Config{Certificates: []tls.Certificate{cert}, CurvePreferences: []tls.CurveID{tls.CurveP256}},
			client: &tls.Config{ServerName: "sbc.example.test", RootCAs: roots, CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}},
			check: func(c *Conn) bool {
				return c.HelloRetry && c.Version == "TLS 1.3" && c.Cipher != "" && c.Outcome == OutcomeEstablished && len(c.Anomalies) == 0
			}},
	)

	var mu sync.Mutex
	tr := NewTracker(Options{IsMicrosoft: func(netip.Addr) bool { return true }})
	for _, c := range cases {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srvErr := make(chan error, 1)
		go func() {
			conn, err := ln.Accept()
			ln.Close()
			if err != nil {
				srvErr <- err
				return
			}
			s := tls.Server(conn, c.server)
			s.SetDeadline(time.Now().Add(5 * time.Second))
			err = s.HandshakeContext(ctx)
			if err == nil && !c.serverShut {
				_, err = io.Copy(io.Discard, s) // until the client's close_notify
			}
			s.Close()
			srvErr <- err
		}()
		r := newRelay(t, ln.Addr().String(), tr, &mu)
		relayErr := make(chan error, 1)
		go func() { relayErr <- r.serveOne(ctx) }()
		conn, err := net.Dial("tcp", r.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		cl := tls.Client(conn, c.client)
		cl.SetDeadline(time.Now().Add(5 * time.Second))
		herr := cl.HandshakeContext(ctx)
		if (herr != nil) != c.wantErr {
			t.Fatalf("%s: client handshake: %v", c.name, herr)
		}
		if herr == nil && c.serverShut {
			io.Copy(io.Discard, cl) // until the server's close_notify
		}
		cl.Close()
		<-srvErr
		if err := <-relayErr; err != nil {
			t.Fatalf("%s: relay: %v", c.name, err)
		}
		mu.Lock()
		conns := tr.TakeConns()
		mu.Unlock()
		if len(conns) != 1 {
			t.Fatalf("%s: %d connections", c.name, len(conns))
		}
		got := conns[0]
		if !c.check(got) {
			t.Errorf("%s: outcome %s by %s version %q cipher %q retry %v app %v alerts %+v anomalies %q",
				c.name, got.Outcome, got.ClosedBy, got.Version, got.Cipher, got.HelloRetry, got.AppData, got.Alerts, got.Anomalies)
		}
		failed := false
		for _, f := range Findings(conns, FindingOptions{}) {
			failed = failed || f.Rule == finding.TLSHandshakeFailed
		}
		if failed != c.wantErr {
			t.Errorf("%s: tls_handshake_failed %v", c.name, failed)
		}
	}
}
