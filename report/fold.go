package report

import (
	"fmt"
	"strings"

	"github.com/sbcwatch/sbcwatch/finding"
)

// maxFoldedIDs caps the ids listed per rule on a "+ N supporting
// findings" line.
const maxFoldedIDs = 8

// writeVerdicts writes the findings root cause first: each finding that
// explains others (finding.Fold) with its advice and one "+ N supporting
// findings" line naming them by the ids the JSON carries; then the
// findings nothing explains, at most maxPerRule per rule, each rule's
// advice once. Findings a root cause explains are not listed again.
func writeVerdicts(ew *errWriter, fs []*finding.Finding) {
	byID := make(map[string]*finding.Finding, len(fs))
	idw := 2
	for _, f := range fs {
		byID[f.ID] = f
		idw = max(idw, len(f.ID))
	}
	line := func(f *finding.Finding) {
		ew.printf("  %-*s %-8s %-24s %s\n", idw, f.ID, strings.ToUpper(string(f.Severity)), f.Rule, f.Summary)
	}
	pad := strings.Repeat(" ", idw+3)
	advised := map[string]bool{}
	advice := func(f *finding.Finding) {
		a := f.Advice
		if a == "" {
			a = finding.Advice(f.Rule)
		}
		if a != "" && !advised[f.Rule] {
			advised[f.Rule] = true
			ew.printf("%sAdvice: %s\n", pad, a)
		}
	}
	// A filtered report (View) may lack some findings: fold only under a
	// root cause that is there, and name only the findings that are.
	explains := func(f *finding.Finding) []string {
		var out []string
		for _, id := range f.Explains {
			if byID[id] != nil {
				out = append(out, id)
			}
		}
		return out
	}
	isRoot := func(f *finding.Finding) bool { return f.CausedBy == "" && len(explains(f)) > 0 }
	for _, f := range fs {
		if !isRoot(f) {
			continue
		}
		ex := explains(f)
		line(f)
		advice(f)
		ew.printf("%s+ %d supporting finding%s: %s\n", pad, len(ex), plural(len(ex)), supporting(ex, byID))
	}
	shown := map[string]int{}
	hidden := map[string]int{}
	for _, f := range fs {
		if isRoot(f) {
			continue
		}
		if f.CausedBy != "" && byID[f.CausedBy] != nil {
			continue
		}
		if shown[f.Rule] >= maxPerRule {
			hidden[f.Rule]++
			continue
		}
		shown[f.Rule]++
		line(f)
		advice(f)
	}
	for _, rule := range sortedKeys(hidden) {
		ew.printf("  %-*s %-8s %-24s … and %d more (see --format json)\n", idw, "", "", rule, hidden[rule])
	}
}

// supporting names the findings ids by rule, in order of first mention:
// "tls_cert_untrusted F1, 4× tls_handshake_failed F4 F5 F6 F7".
func supporting(ids []string, byID map[string]*finding.Finding) string {
	var order []string
	per := map[string][]string{}
	for _, id := range ids {
		rule := "?"
		if f := byID[id]; f != nil {
			rule = f.Rule
		}
		if per[rule] == nil {
			order = append(order, rule)
		}
		per[rule] = append(per[rule], id)
	}
	parts := make([]string, 0, len(order))
	for _, rule := range order {
		l := per[rule]
		list := l
		if len(list) > maxFoldedIDs {
			list = list[:maxFoldedIDs]
		}
		s := strings.Join(list, " ")
		if len(list) < len(l) {
			s += " …"
		}
		if len(l) > 1 {
			parts = append(parts, fmt.Sprintf("%d× %s %s", len(l), rule, s))
		} else {
			parts = append(parts, rule+" "+s)
		}
	}
	return strings.Join(parts, ", ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// foldNote is the summary line's " (1 root cause explains 8)", or "" when
// no finding explains another.
func foldNote(fs []*finding.Finding) string {
	roots, explained := 0, 0
	for _, f := range fs {
		if f.CausedBy == "" && len(f.Explains) > 0 {
			roots++
		} else if f.CausedBy != "" {
			explained++
		}
	}
	if roots == 0 || explained == 0 {
		return ""
	}
	if roots == 1 {
		return fmt.Sprintf(" (1 root cause explains %d)", explained)
	}
	return fmt.Sprintf(" (%d root causes explain %d)", roots, explained)
}
