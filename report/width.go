package report

import (
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sbcwatch/sbcwatch/finding"
)

// Span is a duration in seconds as a person reads it: "850 ms",
// "28.0 s", "4 min 5 s", "3 h 12 min", "6 d 3 h".
func Span(seconds float64) string {
	if math.IsNaN(seconds) || math.IsInf(seconds, 0) {
		return "-"
	}
	neg := ""
	if seconds < 0 {
		neg, seconds = "-", -seconds
	}
	switch {
	case seconds < 1:
		return fmt.Sprintf("%s%.0f ms", neg, seconds*1000)
	case seconds < 60:
		return fmt.Sprintf("%s%.1f s", neg, seconds)
	}
	s := int64(math.Round(seconds))
	d, h, m := s/86400, s%86400/3600, s%3600/60
	switch {
	case d > 0 && h > 0:
		return fmt.Sprintf("%s%d d %d h", neg, d, h)
	case d > 0:
		return fmt.Sprintf("%s%d d", neg, d)
	case h > 0 && m > 0:
		return fmt.Sprintf("%s%d h %d min", neg, h, m)
	case h > 0:
		return fmt.Sprintf("%s%d h", neg, h)
	case s%60 > 0:
		return fmt.Sprintf("%s%d min %d s", neg, m, s%60)
	}
	return fmt.Sprintf("%s%d min", neg, m)
}

// View selects what the text report shows: analyze's --only-findings,
// --number, --since/--until and --limit. The zero View shows all.
type View struct {
	// OnlyFindings keeps the calls and TLS connections findings are
	// about.
	OnlyFindings bool
	// Number keeps calls whose caller or callee contains these digits
	// (leading zeros dropped, so the national form "069 1234" matches
	// +49691234…), with their findings and the connections those name.
	Number string
	// Since and Until keep what happened in [Since, Until).
	Since, Until time.Time
	// Limit bounds the rows of each table (0: no bound).
	Limit int
}

// Filter returns a shallow copy of r holding what v selects. Findings
// about a call follow the call; findings about a connection or an SBC
// are kept unless Number is set, then only when a kept finding cites
// them. The summary line of the copy counts what it holds.
func (r *Report) Filter(v View) *Report {
	out := *r
	inTime := func(t time.Time) bool {
		return (v.Since.IsZero() || !t.Before(v.Since)) && (v.Until.IsZero() || t.Before(v.Until))
	}
	callFindings := map[string]bool{}
	for _, f := range r.Findings {
		if f.CallID != "" {
			callFindings[f.CallID] = true
		}
	}
	pat := strings.TrimLeft(digits(v.Number), "0")
	keptCall := map[string]bool{}
	out.Calls = nil
	for _, c := range r.Calls {
		end := time.Time(c.Start)
		if c.End != nil {
			end = time.Time(*c.End)
		}
		switch {
		case !v.Since.IsZero() && end.Before(v.Since), !v.Until.IsZero() && !time.Time(c.Start).Before(v.Until):
			continue
		case v.Number != "" && (pat == "" || !strings.Contains(digits(c.From), pat) && !strings.Contains(digits(c.To), pat)):
			continue
		case v.OnlyFindings && !callFindings[c.CallID]:
			continue
		}
		keptCall[c.CallID] = true
		out.Calls = append(out.Calls, c)
	}
	out.Findings = nil
	kept := map[string]bool{}
	for _, f := range r.Findings {
		switch {
		case f.CallID != "" && !keptCall[f.CallID]:
			continue
		case f.CallID == "" && (v.Number != "" || !inTime(f.Time)):
			continue
		}
		kept[f.ID] = true
		out.Findings = append(out.Findings, f)
	}
	if v.Number != "" {
		// The connection and certificate findings the call's cite.
		cited := map[string]bool{}
		for _, f := range out.Findings {
			for _, id := range f.Cites {
				cited[id] = true
			}
		}
		var all []*finding.Finding
		for _, f := range r.Findings {
			if kept[f.ID] || cited[f.ID] && f.CallID == "" {
				kept[f.ID] = true
				all = append(all, f)
			}
		}
		out.Findings = all
	}
	named := map[string]bool{}
	for _, f := range out.Findings {
		if f.Connection != "" {
			named[f.Connection] = true
		}
	}
	out.TLS = nil
	for _, c := range r.TLS {
		if !inTime(time.Time(c.Start)) {
			continue
		}
		if (v.OnlyFindings || v.Number != "") && !named[c.Client+"->"+c.Server] {
			continue
		}
		out.TLS = append(out.TLS, c)
	}
	out.Hints = append([]string(nil), r.Hints...)
	if v.OnlyFindings || v.Number != "" || !v.Since.IsZero() || !v.Until.IsZero() {
		out.Hints = append(out.Hints, fmt.Sprintf("This report shows %d of %d calls, %d of %d TLS connections and %d of %d findings (%s).",
			len(out.Calls), len(r.Calls), len(out.TLS), len(r.TLS), len(out.Findings), len(r.Findings), v.flags()))
	}
	if v.Limit > 0 {
		if n := len(out.Calls); n > v.Limit {
			out.Hints = append(out.Hints, fmt.Sprintf("The calls table shows the first %d of %d calls (--limit).", v.Limit, n))
			out.Calls = out.Calls[:v.Limit]
		}
		if n := len(out.TLS); n > v.Limit {
			out.Hints = append(out.Hints, fmt.Sprintf("The TLS table shows the first %d of %d connections (--limit).", v.Limit, n))
			out.TLS = out.TLS[:v.Limit]
		}
	}
	return &out
}

