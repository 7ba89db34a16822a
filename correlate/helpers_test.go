package correlate

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck/certtest"
)

// The test world: documentation addresses for the SBC and the carrier,
// Microsoft addresses from its published ranges, a made-up FQDN.
var (
	t0       = time.Date(2026, 4, 1, 9, 54, 40, 0, time.UTC)
	sbc      = netip.MustParseAddrPort("192.0.2.10:5061")
	sbcB     = netip.MustParseAddrPort("198.51.100.20:5061")
	msProxy  = netip.MustParseAddrPort("52.114.14.70:5061")
	msRefer  = netip.MustParseAddr("52.114.75.24")
	carrier  = netip.MustParseAddrPort("203.0.113.5:5060")
	sbcFQDN  = "sbc.contoso.example"
	aaNumber = "+4969987654"
)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func testConfig() *config.Config {
	c := config.Default()
	c.ExpectTransfer = []string{"4969987654"} // digits only on purpose
	c.SBCs = []config.SBC{{Name: "sbc1", FQDNs: []string{sbcFQDN}, Addresses: []string{sbc.Addr().String()}}}
	if err := c.Validate(); err != nil {
		panic(err)
	}
	return c
}

// certs are the SBC's two certificates: the public one and the default
// self-signed one of its other TLS context.
type certs struct {
	root, public, dflt *certtest.Cert
}

func newCerts(t *testing.T) certs {
	t.Helper()
	nb, na := t0.Add(-30*24*time.Hour), t0.Add(365*24*time.Hour)
	root := certtest.New(t, certtest.Spec{CN: "Test Root CA", CA: true, NotBefore: nb, NotAfter: na}, nil)
	return certs{
		root:   root,
		public: certtest.New(t, certtest.Spec{CN: sbcFQDN, DNS: []string{sbcFQDN}, NotBefore: nb, NotAfter: na}, root),
		dflt:   certtest.New(t, certtest.Spec{CN: "default.sbc.local", O: "ACL", NotBefore: nb, NotAfter: na}, nil),
	}
}

type callOpt func(*sip.Call)

