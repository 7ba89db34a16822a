package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/tlsaudit/audit/audittest"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck/certtest"
)

// TestAuditTLSExitCodes runs `sbcwatch audit tls` in-process against
// fake SBCs on loopback: 0 for a clean SBC, 1 for a critical finding,
// 2 for usage errors and an unreachable target.
func TestAuditTLSExitCodes(t *testing.T) {
	const fqdn = "sbc.example.com"
	dir := t.TempDir()
	root := certtest.New(t, certtest.Spec{CN: "CLI Root", CA: true, RSABits: 2048}, nil)
	good := certtest.New(t, certtest.Spec{CN: fqdn, DNS: []string{fqdn}, RSABits: 2048}, root)
	def := certtest.New(t, certtest.Spec{CN: "default", RSABits: 2048}, nil)
	rootFile, _ := root.WritePEM(t, dir, "root")

	clean := audittest.Start(t, audittest.Config{ByName: map[string]tls.Certificate{fqdn: good.TLS()}, Default: good.TLS(), SIP: true})
	broken := audittest.Start(t, audittest.Config{ByName: map[string]tls.Certificate{fqdn: good.TLS()}, Default: def.TLS(), SIP: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	common := []string{"--fqdn", fqdn, "--trust", rootFile, "--no-system-roots", "--count", "2", "--timeout", "2s"}
	tests := []struct {
		name     string
		args     []string
		want     int
		stdout   string
		stderr   string
		lastLine bool // stderr is exactly one line
	}{
		{"clean SBC", append([]string{clean.Addr}, common...), exitOK, "OK: no problem found", "", false},
		{"flags before target", append(append([]string{}, common...), clean.Addr), exitOK, "OK: no problem found", "", false},
		{"default context without SNI", append([]string{broken.Addr}, common...), exitFinding, "CRITICAL tls_cert_untrusted", "", false},
		{"unreachable", append([]string{closed}, common...), exitUsage, "sbc_unreachable", "SBC unreachable", true},
		{"no target", common, exitUsage, "", "want exactly one HOST:PORT", true},
		{"bad target", []string{"sbc.example.com"}, exitUsage, "", "want HOST:PORT", true},
		{"bad format", []string{clean.Addr, "--format", "xml"}, exitUsage, "", "--format", true},
		{"unknown flag", []string{clean.Addr, "--bogus"}, exitUsage, "", "unknown flag --bogus", true},
		{"key without cert", []string{clean.Addr, "--client-key", "k.pem"}, exitUsage, "", "go together", true},
		{"missing trust file", []string{clean.Addr, "--trust", dir + "/nope.pem"}, exitUsage, "", "nope.pem", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			got := cmdAuditTLS(ctx, tc.args, &out, &errb)
			if got != tc.want {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", got, tc.want, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, out.String())
			}
			if !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errb.String())
			}
			if tc.lastLine && strings.Count(strings.TrimRight(errb.String(), "\n"), "\n") != 0 {
				t.Errorf("stderr is not one line:\n%s", errb.String())
			}
		})
	}

	t.Run("client certificate files", func(t *testing.T) {
		clientRoot := certtest.New(t, certtest.Spec{CN: "Client Root", CA: true}, nil)
		client := certtest.New(t, certtest.Spec{CN: "client.example", EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, clientRoot)
		ccFile, ckFile := client.WritePEM(t, dir, "client")
		mtls := audittest.Start(t, audittest.Config{ByName: map[string]tls.Certificate{fqdn: good.TLS()}, Default: good.TLS(), SIP: true, ClientCAs: clientRoot.Pool()})
		var out, errb bytes.Buffer
		got := cmdAuditTLS(context.Background(), append([]string{mtls.Addr, "--client-cert", ccFile, "--client-key", ckFile}, common...), &out, &errb)
		if got != exitOK || !strings.Contains(out.String(), "mutual TLS completed") {
			t.Errorf("exit %d\n%s\n%s", got, out.String(), errb.String())
		}
		out.Reset()
		errb.Reset()
		if got := cmdAuditTLS(context.Background(), []string{mtls.Addr, "--client-cert", ccFile, "--client-key", ccFile}, &out, &errb); got != exitUsage || !strings.Contains(errb.String(), "client certificate") {
			t.Errorf("bad key: exit %d %s", got, errb.String())
		}
	})

	t.Run("json", func(t *testing.T) {
		var out, errb bytes.Buffer
		got := cmdAuditTLS(context.Background(), append([]string{broken.Addr, "--format", "json"}, common...), &out, &errb)
		var rep struct {
			Target   string `json:"target"`
			Findings []struct {
				Rule, Severity, Source, Connection string
			} `json:"findings"`
			Addresses []struct {
				SIPCodes map[string]int `json:"sip_codes"`
			} `json:"addresses"`
		}
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("json: %v\n%s", err, out.String())
		}
		if got != exitFinding || rep.Target != broken.Addr || len(rep.Findings) == 0 || rep.Findings[0].Severity != "critical" || rep.Findings[0].Source != "audit" {
			t.Errorf("exit %d report %+v", got, rep)
		}
		if len(rep.Addresses) != 1 || rep.Addresses[0].SIPCodes["200"] != 2 {
			t.Errorf("addresses %+v", rep.Addresses)
		}
	})
}
