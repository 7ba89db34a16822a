package tlsaudit

import (
	"cmp"
	"crypto/x509"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// FindingOptions tunes Findings.
type FindingOptions struct {
	// MaxConnectionIDs caps the connection ids listed in the evidence of
	// a grouped finding (default 20); the count is always exact.
	MaxConnectionIDs int
}

// Findings applies the TLS rules to finished connections.
//
// Granularity:
//   - tls_handshake_failed: one per failed connection (Conn.Failed), so a
//     correlation can cite each failed attempt. Critical when the client
//     (the peer that gave up) is Microsoft, else warning.
//   - tls_cert_untrusted, tls_cert_name_mismatch, tls_cert_expired,
//     tls_cert_not_yet_valid, tls_cert_expiring, tls_cert_no_server_auth: one per (rule, server
//     listener ip:port, leaf fingerprint, name checked), from Conn.Check
//     via certcheck.Result.Problems. Connection is the first connection
//     that showed it; evidence "connections" counts them all and
//     "connection_ids" lists the first MaxConnectionIDs.
//   - tls_version_weak: one per (listener, negotiated version < TLS 1.2).
//   - tls_cert_inconsistent: one per (listener, SNI) that served more
//     than one leaf fingerprint; evidence "fingerprints" lists each with
//     its count, most frequent first.
//   - tls_sni_ip_address (info): one per (listener, SNI) where the SNI
//     was an IP address; the certificate was checked against SBCNames.
//   - tls_sni_unrecognized (info): one per (listener, SNI) the server
//     answered with a warning unrecognized_name (Conn.Warnings) before
//     carrying on; the connection itself may well have succeeded.
//
// Findings are ordered by time, then rule, then connection; IDs are left
// for the caller to assign.
func Findings(conns []*Conn, o FindingOptions) []*finding.Finding {
	if o.MaxConnectionIDs <= 0 {
		o.MaxConnectionIDs = 20
	}
	var out []*finding.Finding
	groups := map[string]*finding.Finding{}
	var order []string
	group := func(key string, c *Conn, mk func() *finding.Finding) {
		f, ok := groups[key]
		if !ok {
			f = mk()
			f.Connection = c.ID
			f.Evidence["listener"] = c.Server.String()
			f.Evidence["connections"] = 0
			f.Evidence["connection_ids"] = []string{}
			f.Evidence["first_seen"] = c.FirstSeen.UTC().Format(time.RFC3339Nano)
			groups[key] = f
			order = append(order, key)
		}
		f.Evidence["connections"] = f.Evidence["connections"].(int) + 1
		if ids := f.Evidence["connection_ids"].([]string); len(ids) < o.MaxConnectionIDs {
			f.Evidence["connection_ids"] = append(ids, c.ID)
		}
		f.Evidence["last_seen"] = c.FirstSeen.UTC().Format(time.RFC3339Nano)
		if c.FromMicrosoft {
			f.Evidence["from_microsoft"] = true
		}
	}

	type listenerSNI struct{ server, sni string }
	served := map[listenerSNI][]*ServedCert{}
	var servedOrder []listenerSNI

	for _, c := range conns {
		if c.Failed() {
			out = append(out, handshakeFailed(c))
		}
		if c.SNI != "" && SNIIsIP(c.SNI) {
			key := strings.Join([]string{finding.TLSSNIIPAddress, c.Server.String(), c.SNI}, "|")
			group(key, c, func() *finding.Finding {
				f := finding.New(finding.TLSSNIIPAddress, finding.Info, c.FirstSeen,
					"%s received the IP address %s as SNI from %s (RFC 6066 allows host names only); the certificate is checked against the configured SBC names instead",
					c.Server, c.SNI, c.Client.Addr())
				f.Evidence["sni"] = c.SNI
				return f
			})
		}
		if slices.Contains(c.Warnings, "unrecognized_name (server)") {
			key := strings.Join([]string{finding.TLSSNIUnrecognized, c.Server.String(), c.SNI}, "|")
			group(key, c, func() *finding.Finding {
				sni := c.SNI
				if sni == "" {
					sni = "(no SNI)"
				}
				f := finding.New(finding.TLSSNIUnrecognized, finding.Info, c.FirstSeen,
					"%s answered SNI %s from %s with a warning unrecognized_name and carried on: no configured name (TLS context) matches it",
					c.Server, sni, c.Client.Addr())
				f.Evidence["sni"] = c.SNI
				f.Evidence["outcome"] = c.Outcome
				if leaf := c.Leaf(); leaf != nil {
					f.Evidence["cert_subject"] = leaf.Subject.String()
					f.Evidence["cert_fingerprint_sha256"] = certcheck.Fingerprint(leaf)
				}
				return f
			})
		}
		if c.VersionCode != 0 && c.VersionCode < 0x0303 {
			key := strings.Join([]string{finding.TLSVersionWeak, c.Server.String(), c.Version}, "|")
			group(key, c, func() *finding.Finding {
				f := finding.New(finding.TLSVersionWeak, finding.Warning, c.FirstSeen,
					"%s negotiated %s (below TLS 1.2) with %s", c.Server, c.Version, c.Client.Addr())
				f.Evidence["version"] = c.Version
				f.Evidence["version_code"] = fmt.Sprintf("0x%04x", c.VersionCode)
				f.Evidence["cipher"] = c.Cipher
				return f
			})
		}
		if c.Check != nil {
			for _, p := range c.Check.Problems() {
				name, _ := p.Evidence["name"].(string)
				key := strings.Join([]string{p.Rule, c.Server.String(), c.Check.Fingerprint, name}, "|")
				group(key, c, func() *finding.Finding {
					f := p.Finding(c.FirstSeen, finding.SourcePassive, c.ID)
					f.Summary = fmt.Sprintf("%s %s", c.Server, p.Summary)
					f.Evidence["sni"] = c.SNI
					return f
				})
			}
		}
		if leaf := c.Leaf(); leaf != nil {
			k := listenerSNI{c.Server.String(), c.SNI}
			list, seen := served[k]
			if !seen {
				servedOrder = append(servedOrder, k)
			}
			served[k] = CountServed(list, leaf, c.ID, c.FirstSeen, 0)
		}
	}
	for _, k := range order {
		out = append(out, groups[k])
	}
	for _, k := range servedOrder {
		list := served[k]
		if len(list) < 2 {
			continue
		}
		out = append(out, InconsistentFinding(k.server, k.sni, list))
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return a.Connection < b.Connection
	})
	return out
}