// flags names the view's filters as analyze's flags.
func (v View) flags() string {
	var fs []string
	if v.OnlyFindings {
		fs = append(fs, "--only-findings")
	}
	if v.Number != "" {
		fs = append(fs, "--number "+v.Number)
	}
	if !v.Since.IsZero() {
		fs = append(fs, "--since "+v.Since.UTC().Format(time.RFC3339))
	}
	if !v.Until.IsZero() {
		fs = append(fs, "--until "+v.Until.UTC().Format(time.RFC3339))
	}
	return strings.Join(fs, ", ")
}

func digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// WriteTextWidth writes the text report (WriteText) to fit width
// columns: long lines wrap at spaces with a hanging indent, a verdict
// puts its rule on one line and its words under it, and the calls and
// TLS tables turn into two-line rows when they would be wider. A width
// below 40 is taken as 40; 0 means WriteText as is.
func (r *Report) WriteTextWidth(w io.Writer, width int) error {
	p, err := planText(reportSrc(r), View{}, true)
	if err != nil {
		return err
	}
	return p.writeText(w, width)
}

// verdictLineRE is a verdict line of WriteText: severity, rule, words.
var verdictLineRE = regexp.MustCompile(`^  ((?:F\d+\s+)?(?:CRITICAL|WARNING|INFO))\s+(\S+)\s+(.*)$`)

func runeLen(s string) int { return utf8.RuneCountInString(s) }

// wrap writes text word-wrapped to width, the first line after first,
// the others after rest. A word longer than a line is cut.
func wrap(ew *errWriter, text, first, rest string, width int) {
	prefix := first
	line := ""
	flush := func() {
		ew.printf("%s%s\n", prefix, line)
		prefix, line = rest, ""
	}
	for _, word := range strings.Fields(text) {
		for runeLen(prefix)+runeLen(word) > width {
			if line != "" {
				flush()
				continue
			}
			rs := []rune(word)
			n := max(width-runeLen(prefix), 1)
			line, word = string(rs[:n]), string(rs[n:])
			flush()
		}
		switch {
		case line == "":
			line = word
		case runeLen(prefix)+runeLen(line)+1+runeLen(word) <= width:
			line += " " + word
		default:
			flush()
			line = word
		}
	}
	if line != "" || prefix == first {
		flush()
	}
}

