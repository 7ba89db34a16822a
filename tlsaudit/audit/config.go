package audit

import (
	"crypto/x509"

	"github.com/sbcwatch/sbcwatch/config"
)

// FromConfig returns the targets and options for a scheduled audit of
// one configured SBC (nil targets when the SBC has no audit section):
// SNI names from audit.sni, else the SBC's FQDNs; Count from
// audit.count; findings name the SBC. roots is the trust store built
// with certcheck.LoadTrust from the top-level trust settings. The
// caller runs Run once per target every audit.interval.
func FromConfig(s config.SBC, roots *x509.CertPool) ([]string, Options) {
	o := Options{SBC: s.Name, Roots: roots, FQDNs: s.FQDNs}
	if s.Audit == nil {
		return nil, o
	}
	if len(s.Audit.SNI) > 0 {
		o.FQDNs = s.Audit.SNI
	}
	o.Count = s.Audit.Count
	return append([]string(nil), s.Audit.Targets...), o
}
