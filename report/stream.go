package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// textSrc is what the text and CSV writers read: the calls and TLS
// connections walked in report order (each walk may run twice: once to
// plan, once to print, so a walk over a spool holds one row at a time),
// and the findings, held.
type textSrc struct {
	calls           func(func(*CallJSON) error) error
	tls             func(func(*TLSJSON) error) error
	findings        []*finding.Finding
	stats           Stats
	hints, warnings []string
}

// reportSrc walks a Report's slices.
func reportSrc(r *Report) *textSrc {
	return &textSrc{
		calls: func(f func(*CallJSON) error) error {
			for i := range r.Calls {
				if err := f(&r.Calls[i]); err != nil {
					return err
				}
			}
			return nil
		},
		tls: func(f func(*TLSJSON) error) error {
			for i := range r.TLS {
				if err := f(&r.TLS[i]); err != nil {
					return err
				}
			}
			return nil
		},
		findings: r.Findings, stats: r.Stats, hints: r.Hints, warnings: r.Warnings,
	}
}

// textPlan is the first pass over a source under a View: what Filter
// would keep, counted, and the widths of the tables' columns. It holds
// the findings and sets of Call-IDs and connections that findings name,
// never a row per call.
type textPlan struct {
	src      *textSrc
	v        View
	keepCall func(*CallJSON) bool // the time, number and findings filters
	keepTLS  func(*TLSJSON) bool
	findings []*finding.Finding // kept
	hints    []string

	shownCalls, shownTLS int // after --limit
	answered, microsoft  int // among the shown calls
	failed               int // among the shown connections
	callW, tlsW          []int
	oneDay               bool // every shown call starts on the first one's UTC day
}

