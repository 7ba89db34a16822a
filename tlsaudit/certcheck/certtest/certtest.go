// Package certtest builds certificates for tests: a CA, intermediates and
// leaves with chosen names, dates, key sizes and EKUs, plus helpers to
// write them as PEM files and to turn them into tls.Certificates. It is
// for tests only; keys are generated fresh each time.
package certtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Cert is a generated certificate with its key and issuer chain (the
// intermediates between it and the root, nearest first; not the root).
type Cert struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate
}

// Spec describes a certificate to generate. Zero values give sensible
// defaults: ECDSA P-256 key, valid from an hour ago for a year, EKU
// Server Authentication for leaves.
type Spec struct {
	CN        string
	O         string
	DNS       []string
	IPs       []net.IP
	NotBefore time.Time
	NotAfter  time.Time
	// RSABits selects an RSA key of that size instead of ECDSA P-256.
	RSABits int
	// EKU overrides the extended key usages; NoEKU leaves them out.
	EKU   []x509.ExtKeyUsage
	NoEKU bool
	// CA makes a CA certificate (for roots and intermediates).
	CA bool
	// SigAlg overrides the signature algorithm (e.g. x509.SHA1WithRSA
	// needs an RSA issuer key).
	SigAlg x509.SignatureAlgorithm
}

var serial = big.NewInt(1000)

// New generates a certificate per spec, signed by parent (nil: self-signed).
func New(t testing.TB, s Spec, parent *Cert) *Cert {
	t.Helper()
	var key crypto.Signer
	var err error
	if s.RSABits > 0 {
		key, err = rsa.GenerateKey(rand.Reader, s.RSABits)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatalf("certtest: key: %v", err)
	}
	now := time.Now()
	if s.NotBefore.IsZero() {
		s.NotBefore = now.Add(-time.Hour)
	}
	if s.NotAfter.IsZero() {
		s.NotAfter = now.Add(365 * 24 * time.Hour)
	}
	serial = new(big.Int).Add(serial, big.NewInt(1))
	tpl := &x509.Certificate{
		SerialNumber:          new(big.Int).Set(serial),
		Subject:               pkix.Name{CommonName: s.CN},
		NotBefore:             s.NotBefore,
		NotAfter:              s.NotAfter,
		DNSNames:              s.DNS,
		IPAddresses:           s.IPs,
		BasicConstraintsValid: true,
		IsCA:                  s.CA,
		SignatureAlgorithm:    s.SigAlg,
	}
	if s.O != "" {
		tpl.Subject.Organization = []string{s.O}
	}
	if s.CA {
		tpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	} else {
		tpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		if !s.NoEKU {
			tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}
	}
	if s.EKU != nil {
		tpl.ExtKeyUsage = s.EKU
	}
	issuerCert, issuerKey := tpl, key
	var chain []*x509.Certificate
	if parent != nil {
		issuerCert, issuerKey = parent.Cert, parent.Key
		if string(parent.Cert.RawIssuer) != string(parent.Cert.RawSubject) {
			chain = append([]*x509.Certificate{parent.Cert}, parent.Chain...)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, issuerCert, key.Public(), issuerKey)
	if err != nil {
		t.Fatalf("certtest: create %q: %v", s.CN, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("certtest: parse: %v", err)
	}
	return &Cert{Cert: c, Key: key, Chain: chain}
}

// Served is the chain a server sends: the certificate then its
// intermediates (not the root).
func (c *Cert) Served() []*x509.Certificate {
	return append([]*x509.Certificate{c.Cert}, c.Chain...)
}

// TLS returns the certificate as a tls.Certificate with its intermediates.
func (c *Cert) TLS() tls.Certificate {
	tc := tls.Certificate{PrivateKey: c.Key, Leaf: c.Cert}
	for _, x := range c.Served() {
		tc.Certificate = append(tc.Certificate, x.Raw)
	}
	return tc
}

// Pool returns a pool holding only this certificate (use on a root).
func (c *Cert) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Cert)
	return p
}

// WritePEM writes the served chain and the key as PEM files in dir and
// returns their paths.
func (c *Cert) WritePEM(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	var certPEM []byte
	for _, x := range c.Served() {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: x.Raw})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		t.Fatalf("certtest: key: %v", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
