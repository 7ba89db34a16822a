// Package labtls creates and loads the lab's PKI: a lab root CA, the SBC's
// public certificate for its FQDN (and an expired and an expiring twin),
// the SBC's default
// self-signed certificate (CN=default.sbc.local, what an AudioCodes default
// TLS context serves) and the certificate of the "Microsoft" proxy. It also
// holds the TLS settings both sides use: TLS 1.2 only, Microsoft's suites.
package labtls

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// File names inside a PKI directory (each NAME.pem with NAME-key.pem).
const (
	CA         = "ca"
	SBCPublic  = "sbc-public"
	SBCExpired = "sbc-expired"
	SBCDefault = "sbc-default"
	// SBCExpiring is a public certificate that expires in 10 to 25 days.
	SBCExpiring = "sbc-expiring"
	MSProxy     = "msproxy"
)

// MicrosoftSuites are the Direct Routing TLS 1.2 suites (facts §4.2) that
// Go implements; TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384 is not implemented
// by crypto/tls and is therefore missing from the lab's ClientHellos.
var MicrosoftSuites = []uint16{
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
}

// leafSpec describes one certificate of the lab PKI.
type leafSpec struct {
	name, cn, org string
	sans          []string
	selfSigned    bool
	noEKU         bool
	// from and to give the validity for an issue at now; fits says
	// whether an existing certificate still serves its purpose at now.
	from, to func(now time.Time) time.Time
	fits     func(c *x509.Certificate, now time.Time) bool
}

const day = 24 * time.Hour

func validFor(min time.Duration) func(*x509.Certificate, time.Time) bool {
	return func(c *x509.Certificate, now time.Time) bool {
		return !now.Before(c.NotBefore) && c.NotAfter.Sub(now) > min
	}
}

func specs(sbcFQDN string, msNames []string) []leafSpec {
	yesterday := func(now time.Time) time.Time { return now.Add(-day) }
	return []leafSpec{
		{name: SBCPublic, cn: sbcFQDN, org: "Contoso Ltd", sans: []string{sbcFQDN},
			from: yesterday, to: func(now time.Time) time.Time { return now.AddDate(0, 0, 397) },
			fits: validFor(60 * day)},
		{name: SBCExpired, cn: sbcFQDN, org: "Contoso Ltd", sans: []string{sbcFQDN},
			from: func(now time.Time) time.Time { return now.AddDate(0, 0, -432) },
			to:   func(now time.Time) time.Time { return now.AddDate(0, 0, -35) },
			fits: func(c *x509.Certificate, now time.Time) bool { return c.NotAfter.Before(now.Add(-7 * day)) }},
		{name: SBCExpiring, cn: sbcFQDN, org: "Contoso Ltd", sans: []string{sbcFQDN},
			from: func(now time.Time) time.Time { return now.AddDate(0, 0, -345) },
			to:   func(now time.Time) time.Time { return now.AddDate(0, 0, 20) },
			fits: func(c *x509.Certificate, now time.Time) bool {
				left := c.NotAfter.Sub(now)
				return left > 10*day && left < 25*day
			}},
		{name: MSProxy, cn: msNames[0], org: "Microsoft Corporation", sans: msNames,
			from: yesterday, to: func(now time.Time) time.Time { return now.AddDate(0, 0, 397) },
			fits: validFor(60 * day)},
		// The default certificate is self-signed, has no SAN and no EKU.
		{name: SBCDefault, cn: "default.sbc.local", org: "AudioCodes", selfSigned: true, noEKU: true,
			from: yesterday, to: func(now time.Time) time.Time { return now.AddDate(10, 0, 0) },
			fits: validFor(60 * day)},
	}
}

// Ensure makes dir hold a complete lab PKI usable at now. It keeps an
// existing CA, so captures made earlier keep verifying against ca.pem, and
// (re)issues each certificate that is missing, not signed by that CA, or
// no longer fits its purpose (the public ones valid for 60 more days, the
// expired one expired, the expiring one 10 to 25 days from its end).
// sbcFQDN names the SBC, msNames the Microsoft proxy certificate (the
// first is the CN). It reports the names it issued.
func Ensure(dir, sbcFQDN string, msNames []string, now time.Time) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("labtls: %w", err)
	}
	var issued []string
	caCert, caKey, err := loadPair(dir, CA)
	// The CA must predate every leaf it signs, the expired one included
	// (a CA younger than its leaf makes the chain invalid at any time,
	// which is not what an expired certificate looks like).
	if err == nil && caCert.NotBefore.After(now.AddDate(0, 0, -500)) {
		err = errors.New("lab CA is younger than the expired certificate it must sign")
	}
	if err != nil {
		caCert, caKey, err = newCA(dir, now)
		if err != nil {
			return nil, err
		}
		issued = append(issued, CA)
	}
	for _, sp := range specs(sbcFQDN, msNames) {
		if c, _, err := loadPair(dir, sp.name); err == nil && sp.fits(c, now) &&
			(sp.selfSigned || c.CheckSignatureFrom(caCert) == nil && !c.NotBefore.Before(caCert.NotBefore)) {
			continue
		}
		if err := issue(dir, sp, caCert, caKey, now); err != nil {
			return issued, err
		}
		issued = append(issued, sp.name)
	}
	return issued, nil
}

