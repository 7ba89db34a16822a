package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// outcomes runs the peers of testdata/outcomes.pcap.gz (gen.sh outcomes):
// handshakes whose outcome is easy to get wrong. See
// tlsaudit/outcomes_test.go for what each must show.
//
//	47101-47103 openssl s_client/s_server -tls1, -tls1_1, -tls1_2: complete, close_notify, no data
//	47104 Go client and server, TLS 1.0, 1.1, 1.2: complete, client closes without data
//	47105 Go, TLS 1.2: complete, the server closes first without data
//	47106 openssl s_server -servername: warning unrecognized_name, then data
//	47107 openssl: forced HelloRetryRequest (client share X25519, server P-256 only)
//	47108 Go: forced HelloRetryRequest (server P-256 only), data
//	47109 Go: oversized chain (> 256 KiB Certificate message); the client aborts
//	47110 Go: not-yet-valid certificate; the verifying client aborts
//	47111 openssl s_client -servername 127.0.0.1 (IP in the SNI), data
//	47112 "Microsoft" (127.0.0.2): 8 probes that complete and close with
//	      close_notify, 2 that get the self-signed default and abort
//	47113 a raw server: ServerHellos with trailing bytes after their
//	      extensions, with an unknown version value, and with 3 stray
//	      bytes at the end of the extension block (without and with
//	      supported_versions before them)
func outcomes(certDir string) {
	ca := mk("ca", x509.Certificate{Subject: pkix.Name{CommonName: "sbcwatch outcomes CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-2 * 365 * 24 * time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour)}, nil)
	sbc := mk("sbc", leaf("sbc.example.test", []string{"sbc.example.test"}, serverAuth), ca)
	def := mk("default", x509.Certificate{Subject: pkix.Name{CommonName: "default-context", Organization: []string{"SBC vendor"}}}, nil)
	ny := leaf("future.example.test", []string{"future.example.test"}, serverAuth)
	ny.NotBefore, ny.NotAfter = time.Now().Add(30*24*time.Hour), time.Now().Add(400*24*time.Hour)
	notYet := mk("notyet", ny, ca)
	// Five intermediates of ~60 kB each (a large non-critical extension
	// of zeros: it compresses in the committed capture).
	big := mk("big", leaf("big.example.test", []string{"big.example.test"}, serverAuth), ca)
	chain := [][]byte{big.x.Raw}
	for i := range 5 {
		tmpl := x509.Certificate{Subject: pkix.Name{CommonName: fmt.Sprintf("padding intermediate %d", i)},
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 1}, Value: make([]byte, 60000)}}}
		chain = append(chain, mk("pad", tmpl, ca).x.Raw)
	}
	bigTLS := tls.Certificate{Certificate: chain, PrivateKey: big.key, Leaf: big.x}
	for _, c := range []*cert{ca, sbc, def, notYet, big} {
		writePEM(filepath.Join(certDir, c.name+".pem"), "CERTIFICATE", c.x.Raw)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.x)

	tmp, err := os.MkdirTemp("", "genpeers")
	must(err, "tmp")
	defer os.RemoveAll(tmp)
	for _, c := range []*cert{sbc, def} {
		writePEM(filepath.Join(tmp, c.name+".pem"), "CERTIFICATE", c.x.Raw)
		der, err := x509.MarshalPKCS8PrivateKey(c.key)
		must(err, "key")
		writePEM(filepath.Join(tmp, c.name+".key"), "PRIVATE KEY", der)
	}
	crt, key := filepath.Join(tmp, "sbc.pem"), filepath.Join(tmp, "sbc.key")

	// 47101-47103: openssl completes and closes without data. s_client
	// without -quiet sends close_notify at the EOF of its stdin; s_server
	// answers it with its own.
	for i, v := range []string{"-tls1", "-tls1_1", "-tls1_2"} {
		port := 47101 + i
		srv := osslServer(port, 1, v, "-cipher", "DEFAULT:@SECLEVEL=0", "-cert", crt, "-key", key)
		cl := exec.Command("openssl", "s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", port), v,
			"-cipher", "DEFAULT:@SECLEVEL=0", "-servername", "sbc.example.test")
		cl.Stdin = nil // /dev/null: EOF at once
		out, err := cl.CombinedOutput()
		log.Printf("s_client %s: %v (%d bytes of output)", v, err, len(out))
		srv.wait()
		pause()
	}

	// 47104: Go, TLS 1.0, 1.1 and 1.2: handshake, then Close (close_notify).
	vers := []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12}
	done := serve(47104, len(vers), func(i int) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{sbc.tls}, MinVersion: vers[i], MaxVersion: vers[i]}
	})
	for _, v := range vers {
		must(probe("127.0.0.1", 47104, &tls.Config{ServerName: "sbc.example.test", RootCAs: roots, MinVersion: v, MaxVersion: v}), "47104 probe")
		pause()
	}
	<-done

	// 47105: the server closes first, right after the handshake.
	ln, err := net.Listen("tcp", "127.0.0.1:47105")
	must(err, "listen 47105")
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{sbc.tls}, MaxVersion: tls.VersionTLS12})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			log.Printf("47105 server: %v", err)
		}
		tc.Close()
	}()
	{
		c, err := net.Dial("tcp", "127.0.0.1:47105")
		must(err, "dial 47105")
		tc := tls.Client(c, &tls.Config{ServerName: "sbc.example.test", RootCAs: roots})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		must(tc.Handshake(), "47105 handshake")
		io.Copy(io.Discard, tc) // until the server's close_notify
		tc.Close()
	}
	<-srvDone
	pause()

	// 47106: openssl s_server with -servername answers an unknown SNI with
	// a warning unrecognized_name and carries on (default certificate).
	srv := osslServer(47106, 1, "-tls1_2", "-cert", filepath.Join(tmp, "default.pem"), "-key", filepath.Join(tmp, "default.key"),
		"-servername", "sbc.example.test", "-cert2", crt, "-key2", key)
	osslClient(47106, "-tls1_2", "-servername", "other.example.test")
	srv.wait()
	pause()

	// 47107: openssl HelloRetryRequest: the client's only key share is
	// X25519, the server takes P-256 only.
	srv = osslServer(47107, 1, "-tls1_3", "-groups", "P-256", "-cert", crt, "-key", key)
	osslClient(47107, "-tls1_3", "-groups", "X25519:P-256", "-servername", "sbc.example.test")
	srv.wait()
	pause()

	// 47108: Go HelloRetryRequest: the server takes P-256 only.
	done = serve(47108, 1, func(int) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{sbc.tls}, CurvePreferences: []tls.CurveID{tls.CurveP256}}
	})
	must(dial("127.0.0.1", 47108, &tls.Config{ServerName: "sbc.example.test", RootCAs: roots,
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}), "47108 hrr")
	<-done
	pause()

	// 47109: a Certificate message above 256 KiB: Go's client refuses it.
	done = serve(47109, 1, func(int) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{bigTLS}, MaxVersion: tls.VersionTLS12}
	})
	mustFail(dial("127.0.0.1", 47109, &tls.Config{ServerName: "big.example.test", RootCAs: roots}), "47109 oversized chain")
	<-done
	pause()

	// 47110: not yet valid; the verifying client aborts.
	done = serve(47110, 1, func(int) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{notYet.tls}, MaxVersion: tls.VersionTLS12}
	})
	mustFail(dial("127.0.0.1", 47110, &tls.Config{ServerName: "future.example.test", RootCAs: roots}), "47110 not yet valid")
	<-done
	pause()

	// 47111: an IP address in the SNI (openssl sends what -servername says).
	done = serve(47111, 1, func(int) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{sbc.tls}, MaxVersion: tls.VersionTLS12}
	})
	osslClient(47111, "-tls1_2", "-servername", "127.0.0.1")
	<-done
	pause()

	// 47112: the lab case on one listener: "Microsoft" probes complete
	// and close without SIP; connections 4 and 9 get the self-signed
	// default (a misrouted TLS context) and the client aborts.
	wrong := func(i int) bool { return i == 3 || i == 8 }
	done = serve(47112, 10, func(i int) *tls.Config {
		if wrong(i) {
			return &tls.Config{Certificates: []tls.Certificate{def.tls}, MaxVersion: tls.VersionTLS12}
		}
		return &tls.Config{Certificates: []tls.Certificate{sbc.tls}, MaxVersion: tls.VersionTLS12}
	})
	for i := range 10 {
		cfg := &tls.Config{ServerName: "sbc.example.test", RootCAs: roots, MaxVersion: tls.VersionTLS12}
		if wrong(i) {
			mustFail(probe("127.0.0.2", 47112, cfg), fmt.Sprintf("47112 try %d", i+1))
		} else {
			must(probe("127.0.0.2", 47112, cfg), fmt.Sprintf("47112 probe %d", i+1))
		}
		pause()
	}
	<-done

	// 47113: hand-made ServerHellos; the client gives up after each.
	rawServerHellos(47113, [][]byte{serverHelloTrailing(), serverHelloUnknownVersion(),
		serverHelloTrailingInExtensions(false), serverHelloTrailingInExtensions(true)})
}

