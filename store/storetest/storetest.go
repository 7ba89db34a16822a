// Package storetest gives tests a migrated store in a schema of its own
// and builds reports shaped like the field case (a REFER lost to failed
// inbound TLS from Microsoft), for the store and API tests.
//
// The database comes from SBCWATCH_TEST_DB (default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable). When it cannot
// be reached the test is skipped with a message, or fails under CI=true.
package storetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// DefaultDSN is used when SBCWATCH_TEST_DB is not set.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DSN returns the test database URL.
func DSN() string {
	if v := os.Getenv("SBCWATCH_TEST_DB"); v != "" {
		return v
	}
	return DefaultDSN
}

// Schema creates a fresh schema, dropped in Cleanup, and returns a DSN
// whose search_path points at it. It skips (or fails under CI=true) when
// the database cannot be reached.
func Schema(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	base := DSN()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("test database %s unreachable under CI: %v", redact(base), err)
		}
		t.Skipf("SKIP: test database %s unreachable (set SBCWATCH_TEST_DB): %v", redact(base), err)
	}
	defer conn.Close(ctx)
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	schema := fmt.Sprintf("sbcw_test_%x", suffix)
	if _, err := conn.Exec(ctx, "create schema "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "drop schema "+schema+" cascade"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return withSearchPath(base, schema)
}

func withSearchPath(dsn, schema string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxx")
		}
		return u.String()
	}
	return dsn
}

// New returns a migrated store in a fresh schema, closed in Cleanup.
func New(t testing.TB) (*store.Store, string) {
	t.Helper()
	dsn := Schema(t)
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return st, dsn
}

// Addresses of the field case.
var (
	SBCAddr       = netip.MustParseAddrPort("192.0.2.10:5061")
	MSProxy       = netip.MustParseAddrPort("52.112.1.10:5061")
	MSReferSource = netip.MustParseAddr("52.114.75.24")
	Carrier       = netip.MustParseAddrPort("198.51.100.7:5060")
)

// Field-case numbers.
const (
	Caller = "+4915112345678"
	AANum  = "+4969123456"
)

var (
	certOnce sync.Once
	selfCert *x509.Certificate
)

// SelfSigned returns a self-signed certificate made once per process (the
// wrong default TLS context of the field case).
func SelfSigned() *x509.Certificate {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "ACL_1234567", Organization: []string{"AudioCodes"}},
			NotBefore:    time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
			NotAfter:     time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC),
			DNSNames:     []string{"ACL_1234567"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		selfCert, err = x509.ParseCertificate(der)
		if err != nil {
			panic(err)
		}
	})
	return selfCert
}

func msg(t time.Time, src, dst netip.AddrPort, callID string, req bool, method string, status int, reason string, cseq uint32, cseqMethod string) *sip.Message {
	m := &sip.Message{Time: t, Src: src, Dst: dst, Transport: "tls", Origin: "wire", IsRequest: req,
		Method: method, StatusCode: status, Reason: reason, CallID: callID, CSeq: cseq, CSeqMethod: cseqMethod,
		FromUser: Caller, ToUser: AANum}
	var b strings.Builder
	if req {
		fmt.Fprintf(&b, "%s sip:%s@sip.pstnhub.microsoft.com SIP/2.0\r\n", method, AANum)
	} else {
		fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", status, reason)
	}
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d %s\r\nFrom: <sip:%s@sbc.example.com>;tag=a\r\nTo: <sip:%s@sip.pstnhub.microsoft.com>\r\nContent-Length: 0\r\n\r\n",
		callID, cseq, cseqMethod, Caller, AANum)
	m.Raw = []byte(b.String())
	return m
}

