package audit_test

import (
	"bytes"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/tlsaudit/audit"
	"github.com/sbcwatch/sbcwatch/tlsaudit/audit/audittest"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck/certtest"
)

// A certificate whose notBefore is still to come is tls_cert_not_yet_valid,
// not tls_cert_expired, and (issued by a trusted CA) not untrusted.
func TestNotYetValidCertificate(t *testing.T) {
	p := getPKI(t)
	now := time.Now()
	future := certtest.New(t, certtest.Spec{CN: fqdn, DNS: []string{fqdn}, RSABits: 2048,
		NotBefore: now.Add(10 * 24 * time.Hour), NotAfter: now.Add(400 * 24 * time.Hour)}, p.root)
	sbc := audittest.Start(t, audittest.Config{
		ByName:  map[string]tls.Certificate{fqdn: future.TLS()},
		Default: future.TLS(),
		SIP:     true,
	})
	rep, err := run(t, sbc.Addr, audit.Options{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	ny := find(rep, finding.TLSCertNotYetValid, audit.ProbeSNI)
	if len(ny) != 1 || ny[0].Severity != finding.Critical || ny[0].Evidence["not_before"] != future.Cert.NotBefore.UTC().Format(time.RFC3339) {
		t.Fatalf("not-yet-valid findings: %v", rulesOf(rep))
	}
	if got := find(rep, finding.TLSCertExpired, ""); len(got) != 0 {
		t.Errorf("a not-yet-valid certificate reported expired: %v", got[0].Summary)
	}
	if got := find(rep, finding.TLSCertUntrusted, ""); len(got) != 0 {
		t.Errorf("a not-yet-valid CA-issued certificate reported untrusted: %v", got[0].Summary)
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "NOT YET VALID: certificate is not valid before") || strings.Contains(buf.String(), "UNTRUSTED") {
		t.Errorf("text report:\n%s", buf.String())
	}
}
