package finding

import (
	"strings"
)

// Subject names what a finding is about, so that sightings of the same
// problem in different runs (three audits and two captures of one expiring
// certificate) are recognised as one: with the SBC and the rule it is the
// key of a stored problem. It never contains a time.
//
//	tls_cert_untrusted, tls_cert_expired,
//	tls_cert_expiring, tls_cert_no_server_auth,
//	tls_cert_not_yet_valid                      "cert <sha256>"
//	tls_cert_name_mismatch                      "cert <sha256> name <name>"
//	tls_cert_inconsistent, tls_handshake_failed,
//	tls_version_weak, tls_sni_ip_address,
//	tls_sni_unrecognized                        "listener <ip:port> sni <sni>"
//	short_calls_spike                           "counter <counter> scope <scope>"
//	sbc_unreachable, audit_passes_live_fails    "target <target>"
//	options_missing                             "" (the SBC)
//	anything about a call                       "call <Call-ID>"
//	otherwise                                   "connection <id>" or ""
func Subject(f *Finding) string {
	ev := func(k string) string {
		s, _ := f.Evidence[k].(string)
		return s
	}
	switch f.Rule {
	case TLSCertUntrusted, TLSCertExpired, TLSCertExpiring, TLSCertNoServerAuth, TLSCertNotYetValid:
		if fp := ev("fingerprint_sha256"); fp != "" {
			return "cert " + strings.ToLower(fp)
		}
	case TLSCertNameMismatch:
		if fp := ev("fingerprint_sha256"); fp != "" {
			return "cert " + strings.ToLower(fp) + " name " + strings.ToLower(ev("name"))
		}
	case TLSCertInconsistent, TLSHandshakeFailed, TLSVersionWeak, TLSSNIIPAddress, TLSSNIUnrecognized:
		if l := listener(f, ev); l != "" {
			return "listener " + l + " sni " + strings.ToLower(ev("sni"))
		}
	case ShortCallsSpike:
		return "counter " + ev("counter") + " scope " + ev("scope")
	case SBCUnreachable, AuditPassesLiveFails:
		if t := ev("target"); t != "" {
			return "target " + t
		}
	case OptionsMissing:
		return ""
	}
	if f.CallID != "" {
		return "call " + f.CallID
	}
	if f.Connection != "" {
		return "connection " + f.Connection
	}
	return ""
}

// listener is the server side a TLS finding is about: evidence "listener"
// (grouped passive findings), "address" (audits), "server", or the server
// half of a "client->server" connection id.
func listener(f *Finding, ev func(string) string) string {
	for _, k := range []string{"listener", "address", "server"} {
		if v := ev(k); v != "" {
			return v
		}
	}
	if _, srv, ok := strings.Cut(f.Connection, "->"); ok {
		return srv
	}
	return ""
}