// clip shortens s to n runes with an ellipsis.
func clip(s string, n int) string {
	rs := []rune(s)
	if len(rs) <= n {
		return s
	}
	if n <= 1 {
		return "…"
	}
	return string(rs[:n-1]) + "…"
}

// narrowCall is a call's two-line row in the narrow calls table: when,
// who, answer and talk time, how it ended; then the Call-ID (whole: it
// is what --call takes).
func narrowCall(ew *errWriter, c *CallJSON, layout string, num, width int) {
	talk := "-"
	if c.Answered && c.End != nil {
		talk = Span(c.DurationS)
	}
	who := c.Kind
	if c.Kind == "invite" {
		who = fmt.Sprintf("%-*s %-*s", num, clip(dash(c.From), num), num, clip("→ "+dash(c.To), num+2))
	} else {
		who = fmt.Sprintf("%-*s", 2*num+1, c.Kind)
	}
	end := dash(c.EndedBy)
	if c.EndReason != "" {
		end += " " + c.EndReason
	}
	line := fmt.Sprintf("  %s  %s  %-3s  %-9s  %s", time.Time(c.Start).UTC().Format(layout), who, yesNo(c.Answered), talk, end)
	ew.printf("%s\n", strings.TrimRight(clip(line, width), " "))
	ew.printf("    %s\n", c.CallID)
}

// narrowTLS is a connection's rows in the narrow TLS table: when, who
// to whom, how it ended; then the name, the certificate and Microsoft's
// part.
func narrowTLS(ew *errWriter, c *TLSJSON, width int) {
	outcome := c.Outcome
	if c.Alert != "" {
		outcome += " " + c.Alert
	}
	when := time.Time(c.Start).UTC().Format("15:04:05.000")
	line := fmt.Sprintf("  %s  %s → %s  %s, %s", when, c.Client, c.Server, outcome, msSpan(c.DurationMS))
	if runeLen(line) > width {
		ew.printf("%s\n", clip(fmt.Sprintf("  %s  %s → %s", when, c.Client, c.Server), width))
		line = "                " + outcome + ", " + msSpan(c.DurationMS)
	}
	ew.printf("%s\n", clip(line, width))
	cert := c.CertSubject
	if cn := cnOf(cert); cn != "" {
		cert = "CN=" + cn
	}
	if cert == "" && c.CertEncrypted {
		cert = "certificate encrypted (TLS 1.3)"
	}
	var parts []string
	if c.SNI != "" {
		parts = append(parts, "SNI "+c.SNI)
	}
	if cert != "" {
		parts = append(parts, clip(cert, 48))
	}
	if c.Version != "" {
		parts = append(parts, c.Version)
	}
	if c.FromMicrosoft {
		parts = append(parts, "from Microsoft")
	}
	if len(parts) > 0 {
		wrap(ew, strings.Join(parts, " · "), "    ", "      ", width)
	}
}

// cnOf is the CN of an X.509 subject, or "".
func cnOf(subject string) string {
	for _, part := range strings.Split(subject, ",") {
		if cn, ok := strings.CutPrefix(strings.TrimSpace(part), "CN="); ok {
			return cn
		}
	}
	return ""
}

// msSpan is a duration in milliseconds, "2.7 ms" or "33.0 s".
func msSpan(ms float64) string {
	if ms >= 1000 {
		return Span(ms / 1000)
	}
	return trimMS(ms) + " ms"
}

func trimMS(ms float64) string {
	return strings.TrimSuffix(fmt.Sprintf("%.1f", ms), ".0")
}

// callsCSVHeader is the header of WriteCallsCSV.
var callsCSVHeader = []string{"start_utc", "kind", "from", "to", "answered", "final_status", "talk_s", "refers",
	"ended_by", "end_reason", "q850", "messages", "microsoft", "findings", "rules", "call_id"}

// WriteCallsCSV writes the calls table as CSV with the rules of the
// findings about each call.
func (r *Report) WriteCallsCSV(w io.Writer) error {
	p, err := planText(reportSrc(r), View{}, true)
	if err != nil {
		return err
	}
	return p.writeCSV(w)
}
