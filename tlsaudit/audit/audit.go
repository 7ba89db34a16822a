// Package audit asks an SBC's TLS listener the questions Microsoft's
// Direct Routing proxy asks, on demand or on a schedule, so a wrong TLS
// context is caught before a call transfer hits it.
//
// Run resolves the target once per round and, for every resolved
// address, sequentially (one connection at a time, to be gentle):
//
//   - handshakes with SNI = each expected FQDN, with no SNI, and with an
//     unrelated SNI, once per round; over the rounds the served
//     certificate fingerprints are counted per SNI, so a listener that
//     sometimes answers with another certificate (the "random default TLS
//     context" case) shows up as tls_cert_inconsistent with each
//     fingerprint and its count;
//   - in the first round only: TLS 1.0 alone and TLS 1.1 alone (must be
//     refused), TLS 1.2 with exactly Microsoft's four cipher suites (must
//     succeed), TLS 1.3 (recorded), and a TLS 1.2 handshake that records
//     whether the server asks for a client certificate and, when one is
//     configured, whether mutual TLS completes;
//   - after each handshake with an expected FQDN as SNI, a SIP OPTIONS
//     over that connection, built like Microsoft's keep-alive and parsed
//     with sipgo; the response code and time are recorded (a timeout is
//     recorded, not fatal).
//
// Every served chain is judged with certcheck (trust, name, dates, EKU,
// key strength); problems become findings with Source = audit and
// Connection = "audit HOST:PORT (ip)". Timings (DNS, TCP connect, TLS
// handshake, SIP response) are kept per attempt and summarised per
// address (count, min, mean, max, standard deviation, failures), so
// Count and Interval turn an audit into a connection-quality series.
//
// The probes follow blackbox_exporter's style: one probe function per
// handshake kind over a shared attempt record, with the timeout taken
// from the context deadline.
package audit

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// Defaults.
const (
	DefaultCount        = 20
	DefaultTimeout      = 5 * time.Second
	DefaultUnrelatedSNI = "unrelated.invalid"
	DefaultMisses       = 3
)

// ErrUnreachable is returned (wrapped) by Run when no address of the
// target could be connected to at all; the Report is still returned.
var ErrUnreachable = errors.New("SBC unreachable")

// Options configures one audit run. The zero value audits with system
// roots, 20 rounds back to back and a 5 s timeout per attempt.
type Options struct {
	// FQDNs are the names Microsoft uses for the SBC; each is sent as SNI
	// and must be covered by the certificate. When empty and the target
	// host is a name, the host is used.
	FQDNs []string
	// UnrelatedSNI is sent in the "unrelated SNI" probe (default
	// "unrelated.invalid").
	UnrelatedSNI string
	// Roots is the trust store; nil means the system roots.
	Roots *x509.CertPool
	// Count is the number of rounds (default 20); each round repeats the
	// SNI probes once per address.
	Count int
	// Interval is the pause between rounds (default none).
	Interval time.Duration
	// Timeout bounds one attempt: TCP connect, handshake and the SIP
	// OPTIONS exchange (default 5 s; a shorter context deadline wins).
	Timeout time.Duration
	// ClientCert is offered when the server asks for a client
	// certificate; nil offers none.
	ClientCert *tls.Certificate
	// ClientFQDN is the host put in Via, From and Contact of the OPTIONS
	// (default: the host name when it has a dot, else "sbcwatch.invalid").
	ClientFQDN string
	// NoSIP skips the SIP OPTIONS exchange (for a TLS listener that does
	// not speak SIP).
	NoSIP bool
	// ExpiryWarning is the tls_cert_expiring window (default 30 days).
	ExpiryWarning time.Duration
	// MissesBeforeFinding is how many consecutive failed TCP connects to
	// one address raise sbc_unreachable (default 3).
	MissesBeforeFinding int
	// SBC names the SBC in findings (optional).
	SBC string
	// UserAgent for the OPTIONS (default "sbcwatch").
	UserAgent string
	// Resolver resolves the target (default net.DefaultResolver).
	Resolver Resolver
	// Logger receives one debug line per attempt (default: discard).
	Logger *slog.Logger
}

// Probe kinds, as in Attempt.Probe.
const (
	ProbeSNI          = "sni"           // SNI = an expected FQDN
	ProbeNoSNI        = "no_sni"        // no SNI extension
	ProbeUnrelatedSNI = "unrelated_sni" // SNI = Options.UnrelatedSNI
	ProbeTLS10        = "tls1.0_only"   // only TLS 1.0 offered
	ProbeTLS11        = "tls1.1_only"   // only TLS 1.1 offered
	ProbeTLS12MS      = "tls1.2_microsoft"
	ProbeTLS13        = "tls1.3"
	ProbeClientCert   = "client_cert" // TLS 1.2, observes CertificateRequest
)