// FieldCase returns a report of one call from Caller to the Auto Attendant
// AANum starting at t0 that Microsoft tried to transfer: four inbound TLS
// connections from 52.114.75.24 were refused by the SBC's self-signed
// default certificate, no REFER arrived, the SBC sent BYE. Its findings
// are four tls_handshake_failed, one tls_cert_untrusted and one
// refer_delivery_failed citing them. The Call-ID is callID.
func FieldCase(t0 time.Time, callID string) *report.Report {
	t0 = t0.UTC()
	cert := SelfSigned()
	fp := store.Fingerprint(cert)
	c := &sip.Call{
		CallID: callID, Kind: "invite", From: Caller, To: AANum,
		FromURI: "sip:" + Caller + "@sbc.example.com", ToURI: "sip:" + AANum + "@sip.pstnhub.microsoft.com",
		Caller: SBCAddr, Callee: MSProxy, Start: t0, Answer: t0.Add(time.Second), End: t0.Add(40 * time.Second),
		Last: t0.Add(40*time.Second + 50*time.Millisecond), Answered: true, FinalStatus: 200,
		EndedBy: "caller", EndReason: "BYE", ByeReason: "Q.850;cause=16;text=\"Normal call clearing\"", Q850Cause: 16,
		Invites: 1, MessageCount: 5, Microsoft: true, MicrosoftAddr: MSProxy.Addr(), SBCSide: SBCAddr,
		SBCContact: "<sip:sbc.example.com:5061;transport=tls>", SBCAllow: "INVITE, ACK, BYE, CANCEL, OPTIONS, REFER, NOTIFY",
		SBCAllowSeen: true, UserAgents: []string{"Mediant SW/v.7.40A"},
	}
	c.Messages = []*sip.Message{
		msg(t0, SBCAddr, MSProxy, callID, true, "INVITE", 0, "", 1, "INVITE"),
		msg(t0.Add(100*time.Millisecond), MSProxy, SBCAddr, callID, false, "INVITE", 100, "Trying", 1, "INVITE"),
		msg(t0.Add(time.Second), MSProxy, SBCAddr, callID, false, "INVITE", 200, "OK", 1, "INVITE"),
		msg(t0.Add(time.Second+20*time.Millisecond), SBCAddr, MSProxy, callID, true, "ACK", 0, "", 1, "ACK"),
		msg(t0.Add(40*time.Second), SBCAddr, MSProxy, callID, true, "BYE", 0, "", 2, "BYE"),
		msg(t0.Add(40*time.Second+50*time.Millisecond), MSProxy, SBCAddr, callID, false, "BYE", 200, "OK", 2, "BYE"),
	}
	r := &report.Report{CallRecords: []*sip.Call{c}}
	var cites []string
	var conns []map[string]any
	for i, off := range []time.Duration{20 * time.Second, 20300 * time.Millisecond, 20600 * time.Millisecond, 32 * time.Second} {
		client := netip.AddrPortFrom(MSReferSource, uint16(50001+i))
		first := t0.Add(off)
		conn := &tlsaudit.Conn{
			ID: client.String() + "->" + SBCAddr.String(), Client: client, Server: SBCAddr,
			FirstSeen: first, LastSeen: first.Add(6 * time.Millisecond), SawSYN: true,
			SNI: "sbc.example.com", Version: "TLS 1.2", VersionCode: 0x0303, Cipher: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
			Chain:   []*x509.Certificate{cert},
			Alerts:  []tlsaudit.Alert{{Time: first.Add(5 * time.Millisecond), From: "client", Level: 2, Description: 48, Name: "unknown_ca"}},
			Outcome: tlsaudit.OutcomeAlert, ClosedBy: "client", Duration: 6 * time.Millisecond,
			FromMicrosoft: true,
			Check: &certcheck.Result{Subject: cert.Subject.String(), Issuer: cert.Issuer.String(), SANs: cert.DNSNames,
				Fingerprint: fp, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, SelfSigned: true,
				VerifyError: "x509: certificate signed by unknown authority", Name: "sbc.example.com", NameChecked: true},
		}
		r.Conns = append(r.Conns, conn)
		f := finding.New(finding.TLSHandshakeFailed, finding.Critical, first,
			"TLS handshake from Microsoft %s to the SBC failed: client sent unknown_ca after 6 ms", client)
		f.ID = fmt.Sprintf("F%d", i+1)
		f.Connection = conn.ID
		f.Evidence["alert"] = "unknown_ca"
		f.Evidence["sni"] = conn.SNI
		f.Evidence["cert_fingerprint_sha256"] = fp
		r.Findings = append(r.Findings, f)
		cites = append(cites, f.ID)
		conns = append(conns, map[string]any{"connection": conn.ID, "peer": client.String(), "sni": conn.SNI,
			"cert_subject": conn.Check.Subject, "cert_issuer": conn.Check.Issuer, "cert_fingerprint_sha256": fp,
			"outcome": "alert", "alert": "unknown_ca", "duration_ms": 6})
	}
	u := finding.New(finding.TLSCertUntrusted, finding.Critical, t0.Add(20*time.Second),
		"The SBC served a self-signed certificate (%s) to Microsoft", cert.Subject.CommonName)
	u.ID = "F5"
	u.Connection = r.Conns[0].ID
	u.Evidence["cert_fingerprint_sha256"] = fp
	u.Evidence["verify_error"] = "x509: certificate signed by unknown authority"
	r.Findings = append(r.Findings, u)
	cites = append(cites, u.ID)
	rf := finding.New(finding.ReferDeliveryFailed, finding.Critical, t0.Add(40*time.Second),
		"Microsoft could not deliver the transfer (REFER) of the call from %s to %s: 4 inbound TLS connections from 52.114.75.24 failed; the SBC ended the call 8 s later", Caller, AANum)
	rf.ID = "F6"
	rf.CallID = callID
	rf.Cites = cites
	rf.Evidence["connections"] = conns
	rf.Evidence["ended_by"] = "caller"
	rf.Evidence["end_reason"] = "BYE"
	r.Findings = append(r.Findings, rf)
	r.Stats = report.Stats{Packets: 100, SIPMessages: 6, TLSHandshakes: 4, Seconds: 41}
	return r
}

// PlainCall returns an answered, normal call with two messages.
func PlainCall(t0 time.Time, callID, from, to string) *sip.Call {
	t0 = t0.UTC()
	c := &sip.Call{CallID: callID, Kind: "invite", From: from, To: to, Caller: Carrier, Callee: SBCAddr,
		Start: t0, Answer: t0.Add(2 * time.Second), End: t0.Add(62 * time.Second), Last: t0.Add(62 * time.Second),
		Answered: true, FinalStatus: 200, EndedBy: "callee", EndReason: "BYE", MessageCount: 2}
	c.Messages = []*sip.Message{
		msg(t0, Carrier, SBCAddr, callID, true, "INVITE", 0, "", 1, "INVITE"),
		msg(t0.Add(2*time.Second), SBCAddr, Carrier, callID, false, "INVITE", 200, "OK", 1, "INVITE"),
	}
	return c
}
