// Package finding defines the verdicts sbcwatch produces: one Finding per
// problem, named by a stable rule identifier and carrying its evidence.
//
// Rule names are a public contract (see docs/findings.md): never rename one.
// Every producer (passive TLS checks, correlation, pollers, audits) emits
// values of this type, and every consumer (report, store, api) reads them.
package finding

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Severity orders findings for the report: critical first.
type Severity string

const (
	Critical Severity = "critical"
	Warning  Severity = "warning"
	Info     Severity = "info"
)

// Rank returns a sort key: lower is more severe.
func (s Severity) Rank() int {
	switch s {
	case Critical:
		return 0
	case Warning:
		return 1
	case Info:
		return 2
	}
	return 3
}

// Rule identifiers, stable across versions.
const (
	ReferDeliveryFailed = "refer_delivery_failed"
	TransferMissing     = "transfer_missing"
	ReferRejected       = "refer_rejected"
	ReferNotFollowed    = "refer_not_followed"
	ReferNoNotify       = "refer_no_notify"
	ReferNotAllowed     = "refer_not_allowed"
	ContactNotFQDN      = "contact_not_fqdn"
	MediaErrorBye       = "media_error_bye"
	ShortCall           = "short_call"
	TLSContextWrong     = "tls_context_wrong"
	TLSHandshakeFailed  = "tls_handshake_failed"
	TLSCertUntrusted    = "tls_cert_untrusted"
	TLSCertNameMismatch = "tls_cert_name_mismatch"
	TLSCertInconsistent = "tls_cert_inconsistent"
	TLSCertExpired      = "tls_cert_expired"
	TLSCertExpiring     = "tls_cert_expiring"
	TLSVersionWeak      = "tls_version_weak"
	TLSCertNoServerAuth = "tls_cert_no_server_auth"
	ShortCallsSpike     = "short_calls_spike"
	SBCUnreachable      = "sbc_unreachable"
	OptionsMissing      = "options_missing"
	// AuditPassesLiveFails: an audit found the SBC's TLS clean while
	// handshakes from Microsoft to it failed in the same period.
	AuditPassesLiveFails = "audit_passes_live_fails"
)

// TLS rules about what the handshake shows besides the certificate chain.
const (
	// TLSCertNotYetValid: the served certificate's notBefore is after
	// the handshake.
	TLSCertNotYetValid = "tls_cert_not_yet_valid"
	// TLSSNIIPAddress: the client sent an IP address as SNI (RFC 6066
	// forbids it); the certificate is checked against the SBC's names.
	TLSSNIIPAddress = "tls_sni_ip_address"
	// TLSSNIUnrecognized: the server answered the SNI with a warning
	// unrecognized_name alert and carried on.
	TLSSNIUnrecognized = "tls_sni_unrecognized"
)

// Source says which part of sbcwatch produced a finding.
const (
	SourcePassive = "passive" // seen on the wire or in exported copies
	SourceAudit   = "audit"   // an active audit asked the SBC
	SourcePoll    = "poll"    // a counter poller
)

// Finding is one verdict with its evidence. JSON names follow the
// `analyze --format json` contract.
type Finding struct {
	// ID is unique within one analysis or store (for example "F3"); other
	// findings cite it in Cites.
	ID       string   `json:"id"`
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	// CallID is the SIP Call-ID the finding is about, when there is one.
	CallID string `json:"call_id,omitempty"`
	// Connection is the TLS connection id ("client->server") or audit
	// target the finding is about, when there is one.
	Connection string `json:"connection,omitempty"`
	// SBC names the SBC (poller/audit findings).
	SBC string `json:"sbc,omitempty"`
	// Time is when the problem was observed, on the capture clock for
	// passive findings.
	Time time.Time `json:"time"`
	// Summary is one line in plain words for an admin.
	Summary string `json:"summary"`
	// Evidence holds the rule-specific facts (see docs/findings.md).
	Evidence map[string]any `json:"evidence"`
	// Cites lists the IDs of findings this one rests on.
	Cites []string `json:"cites,omitempty"`
	// Source is passive, audit or poll.
	Source string `json:"source,omitempty"`
	// CausedBy is the ID of the root-cause finding that explains this one
	// (set by Fold); Explains lists the IDs a root cause explains.
	CausedBy string   `json:"caused_by,omitempty"`
	Explains []string `json:"explains,omitempty"`
	// Advice is what to check or change on the SBC (Advice of the rule,
	// set by Fold).
	Advice string `json:"advice,omitempty"`
	// Key names the problem across runs and processes: the same problem
	// gives the same key however its summary, evidence or ID change, and
	// a finding updated after it was first emitted keeps it (KeyOf).
	Key string `json:"key,omitempty"`
	// Provisional marks a finding decided early, on the evidence so far
	// (serve's refer_delivery_failed, correlate.StreamOptions
	// ProvisionalAfter): the engine settles it by SettlesAt, emitting it
	// again with the same ID and Key, confirmed (Provisional false) or
	// Retracted. Omitted from JSON when false, as SettlesAt when zero.
	Provisional bool      `json:"provisional,omitempty"`
	SettlesAt   time.Time `json:"settles_at,omitzero"`
	// Retracted marks the final word on a provisional finding the full
	// verdict does not hold: same ID and Key, to be withdrawn, never
	// shown or counted as a problem.
	Retracted bool `json:"retracted,omitempty"`
}