// probe connects from local, completes the handshake and closes with
// close_notify without sending data (a health check).
func probe(local string, port int, cfg *tls.Config) error {
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
	return tc.Close()
}

type osslSrv struct{ cmd *exec.Cmd }

// osslServer starts openssl s_server for n connections on port.
func osslServer(port, n int, args ...string) *osslSrv {
	a := append([]string{"s_server", "-accept", fmt.Sprintf("127.0.0.1:%d", port), "-naccept", fmt.Sprint(n), "-quiet"}, args...)
	srv := exec.Command("openssl", a...)
	srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	stdin, err := srv.StdinPipe() // open and silent (EOF would close)
	must(err, "s_server stdin")
	must(srv.Start(), "s_server")
	_ = stdin
	time.Sleep(500 * time.Millisecond)
	return &osslSrv{cmd: srv}
}

func (s *osslSrv) wait() {
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// osslClient runs s_client that sends one SIP line and closes.
func osslClient(port int, args ...string) {
	cl := exec.Command("openssl", append([]string{"s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", port), "-quiet", "-no_ign_eof"}, args...)...)
	cl.Stdin = stringsReader("OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\n")
	out, err := cl.CombinedOutput()
	log.Printf("s_client %d %v: %v\n%s", port, args, err, out)
}

