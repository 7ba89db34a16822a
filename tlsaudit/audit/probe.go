package audit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"time"
)

type certChain = []*x509.Certificate

// probe is one kind of handshake: what to offer and what to do after.
type probe struct {
	kind     string
	sni      string
	min, max uint16
	suites   []uint16
	offered  string
	sip      bool // send OPTIONS after the handshake
}

// MicrosoftSuites are the TLS 1.2 cipher suites Direct Routing accepts
// (direct-routing-facts §4.2): ECDHE-RSA-AES256-GCM-SHA384,
// ECDHE-RSA-AES128-GCM-SHA256, ECDHE-RSA-AES256-SHA384,
// ECDHE-RSA-AES128-SHA256. Go implements all but AES256-SHA384 (CBC with
// SHA-384), which it cannot offer; the probe offers the other three.
var MicrosoftSuites = []uint16{
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
}

// legacySuites lists every suite Go can offer for TLS 1.0/1.1, insecure
// ones included, so a server that still accepts the old versions is not
// refused for want of a common suite.
func legacySuites() []uint16 {
	var ids []uint16
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		for _, v := range s.SupportedVersions {
			if v == tls.VersionTLS10 {
				ids = append(ids, s.ID)
				break
			}
		}
	}
	return ids
}

// versionProbes run once per address.
func versionProbes(withClientCert bool) []probe {
	cc := "TLS 1.2, observes CertificateRequest"
	if withClientCert {
		cc += ", offers the client certificate"
	}
	return []probe{
		{kind: ProbeTLS10, min: tls.VersionTLS10, max: tls.VersionTLS10, suites: legacySuites(), offered: "TLS 1.0 only, legacy suites"},
		{kind: ProbeTLS11, min: tls.VersionTLS11, max: tls.VersionTLS11, suites: legacySuites(), offered: "TLS 1.1 only, legacy suites"},
		{kind: ProbeTLS12MS, min: tls.VersionTLS12, max: tls.VersionTLS12, suites: MicrosoftSuites, offered: "TLS 1.2 only, Microsoft's suites"},
		{kind: ProbeTLS13, min: tls.VersionTLS13, max: tls.VersionTLS13, offered: "TLS 1.3 only"},
		{kind: ProbeClientCert, min: tls.VersionTLS12, max: tls.VersionTLS12, offered: cc},
	}
}

// handshakeState is what the TLS callbacks observed.
type handshakeState struct {
	certRequested  bool
	clientCertSent bool
	chain          certChain
}

// runProbe dials addr and performs one probe; the attempt carries every
// phase reached and its timing.
func (a *auditor) runProbe(ctx context.Context, addr string, p probe) Attempt {
	at := Attempt{Time: time.Now().UTC(), Address: addr, Probe: p.kind, SNI: p.sni, Offered: p.offered}
	if p.sni == "" && p.kind != ProbeNoSNI && len(a.o.FQDNs) > 0 {
		// Version and client-certificate probes send the first FQDN as
		// SNI, as Microsoft would.
		p.sni = a.o.FQDNs[0]
		at.SNI = p.sni
	}
	actx, cancel := context.WithTimeout(ctx, a.o.Timeout)
	defer cancel()

	var d net.Dialer
	start := time.Now()
	raw, err := d.DialContext(actx, "tcp", addr)
	if err != nil {
		at.Error = "tcp connect: " + errWords(err)
		return at
	}
	defer raw.Close()
	at.Connected = true
	at.ConnectMs = ms(time.Since(start))
	if dl, ok := actx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}

	st := &handshakeState{}
	cfg := &tls.Config{
		ServerName: p.sni,
		// The chain is judged by certcheck, against the configured
		// trust store, also when it would not verify.
		InsecureSkipVerify: true, //nolint:gosec // verified by certcheck below
		MinVersion:         p.min,
		MaxVersion:         p.max,
		CipherSuites:       p.suites,
		VerifyConnection: func(cs tls.ConnectionState) error {
			st.chain = cs.PeerCertificates
			return nil
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			st.certRequested = true
			if a.o.ClientCert != nil {
				st.clientCertSent = true
				return a.o.ClientCert, nil
			}
			return &tls.Certificate{}, nil
		},
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	conn := tls.Client(raw, cfg)
	hsStart := time.Now()
	err = conn.HandshakeContext(actx)
	hsTime := time.Since(hsStart)
	at.CertRequested, at.ClientCertSent = st.certRequested, st.clientCertSent
	if len(st.chain) > 0 {
		res := a.recordCert(addr, p, &at, st.chain)
		at.Fingerprint, at.Subject, at.Trusted, at.NameOK = res.Fingerprint, res.Subject, res.Trusted, res.NameOK || !res.NameChecked
	}
	if err == nil && st.certRequested && !p.sip {
		// A TLS 1.3 server verifies the client certificate after the
		// client's Finished: read briefly so its rejection is seen.
		err = confirm(actx, conn)
	}
	if err != nil {
		at.Error = "tls handshake: " + errWords(err)
		return at
	}
	at.Handshake = true
	at.HandshakeMs = ms(hsTime)
	cs := conn.ConnectionState()
	at.Version = tls.VersionName(cs.Version)
	at.Cipher = tls.CipherSuiteName(cs.CipherSuite)

	if p.sip {
		at.SIP = a.options(actx, conn, p.sni)
		if at.SIP.Code == 0 && st.certRequested && isAlert(at.SIP.Error) {
			// A TLS 1.3 server rejected our (missing) client certificate
			// after the handshake: that is a handshake failure.
			at.Handshake = false
			at.Error = "tls handshake: " + at.SIP.Error
		}
	}
	_ = conn.Close()
	return at
}

// confirm waits briefly for a post-handshake rejection (TLS 1.3 servers
// verify the client certificate after the client's Finished).
func confirm(ctx context.Context, conn *tls.Conn) error {
	wait := 300 * time.Millisecond
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = time.Until(dl)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	var b [1]byte
	_, err := conn.Read(b[:])
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetReadDeadline(dl)
		}
		return nil
	}
	return err
}

func isAlert(s string) bool {
	return strings.Contains(s, "remote alert: ")
}

// errWords shortens network and TLS errors for an admin: "timeout",
// "remote alert: handshake failure", "connection refused", "EOF".
func errWords(err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		if oe.Op == "remote error" {
			return "remote alert: " + strings.TrimPrefix(oe.Err.Error(), "tls: ")
		}
		err = oe.Err
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && (strings.HasPrefix(s, "connect:") || strings.HasPrefix(s, "read:") || strings.HasPrefix(s, "write:")) {
		s = s[i+2:]
	}
	return strings.TrimPrefix(s, "tls: ")
}

func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
