package labtls

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

func handshake(t *testing.T, dir, serve string) error {
	t.Helper()
	cert, err := Load(dir, serve)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := Roots(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		s := tls.Server(b, ServerConfig(cert))
		_ = s.Handshake()
		s.Close()
	}()
	c := tls.Client(a, ClientConfig("sbc.contoso.example", roots))
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.Handshake()
}

func TestPolicyCertificates(t *testing.T) {
	dir := t.TempDir()
	ms := []string{"sip.pstnhub.microsoft.com"}
	if _, err := Ensure(dir, "sbc.contoso.example", ms, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{SBCPublic, SBCExpiring} {
		if err := handshake(t, dir, ok); err != nil {
			t.Fatalf("%s: %v", ok, err)
		}
	}
	// A second run keeps everything; a run 30 days later reissues the
	// expiring certificate only, under the same CA.
	if got, err := Ensure(dir, "sbc.contoso.example", ms, time.Now()); err != nil || len(got) != 0 {
		t.Fatalf("rerun issued %v, %v", got, err)
	}
	if got, err := Ensure(dir, "sbc.contoso.example", ms, time.Now().AddDate(0, 0, 30)); err != nil || len(got) != 1 || got[0] != SBCExpiring {
		t.Fatalf("later run issued %v, %v", got, err)
	}
	for serve, want := range map[string]string{
		SBCDefault: "SEC_E_UNTRUSTED_ROOT",
		SBCExpired: "SEC_E_CERT_EXPIRED",
		MSProxy:    "SEC_E_WRONG_PRINCIPAL",
	} {
		err := handshake(t, dir, serve)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %s", serve, err, want)
		}
	}
}
