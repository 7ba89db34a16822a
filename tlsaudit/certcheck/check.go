package certcheck

import (
	"bytes"
	"crypto/dsa" //nolint:staticcheck // only to recognise DSA keys as weak
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"time"
)

// DefaultExpiryWarning is the Expiring window when Options.ExpiryWarning is 0.
const DefaultExpiryWarning = 30 * 24 * time.Hour

// Check judges a certificate chain as served (leaf first, then whatever
// intermediates the server sent). It never fails: an empty chain gives a
// Result with VerifyError "no certificate" and nothing else set.
//
// Trust: the chain is verified at opt.At against opt.Roots (nil: system
// roots), with the served certificates after the leaf as intermediates,
// for Server Authentication. A chain that only fails because of the
// leaf's EKU counts as trusted (NoServerAuth reports the EKU); a chain
// that only fails because of its validity dates has ChainTrusted set.
//
// Names: when opt.Names is empty, NameChecked is false. Otherwise the
// certificate must cover at least one of the names; Name is the first
// name covered, or opt.Names[0] when none is. Callers pass the SNI alone
// when the client sent one, else the SBC's configured FQDNs.
func Check(chain []*x509.Certificate, opt Options) *Result {
	r := &Result{}
	if len(chain) == 0 || chain[0] == nil {
		r.VerifyError = "no certificate"
		return r
	}
	at := opt.At
	if at.IsZero() {
		at = time.Now()
	}
	warn := opt.ExpiryWarning
	if warn <= 0 {
		warn = DefaultExpiryWarning
	}
	leaf := chain[0]
	r.Subject = leaf.Subject.String()
	r.Issuer = leaf.Issuer.String()
	r.SANs = SANs(leaf)
	r.Fingerprint = Fingerprint(leaf)
	r.NotBefore = leaf.NotBefore.UTC()
	r.NotAfter = leaf.NotAfter.UTC()
	r.SelfSigned = SelfSigned(leaf)

	r.Expired = at.After(leaf.NotAfter)
	r.NotYetValid = at.Before(leaf.NotBefore)
	left := leaf.NotAfter.Sub(at)
	r.DaysLeft = int(math.Floor(left.Hours() / 24))
	r.Expiring = !r.Expired && left < warn

	r.NoServerAuth = noServerAuth(leaf)
	r.Weak = weaknesses(chain)

	v := verify(chain, opt.Roots, at, r.SelfSigned)
	r.Trusted, r.ChainTrusted, r.VerifyError = v.trusted, v.chainOK, v.msg
	if v.usage {
		r.NoServerAuth = true // the leaf's or an intermediate's EKUs exclude server auth
	}

	if len(opt.Names) > 0 {
		r.NameChecked = true
		r.Name = normName(opt.Names[0])
		for _, n := range opt.Names {
			if Covers(leaf, n) {
				r.Name, r.NameOK = normName(n), true
				break
			}
		}
	}
	return r
}

type verdict struct {
	trusted bool   // verifies at the check time
	chainOK bool   // verifies apart from validity dates
	usage   bool   // verifies only when server auth EKU is not required
	msg     string // the error in words, "" when trusted
}

func verify(chain []*x509.Certificate, roots *x509.CertPool, at time.Time, selfSigned bool) verdict {
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		if c != nil {
			inter.AddCert(c)
		}
	}
	try := func(t time.Time, usage x509.ExtKeyUsage) error {
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			CurrentTime:   t,
			KeyUsages:     []x509.ExtKeyUsage{usage},
		})
		return err
	}
	var v verdict
	err := try(at, x509.ExtKeyUsageServerAuth)
	if isReason(err, x509.IncompatibleUsage) {
		// EKU is reported as NoServerAuth; judge trust without it.
		err = try(at, x509.ExtKeyUsageAny)
		v.usage = err == nil
	}
	if err == nil {
		v.trusted, v.chainOK = true, true
		return v
	}
	if isReason(err, x509.Expired) {
		// Try again at a moment inside the served certificates' validity.
		lo, hi := leaf.NotBefore, leaf.NotAfter
		for _, c := range chain[1:] {
			if c == nil {
				continue
			}
			if c.NotBefore.After(lo) && c.NotBefore.Before(hi) {
				lo = c.NotBefore
			}
			if c.NotAfter.Before(hi) && c.NotAfter.After(lo) {
				hi = c.NotAfter
			}
		}
		t := hi.Add(-time.Second)
		if at.Before(lo) {
			t = lo.Add(time.Second)
		}
		e2 := try(t, x509.ExtKeyUsageServerAuth)
		if isReason(e2, x509.IncompatibleUsage) {
			e2 = try(t, x509.ExtKeyUsageAny)
		}
		v.chainOK = e2 == nil
		if e2 != nil && !isReason(e2, x509.Expired) {
			// The dates are not the only problem: say the other one.
			v.msg = describe(e2, leaf, t, selfSigned)
			return v
		}
	}
	v.msg = describe(err, leaf, at, selfSigned)
	return v
}

func isReason(err error, reason x509.InvalidReason) bool {
	var ci x509.CertificateInvalidError
	return errors.As(err, &ci) && ci.Reason == reason
}

