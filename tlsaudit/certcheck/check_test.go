package certcheck_test

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck/certtest"
)

func rules(ps []certcheck.Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Rule)
	}
	return out
}

func TestCheck(t *testing.T) {
	now := time.Now()
	root := certtest.New(t, certtest.Spec{CN: "Test Root CA", O: "sbcwatch tests", CA: true, RSABits: 2048, NotBefore: now.Add(-3 * 365 * 24 * time.Hour), NotAfter: now.Add(5 * 365 * 24 * time.Hour)}, nil)
	inter := certtest.New(t, certtest.Spec{CN: "Test Issuing CA", CA: true, NotBefore: now.Add(-2 * 365 * 24 * time.Hour), NotAfter: now.Add(3 * 365 * 24 * time.Hour)}, root)
	good := certtest.New(t, certtest.Spec{CN: "sbc.example.com", O: "Contoso", DNS: []string{"sbc.example.com", "sbc2.example.com"}, IPs: []net.IP{net.ParseIP("192.0.2.10")}}, inter)
	wild := certtest.New(t, certtest.Spec{CN: "wild", DNS: []string{"*.example.com"}}, inter)
	cnOnly := certtest.New(t, certtest.Spec{CN: "sbc.example.com", NoEKU: true}, inter)
	sanWins := certtest.New(t, certtest.Spec{CN: "sbc.example.com", DNS: []string{"other.example.com"}}, inter)
	expired := certtest.New(t, certtest.Spec{CN: "old.example.com", DNS: []string{"old.example.com"}, NotBefore: now.Add(-400 * 24 * time.Hour), NotAfter: now.Add(-2 * 24 * time.Hour)}, inter)
	future := certtest.New(t, certtest.Spec{CN: "new.example.com", DNS: []string{"new.example.com"}, NotBefore: now.Add(48 * time.Hour), NotAfter: now.Add(400 * 24 * time.Hour)}, inter)
	expiring := certtest.New(t, certtest.Spec{CN: "soon.example.com", DNS: []string{"soon.example.com"}, NotAfter: now.Add(10*24*time.Hour + time.Hour)}, inter)
	clientOnly := certtest.New(t, certtest.Spec{CN: "sbc.example.com", DNS: []string{"sbc.example.com"}, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, inter)
	rsa1024 := certtest.New(t, certtest.Spec{CN: "weak.example.com", DNS: []string{"weak.example.com"}, RSABits: 1024}, root)
	sha1 := certtest.New(t, certtest.Spec{CN: "sha1.example.com", DNS: []string{"sha1.example.com"}, SigAlg: x509.SHA1WithRSA}, root)
	oldInter := certtest.New(t, certtest.Spec{CN: "Old Issuing CA", CA: true, NotBefore: now.Add(-2 * 365 * 24 * time.Hour), NotAfter: now.Add(-time.Hour)}, root)
	underOld := certtest.New(t, certtest.Spec{CN: "sbc.example.com", DNS: []string{"sbc.example.com"}, NotBefore: now.Add(-365 * 24 * time.Hour)}, oldInter)
	self := certtest.New(t, certtest.Spec{CN: "AudioCodes Default", O: "AudioCodes"}, nil)
	expiredSelf := certtest.New(t, certtest.Spec{CN: "old default", NotBefore: now.Add(-400 * 24 * time.Hour), NotAfter: now.Add(-time.Hour)}, nil)

	opt := func(names ...string) certcheck.Options {
		return certcheck.Options{Roots: root.Pool(), Names: names, At: now}
	}
	tests := []struct {
		name  string
		chain []*x509.Certificate
		opt   certcheck.Options
		check func(t *testing.T, r *certcheck.Result)
		rules []string
	}{
		{"good chain via intermediate", good.Served(), opt("SBC.Example.com."), func(t *testing.T, r *certcheck.Result) {
			if !r.Trusted || !r.ChainTrusted || r.VerifyError != "" {
				t.Errorf("trusted=%v err=%q", r.Trusted, r.VerifyError)
			}
			if r.Subject != "CN=sbc.example.com,O=Contoso" || r.Issuer != "CN=Test Issuing CA" {
				t.Errorf("subject %q issuer %q", r.Subject, r.Issuer)
			}
			if strings.Join(r.SANs, " ") != "sbc.example.com sbc2.example.com 192.0.2.10" {
				t.Errorf("SANs %v", r.SANs)
			}
			if len(r.Fingerprint) != 64 || strings.ToLower(r.Fingerprint) != r.Fingerprint {
				t.Errorf("fingerprint %q", r.Fingerprint)
			}
			if !r.NameChecked || !r.NameOK || r.Name != "sbc.example.com" {
				t.Errorf("name %q checked=%v ok=%v", r.Name, r.NameChecked, r.NameOK)
			}
			if r.SelfSigned || r.Expired || r.Expiring || r.NoServerAuth || len(r.Weak) != 0 {
				t.Errorf("unexpected flags %+v", r)
			}
			if r.DaysLeft < 363 || r.DaysLeft > 365 {
				t.Errorf("days left %d", r.DaysLeft)
			}
		}, nil},
		{"intermediate missing", []*x509.Certificate{good.Cert}, opt("sbc.example.com"), func(t *testing.T, r *certcheck.Result) {
			if r.Trusted || !strings.Contains(r.VerifyError, "unknown authority (issuer: CN=Test Issuing CA)") {
				t.Errorf("trusted=%v err=%q", r.Trusted, r.VerifyError)
			}
		}, []string{finding.TLSCertUntrusted}},
		{"IP name uses IP SANs", good.Served(), opt("192.0.2.10"), func(t *testing.T, r *certcheck.Result) {
			if !r.NameOK {
				t.Error("IP SAN not matched")
			}
		}, nil},
		{"IP not covered", good.Served(), opt("192.0.2.11"), nil, []string{finding.TLSCertNameMismatch}},
		{"any configured FQDN", good.Served(), opt("nope.example.com", "sbc2.example.com"), func(t *testing.T, r *certcheck.Result) {
			if !r.NameOK || r.Name != "sbc2.example.com" {
				t.Errorf("name %q ok=%v", r.Name, r.NameOK)
			}
		}, nil},
		{"no names: not checked", good.Served(), opt(), func(t *testing.T, r *certcheck.Result) {
			if r.NameChecked {
				t.Error("NameChecked without names")
			}
		}, nil},
		{"wildcard one label", wild.Served(), opt("sbc.example.com"), nil, nil},
		{"wildcard two labels", wild.Served(), opt("a.sbc.example.com"), nil, []string{finding.TLSCertNameMismatch}},
		{"wildcard not the apex", wild.Served(), opt("example.com"), nil, []string{finding.TLSCertNameMismatch}},
		{"CN used without SANs", cnOnly.Served(), opt("sbc.example.com"), func(t *testing.T, r *certcheck.Result) {
			if r.NoServerAuth {
				t.Error("no EKU must not be NoServerAuth")
			}
		}, nil},
		{"CN ignored with SANs", sanWins.Served(), opt("sbc.example.com"), func(t *testing.T, r *certcheck.Result) {
			ps := r.Problems()
			if len(ps) != 1 || ps[0].Evidence["name"] != "sbc.example.com" {
				t.Fatalf("problems %+v", ps)
			}
			if got := ps[0].Evidence["cert_names"].([]string); len(got) != 1 || got[0] != "other.example.com" {
				t.Errorf("cert_names %v", got)
			}
		}, []string{finding.TLSCertNameMismatch}},
		{"expired", expired.Served(), opt("old.example.com"), func(t *testing.T, r *certcheck.Result) {
			if !r.Expired || r.Trusted || !r.ChainTrusted || r.DaysLeft > -2 || r.Expiring {
				t.Errorf("expired=%v trusted=%v chain=%v days=%d expiring=%v", r.Expired, r.Trusted, r.ChainTrusted, r.DaysLeft, r.Expiring)
			}
			if !strings.HasPrefix(r.VerifyError, "certificate has expired at "+expired.Cert.NotAfter.UTC().Format(time.RFC3339)) {
				t.Errorf("verify error %q", r.VerifyError)
			}
		}, []string{finding.TLSCertExpired}},
		{"expired is fine at handshake time", expired.Served(), certcheck.Options{Roots: root.Pool(), Names: []string{"old.example.com"}, At: now.Add(-100 * 24 * time.Hour)}, func(t *testing.T, r *certcheck.Result) {
			if !r.Trusted || r.Expired {
				t.Errorf("trusted=%v expired=%v", r.Trusted, r.Expired)
			}
		}, nil},
		{"expired intermediate", underOld.Served(), opt("sbc.example.com"), func(t *testing.T, r *certcheck.Result) {
			if r.Trusted || r.Expired || !strings.Contains(r.VerifyError, "chain certificate CN=Old Issuing CA") {
				t.Errorf("trusted=%v expired=%v err=%q", r.Trusted, r.Expired, r.VerifyError)
			}
		}, []string{finding.TLSCertUntrusted}},
		{"not yet valid", future.Served(), opt("new.example.com"), func(t *testing.T, r *certcheck.Result) {
			if !r.NotYetValid || r.Expired || !strings.Contains(r.VerifyError, "not valid before") {
				t.Errorf("notyet=%v err=%q", r.NotYetValid, r.VerifyError)
			}
		}, []string{finding.TLSCertNotYetValid}},
		{"expiring default window", expiring.Served(), opt("soon.example.com"), func(t *testing.T, r *certcheck.Result) {
			if !r.Expiring || r.DaysLeft != 10 {
				t.Errorf("expiring=%v days=%d", r.Expiring, r.DaysLeft)
			}
		}, []string{finding.TLSCertExpiring}},
		{"expiring custom window", expiring.Served(), certcheck.Options{Roots: root.Pool(), At: now, ExpiryWarning: 7 * 24 * time.Hour}, func(t *testing.T, r *certcheck.Result) {
			if r.Expiring {
				t.Error("10 days left is outside a 7-day window")
			}
		}, nil},
		{"client auth only", clientOnly.Served(), opt("sbc.example.com"), func(t *testing.T, r *certcheck.Result) {
			if !r.NoServerAuth || !r.Trusted {
				t.Errorf("noServerAuth=%v trusted=%v err=%q", r.NoServerAuth, r.Trusted, r.VerifyError)
			}
		}, []string{finding.TLSCertNoServerAuth}},
		{"RSA 1024", rsa1024.Served(), opt("weak.example.com"), func(t *testing.T, r *certcheck.Result) {
			if len(r.Weak) != 1 || r.Weak[0] != "leaf: RSA key of 1024 bits (below 2048)" {
				t.Errorf("weak %q", r.Weak)
			}
		}, nil},
		{"SHA-1 signature", sha1.Served(), opt("sha1.example.com"), func(t *testing.T, r *certcheck.Result) {
			if len(r.Weak) != 1 || !strings.Contains(r.Weak[0], "signed with SHA-1") {
				t.Errorf("weak %q", r.Weak)
			}
			if r.Trusted {
				t.Error("a SHA-1 signed certificate must not verify")
			}
		}, []string{finding.TLSCertUntrusted}},
		{"self-signed default context", self.Served(), opt("sbc.example.com"), func(t *testing.T, r *certcheck.Result) {
			if !r.SelfSigned || r.Trusted || r.ChainTrusted {
				t.Errorf("self=%v trusted=%v chain=%v", r.SelfSigned, r.Trusted, r.ChainTrusted)
			}
			want := "certificate signed by unknown authority (self-signed: CN=AudioCodes Default,O=AudioCodes)"
			if r.VerifyError != want {
				t.Errorf("verify error %q, want %q", r.VerifyError, want)
			}
			ps := r.Problems()
			if ps[0].Severity != finding.Critical || ps[0].Evidence["self_signed"] != true || ps[0].Evidence["fingerprint_sha256"] != r.Fingerprint {
				t.Errorf("problem %+v", ps[0])
			}
			if got := ps[1].Evidence["cert_names"].([]string); len(got) != 1 || got[0] != "AudioCodes Default" {
				t.Errorf("cert_names %v", got)
			}
		}, []string{finding.TLSCertUntrusted, finding.TLSCertNameMismatch}},
		{"expired self-signed is untrusted and expired", expiredSelf.Served(), opt(), func(t *testing.T, r *certcheck.Result) {
			if !strings.Contains(r.VerifyError, "self-signed") {
				t.Errorf("verify error %q", r.VerifyError)
			}
		}, []string{finding.TLSCertUntrusted, finding.TLSCertExpired}},
		{"root trusted as leaf is not self-signed-untrusted", root.Served(), opt(), func(t *testing.T, r *certcheck.Result) {
			if !r.SelfSigned {
				t.Error("root must be self-signed")
			}
		}, nil},
		{"empty chain", nil, opt("x"), func(t *testing.T, r *certcheck.Result) {
			if r.VerifyError != "no certificate" || r.Trusted {
				t.Errorf("%+v", r)
			}
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := certcheck.Check(tc.chain, tc.opt)
			if tc.check != nil {
				tc.check(t, r)
			}
			if got, want := strings.Join(rules(r.Problems()), ","), strings.Join(tc.rules, ","); got != want {
				t.Errorf("problems %q, want %q (result %+v)", got, want, r)
			}
		})
	}
}

func TestMatchName(t *testing.T) {
	for _, tc := range []struct {
		pattern, host string
		want          bool
	}{
		{"sbc.example.com", "SBC.EXAMPLE.COM", true},
		{"sbc.example.com.", "sbc.example.com", true},
		{"*.example.com", "sbc.example.com", true},
		{"*.Example.com", "sbc.example.COM", true},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", "example.com", false},
		{"*.example.com", ".example.com", false},
		{"*.com", "example.com", false},
		{"sbc*.example.com", "sbc1.example.com", false},
		{"*sbc.example.com", "xsbc.example.com", false},
		{"sbc.*.com", "sbc.example.com", false},
		{"*.*.example.com", "a.b.example.com", false},
		{"", "", false},
	} {
		if got := certcheck.MatchName(tc.pattern, tc.host); got != tc.want {
			t.Errorf("MatchName(%q, %q) = %v, want %v", tc.pattern, tc.host, got, tc.want)
		}
	}
}

func TestSystemRootsDefault(t *testing.T) {
	// nil Roots means the system store, which does not hold a test CA.
	root := certtest.New(t, certtest.Spec{CN: "Private CA", CA: true}, nil)
	leaf := certtest.New(t, certtest.Spec{CN: "sbc.example.com", DNS: []string{"sbc.example.com"}}, root)
	r := certcheck.Check(leaf.Served(), certcheck.Options{Names: []string{"sbc.example.com"}})
	if r.Trusted || r.VerifyError == "" {
		t.Fatalf("private CA trusted by system roots: %+v", r)
	}
}

func TestLoadTrust(t *testing.T) {
	dir := t.TempDir()
	root := certtest.New(t, certtest.Spec{CN: "File CA", CA: true}, nil)
	leaf := certtest.New(t, certtest.Spec{CN: "sbc.example.com", DNS: []string{"sbc.example.com"}}, root)
	caFile, keyFile := root.WritePEM(t, dir, "ca")

	pool, err := certcheck.LoadTrust([]string{caFile}, true)
	if err != nil {
		t.Fatal(err)
	}
	if r := certcheck.Check(leaf.Served(), certcheck.Options{Roots: pool}); !r.Trusted {
		t.Errorf("not trusted with the loaded CA: %s", r.VerifyError)
	}
	empty, err := certcheck.LoadTrust(nil, true)
	if err != nil || empty == nil {
		t.Fatalf("empty pool: %v %v", empty, err)
	}
	if r := certcheck.Check(leaf.Served(), certcheck.Options{Roots: empty}); r.Trusted {
		t.Error("trusted with an empty store")
	}
	if p, err := certcheck.LoadTrust(nil, false); p != nil || err != nil {
		t.Errorf("no files, system: %v %v (want nil, nil)", p, err)
	}
	if _, err := certcheck.LoadTrust([]string{filepath.Join(dir, "missing.pem")}, true); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := certcheck.LoadTrust([]string{keyFile}, true); err == nil || !strings.Contains(err.Error(), "no PEM CERTIFICATE") {
		t.Errorf("key file as trust: %v", err)
	}
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := certcheck.LoadTrust([]string{junk}, true); err == nil || !strings.Contains(err.Error(), "certificate 1") {
		t.Errorf("junk certificate: %v", err)
	}
}

func TestProblemFinding(t *testing.T) {
	self := certtest.New(t, certtest.Spec{CN: "default"}, nil)
	r := certcheck.Check(self.Served(), certcheck.Options{Roots: x509.NewCertPool(), Names: []string{"sbc.example.com"}})
	ps := r.Problems()
	if len(ps) != 2 {
		t.Fatalf("problems %v", rules(ps))
	}
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.FixedZone("x", 3600))
	f := ps[0].Finding(at, finding.SourceAudit, "audit sbc:5061 (127.0.0.1)")
	if f.Rule != finding.TLSCertUntrusted || f.Source != finding.SourceAudit || f.Connection != "audit sbc:5061 (127.0.0.1)" || f.Time.Location() != time.UTC {
		t.Errorf("finding %+v", f)
	}
	f.Evidence["sni"] = "x"
	if _, ok := ps[0].Evidence["sni"]; ok {
		t.Error("finding shares its evidence map with the problem")
	}
}