// DurationMS is the connection's duration in milliseconds (microsecond
// precision), as reported in evidence and the JSON "duration_ms".
func (c *Conn) DurationMS() float64 {
	return float64(c.Duration.Microseconds()) / 1000
}

// AlertSummary describes the alert that ended the connection, e.g.
// "bad_certificate (42) from client", "encrypted alert from client", or
// "" when there was none.
func (c *Conn) AlertSummary() string {
	// The first fatal or encrypted alert; else the first close_notify or
	// user_canceled (a warning that closes); else the first alert.
	var pick *Alert
	rank := func(a *Alert) int {
		switch {
		case a.Level == 2 || a.Encrypted:
			return 0
		case a.Description == 0 || a.Description == 90:
			return 1
		}
		return 2
	}
	for i := range c.Alerts {
		if a := &c.Alerts[i]; pick == nil || rank(a) < rank(pick) {
			pick = a
		}
	}
	if pick == nil {
		return ""
	}
	if pick.Encrypted {
		return "encrypted alert from " + pick.From
	}
	lvl := "warning"
	if pick.Level == 2 {
		lvl = "fatal"
	}
	return fmt.Sprintf("%s %s (%d) from %s", lvl, pick.Name, pick.Description, pick.From)
}

func handshakeFailed(c *Conn) *finding.Finding {
	sev := finding.Warning
	if c.FromMicrosoft {
		sev = finding.Critical
	}
	how := c.Outcome
	switch c.Outcome {
	case OutcomeAlert:
		how = c.AlertSummary()
	case OutcomeReset:
		how = "reset by " + c.ClosedBy
	case OutcomeClosed:
		how = "closed by " + c.ClosedBy
	}
	sni := c.SNI
	if sni == "" {
		sni = "no SNI"
	}
	what := "before the certificate"
	switch leaf := c.Leaf(); {
	case leaf != nil:
		what = "after certificate " + leaf.Subject.String()
	case c.CertMessageTooLarge > 0:
		what = fmt.Sprintf("after a certificate message of %d bytes that exceeds the limit (%d bytes, not reassembled)",
			c.CertMessageTooLarge, MaxHandshakeBuffer)
	case c.CertEncrypted:
		what = "(TLS 1.3, certificate encrypted)"
	}
	if len(c.Warnings) > 0 && c.Outcome != OutcomeAlert {
		how += " after warning " + strings.Join(c.Warnings, ", ")
	}
	f := finding.New(finding.TLSHandshakeFailed, sev, c.FirstSeen,
		"TLS handshake %s (%s) failed %s: %s after %s ms", c.ID, sni, what, how, msText(c.DurationMS()))
	f.Connection = c.ID
	ev := f.Evidence
	ev["connection"] = c.ID
	ev["client"] = c.Client.String()
	ev["server"] = c.Server.String()
	ev["sni"] = c.SNI
	ev["outcome"] = c.Outcome
	ev["alert"] = c.AlertSummary()
	ev["closed_by"] = c.ClosedBy
	ev["duration_ms"] = c.DurationMS()
	ev["from_microsoft"] = c.FromMicrosoft
	ev["version"] = c.Version
	ev["cert_encrypted"] = c.CertEncrypted
	if c.CertMessageTooLarge > 0 {
		ev["cert_message_bytes"] = c.CertMessageTooLarge
	}
	if len(c.Warnings) > 0 {
		ev["warnings"] = c.Warnings
	}
	ev["first_seen"] = c.FirstSeen.UTC().Format(time.RFC3339Nano)
	if leaf := c.Leaf(); leaf != nil {
		ev["cert_subject"] = leaf.Subject.String()
		ev["cert_issuer"] = leaf.Issuer.String()
		ev["cert_fingerprint_sha256"] = certcheck.Fingerprint(leaf)
		ev["cert_sans"] = certcheck.SANs(leaf)
	}
	if c.Check != nil {
		ev["cert_trusted"] = c.Check.Trusted
		if c.Check.VerifyError != "" {
			ev["verify_error"] = c.Check.VerifyError
		}
	}
	return f
}