// KeyOf returns a finding's stable key: a hash of its rule, call id,
// connection, time and the evidence that tells apart findings of one
// rule about the same thing (REFER time, listener, certificate, name,
// version, SNI, peer) — never its summary, never counters that grow.
//
// tls_cert_inconsistent is one finding per listener and SNI: its key
// leaves out the connection and time, which name the earliest connection
// seen so far and move when an earlier one ends later.
func KeyOf(f *Finding) string {
	h := sha256.New()
	conn, at := f.Connection, f.Time.UTC().Format(time.RFC3339Nano)
	if f.Rule == TLSCertInconsistent {
		conn, at = "", ""
	}
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s", f.Rule, f.CallID, conn, f.SBC, at)
	for _, k := range []string{"refer_time", "listener", "fingerprint_sha256", "name", "version", "sni", "peer", "target"} {
		switch v := f.Evidence[k].(type) {
		case nil:
		case time.Time:
			fmt.Fprintf(h, "\x00%s=%s", k, v.UTC().Format(time.RFC3339Nano))
		default:
			fmt.Fprintf(h, "\x00%s=%v", k, v)
		}
	}
	return "k" + hex.EncodeToString(h.Sum(nil)[:12])
}

// New returns a finding with an empty evidence map.
func New(rule string, sev Severity, t time.Time, format string, args ...any) *Finding {
	return &Finding{
		Rule:     rule,
		Severity: sev,
		Time:     t.UTC(),
		Summary:  fmt.Sprintf(format, args...),
		Evidence: map[string]any{},
		Source:   SourcePassive,
	}
}

// rulePriority orders rules of the same severity: verdicts about a call
// (what the admin asked about) before the TLS facts they rest on.
var rulePriority = map[string]int{
	ReferDeliveryFailed: 0,
	ReferRejected:       1,
	ReferNotFollowed:    2,
	TLSContextWrong:     3,
	TLSCertUntrusted:    4,
	TLSCertNameMismatch: 5,
	TLSCertInconsistent: 6,
	TLSCertExpired:      7,
	TLSCertNotYetValid:  7,
	TLSHandshakeFailed:  8,
	ShortCallsSpike:     9,
	TransferMissing:     10,
	ReferNoNotify:       11,
	MediaErrorBye:       12,
	ContactNotFQDN:      13,
}

// RulePriority is a rule's place among the rules of one severity in
// reports (Less); 100 for a rule not listed.
func RulePriority(rule string) int {
	if p, ok := rulePriority[rule]; ok {
		return p
	}
	return 100
}

// Less orders findings for reports: most severe first, then by rule
// priority, then by time, then by call and connection.
func Less(a, b *Finding) bool {
	if a.Severity.Rank() != b.Severity.Rank() {
		return a.Severity.Rank() < b.Severity.Rank()
	}
	pa, oka := rulePriority[a.Rule]
	pb, okb := rulePriority[b.Rule]
	if !oka {
		pa = 100
	}
	if !okb {
		pb = 100
	}
	if pa != pb {
		return pa < pb
	}
	if a.Rule != b.Rule {
		return a.Rule < b.Rule
	}
	if !a.Time.Equal(b.Time) {
		return a.Time.Before(b.Time)
	}
	if a.CallID != b.CallID {
		return a.CallID < b.CallID
	}
	return a.Connection < b.Connection
}

// TimeLayout is how sbcwatch writes times in JSON: RFC 3339 in UTC with
// microseconds always present (the contract asks for fractional seconds,
// which Go's default encoding drops on whole seconds).
const TimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// Time is a time.Time that encodes with TimeLayout.
type Time time.Time

// MarshalJSON writes the time in UTC with a fixed fraction.
func (t Time) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format(TimeLayout) + `"`), nil
}

// UnmarshalJSON reads any RFC 3339 time.
func (t *Time) UnmarshalJSON(b []byte) error {
	var v time.Time
	if err := v.UnmarshalJSON(b); err != nil {
		return err
	}
	*t = Time(v)
	return nil
}

// MarshalJSON writes a finding with its time in TimeLayout.
func (f Finding) MarshalJSON() ([]byte, error) {
	type plain Finding
	var settles *Time
	if !f.SettlesAt.IsZero() {
		t := Time(f.SettlesAt)
		settles = &t
	}
	return json.Marshal(struct {
		plain
		Time      Time  `json:"time"`
		SettlesAt *Time `json:"settles_at,omitempty"`
	}{plain(f), Time(f.Time), settles})
}
