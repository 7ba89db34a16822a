// Package tlsaudit turns TLS connections into records an admin can read:
// what the client offered, what the server chose and served, how the
// connection ended, and whether the served certificate holds up. The
// passive part reads reassembled TCP bytes (any port, detected by
// content); the active audits live in tlsaudit/audit, the certificate
// checks shared by both in tlsaudit/certcheck.
//
// Passive use: NewTracker, then Tracker.Stream for every TCP connection
// whose first bytes pass LooksLikeTLS; the tap feeds it bytes and events.
// Tracker.Conns returns the finished records and Findings applies the
// tls_* rules to them.
//
// Outcome rules, in order (README.md has the details, including the
// TLS 1.3 heuristic): "alert" when an alert ended the handshake (a fatal
// plaintext alert, a plaintext close_notify before the handshake
// completed, or an encrypted alert before it completed, before any
// application data and before any FIN/RST; warnings such as
// unrecognized_name end nothing and are listed in Conn.Warnings);
// "established" when both Finished were seen (TLS <= 1.2) or the client
// answered the server's encrypted flight (TLS 1.3), also when the
// connection was then closed with an encrypted alert (close_notify)
// without any data, as probes do; "reset" when the first
// closing act was a RST; "closed" when it was a FIN; "incomplete" when the
// capture ended or the connection went idle mid-handshake.
package tlsaudit

import (
	"crypto/x509"
	"net/netip"
	"time"

	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// Outcome values, as in the JSON contract.
const (
	OutcomeEstablished = "established"
	OutcomeAlert       = "alert"
	OutcomeReset       = "reset"
	OutcomeClosed      = "closed"
	OutcomeIncomplete  = "incomplete"
)

// Alert is one TLS alert seen on the connection.
type Alert struct {
	Time        time.Time `json:"time"`
	From        string    `json:"from"` // "client" or "server"
	Level       int       `json:"level"`
	Description int       `json:"description"`
	Name        string    `json:"name"` // e.g. "bad_certificate"
	// Encrypted is set when the alert record came after ChangeCipherSpec,
	// so only its presence is known (Level/Description are 0).
	Encrypted bool `json:"encrypted"`
}

// ClientHello holds what the client offered.
type ClientHello struct {
	Version      uint16   `json:"legacy_version"`
	Versions     []uint16 `json:"supported_versions,omitempty"`
	CipherSuites []uint16 `json:"cipher_suites"`
	Extensions   []uint16 `json:"extensions"`
	SNI          string   `json:"sni,omitempty"`
	ALPN         []string `json:"alpn,omitempty"`
	Groups       []uint16 `json:"groups,omitempty"`
	KeyShares    []uint16 `json:"key_shares,omitempty"`
	SigAlgs      []uint16 `json:"signature_algorithms,omitempty"`
	PointFormats []uint8  `json:"ec_point_formats,omitempty"`
	JA3          string   `json:"ja3"`
	JA3Hash      string   `json:"ja3_hash"`
	JA4          string   `json:"ja4"`
}

// Conn is one TLS connection as seen passively.
type Conn struct {
	// ID is "client->server", unique per capture together with FirstSeen.
	ID             string         `json:"id"`
	Client, Server netip.AddrPort `json:"-"`
	FirstSeen      time.Time      `json:"first_seen"`
	LastSeen       time.Time      `json:"last_seen"`
	// SawSYN says the roles are certain (the capture has the SYN).
	SawSYN bool `json:"saw_syn"`
	// FirstFrame is the frame number of the first packet.
	FirstFrame uint64 `json:"first_frame"`

	Hello *ClientHello `json:"client_hello,omitempty"`
	SNI   string       `json:"sni"`
	// Version is the negotiated version ("TLS 1.2"); VersionCode its code.
	Version     string `json:"version"`
	VersionCode uint16 `json:"version_code"`
	Cipher      string `json:"cipher"`
	CipherCode  uint16 `json:"cipher_code"`
	// Chain is the server's certificate chain, leaf first (TLS <= 1.2).
	Chain []*x509.Certificate `json:"-"`
	// CertEncrypted is set for TLS 1.3, where the certificate cannot be
	// seen passively.
	CertEncrypted bool `json:"cert_encrypted"`
	// CertMessageTooLarge is the length in bytes of a server Certificate
	// message too large to reassemble (over MaxHandshakeBuffer); Chain is
	// then empty. 0 when there was none.
	CertMessageTooLarge int `json:"cert_message_too_large,omitempty"`
	// HelloRetry: the server answered with a TLS 1.3 HelloRetryRequest
	// (the client's key share did not suit it) before its ServerHello.
	HelloRetry bool `json:"hello_retry"`
	// CertRequested: the server sent CertificateRequest.
	CertRequested bool `json:"cert_requested"`
	// ClientCertSent: the client answered with a non-empty Certificate.
	ClientCertSent bool `json:"client_cert_sent"`

	Alerts []Alert `json:"alerts,omitempty"`
	// Warnings lists the warning-level alerts that did not end the
	// connection, as "name (side)", e.g. "unrecognized_name (server)":
	// the peers carried on after them. close_notify and user_canceled are
	// left out (they close).
	Warnings       []string `json:"warnings,omitempty"`
	ClientCCS      bool     `json:"client_ccs"`
	ServerCCS      bool     `json:"server_ccs"`
	ClientFinished bool     `json:"client_finished"`
	ServerFinished bool     `json:"server_finished"`
	// Established: both sides finished the handshake.
	Established bool `json:"established"`
	// AppData: application data records flowed (either way).
	AppData bool `json:"app_data"`

	// Outcome is established/alert/reset/closed/incomplete.
	Outcome string `json:"outcome"`
	// ClosedBy is "client" or "server" (first FIN/RST), "" when the
	// capture ended first.
	ClosedBy string `json:"closed_by"`
	// Duration is from the first SYN (or ClientHello) to the close.
	Duration time.Duration `json:"-"`
	BytesC2S uint64        `json:"bytes_client_to_server"`
	BytesS2C uint64        `json:"bytes_server_to_client"`

	FromMicrosoft bool `json:"from_microsoft"` // client in Microsoft ranges
	ToMicrosoft   bool `json:"to_microsoft"`   // server in Microsoft ranges

	// Check is the certificate verdict (nil when no certificate was seen).
	Check *certcheck.Result `json:"check,omitempty"`
	// Anomalies records parse problems (like Zeek's weirds), bounded.
	Anomalies []string `json:"anomalies,omitempty"`
}

// Leaf returns the served leaf certificate or nil.
func (c *Conn) Leaf() *x509.Certificate {
	if len(c.Chain) == 0 {
		return nil
	}
	return c.Chain[0]
}

// Failed reports whether the handshake failed: an alert ended it, or a
// reset or close came before both Finished (outcome alert, reset or
// closed). A handshake that completed and was then closed without any
// application data (a probe's close_notify) did not fail.
func (c *Conn) Failed() bool {
	return c.Outcome != OutcomeEstablished && c.Outcome != OutcomeIncomplete
}
