package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/store"
)

// evidence is the part of the API's evidence bundle the call page shows.
type evidence struct {
	GeneratedAt  time.Time         `json:"generated_at"`
	Verdict      string            `json:"verdict"`
	Call         store.Call        `json:"call"`
	Findings     []store.Finding   `json:"findings"`
	TLS          []store.TLSConn   `json:"tls"`
	FailedTLS    []string          `json:"failed_tls"`
	Certificates []evidenceCert    `json:"certificates"`
	Messages     []store.Message   `json:"messages"`
	Links        map[string]string `json:"links"`
	// Pcap is read leniently (pcapNote): its shape is the API's to grow.
	Pcap json.RawMessage `json:"pcap"`
}

type evidenceCert struct {
	Fingerprint string    `json:"fingerprint_sha256"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	SANs        []string  `json:"sans"`
	NotAfter    time.Time `json:"not_after"`
	SelfSigned  bool      `json:"self_signed"`
}

type verdictLine struct {
	Severity string
	Text     string
}

type fact struct{ Name, Value string }

type findingRow struct {
	store.Finding
	EvidenceJSON string
	// Pending is pendingMark of the finding.
	Pending string
}

type tlsRow struct {
	store.TLSConn
	Failed bool
	Cert   string
}

// msgItem is an entry of the page's list of SIP messages: a message, or
// how many were left out there.
type msgItem struct {
	Msg     *store.Message
	Omitted string
}

type callPage struct {
	Ev       *evidence
	Verdict  []verdictLine
	Facts    []fact
	Ladder   *ladder
	Findings []findingRow
	// TLS are the connections the ladder draws; TLSOmitted counts the
	// others.
	TLS        []tlsRow
	TLSOmitted int
	// Messages are those the ladder draws, with the runs left out.
	Messages []msgItem
	// LadderNote says what the ladder leaves out; empty when nothing.
	LadderNote string
	// EvidenceText, EvidenceJSON and EvidencePcap are the page routes of
	// the bundle (a browser's cookie works there, not on /api/v1).
	EvidenceText, EvidenceJSON, EvidencePcap string
	// PcapNote is why the bundle has no pcap, when the API says so.
	PcapNote string
	// Leg is this call's role ("Teams leg" or "carrier leg"); Partners
	// are the other legs of the call; Root is the headline (nil: no
	// finding on either leg).
	Leg      string
	Partners []partnerLeg
	Root     *rootCause
}

var verdictRE = regexp.MustCompile(`^\[(critical|warning|info)\] `)

// buildCallPage lays out the page of ev; its ladder draws at most
// ladderSteps rows.
func buildCallPage(ev *evidence, ladderSteps int) *callPage {
	cp := &callPage{Ev: ev}
	for l := range strings.SplitSeq(ev.Verdict, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		v := verdictLine{Severity: "none", Text: l}
		if m := verdictRE.FindStringSubmatch(l); m != nil {
			v.Severity = m[1]
		}
		cp.Verdict = append(cp.Verdict, v)
	}
	cp.Facts = callFacts(ev.Call)
	cp.Ladder = layoutLadder(ev, ladderSteps)
	for _, f := range ev.Findings {
		cp.Findings = append(cp.Findings, findingRow{Finding: f, EvidenceJSON: prettyJSON(f.Evidence), Pending: pendingMark(f)})
	}
	for i, c := range ev.TLS {
		if !cp.Ladder.drawnTLS[i] {
			cp.TLSOmitted++
			continue
		}
		cp.TLS = append(cp.TLS, tlsRow{TLSConn: c, Failed: c.Failed(), Cert: certName(c)})
	}
	left := 0
	for i := range ev.Messages {
		if !cp.Ladder.drawnMsgs[i] {
			left++
			continue
		}
		if left > 0 {
			cp.Messages = append(cp.Messages, msgItem{Omitted: plural(left, "SIP message")})
			left = 0
		}
		cp.Messages = append(cp.Messages, msgItem{Msg: &ev.Messages[i]})
	}
	if left > 0 {
		cp.Messages = append(cp.Messages, msgItem{Omitted: plural(left, "SIP message")})
	}
	cp.LadderNote = ladderNote(cp.Ladder, ladderSteps)
	cp.EvidenceText = EvidencePath(ev.Call.CallID, ev.Call.SBC, "txt")
	cp.EvidenceJSON = EvidencePath(ev.Call.CallID, ev.Call.SBC, "json")
	cp.EvidencePcap = EvidencePath(ev.Call.CallID, ev.Call.SBC, "pcap")
	cp.PcapNote = pcapNote(ev.Pcap)
	return cp
}

// ladderNote says how many events the ladder leaves out, e.g. "1 234
// more SIP messages not drawn".
func ladderNote(l *ladder, steps int) string {
	var parts []string
	if l.OmittedMsgs > 0 {
		parts = append(parts, groupDigits(l.OmittedMsgs)+" more SIP "+pluralNoun(l.OmittedMsgs, "message"))
	}
	if l.OmittedTLS > 0 {
		parts = append(parts, groupDigits(l.OmittedTLS)+" more TLS "+pluralNoun(l.OmittedTLS, "connection"))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("%s not drawn: the ladder stops at %s rows (the TLS connections, then the call's first and last messages).",
		strings.Join(parts, " and "), groupDigits(steps))
}

func pluralNoun(n int, noun string) string {
	if n != 1 {
		return noun + "s"
	}
	return noun
}

// pcapNote is the bundle's reason for having no pcap, when its pcap
// member says {"available": false, "note": ...}; anything else (a pcap
// that can be had, a shape this page does not know) is no note.
func pcapNote(raw json.RawMessage) string {
	var p struct {
		Available *bool  `json:"available"`
		Note      string `json:"note"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &p) != nil || p.Available == nil || *p.Available {
		return ""
	}
	return p.Note
}