// rawServerHellos accepts one connection per hello: it reads the
// ClientHello record and answers with the given handshake message in a
// record, then closes. A Go client aborts.
func rawServerHellos(port int, hellos [][]byte) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	must(err, "listen raw")
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer ln.Close()
		for _, h := range hellos {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(c)
			hdr := make([]byte, 5)
			if _, err := io.ReadFull(r, hdr); err == nil {
				io.CopyN(io.Discard, r, int64(binary.BigEndian.Uint16(hdr[3:])))
			}
			rec := append([]byte{22, 3, 3, byte(len(h) >> 8), byte(len(h))}, h...)
			c.Write(rec)
			io.Copy(io.Discard, r) // until the client gives up
			c.Close()
		}
	}()
	for i := range hellos {
		err := dial("127.0.0.1", port, &tls.Config{ServerName: "sbc.example.test", InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
		mustFail(err, fmt.Sprintf("%d raw hello %d", port, i+1))
		pause()
	}
	<-done
}

// handshakeMsg wraps a body as a handshake message of type typ.
func handshakeMsg(typ byte, body []byte) []byte {
	return append([]byte{typ, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

// serverHelloBody builds a ServerHello body: version, random, empty
// session id, cipher, no compression, then exts (with its length).
func serverHelloBody(version, cipher uint16, exts []byte) []byte {
	b := []byte{byte(version >> 8), byte(version)}
	b = append(b, []byte(strings.Repeat("\x42", 32))...)
	b = append(b, 0, byte(cipher>>8), byte(cipher), 0)
	return append(b, byte(len(exts)>>8), byte(len(exts)))
}

// serverHelloTrailing: TLS 1.2, ECDHE-RSA-AES128-GCM, extensions
// (renegotiation_info), then 3 stray bytes after the extensions.
func serverHelloTrailing() []byte {
	exts := []byte{0xff, 0x01, 0x00, 0x01, 0x00}
	b := append(serverHelloBody(0x0303, 0xc02f, exts), exts...)
	return handshakeMsg(2, append(b, 0xde, 0xad, 0x00))
}

// serverHelloUnknownVersion: a version value no TLS defines (0x0305).
func serverHelloUnknownVersion() []byte {
	exts := []byte{0xff, 0x01, 0x00, 0x01, 0x00}
	b := append(serverHelloBody(0x0305, 0xc02f, exts), exts...)
	return handshakeMsg(2, b)
}

// serverHelloTrailingInExtensions: the extension block ends with 3 bytes
// that are not a whole extension; with13, a supported_versions (TLS 1.3)
// extension comes first.
func serverHelloTrailingInExtensions(with13 bool) []byte {
	exts := []byte{0xff, 0x01, 0x00, 0x01, 0x00}
	version, cipher := uint16(0x0303), uint16(0xc02f)
	if with13 {
		exts = []byte{0x00, 0x2b, 0x00, 0x02, 0x03, 0x04}
		cipher = 0x1301
	}
	exts = append(exts, 0x00, 0x17, 0x00)
	b := append(serverHelloBody(version, cipher, exts), exts...)
	return handshakeMsg(2, b)
}
