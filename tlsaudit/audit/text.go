package audit

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// WriteText writes a report for an admin: the verdicts first, most
// severe first, then per address the probes, the certificates served
// and the timing series.
func (r *Report) WriteText(w io.Writer) error {
	b := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }

	rounds := len(r.Rounds)
	p("sbcwatch audit tls %s  %s  (%s, %d round(s), %d address(es))\n",
		r.Target, r.Started.Format(time.RFC3339), r.Finished.Sub(r.Started).Round(time.Millisecond), rounds, len(r.Addresses))
	if len(r.FQDNs) > 0 {
		p("expected names: %s\n", strings.Join(r.FQDNs, ", "))
	} else {
		p("expected names: none given (names not checked; use --fqdn)\n")
	}
	if r.Error != "" {
		p("error: %s\n", r.Error)
	}

	p("\nVERDICTS\n")
	if len(r.Findings) == 0 {
		p("  OK: no problem found\n")
	}
	for _, f := range r.Findings {
		p("  %-8s %-24s %s\n", strings.ToUpper(string(f.Severity)), f.Rule, f.Summary)
	}

	for _, as := range r.Addresses {
		p("\nADDRESS %s  (%d attempts, %d failed)\n", as.Address, as.Attempts, as.Failures)
		p("  %-18s %s\n", "tcp connect ms", seriesText(as.Connect))
		p("  %-18s %s\n", "tls handshake ms", seriesText(as.Handshake))
		if as.SIP.Count+as.SIP.Failures > 0 {
			p("  %-18s %s  responses: %s\n", "sip options ms", seriesText(as.SIP), codesText(as.SIPCodes))
		}
		p("  probes:\n")
		for _, k := range []string{ProbeTLS10, ProbeTLS11, ProbeTLS12MS, ProbeTLS13} {
			if v, ok := as.Versions[k]; ok {
				p("    %-18s %s%s\n", k, v, versionNote(k, v))
			}
		}
		if as.ClientCert != "" {
			p("    %-18s %s\n", ProbeClientCert, as.ClientCert)
		}
		p("  certificates served:\n")
		none := true
		for _, cs := range r.Certificates {
			if cs.Address != as.Address {
				continue
			}
			none = false
			c := cs.Check
			verdict := []string{}
			switch {
			case c.Trusted:
				verdict = append(verdict, "trusted")
			case c.ChainTrusted && c.NotYetValid:
				verdict = append(verdict, "NOT YET VALID: "+c.VerifyError)
			case c.ChainTrusted && c.Expired:
				verdict = append(verdict, "EXPIRED: "+c.VerifyError)
			default:
				verdict = append(verdict, "UNTRUSTED: "+c.VerifyError)
			}
			if c.NameChecked {
				if c.NameOK {
					verdict = append(verdict, "covers "+c.Name)
				} else {
					verdict = append(verdict, "DOES NOT cover "+c.Name)
				}
			}
			verdict = append(verdict, fmt.Sprintf("expires %s (%d days)", c.NotAfter.Format("2006-01-02"), c.DaysLeft))
			if c.NoServerAuth {
				verdict = append(verdict, "NO Server Authentication EKU")
			}
			if len(c.Weak) > 0 {
				verdict = append(verdict, "weak: "+strings.Join(c.Weak, ", "))
			}
			p("    %-34s ×%-4d sha256 %s\n      subject %s  issuer %s  SANs %s\n      %s\n",
				probeLabel(cs.Probe, cs.SNI), cs.Count, short(cs.Fingerprint),
				c.Subject, c.Issuer, sansText(c.SANs), strings.Join(verdict, "; "))
		}
		if none {
			p("    (none)\n")
		}
		// Handshake errors seen, counted.
		errs := map[string]int{}
		for _, at := range r.Attempts {
			if at.Address == as.Address && perRound(at.Probe) && at.Error != "" {
				errs[probeLabel(at.Probe, at.SNI)+": "+at.Error]++
			}
		}
		if len(errs) > 0 {
			p("  errors:\n")
			for _, e := range sortedKeys(errs) {
				p("    %4d× %s\n", errs[e], e)
			}
		}
	}
	if r.DNS.Count+r.DNS.Failures > 0 {
		p("\nDNS ms %s\n", seriesText(r.DNS))
	}
	return b.Flush()
}

func seriesText(s Series) string {
	if s.Count == 0 {
		return fmt.Sprintf("no samples, %d failed", s.Failures)
	}
	return fmt.Sprintf("n=%d min=%.1f mean=%.1f max=%.1f sd=%.1f failed=%d", s.Count, s.Min, s.Mean, s.Max, s.StdDev, s.Failures)
}

func codesText(m map[string]int) string {
	ks := sortedKeys(m)
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func versionNote(probe, verdict string) string {
	if strings.HasPrefix(verdict, "not tried") {
		return ""
	}
	accepted := strings.HasPrefix(verdict, "accepted")
	switch probe {
	case ProbeTLS10, ProbeTLS11:
		if accepted {
			return "  <- should be refused"
		}
		return "  (good)"
	case ProbeTLS12MS:
		if accepted {
			return "  (good: Microsoft can connect)"
		}
		return "  <- Microsoft cannot connect"
	}
	return ""
}

func sansText(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, " ")
}
