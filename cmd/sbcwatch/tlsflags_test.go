package main

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck/certtest"
)

func TestServeTLSFlagErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ args, want string }{
		{"--tls-cert a.pem", "--tls-cert and --tls-key go together"},
		{"--tls-key a.key", "--tls-cert and --tls-key go together"},
		{"--trusted-proxy 10.0.0.0/8,nope", `--trusted-proxy: forwarded: trusted proxy "nope" is not an IP address or CIDR prefix`},
	} {
		code, _, errOut := runCLI(append([]string{"serve", "--db", "postgres://127.0.0.1:1/x"}, strings.Fields(c.args)...)...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, %q", c.args, code, errOut)
		}
	}
}

// serve --tls-cert/--tls-key answers HTTPS with that certificate.
func TestServeHTTPS(t *testing.T) {
	dsn := testDatabase(t)
	dir := t.TempDir()
	ca := certtest.New(t, certtest.Spec{CN: "Test Root", CA: true}, nil)
	leaf := certtest.New(t, certtest.Spec{CN: "sbcwatch.example", DNS: []string{"sbcwatch.example"}}, ca)
	cert, key := leaf.WritePEM(t, dir, "api")
	addr := freeAddr(t)
	out := startServe(t, "--db", dsn, "--migrate", "--listen", addr, "--tls-cert", cert, "--tls-key", key, "--trusted-proxy", "127.0.0.1")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "sbcwatch.example"}}}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		res, err := client.Get("https://" + addr + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode != 200 || res.TLS == nil || res.TLS.PeerCertificates[0].Subject.CommonName != "sbcwatch.example" {
				t.Fatalf("healthz over TLS: %d %+v", res.StatusCode, res.TLS)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no HTTPS answer: %v\n%s", err, out.String())
		}
	}
	if !strings.Contains(out.String(), "listening on https://") {
		t.Errorf("serve did not say https: %s", out.String())
	}
}
