package api

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/store"
)

// PcapNote says why a bundle carries no pcap.
const PcapNote = "not available: no raw frames were kept for this call (analyze --store --keep-packets keeps them); the text of every stored SIP message is in \"messages\""

// pcapType is the media type of a classic pcap file (pcapng has none
// registered; WritePcap writes pcap unless link types differ).
const pcapType = "application/vnd.tcpdump.pcap"

// Evidence is the bundle of GET /api/v1/calls/{call_id}/evidence: what an
// admin pastes into a ticket.
type Evidence struct {
	GeneratedAt time.Time `json:"generated_at"`
	// Verdict is the findings' summaries, most severe first, one per line;
	// a root cause says how many findings it explains, and those are not
	// repeated.
	Verdict  string          `json:"verdict"`
	Call     store.Call      `json:"call"`
	Findings []store.Finding `json:"findings"`
	Ladder   []LadderStep    `json:"ladder"`
	// TLS are the related connections; FailedTLS names the ones that
	// failed (client->server).
	TLS          []store.TLSConn   `json:"tls"`
	FailedTLS    []string          `json:"failed_tls"`
	Certificates []EvidenceCert    `json:"certificates"`
	Messages     []store.Message   `json:"messages"`
	Pcap         EvidencePcap      `json:"pcap"`
	Counts       map[string]int    `json:"counts"`
	Links        map[string]string `json:"links"`
}

// EvidenceCert is a certificate with its PEM.
type EvidenceCert struct {
	Fingerprint string    `json:"fingerprint_sha256"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	SANs        []string  `json:"sans"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	SelfSigned  bool      `json:"self_signed"`
	PEM         string    `json:"pem"`
}

// EvidencePcap tells whether the call's packets can be had: the frames
// of its SIP messages and of the TLS connections in the bundle, kept when
// the capture was stored with --keep-packets.
type EvidencePcap struct {
	Available bool   `json:"available"`
	Packets   int64  `json:"packets"`
	Link      string `json:"link,omitempty"`
	Note      string `json:"note"`
}

func (s *Server) handleEvidence(w http.ResponseWriter, r *http.Request) {
	format, err := evidenceFormat(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	d, err := s.callDetail(r.Context(), r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if format == "pcap" {
		s.writeCallPcap(w, r, d)
		return
	}
	ev, err := s.buildEvidence(r, d)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if format == "json" {
		writeJSON(w, http.StatusOK, ev)
		return
	}
	var buf bytes.Buffer
	writeEvidenceText(&buf, ev)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// evidenceFormat is json, text or pcap: ?format, else the first of
// those media types the Accept header names, else json.
func evidenceFormat(r *http.Request) (string, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "text", "json", "pcap":
		return f, nil
	case "":
	default:
		return "", badRequest("format must be json, text or pcap")
	}
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "text/plain":
			return "text", nil
		case pcapType:
			return "pcap", nil
		case "application/json", "*/*":
			return "json", nil
		}
	}
	return "json", nil
}

// tlsIDs are the stored ids of the bundle's TLS connections.
func tlsIDs(d *CallDetail) []string {
	ids := make([]string, 0, len(d.TLS))
	for _, c := range d.TLS {
		ids = append(ids, c.ID)
	}
	return ids
}

// writeCallPcap answers with the call's kept frames as a capture file.
func (s *Server) writeCallPcap(w http.ResponseWriter, r *http.Request, d *CallDetail) {
	c := d.Call
	pkts, err := store.CallPackets(r.Context(), s.st.Pool(), c.SBC, c.CallID, c.Start, callEnd(c), tlsIDs(d))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(pkts) == 0 {
		s.writeError(w, r, notFound("no packets were kept for call %q (store the capture with analyze --store --keep-packets)", c.CallID))
		return
	}
	var buf bytes.Buffer
	format, err := report.WritePcap(&buf, pkts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", pcapType)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment",
		map[string]string{"filename": "sbcwatch-" + fileSafe(c.CallID) + "." + format}))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// fileSafe keeps letters, digits, '.', '-' and '_' of s (at most 64) for
// a file name.
func fileSafe(s string) string {
	b := make([]byte, 0, min(len(s), 64))
	for i := 0; i < len(s) && len(b) < 64; i++ {
		switch ch := s[i]; {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '.', ch == '-', ch == '_':
			b = append(b, ch)
		default:
			b = append(b, '_')
		}
	}
	return string(b)
}

