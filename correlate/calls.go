package correlate

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// normalClearing is the one Q.850 cause media_error_bye treats as a
// normal end: 16 "normal call clearing". findings.md names only 16, so 31
// "normal, unspecified" and every other cause fire the rule too.
const normalClearing = 16

// callRules applies the per-call rules that need no REFER:
// transfer_missing, media_error_bye, short_call, refer_not_allowed and
// contact_not_fqdn.
func (a *analysis) callRules(c *sip.Call) []*finding.Finding {
	if c.Kind != "invite" {
		return nil
	}
	var out []*finding.Finding
	for _, f := range []*finding.Finding{
		a.transferMissing(c),
		a.mediaErrorBye(c),
		a.shortCall(c),
		a.referNotAllowed(c),
		a.contactNotFQDN(c),
	} {
		if f != nil {
			f.CallID = c.CallID
			f.Evidence["call_id"] = c.CallID
			out = append(out, f)
		}
	}
	return out
}

// ended reports whether a call was answered and its end was seen. A call
// the tracker closed for idling ("timeout") ended unseen: its End is only
// its last message, so it is treated as still open.
func ended(c *sip.Call) bool {
	return c.Answered && !c.Answer.IsZero() && !c.End.IsZero() && c.EndReason != "timeout"
}

// transferMissing: a call with Microsoft to a number that expects a
// transfer was answered and ended without any REFER. Only Microsoft calls
// count: the REFER comes from Microsoft, so the carrier leg of the same
// call never carries one. It fires alongside refer_delivery_failed when
// both hold; Run links the two (cites / explained_by). A call that is
// itself the new leg of a transfer (ReferredFrom) is not expected to be
// transferred again.
func (a *analysis) transferMissing(c *sip.Call) *finding.Finding {
	if !c.Microsoft || !ended(c) || len(c.Refers) > 0 || c.ReferredFrom != "" || !a.cfg.ExpectsTransfer(c.To) {
		return nil
	}
	f := finding.New(finding.TransferMissing, finding.Warning, c.End,
		"%s was answered and ended after %s without a transfer, though %s is configured to expect one (an Auto Attendant): no REFER reached the call, and %s.",
		callLabel(c), humanDur(c.Duration()), c.To, endWords(a, c))
	f.Evidence["called_number"] = c.To
	f.Evidence["answer_time"] = c.Answer.UTC()
	f.Evidence["end_time"] = c.End.UTC()
	f.Evidence["duration_s"] = seconds(c.Duration())
	f.Evidence["end_reason"] = c.EndReason
	f.Evidence["ended_by"] = c.EndedBy
	f.Evidence["reason"] = c.ByeReason
	return f
}

// mediaErrorBye: the BYE carries a Reason naming a media error, or a
// Q.850 cause other than 16.
func (a *analysis) mediaErrorBye(c *sip.Call) *finding.Finding {
	if c.EndReason != "BYE" || (c.ByeReason == "" && c.Q850Cause == 0 && c.ReasonText == "") {
		return nil
	}
	cause := c.Q850Cause
	if cause == 0 {
		cause = q850Cause(c.ByeReason)
	}
	media := mentionsMediaError(c.ReasonText) || mentionsMediaError(c.ByeReason)
	if !media && (cause == 0 || cause == normalClearing) {
		return nil
	}
	var what string
	switch {
	case media && cause != 0:
		what = fmt.Sprintf("a media error (Q.850 cause %d, %s)", cause, reasonWords(c))
	case media:
		what = "a media error (" + reasonWords(c) + ")"
	default:
		what = fmt.Sprintf("Q.850 cause %d (%s), not normal clearing", cause, reasonWords(c))
	}
	f := finding.New(finding.MediaErrorBye, finding.Warning, c.End,
		"%s: the BYE from %s gives %s.", callLabel(c), byWhom(a, c), what)
	f.Evidence["reason"] = c.ByeReason
	f.Evidence["q850_cause"] = cause
	f.Evidence["reason_text"] = c.ReasonText
	f.Evidence["media_error"] = media
	f.Evidence["ended_by"] = c.EndedBy
	f.Evidence["by_addr"] = addrString(c.EndedByAddr)
	return f
}

// mentionsMediaError matches "MediaError", "media error", "media-error".
func mentionsMediaError(s string) bool {
	s = strings.ToLower(s)
	s = strings.NewReplacer(" ", "", "-", "", "_", "").Replace(s)
	return strings.Contains(s, "mediaerror")
}

// q850Cause reads cause= from a raw Reason header's Q.850 entry.
func q850Cause(hdr string) int {
	for _, part := range strings.Split(hdr, ",") {
		if !strings.Contains(strings.ToUpper(part), "Q.850") {
			continue
		}
		for _, p := range strings.Split(part, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "cause") {
				if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
					return n
				}
			}
		}
	}
	return 0
}

