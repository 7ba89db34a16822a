package tlsaudit

import (
	"crypto/x509"
	"net/netip"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/tap"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck/certtest"
	"golang.org/x/crypto/cryptobyte"
)

// simpleHello is a ClientHello with one cipher and an SNI (when not "").
func simpleHello(sni string) []byte {
	var b cryptobyte.Builder
	b.AddUint16(0x0303)
	b.AddBytes(make([]byte, 32))
	b.AddUint8(0)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0xc02f) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
	if sni != "" {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16(0)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint8(0)
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(sni)) })
				})
			})
		})
	}
	return handshakeMsg(hsClientHello, b.BytesOrPanic())
}

// flight is ServerHello(version) + Certificate(chain) + ServerHelloDone.
func flight(version uint16, chain []*x509.Certificate) []byte {
	var sh cryptobyte.Builder
	sh.AddUint16(version)
	sh.AddBytes(make([]byte, 32))
	sh.AddUint8(0)
	sh.AddUint16(0xc013)
	sh.AddUint8(0)
	var cert cryptobyte.Builder
	cert.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, c := range chain {
			b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c.Raw) })
		}
	})
	out := handshakeMsg(hsServerHello, sh.BytesOrPanic())
	out = append(out, handshakeMsg(hsCertificate, cert.BytesOrPanic())...)
	return append(out, handshakeMsg(hsServerHelloDone, nil)...)
}

// handshake runs one connection: hello, the server flight, then either a
// client fatal alert + FIN (fail) or both CCS+Finished and app data.
func handshake(tr *Tracker, client, server string, at time.Time, sni string, version uint16, chain []*x509.Certificate, fail bool) {
	s := tr.Stream(tap.ConnInfo{Client: netip.MustParseAddrPort(client), Server: netip.MustParseAddrPort(server), FirstSeen: at, SawSYN: true})
	step := func() time.Time { at = at.Add(2 * time.Millisecond); return at }
	s.Event(tap.Event{Kind: tap.EventSYN, Dir: tap.ClientToServer, Time: at})
	s.Data(tap.ClientToServer, records(22, simpleHello(sni), 1<<14), step())
	s.Data(tap.ServerToClient, records(22, flight(version, chain), 1<<14), step())
	if fail {
		s.Data(tap.ClientToServer, []byte{21, 3, 3, 0, 2, 2, 42}, step())
		s.Event(tap.Event{Kind: tap.EventFIN, Dir: tap.ClientToServer, Time: step()})
	} else {
		ccsFin := []byte{20, 3, 3, 0, 1, 1, 22, 3, 3, 0, 40}
		ccsFin = append(ccsFin, make([]byte, 40)...)
		s.Data(tap.ClientToServer, ccsFin, step())
		s.Data(tap.ServerToClient, ccsFin, step())
		s.Data(tap.ClientToServer, []byte{23, 3, 3, 0, 3, 1, 2, 3}, step())
		s.Event(tap.Event{Kind: tap.EventFIN, Dir: tap.ClientToServer, Time: step()})
	}
	s.Close(step(), tap.CloseFIN)
}