// Report is the result of one audit run; it serialises to JSON as is.
type Report struct {
	Target   string    `json:"target"`
	Host     string    `json:"host"`
	Port     string    `json:"port"`
	FQDNs    []string  `json:"fqdns"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Rounds holds one record per resolution round.
	Rounds []Round `json:"rounds"`
	// Attempts holds every connection attempt in order.
	Attempts []Attempt `json:"attempts"`
	// Addresses summarises each resolved address.
	Addresses []AddrStats `json:"addresses"`
	// Certificates lists each certificate served, per address and probe,
	// with how often and the certcheck verdict.
	Certificates []CertSeen `json:"certificates"`
	// DNS is the resolution time series (ms), one sample per round.
	DNS Series `json:"dns_ms"`
	// Findings, most severe first.
	Findings []*finding.Finding `json:"findings"`
	// Error says why the audit stopped early or reached nothing.
	Error string `json:"error,omitempty"`
}

// Round is one resolution and pass over the addresses.
type Round struct {
	N         int       `json:"n"`
	Time      time.Time `json:"time"`
	DNSMs     float64   `json:"dns_ms"`
	Addresses []string  `json:"addresses"`
	Error     string    `json:"error,omitempty"`
}

// Attempt is one connection: TCP connect, TLS handshake and, for SNI
// probes, a SIP OPTIONS. Times are in milliseconds; 0 when the phase was
// not reached.
type Attempt struct {
	Round   int       `json:"round"`
	Time    time.Time `json:"time"`
	Address string    `json:"address"` // ip:port
	Probe   string    `json:"probe"`
	SNI     string    `json:"sni,omitempty"`
	// Offered describes the versions/suites offered when restricted.
	Offered string `json:"offered,omitempty"`

	// DNSMs is the round's lookup time that produced Address (0 for an
	// IP target).
	DNSMs       float64 `json:"dns_ms"`
	Connected   bool    `json:"connected"`
	ConnectMs   float64 `json:"connect_ms"`
	Handshake   bool    `json:"handshake_ok"`
	HandshakeMs float64 `json:"handshake_ms"`
	// Error is the failure in words ("" when the handshake completed).
	Error string `json:"error,omitempty"`

	Version string `json:"version,omitempty"`
	Cipher  string `json:"cipher,omitempty"`
	// Fingerprint and Subject of the served leaf, also when the
	// handshake failed after the server's certificate arrived.
	Fingerprint string `json:"fingerprint_sha256,omitempty"`
	Subject     string `json:"subject,omitempty"`
	Trusted     bool   `json:"trusted"`
	NameOK      bool   `json:"name_ok"`
	// CertRequested: the server sent a CertificateRequest;
	// ClientCertSent: a client certificate was offered in reply.
	CertRequested  bool `json:"cert_requested"`
	ClientCertSent bool `json:"client_cert_sent"`

	SIP *SIPResult `json:"sip,omitempty"`
}

// SIPResult is the OPTIONS exchange on an attempt.
type SIPResult struct {
	CallID string  `json:"call_id"`
	Code   int     `json:"code,omitempty"` // 0 when no response
	Reason string  `json:"reason,omitempty"`
	Ms     float64 `json:"ms,omitempty"`
	Server string  `json:"server,omitempty"` // Server or User-Agent of the response
	Error  string  `json:"error,omitempty"`  // "timeout after 5s", parse error...
}

// CertSeen is one certificate served on one address to one probe/SNI.
type CertSeen struct {
	Address     string            `json:"address"`
	Probe       string            `json:"probe"`
	SNI         string            `json:"sni,omitempty"`
	Fingerprint string            `json:"fingerprint_sha256"`
	Count       int               `json:"count"`
	First       time.Time         `json:"first"`
	Last        time.Time         `json:"last"`
	Check       *certcheck.Result `json:"check"`
}

// AddrStats summarises the attempts to one address.
type AddrStats struct {
	Address   string `json:"address"`
	Attempts  int    `json:"attempts"`
	Failures  int    `json:"failures"` // connect or handshake failed
	Connect   Series `json:"connect_ms"`
	Handshake Series `json:"handshake_ms"`
	SIP       Series `json:"sip_ms"`
	// SIPCodes counts OPTIONS response codes ("200", "timeout", ...).
	SIPCodes map[string]int `json:"sip_codes,omitempty"`
	// Versions records the version probes: probe → "accepted TLS 1.2
	// (cipher)" or "refused: error".
	Versions map[string]string `json:"versions,omitempty"`
	// ClientCert records what the client-certificate probe saw.
	ClientCert string `json:"client_cert,omitempty"`
}

// Series summarises samples in milliseconds; Failures counts the
// attempts where the phase did not complete.
type Series struct {
	Count    int     `json:"count"`
	Failures int     `json:"failures"`
	Min      float64 `json:"min"`
	Mean     float64 `json:"mean"`
	Max      float64 `json:"max"`
	StdDev   float64 `json:"stddev"`
}

// Critical reports whether the report holds a critical finding.
func (r *Report) Critical() bool {
	for _, f := range r.Findings {
		if f.Severity == finding.Critical {
			return true
		}
	}
	return false
}