// planText is Report.Filter as a pass over the source: the same rows
// kept in the same order, the same hints, and the summary line's counts
// of what is shown. With raw (a Report written as it is: the zero View,
// no Filter) every finding is kept, as Report.WriteText always has.
func planText(src *textSrc, v View, raw bool) (*textPlan, error) {
	p := &textPlan{src: src, v: v, oneDay: true}
	inTime := func(t time.Time) bool {
		return (v.Since.IsZero() || !t.Before(v.Since)) && (v.Until.IsZero() || t.Before(v.Until))
	}
	callFindings := map[string]bool{}
	for _, f := range src.findings {
		if f.CallID != "" {
			callFindings[f.CallID] = true
		}
	}
	pat := strings.TrimLeft(digits(v.Number), "0")
	p.keepCall = func(c *CallJSON) bool {
		end := time.Time(c.Start)
		if c.End != nil {
			end = time.Time(*c.End)
		}
		switch {
		case !v.Since.IsZero() && end.Before(v.Since), !v.Until.IsZero() && !time.Time(c.Start).Before(v.Until):
			return false
		case v.Number != "" && (pat == "" || !strings.Contains(digits(c.From), pat) && !strings.Contains(digits(c.To), pat)):
			return false
		case v.OnlyFindings && !callFindings[c.CallID]:
			return false
		}
		return true
	}
	// Only the calls findings are about need remembering.
	keptCall := map[string]bool{}
	totalCalls, keptCalls := 0, 0
	var firstDay string
	p.callW = cellWidths(nil, callsHeader)
	err := src.calls(func(c *CallJSON) error {
		totalCalls++
		if !p.keepCall(c) {
			return nil
		}
		if callFindings[c.CallID] {
			keptCall[c.CallID] = true
		}
		keptCalls++
		if v.Limit > 0 && keptCalls > v.Limit {
			return nil
		}
		p.shownCalls++
		if c.Answered {
			p.answered++
		}
		if c.Microsoft {
			p.microsoft++
		}
		day := time.Time(c.Start).UTC().Format("20060102")
		if firstDay == "" {
			firstDay = day
		} else if day != firstDay {
			p.oneDay = false
		}
		p.callW = cellWidths(p.callW, callRow(c))
		return nil
	})
	if err != nil {
		return nil, err
	}
	kept := map[string]bool{}
	for _, f := range src.findings {
		switch {
		case raw:
		case f.CallID != "" && !keptCall[f.CallID]:
			continue
		case f.CallID == "" && (v.Number != "" || !inTime(f.Time)):
			continue
		}
		kept[f.ID] = true
		p.findings = append(p.findings, f)
	}
	if v.Number != "" {
		// The connection and certificate findings the call's cite.
		cited := map[string]bool{}
		for _, f := range p.findings {
			for _, id := range f.Cites {
				cited[id] = true
			}
		}
		var all []*finding.Finding
		for _, f := range src.findings {
			if kept[f.ID] || cited[f.ID] && f.CallID == "" {
				kept[f.ID] = true
				all = append(all, f)
			}
		}
		p.findings = all
	}
	named := map[string]bool{}
	for _, f := range p.findings {
		if f.Connection != "" {
			named[f.Connection] = true
		}
	}
	p.keepTLS = func(c *TLSJSON) bool {
		if !inTime(time.Time(c.Start)) {
			return false
		}
		return !(v.OnlyFindings || v.Number != "") || named[c.Client+"->"+c.Server]
	}
	totalTLS, keptTLS := 0, 0
	p.tlsW = cellWidths(nil, tlsHeader)
	err = src.tls(func(c *TLSJSON) error {
		totalTLS++
		if !p.keepTLS(c) {
			return nil
		}
		keptTLS++
		if v.Limit > 0 && keptTLS > v.Limit {
			return nil
		}
		p.shownTLS++
		if c.Outcome != tlsaudit.OutcomeEstablished && c.Outcome != tlsaudit.OutcomeIncomplete {
			p.failed++
		}
		p.tlsW = cellWidths(p.tlsW, tlsRow(c))
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.hints = append([]string(nil), src.hints...)
	if v.OnlyFindings || v.Number != "" || !v.Since.IsZero() || !v.Until.IsZero() {
		p.hints = append(p.hints, fmt.Sprintf("This report shows %d of %d calls, %d of %d TLS connections and %d of %d findings (%s).",
			keptCalls, totalCalls, keptTLS, totalTLS, len(p.findings), len(src.findings), v.flags()))
	}
	if v.Limit > 0 {
		if keptCalls > v.Limit {
			p.hints = append(p.hints, fmt.Sprintf("The calls table shows the first %d of %d calls (--limit).", v.Limit, keptCalls))
		}
		if keptTLS > v.Limit {
			p.hints = append(p.hints, fmt.Sprintf("The TLS table shows the first %d of %d connections (--limit).", v.Limit, keptTLS))
		}
	}
	return p, nil
}

// eachCall and eachTLS walk the rows the plan keeps, up to --limit.
func (p *textPlan) eachCall(f func(*CallJSON) error) error {
	n := 0
	return p.src.calls(func(c *CallJSON) error {
		if n >= p.shownCalls || !p.keepCall(c) {
			return nil
		}
		n++
		return f(c)
	})
}

func (p *textPlan) eachTLS(f func(*TLSJSON) error) error {
	n := 0
	return p.src.tls(func(c *TLSJSON) error {
		if n >= p.shownTLS || !p.keepTLS(c) {
			return nil
		}
		n++
		return f(c)
	})
}

// summaryLine is Report.SummaryLine of what the plan shows.
func (p *textPlan) summaryLine() string {
	sev := map[finding.Severity]int{}
	for _, f := range p.findings {
		sev[f.Severity]++
	}
	st := p.src.stats
	read := fmt.Sprintf("%d packets over %s", st.Packets, Span(st.Seconds))
	if n := st.Extra["log_lines"]; n > 0 {
		read += fmt.Sprintf(" and %d SBC log lines", n)
	}
	return fmt.Sprintf("%s: %d SIP messages in %d Call-IDs (%d answered, %d with Microsoft); "+
		"%d TLS connections (%d failed); findings: %d critical, %d warning, %d info%s.",
		read, st.SIPMessages, p.shownCalls, p.answered, p.microsoft,
		p.shownTLS, p.failed, sev[finding.Critical], sev[finding.Warning], sev[finding.Info], foldNote(p.findings))
}

var (
	callsHeader = []string{"  START", "KIND", "FROM", "TO", "ANSWERED", "DURATION", "REFERS", "ENDED BY", "END", "MSGS", "CALL-ID"}
	tlsHeader   = []string{"  START", "CLIENT", "SERVER", "SNI", "VERSION", "CERTIFICATE", "OUTCOME", "MS", "MICROSOFT"}
)

// callRow is a call's cells in the calls table.
func callRow(c *CallJSON) []string {
	dur := "-"
	if c.Answered && c.End != nil {
		dur = fmt.Sprintf("%.1fs", c.DurationS)
	}
	return []string{"  " + time.Time(c.Start).Format("2006-01-02 15:04:05.000"), c.Kind, dash(c.From), dash(c.To), yesNo(c.Answered),
		dur, strconv.Itoa(c.ReferCount), dash(c.EndedBy), dash(c.EndReason), strconv.Itoa(c.Messages), c.CallID}
}

// tlsRow is a connection's cells in the TLS table.
func tlsRow(c *TLSJSON) []string {
	cert := c.CertSubject
	if cert == "" && c.CertEncrypted {
		cert = "(encrypted, TLS 1.3)"
	}
	outcome := c.Outcome
	if c.Alert != "" {
		outcome += ": " + c.Alert
	}
	if len(c.Warnings) > 0 {
		outcome += " (warning " + strings.Join(c.Warnings, ", ") + ")"
	}
	return []string{"  " + time.Time(c.Start).Format("15:04:05.000"), c.Client, c.Server, dash(c.SNI), dash(c.Version),
		dash(cert), outcome, fmt.Sprintf("%.1f", c.DurationMS), yesNo(c.FromMicrosoft)}
}

// tablePad is the gap between columns.
const tablePad = 2

// cellWidths widens w (the columns' widths in runes) to fit row.
func cellWidths(w []int, row []string) []int {
	if w == nil {
		w = make([]int, len(row))
	}
	for i, c := range row {
		w[i] = max(w[i], runeLen(c))
	}
	return w
}

// tableWidth is the widest line of a table with these column widths:
// as text/tabwriter lays it out, every column but the last padded.
func tableWidth(w []int) int {
	n := 0
	for i, x := range w {
		n += x
		if i < len(w)-1 {
			n += tablePad
		}
	}
	return n
}

// writeRow writes one row as text/tabwriter (padding 2, spaces) would
// with the widths of the whole column known beforehand.
func writeRow(ew *errWriter, w []int, row []string) {
	var b strings.Builder
	for i, c := range row {
		b.WriteString(c)
		if i < len(row)-1 {
			b.WriteString(strings.Repeat(" ", w[i]+tablePad-runeLen(c)))
		}
	}
	b.WriteByte('\n')
	_, _ = ew.Write([]byte(b.String()))
}

// writeText writes the text report of what the plan keeps; width 0 is
// WriteText's layout, more is WriteTextWidth's.
func (p *textPlan) writeText(w io.Writer, width int) error {
	if width > 0 {
		width = max(width, 40)
	}
	ew := &errWriter{w: w}
	// The head (summary, warnings, verdicts, hints) grows with the
	// findings only: laid out in memory, then fitted line by line.
	var head bytes.Buffer
	hw := &errWriter{w: &head}
	hw.printf("%s\n", p.summaryLine())
	for _, w := range p.src.warnings {
		hw.printf("Warning: %s\n", w)
	}
	hw.printf("\n")
	if len(p.findings) == 0 {
		hw.printf("No findings.\n")
	} else {
		hw.printf("Verdicts (most severe first; a root cause with the findings it explains):\n")
		writeVerdicts(hw, p.findings)
	}
	for _, h := range p.hints {
		hw.printf("\nHint: %s\n", h)
	}
	for _, l := range strings.SplitAfter(head.String(), "\n") {
		if l != "" {
			fitLine(ew, strings.TrimSuffix(l, "\n"), width)
		}
	}
	if p.shownCalls > 0 {
		title := fmt.Sprintf("Calls (%d):", p.shownCalls)
		ew.printf("\n")
		if width > 0 && tableWidth(p.callW) > width {
			ew.printf("%s\n", title)
			layout := "15:04:05.000"
			if !p.oneDay {
				layout = "01-02 15:04:05"
			}
			num := max((width-2-len(layout)-2-3-2-4-2-9-2-12)/2, 8)
			if err := p.eachCall(func(c *CallJSON) error { narrowCall(ew, c, layout, num, width); return ew.err }); err != nil {
				return err
			}
		} else {
			fitLine(ew, title, width)
			writeRow(ew, p.callW, callsHeader)
			if err := p.eachCall(func(c *CallJSON) error { writeRow(ew, p.callW, callRow(c)); return ew.err }); err != nil {
				return err
			}
		}
	}
	if p.shownTLS > 0 {
		title := fmt.Sprintf("TLS connections (%d):", p.shownTLS)
		ew.printf("\n")
		if width > 0 && tableWidth(p.tlsW) > width {
			ew.printf("%s\n", title)
			if err := p.eachTLS(func(c *TLSJSON) error { narrowTLS(ew, c, width); return ew.err }); err != nil {
				return err
			}
		} else {
			fitLine(ew, title, width)
			writeRow(ew, p.tlsW, tlsHeader)
			if err := p.eachTLS(func(c *TLSJSON) error { writeRow(ew, p.tlsW, tlsRow(c)); return ew.err }); err != nil {
				return err
			}
		}
	}
	return ew.err
}

// fitLine writes one line of the text report fitted to width (0: as
// is): a verdict puts its rule on one line and its words under it, other
// long lines wrap at spaces with a hanging indent.
func fitLine(ew *errWriter, l string, width int) {
	if width <= 0 || runeLen(l) <= width {
		ew.printf("%s\n", l)
		return
	}
	if m := verdictLineRE.FindStringSubmatch(l); m != nil {
		ew.printf("  %s %s\n", strings.Join(strings.Fields(m[1]), " "), m[2])
		wrap(ew, m[3], "      ", "      ", width)
		return
	}
	indent := l[:len(l)-len(strings.TrimLeft(l, " "))]
	wrap(ew, strings.TrimLeft(l, " "), indent, indent+"  ", width)
}

// writeCSV writes the calls table of what the plan keeps as CSV with
// the rules of the kept findings about each call.
func (p *textPlan) writeCSV(w io.Writer) error {
	rules := map[string][]string{}
	count := map[string]int{}
	for _, f := range p.findings {
		if f.CallID == "" {
			continue
		}
		count[f.CallID]++
		if !slices.Contains(rules[f.CallID], f.Rule) {
			rules[f.CallID] = append(rules[f.CallID], f.Rule)
		}
	}
	cw := csv.NewWriter(w)
	_ = cw.Write(callsCSVHeader)
	err := p.eachCall(func(c *CallJSON) error {
		talk, status, q850 := "", "", ""
		if c.Answered && c.End != nil {
			talk = strconv.FormatFloat(c.DurationS, 'f', 3, 64)
		}
		if c.FinalStatus != 0 {
			status = strconv.Itoa(c.FinalStatus)
		}
		if c.Q850Cause != 0 {
			q850 = strconv.Itoa(c.Q850Cause)
		}
		rs := rules[c.CallID]
		sort.Strings(rs)
		_ = cw.Write([]string{time.Time(c.Start).UTC().Format("2006-01-02 15:04:05.000"), c.Kind, c.From, c.To,
			strconv.FormatBool(c.Answered), status, talk, strconv.Itoa(c.ReferCount), c.EndedBy, c.EndReason, q850,
			strconv.Itoa(c.Messages), strconv.FormatBool(c.Microsoft), strconv.Itoa(count[c.CallID]), strings.Join(rs, " "), c.CallID})
		return cw.Error()
	})
	if err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

// textSrc walks the spool: each walk merges the runs again and decodes
// one row at a time.
func (s *Spool) textSrc(st Stats, hints, warnings []string) (*textSrc, error) {
	src := &textSrc{stats: st, hints: hints, warnings: warnings}
	src.calls = func(f func(*CallJSON) error) error {
		return s.each(kindCall, func(r *spoolRec) error {
			var v CallJSON
			if err := json.Unmarshal(r.data, &v); err != nil {
				return fmt.Errorf("report: spool: %w", err)
			}
			return f(&v)
		})
	}
	src.tls = func(f func(*TLSJSON) error) error {
		return s.each(kindTLS, func(r *spoolRec) error {
			var v TLSJSON
			if err := json.Unmarshal(r.data, &v); err != nil {
				return fmt.Errorf("report: spool: %w", err)
			}
			return f(&v)
		})
	}
	src.findings = []*finding.Finding{}
	err := s.findings(func(f *finding.Finding) error {
		// Held until the end: only what the verdicts, the filters and
		// the CSV read (no evidence, one shared copy of each advice).
		c := *f
		c.Evidence, c.Key, c.Source = nil, "", ""
		if a := finding.Advice(c.Rule); c.Advice == a {
			c.Advice = a
		}
		src.findings = append(src.findings, &c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("report: spool: %w", err)
	}
	return src, nil
}

// WriteText writes the text report of v at width (0: unwrapped), as
// Report.Filter(v).WriteTextWidth(w, width) would, in two passes over
// the spooled calls and TLS connections (one to count and measure the
// columns, one to print): memory grows with the findings, not with the
// calls.
func (s *Spool) WriteText(w io.Writer, v View, width int, st Stats, hints, warnings []string) error {
	src, err := s.textSrc(st, hints, warnings)
	if err != nil {
		return err
	}
	p, err := planText(src, v, false)
	if err != nil {
		return err
	}
	return p.writeText(w, width)
}

// WriteCallsCSV writes the calls table of v as CSV, as
// Report.Filter(v).WriteCallsCSV(w) would, in two passes over the
// spooled calls.
func (s *Spool) WriteCallsCSV(w io.Writer, v View, st Stats, hints, warnings []string) error {
	src, err := s.textSrc(st, hints, warnings)
	if err != nil {
		return err
	}
	p, err := planText(src, v, false)
	if err != nil {
		return err
	}
	return p.writeCSV(w)
}