// reasonWords is the Reason text (without Teams' leading correlation
// GUID) or the raw header.
func reasonWords(c *sip.Call) string {
	t := c.ReasonText
	if i := strings.LastIndexByte(t, ';'); i >= 0 {
		t = t[i+1:]
	}
	t = strings.Trim(strings.TrimSpace(t), `"`)
	if t != "" {
		return t
	}
	if c.ByeReason != "" {
		return "Reason: " + c.ByeReason
	}
	return "no Reason text"
}

// byWhom names who sent the BYE: the SBC, Microsoft, or the caller/callee.
func byWhom(a *analysis, c *sip.Call) string {
	switch {
	case c.EndedByAddr.IsValid() && c.SBCSide.IsValid() && a.sameSBC(c.EndedByAddr.Addr(), c.SBCSide.Addr()):
		return "the SBC"
	case c.EndedByAddr.IsValid() && a.sbcAddrs[c.EndedByAddr.Addr().Unmap()]:
		return "the SBC"
	case a.isMicrosoft(c.EndedByAddr):
		return "Microsoft"
	case c.EndedBy != "":
		return "the " + c.EndedBy
	}
	return "one side"
}

// endWords says how a call ended: "the SBC sent BYE (Q.850 cause 22,
// MediaError)".
func endWords(a *analysis, c *sip.Call) string {
	what := c.EndReason
	if what == "" {
		what = "the end"
	}
	s := byWhom(a, c) + " sent " + what
	if c.EndReason == "timeout" {
		s = "the call timed out"
	}
	cause := c.Q850Cause
	if cause == 0 {
		cause = q850Cause(c.ByeReason)
	}
	switch {
	case cause != 0:
		s += fmt.Sprintf(" (Q.850 cause %d, %s)", cause, reasonWords(c))
	case c.ByeReason != "":
		s += " (" + reasonWords(c) + ")"
	}
	return s
}

// shortCall: answered and ended sooner than the short-call threshold. A
// call handed over by an accepted REFER is expected to end early and is
// left out.
func (a *analysis) shortCall(c *sip.Call) *finding.Finding {
	if !ended(c) || c.Duration() >= a.cfg.ShortCall.D() {
		return nil
	}
	for _, r := range c.Refers {
		if r != nil && r.Response >= 200 && r.Response < 300 {
			return nil
		}
	}
	f := finding.New(finding.ShortCall, finding.Info, c.End,
		"%s lasted only %s after it was answered (short-call threshold %s); %s.",
		callLabel(c), humanDur(c.Duration()), humanDur(a.cfg.ShortCall.D()), endWords(a, c))
	f.Evidence["duration_s"] = seconds(c.Duration())
	f.Evidence["threshold_s"] = seconds(a.cfg.ShortCall.D())
	f.Evidence["answer_time"] = c.Answer.UTC()
	f.Evidence["end_time"] = c.End.UTC()
	f.Evidence["ended_by"] = c.EndedBy
	f.Evidence["end_reason"] = c.EndReason
	return f
}

// referNotAllowed: the SBC's INVITE or 200 towards Microsoft was seen and
// its Allow header lacks REFER.
func (a *analysis) referNotAllowed(c *sip.Call) *finding.Finding {
	if !c.Microsoft || !c.SBCAllowSeen || hasToken(c.SBCAllow, "REFER") {
		return nil
	}
	var f *finding.Finding
	if strings.TrimSpace(c.SBCAllow) == "" {
		f = finding.New(finding.ReferNotAllowed, finding.Info, c.Start,
			"%s: the SBC sent no Allow header towards Microsoft, so Microsoft will not send it a REFER; transfers are done without the SBC or not at all.",
			callLabel(c))
	} else {
		f = finding.New(finding.ReferNotAllowed, finding.Info, c.Start,
			"%s: the SBC's Allow header towards Microsoft (%s) lacks REFER, so Microsoft will not send it a REFER; transfers are done without the SBC or not at all.",
			callLabel(c), c.SBCAllow)
	}
	f.Evidence["allow"] = c.SBCAllow
	return f
}

// hasToken reports whether a comma-separated header lists tok.
func hasToken(list, tok string) bool {
	for _, t := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}

