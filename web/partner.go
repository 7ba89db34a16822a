package web

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/store"
)

// partnerSlack is how far apart in time two legs of one call may start
// and end and still be linked.
const partnerSlack = 5 * time.Second

// partnerLeg is the other leg of a call as its page shows it.
type partnerLeg struct {
	Call store.Call
	// Role is "Teams leg" or "carrier leg".
	Role string
	URL  string
	// Verdict is its most severe finding, or how it ended.
	Verdict  string
	Severity string // of Verdict: critical, warning, info or none
	// IsRoot: the call page's root cause is this leg's verdict.
	IsRoot bool
}

// legRole names a leg by its far side.
func legRole(c store.Call) string {
	if c.Microsoft {
		return "Teams leg"
	}
	return "carrier leg"
}

// partnerLegs finds the other legs of ev's call with their verdicts.
// The call page works without them: an error is logged, not shown.
func (p *Pages) partnerLegs(ctx context.Context, c store.Call) []partnerLeg {
	if p.opts.Store == nil || c.Kind != "invite" {
		return nil
	}
	db := p.opts.Store.Pool()
	calls, err := store.PartnerLegs(ctx, db, c, partnerSlack)
	if err != nil {
		p.log.Warn("call page: partner legs", "err", err)
		return nil
	}
	var out []partnerLeg
	for _, pc := range calls {
		leg := partnerLeg{Call: pc, Role: legRole(pc), URL: CallPath(pc.CallID, pc.SBC), Severity: "none"}
		fs, err := store.CallFindings(ctx, db, pc.SBC, pc.CallID)
		if err != nil {
			p.log.Warn("call page: partner findings", "err", err)
		}
		for _, f := range fs {
			if f.CallID == pc.CallID {
				leg.Verdict = fmt.Sprintf("[%s] %s: %s", f.Severity, f.Rule, f.Summary)
				leg.Severity = f.Severity
				break
			}
		}
		if leg.Verdict == "" {
			leg.Verdict = "No finding: " + howEnded(pc)
		}
		out = append(out, leg)
	}
	return out
}

// howEnded says in words how a call ended, e.g. "answered, 28.0 s talk,
// ended by the caller (BYE)".
func howEnded(c store.Call) string {
	var parts []string
	if c.Answered {
		parts = append(parts, "answered, "+report.Span(c.DurationS)+" talk")
	} else if c.FinalStatus != 0 {
		parts = append(parts, fmt.Sprintf("not answered (final response %d)", c.FinalStatus))
	} else {
		parts = append(parts, "not answered")
	}
	if c.EndedBy != "" {
		e := "ended by the " + c.EndedBy
		if c.EndReason != "" {
			e += " (" + c.EndReason + ")"
		}
		parts = append(parts, e)
	}
	if c.Q850Cause != 0 {
		parts = append(parts, fmt.Sprintf("Q.850 cause %d", c.Q850Cause))
	}
	return strings.Join(parts, ", ")
}

// rootCause is the headline of the call page.
type rootCause struct {
	Severity string
	Rule     string
	Summary  string
	Advice   string
	// Pending is the mark of a provisional root cause ("provisional —
	// settles by 09:58:07 UTC"), empty for a settled one.
	Pending string
	// Supporting counts the findings the root cause explains; Others
	// the rest; both are listed below.
	Supporting, Others int
	// Partner is set when the cause is on the partner leg.
	Partner *partnerLeg
}

// pickRootCause is the call's own most severe finding that nothing
// else explains; else the most severe finding of a partner leg; else
// nil.
func pickRootCause(ev *evidence, partners []partnerLeg) *rootCause {
	var best *store.Finding
	for i := range ev.Findings {
		f := &ev.Findings[i]
		if f.CallID != ev.Call.CallID || f.CausedBy != "" {
			continue
		}
		if best == nil || rankOf(f.Severity) < rankOf(best.Severity) {
			best = f
		}
	}
	if best != nil {
		return &rootCause{Severity: best.Severity, Rule: best.Rule, Summary: best.Summary, Pending: pendingMark(*best),
			Advice: best.Advice, Supporting: len(best.Explains), Others: max(len(ev.Findings)-1-len(best.Explains), 0)}
	}
	for i := range partners {
		if partners[i].Severity != "none" {
			partners[i].IsRoot = true
			return &rootCause{Severity: partners[i].Severity, Partner: &partners[i]}
		}
	}
	return nil
}

// partnerVerdict rewrites the "no findings" verdict of a leg whose root
// cause is on its partner, so the page does not say both.
func partnerVerdict(v []verdictLine, root *rootCause) {
	if root == nil || root.Partner == nil {
		return
	}
	for i := range v {
		if v[i].Severity == "none" {
			how := strings.TrimPrefix(v[i].Text, "No findings: ")
			v[i].Text = "No finding on this leg itself (" + strings.TrimSuffix(how, ".") + "); the root cause is on its " +
				root.Partner.Role + ", above."
		}
	}
}

// pendingMark is the visible mark of a provisional finding: "provisional
// — settles by 09:58:07 UTC" (serve decided it early; the full verdict
// confirms or retracts it then); empty for a settled one. One still
// provisional a minute past that time was never settled (serve stopped
// without deciding it) and says so.
func pendingMark(f store.Finding) string {
	if !f.Provisional {
		return ""
	}
	if f.SettlesAt == nil {
		return "provisional"
	}
	at := f.SettlesAt.UTC().Format("15:04:05")
	if time.Since(*f.SettlesAt) > time.Minute {
		return "provisional — never settled (due " + at + " UTC; serve stopped before the full verdict)"
	}
	return "provisional — settles by " + at + " UTC"
}

func rankOf(s string) int {
	switch s {
	case "critical":
		return 0
	case "warning":
		return 1
	case "info":
		return 2
	}
	return 3
}
