package audit

import (
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
)

// perRound reports whether a probe runs every round (the series probes).
func perRound(kind string) bool {
	return kind == ProbeSNI || kind == ProbeNoSNI || kind == ProbeUnrelatedSNI
}

// summarise fills Addresses, Certificates and DNS from the attempts.
func (a *auditor) summarise() {
	var dns []float64
	dnsFail := 0
	for _, r := range a.rep.Rounds {
		if net.ParseIP(a.host) != nil {
			break
		}
		if r.Error != "" {
			dnsFail++
			continue
		}
		dns = append(dns, r.DNSMs)
	}
	a.rep.DNS = series(dns, dnsFail)

	type acc struct {
		st                      *AddrStats
		conn, hs, sip           []float64
		connF, hsF, sipF, fails int
	}
	byAddr := map[string]*acc{}
	var order []string
	for _, at := range a.rep.Attempts {
		x := byAddr[at.Address]
		if x == nil {
			x = &acc{st: &AddrStats{Address: at.Address, Versions: map[string]string{}}}
			byAddr[at.Address] = x
			order = append(order, at.Address)
		}
		x.st.Attempts++
		if !at.Connected {
			x.connF++
			x.fails++
		} else {
			x.conn = append(x.conn, at.ConnectMs)
		}
		if at.Connected && perRound(at.Probe) {
			if at.Handshake {
				x.hs = append(x.hs, at.HandshakeMs)
			} else {
				x.hsF++
				if at.Probe == ProbeSNI {
					x.fails++
				}
			}
		}
		if at.SIP != nil {
			if x.st.SIPCodes == nil {
				x.st.SIPCodes = map[string]int{}
			}
			if at.SIP.Code > 0 {
				x.sip = append(x.sip, at.SIP.Ms)
				x.st.SIPCodes[strconv.Itoa(at.SIP.Code)]++
			} else {
				x.sipF++
				x.st.SIPCodes["no response"]++
			}
		}
		switch at.Probe {
		case ProbeTLS10, ProbeTLS11, ProbeTLS12MS, ProbeTLS13:
			x.st.Versions[at.Probe] = versionVerdict(at)
		case ProbeClientCert:
			x.st.ClientCert = clientCertVerdict(at)
		}
	}
	for _, addr := range order {
		x := byAddr[addr]
		x.st.Failures = x.fails
		x.st.Connect = series(x.conn, x.connF)
		x.st.Handshake = series(x.hs, x.hsF)
		x.st.SIP = series(x.sip, x.sipF)
		a.rep.Addresses = append(a.rep.Addresses, *x.st)
	}
	for _, k := range a.certOrder {
		a.rep.Certificates = append(a.rep.Certificates, *a.certs[k])
	}
}

func versionVerdict(at Attempt) string {
	switch {
	case !at.Connected:
		return "not tried: " + at.Error
	case at.Handshake:
		return fmt.Sprintf("accepted: %s %s", at.Version, at.Cipher)
	}
	return "refused: " + strings.TrimPrefix(at.Error, "tls handshake: ")
}

func clientCertVerdict(at Attempt) string {
	switch {
	case !at.Connected:
		return "not tried: " + at.Error
	case !at.CertRequested && at.Handshake:
		return "not requested"
	case !at.CertRequested:
		return "not requested; handshake failed: " + strings.TrimPrefix(at.Error, "tls handshake: ")
	case at.ClientCertSent && at.Handshake:
		return "requested; mutual TLS completed with the client certificate"
	case at.ClientCertSent:
		return "requested; mutual TLS failed with the client certificate: " + strings.TrimPrefix(at.Error, "tls handshake: ")
	case at.Handshake:
		return "requested (optional); none offered, handshake completed"
	}
	return "required; none offered, handshake failed: " + strings.TrimPrefix(at.Error, "tls handshake: ")
}

// series summarises samples (ms) with population standard deviation.
func series(xs []float64, failures int) Series {
	s := Series{Count: len(xs), Failures: failures}
	if len(xs) == 0 {
		return s
	}
	s.Min, s.Max = xs[0], xs[0]
	sum := 0.0
	for _, x := range xs {
		sum += x
		s.Min = math.Min(s.Min, x)
		s.Max = math.Max(s.Max, x)
	}
	s.Mean = sum / float64(len(xs))
	v := 0.0
	for _, x := range xs {
		v += (x - s.Mean) * (x - s.Mean)
	}
	s.StdDev = math.Sqrt(v / float64(len(xs)))
	round := func(f float64) float64 { return math.Round(f*1000) / 1000 }
	s.Mean, s.StdDev = round(s.Mean), round(s.StdDev)
	return s
}

// probeLabel names what was asked, for summaries.
func probeLabel(probe, sni string) string {
	switch probe {
	case ProbeNoSNI:
		return "without SNI"
	case ProbeUnrelatedSNI:
		return "with unrelated SNI " + sni
	case ProbeSNI:
		return "with SNI " + sni
	}
	if sni != "" {
		return probe + " (SNI " + sni + ")"
	}
	return probe
}

