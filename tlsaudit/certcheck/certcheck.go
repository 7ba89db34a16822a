// Package certcheck judges a served certificate chain the way Microsoft's
// Direct Routing proxy does: chain to a trusted root, name coverage of the
// SNI or SBC FQDN (RFC 6125, wildcard one label only), validity at a given
// time, Server Authentication EKU, and key and signature strength. Both the
// passive TLS records and the active audits use it.
package certcheck

import (
	"crypto/x509"
	"time"
)

// Result is the verdict on one chain. Problems are in words.
type Result struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	SANs        []string  `json:"sans"`
	Fingerprint string    `json:"fingerprint_sha256"` // hex, lower case
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	SelfSigned  bool      `json:"self_signed"`

	// Trusted: the chain verifies against the trust store.
	Trusted     bool   `json:"trusted"`
	VerifyError string `json:"verify_error,omitempty"`
	// Name is the name checked (SNI, else the configured FQDN); NameOK
	// whether the certificate covers it. NameChecked is false when there
	// was no name to check.
	Name        string `json:"name,omitempty"`
	NameChecked bool   `json:"name_checked"`
	NameOK      bool   `json:"name_ok"`
	// Expired at the check time; DaysLeft until NotAfter (negative when
	// expired); Expiring within the warning window.
	Expired     bool `json:"expired"`
	NotYetValid bool `json:"not_yet_valid"`
	DaysLeft    int  `json:"days_left"`
	Expiring    bool `json:"expiring"`
	// NoServerAuth: the certificate lists EKUs and Server Authentication
	// is not among them.
	NoServerAuth bool `json:"no_server_auth"`
	// Weak lists weak keys or signatures in words.
	Weak []string `json:"weak,omitempty"`

	// ChainTrusted: the chain leads to a trusted root when the validity
	// dates are left aside. It differs from Trusted only for an expired or
	// not-yet-valid chain, so an expired public certificate is reported as
	// expired, not as untrusted.
	ChainTrusted bool `json:"chain_trusted"`
}

// Options configures a check.
type Options struct {
	// Roots is the trust store; nil means the system roots.
	Roots *x509.CertPool
	// Names to check coverage for: the SNI first; when empty, the
	// configured SBC FQDNs (the certificate must cover at least one).
	Names []string
	// At is the time of the handshake (capture clock).
	At time.Time
	// ExpiryWarning is the window for Expiring (default 30 days).
	ExpiryWarning time.Duration
}
