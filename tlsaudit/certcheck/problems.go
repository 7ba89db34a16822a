package certcheck

import (
	"fmt"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
)

// Problem is one finding-worthy fact about a Result, ready to become a
// finding.Finding. Both the passive tracker and the active audit turn
// Results into findings through Problems, so the rules, severities,
// summaries and evidence keys are the same whoever saw the certificate.
//
// Evidence keys (all present for every rule, so a ticket can quote them):
//
//	subject, issuer, fingerprint_sha256, not_after (RFC 3339), sans
//
// plus, per rule:
//
//	tls_cert_untrusted       verify_error, self_signed
//	tls_cert_name_mismatch   name (the SNI or FQDN checked), cert_names (SANs, or the CN when there are none)
//	tls_cert_expired         days_left (negative)
//	tls_cert_not_yet_valid   not_before (RFC 3339), days_left
//	tls_cert_expiring        days_left
//	tls_cert_no_server_auth  (nothing more)
//
// The caller adds what only it knows ("sni", the peer, the listener) to
// Evidence and sets Connection, SBC, Time and Source on the finding.
type Problem struct {
	Rule     string
	Severity finding.Severity
	// Summary is one line for an admin, without the connection (the
	// caller may prefix it).
	Summary  string
	Evidence map[string]any
}

// Problems lists the tls_cert_* problems of a Result, most severe first,
// in this order: untrusted, name mismatch, expired or not yet valid,
// expiring, no server auth. A Result with no certificate gives none.
//
// An expired certificate that chains to a trusted root apart from its
// dates (ChainTrusted) is reported as expired only, not also untrusted.
// Weak keys and signatures have no rule of their own; they are listed
// in the untrusted evidence ("weak") when there is one, and are always
// in Result.Weak.
func (r *Result) Problems() []Problem {
	if r == nil || r.Fingerprint == "" {
		return nil
	}
	base := func() map[string]any {
		return map[string]any{
			"subject":            r.Subject,
			"issuer":             r.Issuer,
			"fingerprint_sha256": r.Fingerprint,
			"not_after":          r.NotAfter.UTC().Format(time.RFC3339),
			"sans":               append([]string{}, r.SANs...),
		}
	}
	var out []Problem
	// Untrusted unless the leaf's own dates are the only reason (then it
	// is reported as expired below). An expired intermediate under a
	// valid leaf is untrusted.
	if !r.Trusted && !(r.ChainTrusted && (r.Expired || r.NotYetValid)) {
		ev := base()
		ev["verify_error"] = r.VerifyError
		ev["self_signed"] = r.SelfSigned
		if len(r.Weak) > 0 {
			ev["weak"] = append([]string{}, r.Weak...)
		}
		what := "an untrusted certificate"
		if r.SelfSigned {
			what = "a self-signed certificate"
		}
		out = append(out, Problem{
			Rule: finding.TLSCertUntrusted, Severity: finding.Critical, Evidence: ev,
			Summary: fmt.Sprintf("served %s (%s): %s", what, r.Subject, r.VerifyError),
		})
	}
	if r.NameChecked && !r.NameOK {
		ev := base()
		ev["name"] = r.Name
		ev["cert_names"] = r.certNames()
		out = append(out, Problem{
			Rule: finding.TLSCertNameMismatch, Severity: finding.Critical, Evidence: ev,
			Summary: fmt.Sprintf("certificate %s does not cover %s (it names %v)", r.Subject, r.Name, r.certNames()),
		})
	}
	switch {
	case r.Expired:
		ev := base()
		ev["days_left"] = r.DaysLeft
		out = append(out, Problem{
			Rule: finding.TLSCertExpired, Severity: finding.Critical, Evidence: ev,
			Summary: fmt.Sprintf("certificate %s expired at %s", r.Subject, r.NotAfter.UTC().Format(time.RFC3339)),
		})
	case r.NotYetValid:
		ev := base()
		ev["not_before"] = r.NotBefore.UTC().Format(time.RFC3339)
		ev["days_left"] = r.DaysLeft
		out = append(out, Problem{
			Rule: finding.TLSCertNotYetValid, Severity: finding.Critical, Evidence: ev,
			Summary: fmt.Sprintf("certificate %s is not valid before %s", r.Subject, r.NotBefore.UTC().Format(time.RFC3339)),
		})
	case r.Expiring:
		ev := base()
		ev["days_left"] = r.DaysLeft
		out = append(out, Problem{
			Rule: finding.TLSCertExpiring, Severity: finding.Warning, Evidence: ev,
			Summary: fmt.Sprintf("certificate %s expires in %d days (%s)", r.Subject, r.DaysLeft, r.NotAfter.UTC().Format(time.RFC3339)),
		})
	}
	if r.NoServerAuth {
		out = append(out, Problem{
			Rule: finding.TLSCertNoServerAuth, Severity: finding.Warning, Evidence: base(),
			Summary: fmt.Sprintf("certificate %s is not valid for Server Authentication (extended key usage)", r.Subject),
		})
	}
	return out
}

// certNames are the names a client checks: the SANs, else the CN.
func (r *Result) certNames() []string {
	if len(r.SANs) > 0 {
		return append([]string{}, r.SANs...)
	}
	if cn := commonName(r.Subject); cn != "" {
		return []string{cn}
	}
	return []string{}
}

// commonName pulls CN=... out of a Subject string as produced by
// pkix.Name.String (escaped commas are kept).
func commonName(subject string) string {
	for i := 0; i < len(subject); {
		j := i
		for j < len(subject) && subject[j] != ',' {
			if subject[j] == '\\' {
				j++
			}
			j++
		}
		if j > len(subject) {
			j = len(subject)
		}
		part := subject[i:j]
		if len(part) > 3 && part[:3] == "CN=" {
			return part[3:]
		}
		i = j + 1
	}
	return ""
}

// Finding turns a Problem into a finding with a fresh copy of the
// evidence. source is finding.SourcePassive, SourceAudit or SourcePoll;
// connection is the TLS connection id or audit target.
func (p Problem) Finding(t time.Time, source, connection string) *finding.Finding {
	f := finding.New(p.Rule, p.Severity, t, "%s", p.Summary)
	for k, v := range p.Evidence {
		f.Evidence[k] = v
	}
	f.Source = source
	f.Connection = connection
	return f
}
