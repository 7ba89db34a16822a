// Command genpeers runs real TLS peers on 127.0.0.1 so gen.sh can capture
// them with tcpdump. Each scenario uses its own server port (see the
// table in ../README or gen.sh); the certificates are written as PEM to
// -certs so the tests know what each server served. Keys are written to a
// temporary directory only (for openssl) and removed.
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"
)

type cert struct {
	name string
	x    *x509.Certificate
	key  *ecdsa.PrivateKey
	tls  tls.Certificate
}

var serial int64 = 100

func mk(name string, tmpl x509.Certificate, parent *cert) *cert {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	}
	tmpl.KeyUsage |= x509.KeyUsageDigitalSignature
	signer, signerKey := &tmpl, key
	if parent != nil {
		signer, signerKey = parent.x, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		log.Fatal(err)
	}
	x, _ := x509.ParseCertificate(der)
	c := &cert{name: name, x: x, key: key}
	c.tls = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: x}
	return c
}

func leaf(cn string, dns []string, eku []x509.ExtKeyUsage) x509.Certificate {
	return x509.Certificate{Subject: pkix.Name{CommonName: cn, Organization: []string{"sbcwatch test"}},
		DNSNames: dns, ExtKeyUsage: eku}
}

func writePEM(path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		log.Fatal(err)
	}
}

var serverAuth = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}

// serve accepts n connections on port and handles each with cfg: after
// the handshake it answers one line with "SIP/2.0 200 OK".
func serve(port, n int, cfg func(i int) *tls.Config) chan struct{} {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer ln.Close()
		for i := range n {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(c, cfg(i))
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err != nil {
				log.Printf("port %d conn %d: server handshake: %v", port, i, err)
				c.Close()
				continue
			}
			line, err := bufio.NewReader(tc).ReadString('\n')
			if err == nil && line != "" {
				io.WriteString(tc, "SIP/2.0 200 OK\r\n")
			}
			io.Copy(io.Discard, tc)
			tc.Close()
		}
	}()
	return done
}

// dial connects from local (127.0.0.x) to port, does the handshake and,
// when it succeeds, one request; it returns the handshake error.
func dial(local string, port int, cfg *tls.Config) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	tc := tls.Client(c, cfg)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return err
	}
	io.WriteString(tc, "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\n")
	bufio.NewReader(tc).ReadString('\n')
	tc.Close()
	return nil
}

func must(err error, what string) {
	if err != nil {
		log.Fatalf("%s: %v", what, err)
	}
}

func mustFail(err error, what string) {
	if err == nil {
		log.Fatalf("%s: handshake succeeded, want failure", what)
	}
	log.Printf("%s: failed as intended: %v", what, err)
}

func pause() { time.Sleep(150 * time.Millisecond) }

