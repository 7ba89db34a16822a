package tlsaudit

import (
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// Tests on testdata/peers.pcap, captured by testdata/gen.sh from real Go
// crypto/tls and openssl peers; the certificates each server held are in
// testdata/certs. 127.0.0.2 plays Microsoft.

var msAddr = netip.MustParseAddr("127.0.0.2")

func loadCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "certs", name+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", name)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func peersTracker(t *testing.T) (*Tracker, map[uint16][]*Conn) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(loadCert(t, "ca"))
	tr := NewTracker(Options{
		IsMicrosoft: func(a netip.Addr) bool { return a == msAddr },
		Check:       CertChecker(roots, 0),
		SBCNames:    []string{"sbc.example.test"},
	})
	if n := replay(t, filepath.Join("testdata", "peers.pcap"), tr); n != 20 {
		t.Fatalf("replayed %d TLS connections, want 20", n)
	}
	if tr.Live() != 0 {
		t.Fatalf("%d connections still live", tr.Live())
	}
	byPort := map[uint16][]*Conn{}
	for _, c := range tr.Conns() {
		byPort[c.Server.Port()] = append(byPort[c.Server.Port()], c)
	}
	return tr, byPort
}

func fp(c *x509.Certificate) string { return certcheck.Fingerprint(c) }