// describe turns a verification error into words for an admin.
func describe(err error, leaf *x509.Certificate, at time.Time, selfSigned bool) string {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	var sr x509.SystemRootsError
	switch {
	case errors.As(err, &ua):
		if selfSigned {
			return "certificate signed by unknown authority (self-signed: " + leaf.Subject.String() + ")"
		}
		return "certificate signed by unknown authority (issuer: " + leaf.Issuer.String() + ")"
	case errors.As(err, &ci):
		switch ci.Reason {
		case x509.Expired:
			c := ci.Cert
			if c == nil {
				c = leaf
			}
			who := ""
			if c != leaf {
				who = " (chain certificate " + c.Subject.String() + ")"
			}
			if at.Before(c.NotBefore) {
				return fmt.Sprintf("certificate is not valid before %s%s", c.NotBefore.UTC().Format(time.RFC3339), who)
			}
			return fmt.Sprintf("certificate has expired at %s%s", c.NotAfter.UTC().Format(time.RFC3339), who)
		case x509.IncompatibleUsage:
			return "certificate is not valid for server authentication (extended key usage)"
		case x509.NotAuthorizedToSign:
			return "an issuing certificate in the chain is not a CA"
		}
	case errors.As(err, &sr):
		return "no system trust store available: " + strings.TrimPrefix(sr.Error(), "x509: ")
	}
	return strings.TrimPrefix(err.Error(), "x509: ")
}

// SANs lists the certificate's DNS and IP subject alternative names.
func SANs(c *x509.Certificate) []string {
	out := make([]string, 0, len(c.DNSNames)+len(c.IPAddresses))
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// Fingerprint is the SHA-256 of the certificate's DER, lower-case hex.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// SelfSigned reports whether the certificate names itself as issuer and
// its signature verifies with its own key (CA flag or not).
func SelfSigned(c *x509.Certificate) bool {
	if !bytes.Equal(c.RawSubject, c.RawIssuer) {
		return false
	}
	return c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

func noServerAuth(c *x509.Certificate) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return false
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return false
		}
	}
	return true
}

// weaknesses lists weak keys (RSA < 2048, ECDSA < 256, DSA) anywhere in
// the served chain and weak signatures (SHA-1, MD5, MD2) on every
// certificate that is not self-signed (a root's self-signature is not
// relied upon).
func weaknesses(chain []*x509.Certificate) []string {
	var out []string
	for i, c := range chain {
		if c == nil {
			continue
		}
		who := "leaf"
		if i > 0 {
			who = "chain certificate " + c.Subject.String()
		}
		switch k := c.PublicKey.(type) {
		case *rsa.PublicKey:
			if n := k.N.BitLen(); n < 2048 {
				out = append(out, fmt.Sprintf("%s: RSA key of %d bits (below 2048)", who, n))
			}
		case *ecdsa.PublicKey:
			if n := k.Curve.Params().BitSize; n < 256 {
				out = append(out, fmt.Sprintf("%s: ECDSA key of %d bits (below 256)", who, n))
			}
		case *dsa.PublicKey:
			out = append(out, who+": DSA key")
		case ed25519.PublicKey:
		}
		if i > 0 && SelfSigned(c) {
			continue
		}
		switch c.SignatureAlgorithm {
		case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1:
			out = append(out, fmt.Sprintf("%s: signed with SHA-1 (%s)", who, c.SignatureAlgorithm))
		case x509.MD5WithRSA:
			out = append(out, fmt.Sprintf("%s: signed with MD5 (%s)", who, c.SignatureAlgorithm))
		case x509.MD2WithRSA:
			out = append(out, fmt.Sprintf("%s: signed with MD2 (%s)", who, c.SignatureAlgorithm))
		}
	}
	return out
}

func normName(n string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(n), "."))
}

// Covers reports whether the certificate is valid for name per RFC 6125:
// an IP address must be among the IP SANs; a host name must match a DNS
// SAN, or the subject CN only when there are no DNS SANs. Comparison is
// case-insensitive and ignores a trailing dot. A wildcard is honoured
// only as the whole left-most label ("*.example.com"), with at least two
// labels after it, and stands for exactly one non-empty label.
func Covers(c *x509.Certificate, name string) bool {
	name = normName(name)
	if name == "" {
		return false
	}
	if h, _, err := net.SplitHostPort(name); err == nil {
		name = h
	}
	if ip := net.ParseIP(strings.Trim(name, "[]")); ip != nil {
		for _, cip := range c.IPAddresses {
			if cip.Equal(ip) {
				return true
			}
		}
		return false
	}
	patterns := c.DNSNames
	if len(patterns) == 0 && c.Subject.CommonName != "" {
		patterns = []string{c.Subject.CommonName}
	}
	for _, p := range patterns {
		if MatchName(p, name) {
			return true
		}
	}
	return false
}

// MatchName matches one certificate name pattern against a host name
// (RFC 6125 §6.4.3, wildcard rules as in Covers).
func MatchName(pattern, host string) bool {
	pattern, host = normName(pattern), normName(host)
	if pattern == "" || host == "" {
		return false
	}
	if !strings.Contains(pattern, "*") {
		return pattern == host
	}
	pl := strings.Split(pattern, ".")
	hl := strings.Split(host, ".")
	if pl[0] != "*" || len(pl) < 3 || len(pl) != len(hl) || hl[0] == "" {
		return false
	}
	for i := 1; i < len(pl); i++ {
		if pl[i] == "" || strings.Contains(pl[i], "*") || pl[i] != hl[i] {
			return false
		}
	}
	return true
}

// LoadTrust builds a trust store from PEM files (each must hold at least
// one CERTIFICATE block), on top of the system roots unless noSystem.
// With no files and noSystem false it returns nil, which Check reads as
// "the system roots".
func LoadTrust(files []string, noSystem bool) (*x509.CertPool, error) {
	if len(files) == 0 && !noSystem {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if !noSystem {
		sys, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("load system trust store: %w", err)
		}
		pool = sys
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("trust file: %w", err)
		}
		n := 0
		for rest := data; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("trust file %s: certificate %d: %w", f, n+1, err)
			}
			pool.AddCert(c)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("trust file %s: no PEM CERTIFICATE block found", f)
		}
	}
	return pool, nil
}