// severityFor downgrades certificate verdicts for the unrelated-SNI
// probe: a client asking for a name the SBC does not host may fairly get
// a default certificate. Everything Microsoft might do (its FQDN as SNI,
// or no SNI) keeps the rule's severity.
func severityFor(probe string, s finding.Severity) finding.Severity {
	if probe == ProbeUnrelatedSNI && s == finding.Critical {
		return finding.Warning
	}
	return s
}

// findings derives the verdicts from what was recorded.
func (a *auditor) findings() []*finding.Finding {
	var out []*finding.Finding
	conn := func(addr string) string {
		ip, _, err := net.SplitHostPort(addr)
		if err != nil {
			ip = addr
		}
		return fmt.Sprintf("audit %s (%s)", a.target, ip)
	}
	add := func(f *finding.Finding, addr string) {
		f.Source = finding.SourceAudit
		f.SBC = a.o.SBC
		if addr != "" {
			f.Connection = conn(addr)
			f.Evidence["address"] = addr
		}
		f.Evidence["target"] = a.target
		out = append(out, f)
	}
	// Attempts per (address, probe, SNI), for counts in the evidence.
	type pk struct{ addr, probe, sni string }
	tried := map[pk]int{}
	for _, at := range a.rep.Attempts {
		if at.Connected {
			tried[pk{at.Address, at.Probe, at.SNI}]++
		}
	}

	// Certificate problems, once per (address, SNI, fingerprint, rule).
	seen := map[string]bool{}
	fps := map[pk][]CertSeen{}
	var fpOrder []pk
	// The SNI probes first, so a problem seen by several probes is
	// reported under the way Microsoft connects.
	certs := append([]CertSeen{}, a.rep.Certificates...)
	sort.SliceStable(certs, func(i, j int) bool { return probeRank(certs[i].Probe) < probeRank(certs[j].Probe) })
	for _, cs := range certs {
		if !perRound(cs.Probe) && cs.Probe != ProbeTLS12MS {
			continue
		}
		k := pk{cs.Address, cs.Probe, cs.SNI}
		if fps[k] == nil {
			fpOrder = append(fpOrder, k)
		}
		fps[k] = append(fps[k], cs)
		for _, p := range cs.Check.Problems() {
			key := strings.Join([]string{cs.Address, cs.SNI, cs.Fingerprint, p.Rule, strconv.FormatBool(cs.Probe == ProbeUnrelatedSNI)}, "|")
			if seen[key] {
				continue
			}
			seen[key] = true
			f := p.Finding(cs.First, finding.SourceAudit, "")
			f.Severity = severityFor(cs.Probe, p.Severity)
			f.Summary = fmt.Sprintf("%s: handshake %s: %s (%d of %d handshakes)", cs.Address, probeLabel(cs.Probe, cs.SNI), p.Summary, cs.Count, tried[k])
			f.Evidence["sni"] = cs.SNI
			f.Evidence["probe"] = cs.Probe
			f.Evidence["count"] = cs.Count
			f.Evidence["attempts"] = tried[k]
			add(f, cs.Address)
		}
	}
	// Different certificates for the same SNI.
	for _, k := range fpOrder {
		list := fps[k]
		if len(list) < 2 || !perRound(k.probe) {
			continue
		}
		var evs []map[string]any
		var words []string
		for _, cs := range list {
			evs = append(evs, map[string]any{"fingerprint_sha256": cs.Fingerprint, "subject": cs.Check.Subject, "issuer": cs.Check.Issuer, "count": cs.Count, "trusted": cs.Check.Trusted})
			words = append(words, fmt.Sprintf("%s %s ×%d", short(cs.Fingerprint), cs.Check.Subject, cs.Count))
		}
		f := finding.New(finding.TLSCertInconsistent, severityFor(k.probe, finding.Critical), list[0].First,
			"%s: handshake %s served %d different certificates: %s", k.addr, probeLabel(k.probe, k.sni), len(list), strings.Join(words, ", "))
		f.Evidence["listener"] = a.target
		f.Evidence["sni"] = k.sni
		f.Evidence["probe"] = k.probe
		f.Evidence["fingerprints"] = evs
		f.Evidence["attempts"] = tried[k]
		add(f, k.addr)
	}

	// Handshake failures and version probes.
	type fail struct {
		first    time.Time
		n        int
		errs     map[string]int
		needCert bool
	}
	fails := map[pk]*fail{}
	var failOrder []pk
	for _, at := range a.rep.Attempts {
		if !at.Connected {
			continue
		}
		k := pk{at.Address, at.Probe, at.SNI}
		switch at.Probe {
		case ProbeTLS10, ProbeTLS11:
			if at.Handshake {
				f := finding.New(finding.TLSVersionWeak, finding.Warning, at.Time,
					"%s accepts %s when only %s is offered (cipher %s); Direct Routing needs TLS 1.2", at.Address, at.Version, at.Version, at.Cipher)
				f.Evidence["version"] = at.Version
				f.Evidence["cipher"] = at.Cipher
				f.Evidence["sni"] = at.SNI
				f.Evidence["probe"] = at.Probe
				add(f, at.Address)
			}
			continue
		case ProbeSNI, ProbeTLS12MS, ProbeClientCert:
		default:
			continue
		}
		if at.Handshake || at.Probe == ProbeClientCert && a.o.ClientCert == nil {
			continue
		}
		fl := fails[k]
		if fl == nil {
			fl = &fail{first: at.Time, errs: map[string]int{}}
			fails[k] = fl
			failOrder = append(failOrder, k)
		}
		fl.n++
		fl.errs[at.Error]++
		if at.CertRequested && !at.ClientCertSent {
			fl.needCert = true
		}
	}
	for _, k := range failOrder {
		fl := fails[k]
		sev := finding.Critical
		var what string
		switch k.probe {
		case ProbeSNI:
			what = fmt.Sprintf("%d of %d handshakes %s failed", fl.n, tried[k], probeLabel(k.probe, k.sni))
		case ProbeTLS12MS:
			what = "a TLS 1.2 handshake offering only Microsoft's cipher suites failed"
		case ProbeClientCert:
			sev = finding.Warning
			what = "mutual TLS with the given client certificate failed"
		}
		if fl.needCert {
			// The audit could not present a certificate; Microsoft would.
			sev = finding.Warning
			what += " (the SBC requires a client certificate: rerun with --client-cert)"
		}
		f := finding.New(finding.TLSHandshakeFailed, sev, fl.first, "%s: %s: %s", k.addr, what, topErr(fl.errs))
		f.Evidence["sni"] = k.sni
		f.Evidence["probe"] = k.probe
		f.Evidence["failures"] = fl.n
		f.Evidence["attempts"] = tried[k]
		f.Evidence["errors"] = fl.errs
		f.Evidence["client_cert_requested"] = fl.needCert
		if k.probe == ProbeTLS12MS {
			var names []string
			for _, id := range MicrosoftSuites {
				names = append(names, tls.CipherSuiteName(id))
			}
			f.Evidence["offered"] = names
		}
		add(f, k.addr)
	}

	// Unreachable addresses, and a target that did not resolve.
	for _, addr := range sortedKeys(a.misses) {
		m := a.misses[addr]
		if m.worst < a.o.MissesBeforeFinding {
			continue
		}
		f := finding.New(finding.SBCUnreachable, finding.Warning, m.worstFrom,
			"%s: %d connection attempts in a row failed: %s", addr, m.worst, m.lastErr)
		f.Evidence["sbc"] = a.o.SBC
		f.Evidence["misses"] = m.worst
		f.Evidence["last_error"] = m.lastErr
		f.Evidence["since"] = m.worstFrom.UTC().Format(time.RFC3339Nano)
		add(f, addr)
	}
	if len(a.rep.Rounds) > 0 && len(a.rep.Rounds[0].Addresses) == 0 && a.rep.Rounds[0].Error != "" {
		r := a.rep.Rounds[0]
		f := finding.New(finding.SBCUnreachable, finding.Warning, r.Time, "%s does not resolve: %s", a.host, r.Error)
		f.Evidence["sbc"] = a.o.SBC
		f.Evidence["last_error"] = "resolve: " + r.Error
		f.Evidence["since"] = r.Time.UTC().Format(time.RFC3339Nano)
		add(f, "")
	}

	sort.SliceStable(out, func(i, j int) bool {
		if ri, rj := out[i].Severity.Rank(), out[j].Severity.Rank(); ri != rj {
			return ri < rj
		}
		return ruleRank(out[i].Rule) < ruleRank(out[j].Rule)
	})
	for i, f := range out {
		f.ID = fmt.Sprintf("A%d", i+1)
	}
	return out
}

func probeRank(p string) int {
	switch p {
	case ProbeSNI:
		return 0
	case ProbeTLS12MS:
		return 1
	case ProbeNoSNI:
		return 2
	case ProbeUnrelatedSNI:
		return 3
	}
	return 4
}

var ruleOrder = []string{
	finding.TLSCertInconsistent, finding.TLSCertUntrusted, finding.TLSCertNameMismatch,
	finding.TLSCertExpired, finding.TLSCertNotYetValid, finding.TLSHandshakeFailed, finding.SBCUnreachable,
	finding.TLSCertExpiring, finding.TLSVersionWeak, finding.TLSCertNoServerAuth,
}

func ruleRank(rule string) int {
	for i, r := range ruleOrder {
		if r == rule {
			return i
		}
	}
	return len(ruleOrder)
}

func topErr(errs map[string]int) string {
	best, n := "", 0
	for _, e := range sortedKeys(errs) {
		if errs[e] > n {
			best, n = e, errs[e]
		}
	}
	return strings.TrimPrefix(best, "tls handshake: ")
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}