func TestPeers(t *testing.T) {
	_, by := peersTracker(t)
	sbc, alt, def := loadCert(t, "sbc"), loadCert(t, "alt"), loadCert(t, "default")
	expired, clientAuth := loadCert(t, "expired"), loadCert(t, "clientauth")
	want := map[uint16]int{47001: 2, 47002: 1, 47003: 1, 47004: 2, 47005: 2, 47006: 5, 47007: 4, 47008: 1, 47009: 1, 47010: 1}
	for port, n := range want {
		if len(by[port]) != n {
			t.Fatalf("port %d: %d connections, want %d", port, len(by[port]), n)
		}
	}
	leafIs := func(c *Conn, want *x509.Certificate, what string) {
		t.Helper()
		if c.Leaf() == nil {
			t.Errorf("%s: no certificate", what)
			return
		}
		if fp(c.Leaf()) != fp(want) || c.Leaf().Subject.String() != want.Subject.String() {
			t.Errorf("%s: served %s (%s), want %s", what, c.Leaf().Subject, fp(c.Leaf()), want.Subject)
		}
		if c.Check == nil || c.Check.Fingerprint != fp(want) {
			t.Errorf("%s: check %+v", what, c.Check)
		}
	}
	established := func(c *Conn, what string) {
		t.Helper()
		if c.Outcome != OutcomeEstablished || !c.Established || !c.ClientFinished || !c.ServerFinished ||
			!c.ClientCCS || !c.ServerCCS || !c.AppData || c.Failed() {
			t.Errorf("%s: outcome %s est=%v fin=%v/%v ccs=%v/%v app=%v", what, c.Outcome, c.Established,
				c.ClientFinished, c.ServerFinished, c.ClientCCS, c.ServerCCS, c.AppData)
		}
		// The client sent the request and closed with close_notify.
		if c.ClosedBy != "client" {
			t.Errorf("%s: closed by %q", what, c.ClosedBy)
		}
	}
	common := func(c *Conn, what string) {
		t.Helper()
		if !c.SawSYN || c.Hello == nil || c.BytesC2S == 0 || c.BytesS2C == 0 || len(c.Anomalies) > 0 {
			t.Errorf("%s: syn=%v hello=%v bytes=%d/%d anomalies=%q", what, c.SawSYN, c.Hello != nil, c.BytesC2S, c.BytesS2C, c.Anomalies)
		}
		if c.Duration <= 0 || c.Duration > time.Second {
			t.Errorf("%s: duration %v", what, c.Duration)
		}
		if !strings.HasPrefix(c.ID, c.Client.String()+"->") {
			t.Errorf("%s: id %s", what, c.ID)
		}
	}
	for _, cs := range by {
		for _, c := range cs {
			common(c, c.ID)
		}
	}

	// 47001: certificate by SNI, self-signed default without SNI.
	c := by[47001][0]
	if c.SNI != "sbc.example.test" || c.Version != "TLS 1.2" || c.VersionCode != 0x0303 ||
		!strings.HasPrefix(c.Cipher, "TLS_ECDHE_ECDSA_WITH_") || c.CipherCode == 0 {
		t.Errorf("47001 sni: sni=%q version=%s cipher=%s", c.SNI, c.Version, c.Cipher)
	}
	// Go's client offers TLS 1.3 even to a 1.2 server, no ALPN.
	if h := c.Hello; h.Version != 0x0303 || len(h.Versions) == 0 || h.Versions[0] != 0x0304 ||
		!strings.HasPrefix(h.JA4, "t13d") || !strings.Contains(h.JA4[:10], "00") || len(h.KeyShares) == 0 ||
		len(h.SigAlgs) == 0 || len(h.Groups) == 0 || len(h.JA3Hash) != 32 {
		t.Errorf("47001 hello: %+v", h)
	}
	leafIs(c, sbc, "47001 sni")
	established(c, "47001 sni")
	if !c.Check.Trusted || !c.Check.NameOK || c.Check.Name != "sbc.example.test" {
		t.Errorf("47001 sni check: %+v", c.Check)
	}
	c = by[47001][1]
	if c.SNI != "" || c.Hello.JA4[3] != 'i' {
		t.Errorf("47001 no sni: %q %s", c.SNI, c.Hello.JA4)
	}
	leafIs(c, def, "47001 default")
	established(c, "47001 default")
	if c.Check.Trusted || !c.Check.SelfSigned || c.Check.NameOK || c.Check.Name != "sbc.example.test" {
		t.Errorf("47001 default check: %+v", c.Check)
	}

	// 47002: expired; Go's verifying client sends a fatal bad_certificate.
	c = by[47002][0]
	leafIs(c, expired, "47002")
	if c.Outcome != OutcomeAlert || c.ClosedBy != "client" || len(c.Alerts) != 1 || c.Established || c.ClientCCS {
		t.Errorf("47002: %s by %s alerts %+v", c.Outcome, c.ClosedBy, c.Alerts)
	} else if a := c.Alerts[0]; a.From != "client" || a.Level != 2 || a.Description != 42 || a.Name != "bad_certificate" || a.Encrypted {
		t.Errorf("47002 alert %+v", a)
	}
	if !c.Check.Expired || c.Check.DaysLeft >= 0 {
		t.Errorf("47002 check: %+v", c.Check)
	}

	// 47003: TLS 1.0.
	c = by[47003][0]
	if c.Version != "TLS 1.0" || c.VersionCode != 0x0301 {
		t.Errorf("47003: %s", c.Version)
	}
	leafIs(c, sbc, "47003")
	established(c, "47003")

	// 47004: TLS 1.3, certificate encrypted.
	c = by[47004][0]
	if c.Version != "TLS 1.3" || !c.CertEncrypted || c.Chain != nil || c.Check != nil ||
		!strings.HasPrefix(c.Cipher, "TLS_AES_") && !strings.HasPrefix(c.Cipher, "TLS_CHACHA20") {
		t.Errorf("47004: %s %s enc=%v chain=%d", c.Version, c.Cipher, c.CertEncrypted, len(c.Chain))
	}
	if c.Outcome != OutcomeEstablished || !c.Established || !c.AppData {
		t.Errorf("47004 ok: %s app=%v", c.Outcome, c.AppData)
	}
	c = by[47004][1]
	if c.Outcome != OutcomeAlert || c.Established || c.AppData || len(c.Alerts) != 1 ||
		!c.Alerts[0].Encrypted || c.Alerts[0].From != "client" || c.ClosedBy != "client" {
		t.Errorf("47004 untrusted: %s est=%v alerts=%+v by=%s", c.Outcome, c.Established, c.Alerts, c.ClosedBy)
	}

	// 47005: openssl s_server -cert default -cert2 sbc -servername sbc.example.test.
	if by[47005][0].SNI != "sbc.example.test" || by[47005][1].SNI != "" {
		t.Errorf("47005 SNIs %q %q", by[47005][0].SNI, by[47005][1].SNI)
	}
	leafIs(by[47005][0], sbc, "47005 sni")
	leafIs(by[47005][1], def, "47005 no sni")
	for _, c := range by[47005] {
		established(c, "47005 "+c.ID)
		if c.Hello.JA4 == by[47001][0].Hello.JA4 {
			t.Errorf("openssl and Go clients share JA4 %s", c.Hello.JA4)
		}
	}

	// 47006: alternating certificates.
	for i, c := range by[47006] {
		w := sbc
		if i%2 == 1 {
			w = alt
		}
		leafIs(c, w, "47006")
		established(c, "47006")
	}

	// 47007: "Microsoft" gives up on the self-signed default.
	first := by[47007][0].FirstSeen
	for i, c := range by[47007] {
		leafIs(c, def, "47007")
		if !c.FromMicrosoft || c.ToMicrosoft || c.Outcome != OutcomeAlert || c.ClosedBy != "client" ||
			c.Duration > 50*time.Millisecond || len(c.Alerts) != 1 || c.Alerts[0].Name != "bad_certificate" {
			t.Errorf("47007 try %d: ms=%v/%v %s by %s after %v alerts %+v", i+1, c.FromMicrosoft, c.ToMicrosoft, c.Outcome, c.ClosedBy, c.Duration, c.Alerts)
		}
		gap := c.FirstSeen.Sub(first)
		if i < 3 && gap > time.Second || i == 3 && gap < 1500*time.Millisecond {
			t.Errorf("47007 try %d at +%v", i+1, gap)
		}
		if c.Check.Trusted || c.Check.NameOK || c.Check.Name != "sbc.example.test" {
			t.Errorf("47007 check %+v", c.Check)
		}
	}

	// 47008: client-auth-only EKU, SNI not covered.
	c = by[47008][0]
	leafIs(c, clientAuth, "47008")
	established(c, "47008")
	if !c.Check.NoServerAuth || c.Check.NameOK || c.Check.Name != "wrong.example.test" {
		t.Errorf("47008 check %+v", c.Check)
	}

	// 47009: mutual TLS.
	c = by[47009][0]
	leafIs(c, sbc, "47009")
	established(c, "47009")
	if !c.CertRequested || !c.ClientCertSent {
		t.Errorf("47009: requested=%v sent=%v", c.CertRequested, c.ClientCertSent)
	}
	for _, c := range by[47001] {
		if c.CertRequested || c.ClientCertSent {
			t.Errorf("47001: client certificate flags set")
		}
	}

	// 47010: client reset after the certificate.
	c = by[47010][0]
	leafIs(c, sbc, "47010")
	if c.Outcome != OutcomeReset || c.ClosedBy != "client" || len(c.Alerts) != 0 || c.ClientCCS || !c.Failed() {
		t.Errorf("47010: %s by %s alerts %+v", c.Outcome, c.ClosedBy, c.Alerts)
	}
}