func main() {
	certDir := flag.String("certs", "certs", "directory for the certificate PEM files")
	set := flag.String("set", "peers", "scenario set: peers (peers.pcap) or outcomes (outcomes.pcap.gz)")
	flag.Parse()
	must(os.MkdirAll(*certDir, 0o755), "mkdir")
	if *set == "outcomes" {
		outcomes(*certDir)
		return
	}

	// The CA predates the expired leaf, so that leaf's chain is sound
	// apart from its dates.
	ca := mk("ca", x509.Certificate{Subject: pkix.Name{CommonName: "sbcwatch test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-2 * 365 * 24 * time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour)}, nil)
	sbc := mk("sbc", leaf("sbc.example.test", []string{"sbc.example.test"}, serverAuth), ca)
	alt := mk("alt", leaf("sbc.example.test", []string{"sbc.example.test"}, serverAuth), ca)
	def := mk("default", x509.Certificate{Subject: pkix.Name{CommonName: "default-context", Organization: []string{"SBC vendor"}}}, nil)
	exp := leaf("expired.example.test", []string{"expired.example.test"}, serverAuth)
	exp.NotBefore, exp.NotAfter = time.Now().Add(-400*24*time.Hour), time.Now().Add(-24*time.Hour)
	expired := mk("expired", exp, ca)
	clientAuthOnly := mk("clientauth", leaf("sbc.example.test", []string{"sbc.example.test"},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}), ca)
	client := mk("client", leaf("client.example.test", []string{"client.example.test"},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}), ca)
	for _, c := range []*cert{ca, sbc, alt, def, expired, clientAuthOnly, client} {
		writePEM(filepath.Join(*certDir, c.name+".pem"), "CERTIFICATE", c.x.Raw)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.x)

	tls12 := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{Certificates: certs, MaxVersion: tls.VersionTLS12}
	}

	// 47001: certificate chosen by SNI, self-signed default otherwise.
	sniCfg := &tls.Config{MaxVersion: tls.VersionTLS12, GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if h.ServerName == "sbc.example.test" {
			return &sbc.tls, nil
		}
		return &def.tls, nil
	}}
	done := serve(47001, 2, func(int) *tls.Config { return sniCfg })
	must(dial("127.0.0.1", 47001, &tls.Config{ServerName: "sbc.example.test", RootCAs: roots}), "47001 sni")
	pause()
	must(dial("127.0.0.1", 47001, &tls.Config{InsecureSkipVerify: true}), "47001 no sni")
	<-done

	// 47002: expired certificate; the verifying client aborts.
	done = serve(47002, 1, func(int) *tls.Config { return tls12(expired.tls) })
	mustFail(dial("127.0.0.1", 47002, &tls.Config{ServerName: "expired.example.test", RootCAs: roots}), "47002 expired")
	<-done

	// 47003: TLS 1.0 only.
	done = serve(47003, 1, func(int) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{sbc.tls}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}
	})
	must(dial("127.0.0.1", 47003, &tls.Config{ServerName: "sbc.example.test", InsecureSkipVerify: true,
		MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS12}), "47003 tls1.0")
	<-done

	// 47004: TLS 1.3; one good client, one that does not trust the CA.
	done = serve(47004, 2, func(int) *tls.Config { return &tls.Config{Certificates: []tls.Certificate{sbc.tls}} })
	must(dial("127.0.0.1", 47004, &tls.Config{ServerName: "sbc.example.test", RootCAs: roots}), "47004 tls1.3")
	pause()
	mustFail(dial("127.0.0.1", 47004, &tls.Config{ServerName: "sbc.example.test", RootCAs: x509.NewCertPool()}), "47004 tls1.3 untrusted")
	<-done

	// 47006: one listener, two certificates for the same SNI (3× sbc, 2× alt).
	var n atomic.Int32
	done = serve(47006, 5, func(i int) *tls.Config {
		n.Add(1)
		if i%2 == 0 {
			return tls12(sbc.tls)
		}
		return tls12(alt.tls)
	})
	for range 5 {
		must(dial("127.0.0.1", 47006, &tls.Config{ServerName: "sbc.example.test", InsecureSkipVerify: true}), "47006")
		pause()
	}
	<-done

	// 47007: the Direct Routing case: "Microsoft" (127.0.0.2) opens new
	// connections with SNI sbc.example.test, the SBC serves its
	// self-signed default, the client aborts; 3 tries within 1 s and one
	// more later (2 s here instead of ~12 s).
	done = serve(47007, 4, func(int) *tls.Config { return tls12(def.tls) })
	for i, wait := range []time.Duration{0, 300 * time.Millisecond, 300 * time.Millisecond, 2 * time.Second} {
		time.Sleep(wait)
		mustFail(dial("127.0.0.2", 47007, &tls.Config{ServerName: "sbc.example.test", RootCAs: roots}), fmt.Sprintf("47007 try %d", i+1))
	}
	<-done

	// 47008: certificate with Client Authentication EKU only, SNI it does not cover.
	done = serve(47008, 1, func(int) *tls.Config { return tls12(clientAuthOnly.tls) })
	must(dial("127.0.0.1", 47008, &tls.Config{ServerName: "wrong.example.test", InsecureSkipVerify: true}), "47008")
	<-done

	// 47009: mutual TLS 1.2.
	done = serve(47009, 1, func(int) *tls.Config {
		c := tls12(sbc.tls)
		c.ClientAuth = tls.RequireAnyClientCert
		return c
	})
	must(dial("127.0.0.1", 47009, &tls.Config{ServerName: "sbc.example.test", RootCAs: roots,
		Certificates: []tls.Certificate{client.tls}}), "47009 mtls")
	<-done

	// 47010: the client resets the connection after seeing the certificate.
	done = serve(47010, 1, func(int) *tls.Config { return tls12(sbc.tls) })
	{
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", "127.0.0.1:47010")
		must(err, "47010 dial")
		tc := tls.Client(c, &tls.Config{ServerName: "sbc.example.test", InsecureSkipVerify: true,
			VerifyConnection: func(tls.ConnectionState) error {
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
				return errors.New("reset on purpose")
			}})
		mustFail(tc.Handshake(), "47010 reset")
	}
	<-done

	openssl(def, sbc)
}

// openssl runs s_server with a default certificate and a second one for
// SNI sbc.example.test (-cert2/-servername) on 47005, and two s_client
// runs: with that SNI and without SNI.
func openssl(def, sbc *cert) {
	tmp, err := os.MkdirTemp("", "genpeers")
	must(err, "tmp")
	defer os.RemoveAll(tmp)
	for _, c := range []*cert{def, sbc} {
		writePEM(filepath.Join(tmp, c.name+".pem"), "CERTIFICATE", c.x.Raw)
		der, err := x509.MarshalPKCS8PrivateKey(c.key)
		must(err, "key")
		writePEM(filepath.Join(tmp, c.name+".key"), "PRIVATE KEY", der)
	}
	srv := exec.Command("openssl", "s_server", "-accept", "127.0.0.1:47005", "-naccept", "2", "-tls1_2",
		"-cert", filepath.Join(tmp, "default.pem"), "-key", filepath.Join(tmp, "default.key"),
		"-servername", "sbc.example.test",
		"-cert2", filepath.Join(tmp, "sbc.pem"), "-key2", filepath.Join(tmp, "sbc.key"), "-quiet")
	srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	// An open, silent stdin: at EOF s_server would close each connection.
	stdin, err := srv.StdinPipe()
	must(err, "s_server stdin")
	defer stdin.Close()
	must(srv.Start(), "s_server")
	time.Sleep(time.Second)
	for _, args := range [][]string{{"-servername", "sbc.example.test"}, {"-noservername"}} {
		cl := exec.Command("openssl", append([]string{"s_client", "-connect", "127.0.0.1:47005", "-tls1_2", "-quiet", "-no_ign_eof"}, args...)...)
		cl.Stdin = stringsReader("OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\n")
		out, err := cl.CombinedOutput()
		log.Printf("s_client %v: %v\n%s", args, err, out)
		pause()
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		srv.Process.Kill()
	}
}

type sr struct {
	s string
	i int
}

func (r *sr) Read(p []byte) (int, error) {
	if r.i >= len(r.s) {
		time.Sleep(300 * time.Millisecond) // let the server answer before EOF
		return 0, io.EOF
	}
	n := copy(p, r.s[r.i:])
	r.i += n
	return n, nil
}

func stringsReader(s string) io.Reader { return &sr{s: s} }