// msCall is a call from the carrier through the SBC to Microsoft,
// answered at answer and ended by the SBC's BYE at end (0: still open).
func msCall(id, to string, answer, end float64, opts ...callOpt) *sip.Call {
	c := &sip.Call{
		CallID:       id,
		Kind:         "invite",
		From:         "+4930111222",
		To:           to,
		RequestURI:   "sip:" + to + "@sip.pstnhub.microsoft.com:5061;user=phone",
		Caller:       sbc,
		Callee:       msProxy,
		Start:        at(answer - 2),
		Answer:       at(answer),
		Answered:     true,
		FinalStatus:  200,
		Microsoft:    true,
		SBCSide:      sbc,
		SBCContact:   "<sip:" + sbcFQDN + ":5061;transport=tls>",
		SBCAllow:     "INVITE, ACK, CANCEL, BYE, REFER, NOTIFY, OPTIONS",
		SBCAllowSeen: true,
		Last:         at(answer),
	}
	c.MicrosoftAddr = msProxy.Addr()
	if end > 0 {
		c.End, c.Last = at(end), at(end)
		c.EndedBy, c.EndedByAddr, c.EndReason = "caller", sbc, "BYE"
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func withBye(reason string, cause int, text string) callOpt {
	return func(c *sip.Call) { c.ByeReason, c.Q850Cause, c.ReasonText = reason, cause, text }
}

func withRefer(r *sip.Refer) callOpt {
	return func(c *sip.Call) { c.Refers = append(c.Refers, r) }
}

const referTo = "<sip:sip.pstnhub.microsoft.com;x-m=8:orgid:0a1b2c;x-t=9f8e7d?Referred-By=%3Csip%3Aaa%40contoso.example%3E>"

// refer is Microsoft's REFER at sec, answered with code after 50 ms.
func refer(sec float64, code int) *sip.Refer {
	r := &sip.Refer{Time: at(sec), Src: msProxy, Dst: sbc, CSeq: 2, ReferTo: referTo}
	if code != 0 {
		r.Response, r.ResponseTime = code, at(sec+0.05)
		r.ResponseReason = map[int]string{202: "Accepted", 403: "Forbidden"}[code]
	}
	return r
}

func notifyFromSBC(sec float64) sip.Notify {
	return sip.Notify{Time: at(sec), Src: sbc, Dst: msProxy, SipFrag: "SIP/2.0 200 OK", SubState: "terminated"}
}

// newLeg is the INVITE the SBC sends after a REFER: its own Call-ID.
func newLeg(id string, sec float64, ruri string, dst netip.AddrPort) *sip.Call {
	return &sip.Call{
		CallID: id, Kind: "invite", To: "", RequestURI: ruri,
		Caller: sbc, Callee: dst, Start: at(sec), Last: at(sec + 1),
		Microsoft: dst.Addr().Is4() && dst.Addr().As4()[0] == 52, SBCSide: sbc,
	}
}

// failed is an inbound TLS connection from Microsoft that the SBC
// answered with crt and Microsoft closed after dur.
func failed(cs certs, port uint16, sec float64, sni string, crt *certtest.Cert, dur time.Duration) *tlsaudit.Conn {
	return conn(cs, netip.AddrPortFrom(msRefer, port), sbc, sec, sni, crt, dur, false)
}

func conn(cs certs, client, server netip.AddrPort, sec float64, sni string, crt *certtest.Cert, dur time.Duration, ok bool) *tlsaudit.Conn {
	c := &tlsaudit.Conn{
		ID:            client.String() + "->" + server.String(),
		Client:        client,
		Server:        server,
		FirstSeen:     at(sec),
		LastSeen:      at(sec).Add(dur),
		SawSYN:        true,
		SNI:           sni,
		Version:       "TLS 1.2",
		Outcome:       tlsaudit.OutcomeClosed,
		ClosedBy:      "client",
		Duration:      dur,
		FromMicrosoft: client.Addr().Is4() && client.Addr().As4()[0] == 52,
	}
	if crt != nil {
		c.Chain = crt.Served()
		names := []string{sni}
		if sni == "" {
			names = []string{sbcFQDN}
		}
		c.Check = certcheck.Check(c.Chain, certcheck.Options{Roots: cs.root.Pool(), Names: names, At: c.FirstSeen})
	}
	if ok {
		c.Outcome, c.Established, c.AppData = tlsaudit.OutcomeEstablished, true, true
		c.ClientFinished, c.ServerFinished = true, true
	}
	return c
}

// tlsFindings stands in for tlsaudit.Findings: for every failed
// connection a tls_handshake_failed, and a tls_cert_untrusted when the
// certificate does not verify, numbered F1.. in order.
func tlsFindings(conns ...*tlsaudit.Conn) []*finding.Finding {
	var out []*finding.Finding
	add := func(rule string, sev finding.Severity, c *tlsaudit.Conn) {
		f := finding.New(rule, sev, c.FirstSeen, "TLS problem on %s", c.ID)
		f.ID = fmt.Sprintf("F%d", len(out)+1)
		f.Connection = c.ID
		out = append(out, f)
	}
	for _, c := range conns {
		if c.Failed() {
			add(finding.TLSHandshakeFailed, finding.Critical, c)
		}
		if c.Check != nil && !c.Check.Trusted {
			add(finding.TLSCertUntrusted, finding.Critical, c)
		}
	}
	return out
}

// rules lists "rule/severity/callid" of findings, in order.
func rules(fs []*finding.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.Rule)+"/"+string(f.Severity)+"/"+f.CallID)
	}
	return out
}

func byRule(fs []*finding.Finding, rule string) []*finding.Finding {
	var out []*finding.Finding
	for _, f := range fs {
		if f.Rule == rule {
			out = append(out, f)
		}
	}
	return out
}

func one(t *testing.T, fs []*finding.Finding, rule string) *finding.Finding {
	t.Helper()
	got := byRule(fs, rule)
	if len(got) != 1 {
		t.Fatalf("want exactly one %s, got %d in %v", rule, len(got), rules(fs))
	}
	return got[0]
}

func wantRules(t *testing.T, fs []*finding.Finding, want ...string) {
	t.Helper()
	got := rules(fs)
	gs, ws := slices.Clone(got), slices.Clone(want)
	slices.Sort(gs)
	slices.Sort(ws)
	if !slices.Equal(gs, ws) {
		t.Fatalf("rules:\n got  %q\n want %q", got, want)
	}
}