func callFacts(c store.Call) []fact {
	t := func(p *time.Time) string {
		if p == nil {
			return "—"
		}
		return p.UTC().Format("2006-01-02 15:04:05.000 UTC")
	}
	orDash := func(s string) string {
		if s == "" {
			return "—"
		}
		return s
	}
	dur := "—"
	if c.Answer != nil && c.End != nil {
		dur = fmt.Sprintf("%.1f s talk time", c.DurationS)
	} else if c.End != nil {
		dur = fmt.Sprintf("%.1f s from start", c.End.Sub(c.Start).Seconds())
	}
	answered := "no"
	if c.Answered {
		answered = "yes"
	}
	if c.FinalStatus != 0 {
		answered += fmt.Sprintf(" (final response %d)", c.FinalStatus)
	}
	return []fact{
		{"From", orDash(c.From)},
		{"To", orDash(c.To)},
		{"SBC", orDash(c.SBC)},
		{"Start", c.Start.UTC().Format("2006-01-02 15:04:05.000 UTC")},
		{"Answered", answered},
		{"Answer", t(c.Answer)},
		{"End", t(c.End)},
		{"Duration", dur},
		{"Ended by", orDash(c.EndedBy)},
		{"End reason", orDash(c.EndReason)},
		{"Reason", orDash(c.ByeReason)},
		{"REFERs seen", fmt.Sprint(c.ReferCount)},
		{"SIP messages", fmt.Sprint(c.Messages)},
		{"Microsoft peer", orDash(c.MicrosoftIP)},
		{"SBC Contact", orDash(c.SBCContact)},
		{"SBC Allow", orDash(c.SBCAllow)},
		{"User agents", orDash(strings.Join(c.UserAgents, ", "))},
	}
}

// certName is the served certificate's CN (else its subject), or why
// there is none.
func certName(c store.TLSConn) string {
	switch {
	case c.CertSubject != "":
		for part := range strings.SplitSeq(c.CertSubject, ",") {
			if cn, ok := strings.CutPrefix(strings.TrimSpace(part), "CN="); ok {
				return "CN=" + cn
			}
		}
		return c.CertSubject
	case c.CertEncrypted:
		return "certificate encrypted (TLS 1.3)"
	}
	return "no certificate seen"
}

// tlsLabel is the ladder label of a connection, e.g. "TLS: served
// CN=default, alert bad_certificate after 3 ms".
func tlsLabel(c store.TLSConn) string {
	cert := certName(c)
	if c.CertSubject != "" {
		cert = "served " + cert
	}
	var what string
	switch c.Outcome {
	case "alert":
		what = "alert " + c.Alert
		if c.Alert == "" {
			what = "alert"
		}
	case "reset":
		what = "reset"
	case "closed":
		what = "closed"
	case "established":
		what = "established"
	default:
		what = c.Outcome
	}
	if c.ClosedBy != "" && c.Outcome != "established" {
		what += " (" + c.ClosedBy + ")"
	}
	if c.Outcome == "established" {
		if c.DurationMS >= 1000 {
			return fmt.Sprintf("TLS: %s, established (open %.1f s)", cert, c.DurationMS/1000)
		}
		return fmt.Sprintf("TLS: %s, established (open %s ms)", cert, trimFloat(c.DurationMS))
	}
	return fmt.Sprintf("TLS: %s, %s after %s ms", cert, what, trimFloat(c.DurationMS))
}

func trimFloat(f float64) string {
	s := fmt.Sprintf("%.1f", f)
	return strings.TrimSuffix(s, ".0")
}

func host(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// prettyJSON indents raw without the \u003c-style escapes Go's encoder
// adds (the template escapes for HTML); keys come out sorted.
func prettyJSON(raw json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(raw)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return string(raw)
	}
	return strings.TrimRight(b.String(), "\n")
}