func newCA(dir string, now time.Time) (*x509.Certificate, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("labtls: ca key: %w", err)
	}
	t := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "sbcwatch lab Root CA", Organization: []string{"sbcwatch lab"}},
		NotBefore:             now.AddDate(-3, 0, 0),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, t, t, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("labtls: ca: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("labtls: ca: %w", err)
	}
	return c, key, write(dir, CA, der, key)
}

func issue(dir string, sp leafSpec, ca *x509.Certificate, caKey *rsa.PrivateKey, now time.Time) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("labtls: %s key: %w", sp.name, err)
	}
	t := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: sp.cn, Organization: []string{sp.org}},
		DNSNames:     sp.sans,
		NotBefore:    sp.from(now),
		NotAfter:     sp.to(now),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	if !sp.noEKU {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	parent, signer := ca, caKey
	if sp.selfSigned {
		parent, signer = t, key
	}
	der, err := x509.CreateCertificate(rand.Reader, t, parent, &key.PublicKey, signer)
	if err != nil {
		return fmt.Errorf("labtls: %s: %w", sp.name, err)
	}
	return write(dir, sp.name, der, key)
}

func loadPair(dir, name string) (*x509.Certificate, *rsa.PrivateKey, error) {
	pair, err := Load(dir, name)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("labtls: %s: %w", name, err)
	}
	k, ok := pair.PrivateKey.(*rsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("labtls: %s: not an RSA key", name)
	}
	return c, k, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	return n.Add(n, big.NewInt(1))
}

func write(dir, name string, der []byte, key *rsa.PrivateKey) error {
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), certPEM, 0o644); err != nil {
		return fmt.Errorf("labtls: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), keyPEM, 0o600); err != nil {
		return fmt.Errorf("labtls: %w", err)
	}
	return nil
}

// Load reads NAME.pem and NAME-key.pem from dir.
func Load(dir, name string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("labtls: load %s: %w", name, err)
	}
	return c, nil
}

// Roots returns a pool holding the lab CA of dir.
func Roots(dir string) (*x509.CertPool, error) {
	b, err := os.ReadFile(filepath.Join(dir, CA+".pem"))
	if err != nil {
		return nil, fmt.Errorf("labtls: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("labtls: no certificate in %s", filepath.Join(dir, CA+".pem"))
	}
	return p, nil
}

// ServerConfig is a TLS 1.2 server configuration serving cert.
func ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   tls.VersionTLS12,
		CipherSuites: MicrosoftSuites,
	}
}

// ClientConfig is a validating TLS 1.2 client configuration with the
// Microsoft suites and SNI serverName. Like Schannel it checks the chain
// (trust and validity dates) before the name, so a self-signed default
// certificate fails as an untrusted root and an expired one as expired;
// crypto/tls answers any verification failure with a fatal
// bad_certificate alert (42) and closes the connection.
func ClientConfig(serverName string, roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		ServerName:         serverName,
		MinVersion:         tls.VersionTLS12,
		MaxVersion:         tls.VersionTLS12,
		CipherSuites:       MicrosoftSuites,
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verify(cs, serverName, roots)
		},
	}
}

func verify(cs tls.ConnectionState, serverName string, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no server certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	var inv x509.CertificateInvalidError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return fmt.Errorf("HRESULT=0x80090328 SEC_E_CERT_EXPIRED: %w", err)
	case err != nil:
		return fmt.Errorf("HRESULT=0x80090325 SEC_E_UNTRUSTED_ROOT: %w", err)
	}
	if err := leaf.VerifyHostname(serverName); err != nil {
		return fmt.Errorf("HRESULT=0x80090322 SEC_E_WRONG_PRINCIPAL: %w", err)
	}
	return nil
}