func (s *Server) buildEvidence(r *http.Request, d *CallDetail) (*Evidence, error) {
	fs := d.Findings
	ev := &Evidence{GeneratedAt: s.opts.Now().UTC(), Call: d.Call, Findings: fs, Ladder: d.Ladder, TLS: d.TLS,
		Messages: d.Messages, FailedTLS: []string{}, Certificates: []EvidenceCert{},
		Pcap: EvidencePcap{Available: false, Note: PcapNote}}
	var lines []string
	for _, f := range fs {
		// Root cause first: the findings it explains are its evidence.
		if f.CausedBy != "" {
			continue
		}
		l := fmt.Sprintf("[%s] %s%s: %s", f.Severity, f.Rule, ProvisionalMark(f), f.Summary)
		if n := len(f.Explains); n > 0 {
			l += fmt.Sprintf(" (+ %d supporting finding%s)", n, map[bool]string{true: "s"}[n > 1])
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		lines = append(lines, verdictNoFindings(d.Call))
	}
	ev.Verdict = strings.Join(lines, "\n")
	var fps []string
	for _, c := range d.TLS {
		if c.Failed() {
			ev.FailedTLS = append(ev.FailedTLS, c.ConnID)
		}
		for _, fp := range append([]string{c.Fingerprint}, c.Chain...) {
			if fp != "" && !slices.Contains(fps, fp) {
				fps = append(fps, fp)
			}
		}
	}
	certs, err := store.CertificatesByFingerprint(r.Context(), s.st.Pool(), fps)
	if err != nil {
		return nil, err
	}
	for _, c := range certs {
		ev.Certificates = append(ev.Certificates, EvidenceCert{Fingerprint: c.Fingerprint, Subject: c.Subject,
			Issuer: c.Issuer, SANs: c.SANs, NotBefore: c.NotBefore, NotAfter: c.NotAfter, SelfSigned: c.SelfSigned,
			PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}))})
	}
	n, err := store.CountCallPackets(r.Context(), s.st.Pool(), d.Call.SBC, d.Call.CallID, d.Call.Start, callEnd(d.Call), tlsIDs(d))
	if err != nil {
		return nil, err
	}
	base := "/api/v1/calls/" + escapeSegment(d.Call.CallID)
	if n > 0 {
		ev.Pcap = EvidencePcap{Available: true, Packets: n, Link: base + "/evidence?format=pcap",
			Note: fmt.Sprintf("%d frames kept: the call's SIP messages and the frames of its TLS connections", n)}
	}
	ev.Counts = map[string]int{"findings": len(fs), "messages": len(d.Messages), "tls": len(d.TLS),
		"failed_tls": len(ev.FailedTLS), "certificates": len(ev.Certificates)}
	ev.Links = map[string]string{"call": base, "evidence_text": base + "/evidence?format=text"}
	if ev.Pcap.Available {
		ev.Links["evidence_pcap"] = ev.Pcap.Link
	}
	return ev, nil
}

// sortFindings puts findings in the report's order: most severe first,
// verdicts about the call before the TLS facts they rest on
// (finding.Less).
func sortFindings(fs []store.Finding) {
	slices.SortStableFunc(fs, func(a, b store.Finding) int {
		fa, fb := asFinding(a), asFinding(b)
		switch {
		case finding.Less(fa, fb):
			return -1
		case finding.Less(fb, fa):
			return 1
		}
		return 0
	})
}

func asFinding(f store.Finding) *finding.Finding {
	return &finding.Finding{Rule: f.Rule, Severity: finding.Severity(f.Severity), Time: f.Time,
		CallID: f.CallID, Connection: f.Connection}
}

func escapeSegment(s string) string {
	return strings.ReplaceAll(urlPathEscape(s), "+", "%2B")
}

func verdictNoFindings(c store.Call) string {
	switch {
	case c.Answered && c.EndReason != "":
		return fmt.Sprintf("No findings: the call was answered and ended normally (%s by the %s).", c.EndReason, orUnknown(c.EndedBy))
	case c.Answered:
		return "No findings: the call was answered."
	case c.FinalStatus != 0:
		return fmt.Sprintf("No findings: the call was not answered (final response %d).", c.FinalStatus)
	}
	return "No findings for this call."
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown side"
	}
	return s
}