// contactNotFQDN: the SBC's Contact towards Microsoft has an IP literal
// as host, or a name that no certificate the SBC served on a completed
// handshake covers. Certificates seen only on failed handshakes are not
// used: that certificate is already a TLS finding, and judging the
// Contact against a certificate Microsoft rejected would blame the
// Contact for the certificate's fault.
func (a *analysis) contactNotFQDN(c *sip.Call) *finding.Finding {
	if !c.Microsoft || c.SBCContact == "" {
		return nil
	}
	host, isIP := uriHost(c.SBCContact)
	if host == "" {
		return nil
	}
	if isIP {
		f := finding.New(finding.ContactNotFQDN, finding.Warning, c.Start,
			"%s: the SBC's Contact towards Microsoft (%s) has the IP address %s as host; Microsoft checks that name against the SBC's certificate, so it must be the SBC's FQDN.",
			callLabel(c), c.SBCContact, host)
		f.Evidence["contact"] = c.SBCContact
		f.Evidence["contact_host"] = host
		f.Evidence["ip_literal"] = true
		return f
	}
	certs := a.servedCerts(c)
	if len(certs) == 0 {
		return nil
	}
	for _, sc := range certs {
		if sc.covers(host) {
			return nil
		}
	}
	var subjects, fps []string
	var names []string
	for _, sc := range certs {
		subjects = append(subjects, sc.subject)
		fps = append(fps, sc.fingerprint)
		names = append(names, sc.names...)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	f := finding.New(finding.ContactNotFQDN, finding.Warning, c.Start,
		"%s: the SBC's Contact host %s is not covered by the certificate it serves (%s, valid for %s); Microsoft rejects a Contact its certificate does not name.",
		callLabel(c), host, strings.Join(subjects, "; "), listOrNone(names))
	f.Evidence["contact"] = c.SBCContact
	f.Evidence["contact_host"] = host
	f.Evidence["ip_literal"] = false
	f.Evidence["cert_subjects"] = subjects
	f.Evidence["cert_fingerprints_sha256"] = fps
	f.Evidence["cert_names"] = names
	return f
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "no names"
	}
	return strings.Join(s, ", ")
}

// servedCert is one certificate the SBC served, as far as it was seen.
type servedCert struct {
	subject, issuer, fingerprint string
	names                        []string // SAN DNS names, or the CN when there are none
	leaf                         *x509.Certificate
}

func (s servedCert) covers(host string) bool {
	if s.leaf != nil {
		return certcheck.Covers(s.leaf, host)
	}
	for _, n := range s.names {
		if certcheck.MatchName(n, host) {
			return true
		}
	}
	return false
}

// certOf describes the certificate a connection carried; ok is false when
// none was seen.
func certOf(c *tlsaudit.Conn) (s servedCert, ok bool) {
	if leaf := c.Leaf(); leaf != nil {
		s = servedCert{
			subject:     leaf.Subject.String(),
			issuer:      leaf.Issuer.String(),
			fingerprint: certcheck.Fingerprint(leaf),
			leaf:        leaf,
		}
		s.names = append(s.names, leaf.DNSNames...)
		if len(s.names) == 0 && leaf.Subject.CommonName != "" {
			s.names = []string{leaf.Subject.CommonName}
		}
		return s, true
	}
	if r := c.Check; r != nil && r.Fingerprint != "" {
		s = servedCert{subject: r.Subject, issuer: r.Issuer, fingerprint: r.Fingerprint}
		for _, n := range r.SANs {
			if !strings.Contains(n, ":") && !isIPString(n) {
				s.names = append(s.names, n)
			}
		}
		if len(s.names) == 0 {
			if cn := commonName(r.Subject); cn != "" {
				s.names = []string{cn}
			}
		}
		return s, true
	}
	return s, false
}

func isIPString(s string) bool {
	_, isIP := uriHost("sip:" + s)
	return isIP
}

// commonName pulls CN=... out of a pkix.Name string.
func commonName(subject string) string {
	for _, part := range strings.Split(subject, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "CN="); ok {
			return v
		}
	}
	return ""
}

// servedCerts returns the distinct certificates the SBC of call c served
// on connections whose handshake completed.
func (a *analysis) servedCerts(c *sip.Call) []servedCert {
	var out []servedCert
	for _, srv := range a.servers {
		if c.SBCSide.IsValid() && !a.sameSBC(srv, c.SBCSide.Addr()) {
			continue
		}
		if !c.SBCSide.IsValid() && !a.sbcAddrs[srv] {
			continue
		}
		for _, sc := range a.certsByServer[srv] {
			if !slices.ContainsFunc(out, func(x servedCert) bool { return x.fingerprint == sc.fingerprint }) {
				out = append(out, sc)
			}
		}
	}
	return out
}

// toSBCOf reports whether a connection's server is the SBC of call c:
// the call's SBC side (or another configured address of the same SBC);
// when the call's SBC side is unknown, any known SBC address or a
// connection whose SNI is a configured SBC FQDN.
func (a *analysis) toSBCOf(conn *tlsaudit.Conn, c *sip.Call) bool {
	if !conn.Server.IsValid() {
		return false
	}
	if c.SBCSide.IsValid() {
		return a.sameSBC(conn.Server.Addr(), c.SBCSide.Addr())
	}
	return a.toSBC(conn)
}

// toSBC reports whether a connection's server is known to be an SBC.
func (a *analysis) toSBC(conn *tlsaudit.Conn) bool {
	if conn.Server.IsValid() && a.sbcAddrs[conn.Server.Addr().Unmap()] {
		return true
	}
	return a.isSBCName(conn.SNI)
}