func TestFindingRules(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	ca := certtest.New(t, certtest.Spec{CN: "Test Root", CA: true, NotBefore: t0.Add(-1000 * 24 * time.Hour), NotAfter: t0.Add(1000 * 24 * time.Hour)}, nil)
	good := certtest.New(t, certtest.Spec{CN: "sbc.example.test", DNS: []string{"sbc.example.test"}}, ca)
	other := certtest.New(t, certtest.Spec{CN: "sbc.example.test", DNS: []string{"sbc.example.test"}}, ca)
	self := certtest.New(t, certtest.Spec{CN: "sbc.example.test", DNS: []string{"sbc.example.test"}}, nil)
	wrongSAN := certtest.New(t, certtest.Spec{CN: "sbc.example.test", DNS: []string{"other.example.test"}}, ca)
	shortLived := certtest.New(t, certtest.Spec{CN: "sbc.example.test", DNS: []string{"sbc.example.test"},
		NotBefore: t0.Add(-10 * 24 * time.Hour), NotAfter: t0.Add(20 * 24 * time.Hour)}, ca)
	clientOnly := certtest.New(t, certtest.Spec{CN: "sbc.example.test", DNS: []string{"sbc.example.test"},
		EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca)

	run := func(f func(tr *Tracker)) (map[string][]*finding.Finding, []*Conn) {
		tr := NewTracker(Options{
			Check:       CertChecker(ca.Pool(), 0),
			IsMicrosoft: func(a netip.Addr) bool { return netip.MustParsePrefix("52.112.0.0/14").Contains(a) },
			SBCNames:    []string{"sbc.example.test"},
		})
		f(tr)
		out := map[string][]*finding.Finding{}
		for _, x := range Findings(tr.Conns(), FindingOptions{}) {
			out[x.Rule] = append(out[x.Rule], x)
		}
		return out, tr.Conns()
	}
	only := func(name string, got map[string][]*finding.Finding, want map[string]int) {
		t.Helper()
		for r, fs := range got {
			if len(fs) != want[r] {
				t.Errorf("%s: %d × %s, want %d", name, len(fs), r, want[r])
			}
		}
		for r, n := range want {
			if len(got[r]) != n {
				t.Errorf("%s: %d × %s, want %d", name, len(got[r]), r, n)
			}
		}
	}
	const ms, sbc = "52.112.3.4:40001", "192.0.2.10:5061"

	// A good certificate gives nothing.
	got, _ := run(func(tr *Tracker) { handshake(tr, ms, sbc, t0, "sbc.example.test", 0x0303, good.Served(), false) })
	only("good", got, nil)

	// Self-signed leaf, three Microsoft attempts: one untrusted finding
	// (grouped), three handshake failures (critical, per connection).
	got, conns := run(func(tr *Tracker) {
		for i := range 3 {
			handshake(tr, "52.112.3.4:4000"+string(rune('1'+i)), sbc, t0.Add(time.Duration(i)*300*time.Millisecond), "sbc.example.test", 0x0303, self.Served(), true)
		}
	})
	only("self-signed", got, map[string]int{finding.TLSCertUntrusted: 1, finding.TLSHandshakeFailed: 3})
	u := got[finding.TLSCertUntrusted][0]
	if u.Severity != finding.Critical || u.Evidence["connections"] != 3 || u.Evidence["self_signed"] != true ||
		u.Evidence["fingerprint_sha256"] != certcheck.Fingerprint(self.Cert) || u.Connection != conns[0].ID ||
		u.Evidence["listener"] != sbc || u.Evidence["sni"] != "sbc.example.test" {
		t.Errorf("untrusted: %s %v", u.Severity, u.Evidence)
	}
	for i, f := range got[finding.TLSHandshakeFailed] {
		if f.Severity != finding.Critical || f.Connection != conns[i].ID || f.Evidence["duration_ms"] != 8.0 ||
			f.Evidence["alert"] != "fatal bad_certificate (42) from client" || f.Evidence["closed_by"] != "client" {
			t.Errorf("failed %d: %s %s %v", i, f.Severity, f.Connection, f.Evidence)
		}
	}

	// The same failure from a non-Microsoft client is a warning.
	got, _ = run(func(tr *Tracker) {
		handshake(tr, "198.51.100.7:5555", sbc, t0, "sbc.example.test", 0x0303, self.Served(), true)
	})
	if f := got[finding.TLSHandshakeFailed]; len(f) != 1 || f[0].Severity != finding.Warning {
		t.Errorf("non-Microsoft failure: %+v", f)
	}

	// SAN not covering the SNI; without SNI the configured FQDN is checked.
	got, _ = run(func(tr *Tracker) {
		handshake(tr, ms, sbc, t0, "sbc.example.test", 0x0303, wrongSAN.Served(), false)
		handshake(tr, "52.112.3.4:40002", "192.0.2.10:5062", t0, "", 0x0303, wrongSAN.Served(), false)
	})
	only("san", got, map[string]int{finding.TLSCertNameMismatch: 2})
	for _, f := range got[finding.TLSCertNameMismatch] {
		if f.Evidence["name"] != "sbc.example.test" || f.Severity != finding.Critical {
			t.Errorf("mismatch: %v", f.Evidence)
		}
	}

	// Expired at the time of the handshake (capture clock), not now.
	got, _ = run(func(tr *Tracker) {
		handshake(tr, ms, sbc, t0.Add(25*24*time.Hour), "sbc.example.test", 0x0303, shortLived.Served(), false)
	})
	only("expired", got, map[string]int{finding.TLSCertExpired: 1})
	if e := got[finding.TLSCertExpired][0]; e.Evidence["not_after"] != shortLived.Cert.NotAfter.UTC().Format(time.RFC3339) || e.Evidence["days_left"].(int) >= 0 {
		t.Errorf("expired: %v", e.Evidence)
	}
	got, _ = run(func(tr *Tracker) { handshake(tr, ms, sbc, t0, "sbc.example.test", 0x0303, shortLived.Served(), false) })
	only("expiring", got, map[string]int{finding.TLSCertExpiring: 1})
	if e := got[finding.TLSCertExpiring][0]; e.Severity != finding.Warning || e.Evidence["days_left"] != 19 {
		t.Errorf("expiring: %v", e.Evidence)
	}

	// TLS 1.0 and 1.1 are weak, once per listener and version.
	got, _ = run(func(tr *Tracker) {
		handshake(tr, ms, sbc, t0, "sbc.example.test", 0x0301, good.Served(), false)
		handshake(tr, "52.112.3.4:40002", sbc, t0.Add(time.Second), "sbc.example.test", 0x0301, good.Served(), false)
		handshake(tr, "52.112.3.4:40003", sbc, t0.Add(2*time.Second), "sbc.example.test", 0x0302, good.Served(), false)
	})
	only("weak", got, map[string]int{finding.TLSVersionWeak: 2})
	if w := got[finding.TLSVersionWeak][0]; w.Evidence["version"] != "TLS 1.0" || w.Evidence["connections"] != 2 {
		t.Errorf("weak: %v", w.Evidence)
	}

	// Client-auth-only EKU.
	got, _ = run(func(tr *Tracker) { handshake(tr, ms, sbc, t0, "sbc.example.test", 0x0303, clientOnly.Served(), false) })
	only("eku", got, map[string]int{finding.TLSCertNoServerAuth: 1})

	// Five connections to one listener with one SNI: 3× good, 2× other
	// (both trusted): one inconsistent finding. Other SNIs and listeners
	// do not mix in.
	got, conns = run(func(tr *Tracker) {
		for i, c := range []*certtest.Cert{good, other, good, other, good} {
			handshake(tr, "52.112.3.4:4100"+string(rune('0'+i)), sbc, t0.Add(time.Duration(i)*time.Second), "sbc.example.test", 0x0303, c.Served(), false)
		}
		handshake(tr, ms, "192.0.2.10:5062", t0, "sbc.example.test", 0x0303, other.Served(), false)
		handshake(tr, ms, sbc, t0, "", 0x0303, other.Served(), false)
	})
	only("inconsistent", got, map[string]int{finding.TLSCertInconsistent: 1})
	inc := got[finding.TLSCertInconsistent][0]
	fps := inc.Evidence["fingerprints"].([]map[string]any)
	if len(fps) != 2 || fps[0]["fingerprint_sha256"] != certcheck.Fingerprint(good.Cert) || fps[0]["count"] != 3 ||
		fps[1]["fingerprint_sha256"] != certcheck.Fingerprint(other.Cert) || fps[1]["count"] != 2 ||
		inc.Evidence["connections"] != 5 || inc.Evidence["listener"] != sbc || inc.Severity != finding.Critical {
		t.Errorf("inconsistent: %v", inc.Evidence)
	}
	_ = conns
}