func TestPeersFindings(t *testing.T) {
	tr, by := peersTracker(t)
	fs := Findings(tr.Conns(), FindingOptions{})
	count := map[string]int{}
	byRule := map[string][]*finding.Finding{}
	for _, f := range fs {
		count[f.Rule]++
		byRule[f.Rule] = append(byRule[f.Rule], f)
		if f.Source != finding.SourcePassive || f.Connection == "" || f.Summary == "" || f.Time.IsZero() {
			t.Errorf("incomplete finding %+v", f)
		}
	}
	wantCount := map[string]int{
		finding.TLSHandshakeFailed:  7, // 47002, 47004 untrusted, 47007 ×4, 47010
		finding.TLSCertUntrusted:    3, // default cert on 47001, 47005, 47007
		finding.TLSCertNameMismatch: 4, // default on 47001, 47005, 47007; clientauth on 47008
		finding.TLSCertExpired:      1,
		finding.TLSVersionWeak:      1,
		finding.TLSCertNoServerAuth: 1,
		finding.TLSCertInconsistent: 1,
	}
	for r, n := range wantCount {
		if count[r] != n {
			t.Errorf("%s: %d findings, want %d", r, count[r], n)
		}
	}
	if len(fs) != 18 {
		t.Errorf("%d findings, want 18", len(fs))
	}
	ms := 0
	for _, f := range byRule[finding.TLSHandshakeFailed] {
		ev := f.Evidence
		if ev["connection"] != f.Connection || ev["duration_ms"].(float64) <= 0 || ev["outcome"] == "" {
			t.Errorf("handshake_failed evidence %v", ev)
		}
		if strings.HasPrefix(f.Connection, "127.0.0.2:") {
			ms++
			if f.Severity != finding.Critical || ev["from_microsoft"] != true || ev["sni"] != "sbc.example.test" ||
				ev["alert"] != "fatal bad_certificate (42) from client" || ev["closed_by"] != "client" ||
				ev["cert_subject"] != "CN=default-context,O=SBC vendor" || ev["cert_issuer"] != "CN=default-context,O=SBC vendor" ||
				ev["cert_fingerprint_sha256"] != fp(loadCert(t, "default")) {
				t.Errorf("microsoft failure: %s %v", f.Severity, ev)
			}
		} else if f.Severity != finding.Warning {
			t.Errorf("non-Microsoft failure is %s", f.Severity)
		}
	}
	if ms != 4 {
		t.Errorf("%d Microsoft failures, want 4", ms)
	}
	for _, f := range byRule[finding.TLSCertUntrusted] {
		if f.Evidence["listener"] == "127.0.0.1:47007" {
			if f.Evidence["connections"] != 4 || len(f.Evidence["connection_ids"].([]string)) != 4 ||
				f.Evidence["from_microsoft"] != true || f.Evidence["self_signed"] != true || f.Connection != by[47007][0].ID {
				t.Errorf("grouped untrusted: %v", f.Evidence)
			}
		}
	}
	inc := byRule[finding.TLSCertInconsistent][0]
	fps := inc.Evidence["fingerprints"].([]map[string]any)
	if inc.Evidence["listener"] != "127.0.0.1:47006" || inc.Evidence["sni"] != "sbc.example.test" || len(fps) != 2 ||
		fps[0]["fingerprint_sha256"] != fp(loadCert(t, "sbc")) || fps[0]["count"] != 3 ||
		fps[1]["fingerprint_sha256"] != fp(loadCert(t, "alt")) || fps[1]["count"] != 2 || inc.Severity != finding.Critical {
		t.Errorf("inconsistent: %v", inc.Evidence)
	}
	if w := byRule[finding.TLSVersionWeak][0]; w.Evidence["version"] != "TLS 1.0" || w.Evidence["listener"] != "127.0.0.1:47003" {
		t.Errorf("version weak: %v", w.Evidence)
	}
	if e := byRule[finding.TLSCertExpired][0]; e.Evidence["fingerprint_sha256"] != fp(loadCert(t, "expired")) {
		t.Errorf("expired: %v", e.Evidence)
	}
	if e := byRule[finding.TLSCertNoServerAuth][0]; e.Evidence["fingerprint_sha256"] != fp(loadCert(t, "clientauth")) {
		t.Errorf("no server auth: %v", e.Evidence)
	}
	for i := 1; i < len(fs); i++ {
		if fs[i].Time.Before(fs[i-1].Time) {
			t.Errorf("findings out of order at %d", i)
		}
	}
}