// writeEvidenceText renders the bundle for a ticket.
func writeEvidenceText(w io.Writer, ev *Evidence) {
	c := ev.Call
	fmt.Fprintf(w, "sbcwatch evidence for call %s (SBC %s)\n", c.CallID, c.SBC)
	fmt.Fprintf(w, "generated %s\n\n", ev.GeneratedAt.Format(time.RFC3339))
	fmt.Fprintln(w, "VERDICT")
	for l := range strings.SplitSeq(ev.Verdict, "\n") {
		fmt.Fprintf(w, "  %s\n", l)
	}
	fmt.Fprintln(w, "\nCALL")
	fmt.Fprintf(w, "  from %s to %s\n", c.From, c.To)
	fmt.Fprintf(w, "  start %s", ts(c.Start))
	if c.Answer != nil {
		fmt.Fprintf(w, ", answered %s", ts(*c.Answer))
	}
	if c.End != nil {
		fmt.Fprintf(w, ", ended %s (%.1f s talk)", ts(*c.End), c.DurationS)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  ended by %s: %s", orUnknown(c.EndedBy), c.EndReason)
	if c.ByeReason != "" {
		fmt.Fprintf(w, " (Reason: %s)", c.ByeReason)
	}
	fmt.Fprintf(w, "\n  REFERs seen: %d; messages: %d; Microsoft peer: %s\n", c.ReferCount, c.Messages, c.MicrosoftIP)

	fmt.Fprintf(w, "\nFINDINGS (%d)\n", len(ev.Findings))
	for _, f := range ev.Findings {
		fmt.Fprintf(w, "  %s [%s] %s%s at %s\n    %s\n", f.ID, f.Severity, f.Rule, ProvisionalMark(f), ts(f.Time), f.Summary)
		if f.Connection != "" {
			fmt.Fprintf(w, "    connection: %s\n", f.Connection)
		}
		if len(f.Cites) > 0 {
			fmt.Fprintf(w, "    cites: %s\n", strings.Join(f.Cites, ", "))
		}
		if f.CausedBy != "" {
			fmt.Fprintf(w, "    caused by: %s\n", f.CausedBy)
		}
		if f.Advice != "" {
			fmt.Fprintf(w, "    advice: %s\n", f.Advice)
		}
		var pretty bytes.Buffer
		if json.Indent(&pretty, f.Evidence, "    ", "  ") == nil {
			fmt.Fprintf(w, "    evidence: %s\n", pretty.String())
		}
	}

	fmt.Fprintf(w, "\nLADDER (%d messages)\n", len(ev.Ladder))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, l := range ev.Ladder {
		fmt.Fprintf(tw, "  %s\t%s\t->\t%s\t%s\n", ts(l.Time), l.From, l.To, l.Label)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nTLS CONNECTIONS (%d related, %d failed)\n", len(ev.TLS), len(ev.FailedTLS))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  first seen\tclient -> server\tSNI\tversion\toutcome\talert\tclosed by\tms\tcertificate")
	for _, t := range ev.TLS {
		cert := t.CertSubject
		if t.Fingerprint != "" {
			cert += " sha256:" + t.Fingerprint
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%s\n", ts(t.FirstSeen), t.ConnID, t.SNI, t.Version,
			t.Outcome, t.Alert, t.ClosedBy, t.DurationMS, cert)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nCERTIFICATES (%d)\n", len(ev.Certificates))
	for _, c := range ev.Certificates {
		fmt.Fprintf(w, "  sha256:%s\n    subject: %s\n    issuer: %s\n    SANs: %s\n    valid %s to %s; self-signed: %v\n",
			c.Fingerprint, c.Subject, c.Issuer, strings.Join(c.SANs, ", "), ts(c.NotBefore), ts(c.NotAfter), c.SelfSigned)
		for l := range strings.SplitSeq(strings.TrimSpace(c.PEM), "\n") {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}

	fmt.Fprintf(w, "\nSIP MESSAGES (%d)\n", len(ev.Messages))
	for _, m := range ev.Messages {
		fmt.Fprintf(w, "--- %s %s -> %s (%s)\n", ts(m.Time), m.Src, m.Dst, m.Transport)
		fmt.Fprintln(w, strings.TrimRight(strings.ReplaceAll(m.Raw, "\r\n", "\n"), "\n"))
	}
	fmt.Fprintf(w, "\nPCAP\n  %s\n", ev.Pcap.Note)
	if ev.Pcap.Available {
		fmt.Fprintf(w, "  GET %s\n", ev.Pcap.Link)
	}
}

// ProvisionalMark is " (provisional, settles by 09:58:07 UTC)" for a
// provisional finding, " (retracted)" for a retracted one, else "".
func ProvisionalMark(f store.Finding) string {
	switch {
	case f.Retracted:
		return " (retracted)"
	case f.Provisional && f.SettlesAt != nil:
		return " (provisional, settles by " + f.SettlesAt.UTC().Format("15:04:05") + " UTC)"
	case f.Provisional:
		return " (provisional)"
	}
	return ""
}

func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