// msText prints milliseconds with one decimal below 10 ms.
func msText(ms float64) string {
	if ms < 10 {
		return fmt.Sprintf("%.1f", ms)
	}
	return fmt.Sprintf("%.0f", ms)
}

// ServedCert is a certificate a listener served for one SNI: how many
// connections got it, and the first of them (the earliest by FirstSeen,
// then ID, whatever order the connections were counted in).
type ServedCert struct {
	Fingerprint, Subject, Issuer, First string
	FirstSeen                           time.Time
	Count                               int
}

// CountServed adds a connection (conn, first seen at) that was served
// leaf to list, the certificates of one listener and SNI, and returns the
// list; a new certificate past max distinct ones (0: no bound) is not
// added. The result does not depend on the order connections are counted
// in (streaming counts them as they end, in decision rounds; batch in
// input order), but for which certificates past max are left out.
func CountServed(list []*ServedCert, leaf *x509.Certificate, conn string, at time.Time, max int) []*ServedCert {
	fp := certcheck.Fingerprint(leaf)
	for _, e := range list {
		if e.Fingerprint == fp {
			e.Count++
			if EarlierConn(at, conn, e.FirstSeen, e.First) {
				e.First, e.FirstSeen = conn, at
			}
			return list
		}
	}
	if max > 0 && len(list) >= max {
		return list
	}
	return append(list, &ServedCert{Fingerprint: fp, Subject: leaf.Subject.String(),
		Issuer: leaf.Issuer.String(), First: conn, FirstSeen: at, Count: 1})
}

// EarlierConn says whether the connection (at, id) comes before (bt, bid):
// the earlier FirstSeen, then the smaller ID. It makes "the first
// connection" of a finding the same however the connections arrived.
func EarlierConn(at time.Time, id string, bt time.Time, bid string) bool {
	if !at.Equal(bt) {
		return at.Before(bt)
	}
	return id < bid
}

// InconsistentFinding is tls_cert_inconsistent for a listener and SNI
// that served the certificates in list (two or more), dated by and naming
// the earliest connection that was served any of them: each certificate
// with its count, the most served first (ties: the one served first).
func InconsistentFinding(listener, sni string, list []*ServedCert) *finding.Finding {
	list = slices.Clone(list)
	slices.SortStableFunc(list, func(x, y *ServedCert) int {
		if c := cmp.Compare(y.Count, x.Count); c != 0 {
			return c
		}
		if EarlierConn(x.FirstSeen, x.First, y.FirstSeen, y.First) {
			return -1
		}
		if EarlierConn(y.FirstSeen, y.First, x.FirstSeen, x.First) {
			return 1
		}
		return 0
	})
	var at time.Time
	var conn string
	for i, e := range list {
		if i == 0 || EarlierConn(e.FirstSeen, e.First, at, conn) {
			at, conn = e.FirstSeen, e.First
		}
	}
	shown := sni
	if shown == "" {
		shown = "(no SNI)"
	}
	total := 0
	var fps []map[string]any
	var parts []string
	for _, e := range list {
		total += e.Count
		fps = append(fps, map[string]any{
			"fingerprint_sha256": e.Fingerprint, "subject": e.Subject, "issuer": e.Issuer,
			"count": e.Count, "first_connection": e.First,
		})
		parts = append(parts, fmt.Sprintf("%s [sha256 %.12s…] ×%d", e.Subject, e.Fingerprint, e.Count))
	}
	f := finding.New(finding.TLSCertInconsistent, finding.Critical, at,
		"%s served %d different certificates for %s: %s", listener, len(list), shown, strings.Join(parts, ", "))
	f.Connection = conn
	f.Evidence["listener"] = listener
	f.Evidence["sni"] = sni
	f.Evidence["fingerprints"] = fps
	f.Evidence["connections"] = total
	return f
}
