package report

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// WriteJSON writes the report as one JSON object (the analyze contract).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// maxPerRule caps how many findings of one rule the text report lists.
const maxPerRule = 10

// WriteText writes the human report: a summary line, the verdicts most
// severe first, hints, a calls table and a TLS table.
func (r *Report) WriteText(w io.Writer) error { return r.WriteTextWidth(w, 0) }

// SummaryLine is one line: what was read and what was found.
func (r *Report) SummaryLine() string {
	ms, answered := 0, 0
	for _, c := range r.Calls {
		if c.Microsoft {
			ms++
		}
		if c.Answered {
			answered++
		}
	}
	failed := 0
	for _, c := range r.TLS {
		if c.Outcome != tlsaudit.OutcomeEstablished && c.Outcome != tlsaudit.OutcomeIncomplete {
			failed++
		}
	}
	sev := map[finding.Severity]int{}
	for _, f := range r.Findings {
		sev[f.Severity]++
	}
	folded := foldNote(r.Findings)
	read := fmt.Sprintf("%d packets over %s", r.Stats.Packets, Span(r.Stats.Seconds))
	if n := r.Stats.Extra["log_lines"]; n > 0 {
		read += fmt.Sprintf(" and %d SBC log lines", n)
	}
	return fmt.Sprintf("%s: %d SIP messages in %d Call-IDs (%d answered, %d with Microsoft); "+
		"%d TLS connections (%d failed); findings: %d critical, %d warning, %d info%s.",
		read, r.Stats.SIPMessages, len(r.Calls), answered, ms,
		len(r.TLS), failed, sev[finding.Critical], sev[finding.Warning], sev[finding.Info], folded)
}

// WriteLadder writes a text ladder of one call: every message kept, with
// the TLS connections that touched the call's SBC side or its Microsoft
// peer drawn between them at their times, and the call's findings.
func (r *Report) WriteLadder(w io.Writer, callID string) error {
	return r.WriteLadderWidth(w, callID, 0)
}

// ladderRow is one line of a call's ladder: a message or a TLS attempt.
type ladderRow struct {
	t               time.Time
	src, arrow, dst string
	via, label      string
	extra           string
}

// WriteLadderWidth writes the ladder of WriteLadder fitted to width
// columns: each step on two lines (time and addresses, then transport,
// label and details wrapped under them) and the findings wrapped. A
// width below 40 is taken as 40; 0 means one line per step, unlimited.
func (r *Report) WriteLadderWidth(w io.Writer, callID string, width int) error {
	l, err := r.ladder(callID)
	if err != nil {
		return err
	}
	return l.writeText(w, width)
}

// callLadder is what a call's ladder and its JSON detail show: the call
// with its kept messages, the TLS connections RelatedConns puts on it
// (sorted as the report sorts them) and the call's findings (report
// order, report IDs). Report builds it from memory, CallSpool from a
// streaming analysis.
type callLadder struct {
	call     *sip.Call
	conns    []ladderConn
	findings []*finding.Finding
}

// ladderConn is what a ladder shows of a TLS connection, and what picks
// and sorts it.
type ladderConn struct {
	First  time.Time      `json:"t"`
	ID     string         `json:"id"`
	Client netip.AddrPort `json:"c"`
	Server netip.AddrPort `json:"s"`
	Extra  string         `json:"x"` // the ladder's details
	View   TLSJSON        `json:"v"`
}

func ladderConnOf(c *tlsaudit.Conn) ladderConn {
	cert := "no certificate seen"
	if c.Check != nil {
		cert = "served " + c.Check.Subject
		if c.Check.SelfSigned {
			cert += " (self-signed)"
		} else if !c.Check.Trusted {
			cert += " (untrusted)"
		}
	} else if c.CertEncrypted {
		cert = "certificate encrypted (TLS 1.3)"
	}
	end := c.Outcome
	if n := len(c.Alerts); n > 0 {
		end += " " + c.Alerts[n-1].Name + " from " + c.Alerts[n-1].From
	}
	return ladderConn{First: c.FirstSeen, ID: c.ID, Client: c.Client, Server: c.Server, View: ConnView(c),
		Extra: fmt.Sprintf("sni=%s; %s; %s after %.0f ms", dash(c.SNI), cert, end, float64(c.Duration.Microseconds())/1000)}
}

// ladder is the ladder of the report's call with this Call-ID.
func (r *Report) ladder(callID string) (*callLadder, error) {
	call, err := r.call(callID)
	if err != nil {
		return nil, err
	}
	l := &callLadder{call: call}
	for _, c := range RelatedConns(call, r.Conns) {
		l.conns = append(l.conns, ladderConnOf(c))
	}
	for _, f := range r.Findings {
		if f.CallID == call.CallID {
			l.findings = append(l.findings, f)
		}
	}
	return l, nil
}

func (l *callLadder) writeText(w io.Writer, width int) error {
	call := l.call
	if width > 0 {
		width = max(width, 40)
	}
	ew := &errWriter{w: w}
	v := CallView(call)
	head := fmt.Sprintf("Call-ID %s (%s) from %s to %s", call.CallID, call.Kind, dash(call.From), dash(call.To))
	sub := fmt.Sprintf("start %s", call.Start.UTC().Format(time.RFC3339Nano))
	if call.Answered {
		sub += fmt.Sprintf(", answered %s", call.Answer.UTC().Format("15:04:05.000"))
	}
	if !call.End.IsZero() {
		sub += fmt.Sprintf(", ended %s by %s (%s), %.1f s talk", call.End.UTC().Format("15:04:05.000"), dash(call.EndedBy), dash(call.EndReason), v.DurationS)
	}
	sub += fmt.Sprintf("; %d messages, %d REFER", call.MessageCount, len(call.Refers))
	if width > 0 {
		wrap(ew, head, "", "  ", width)
		wrap(ew, sub, "", "  ", width)
		ew.printf("\n")
	} else {
		ew.printf("%s\n%s\n\n", head, sub)
	}

	var rows []ladderRow
	for _, m := range call.Messages {
		var extra []string
		if m.CSeq != 0 {
			extra = append(extra, fmt.Sprintf("CSeq %d %s", m.CSeq, m.CSeqMethod))
		}
		if m.ReferTo != "" {
			extra = append(extra, "Refer-To "+m.ReferTo)
		}
		if m.ReasonHdr != "" {
			extra = append(extra, "Reason "+m.ReasonHdr)
		}
		if m.SipFrag != "" {
			extra = append(extra, "sipfrag "+m.SipFrag)
		}
		via := m.Origin
		if via == "wire" {
			via = m.Transport
		} else {
			via = m.Transport + "/" + via
		}
		rows = append(rows, ladderRow{t: m.Time, src: m.Src.String(), arrow: "->", dst: m.Dst.String(),
			via: via, label: m.Summary(), extra: strings.Join(extra, "; ")})
	}
	for _, c := range l.conns {
		rows = append(rows, ladderRow{t: c.First, src: c.Client.String(), arrow: "=>", dst: c.Server.String(),
			via: "tls", label: "new TLS connection", extra: c.Extra})
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].t.Before(rows[j].t) })
	for _, l := range rows {
		at := l.t.UTC().Format("15:04:05.000")
		if width > 0 {
			wrap(ew, fmt.Sprintf("%s %s %s", l.src, l.arrow, l.dst), at+"  ", "              ", width)
			parts := []string{l.via, l.label}
			if l.extra != "" {
				parts = append(parts, l.extra)
			}
			wrap(ew, strings.Join(parts, " · "), "    ", "      ", width)
			continue
		}
		text := fmt.Sprintf("%-21s %s %-21s %-9s %-28s %s", l.src, l.arrow, l.dst, l.via, l.label, l.extra)
		ew.printf("%s  %s\n", at, strings.TrimRight(text, " "))
	}
	if call.Truncated {
		ew.printf("(ladder truncated: %d of %d messages kept)\n", len(call.Messages), call.MessageCount)
	}
	if len(l.findings) > 0 {
		ew.printf("\nFindings:\n")
		for _, f := range l.findings {
			if width > 0 {
				ew.printf("  %s %s %s\n", f.ID, strings.ToUpper(string(f.Severity)), f.Rule)
				wrap(ew, f.Summary, "      ", "      ", width)
				continue
			}
			ew.printf("  %-4s %-8s %-24s %s\n", f.ID, strings.ToUpper(string(f.Severity)), f.Rule, f.Summary)
		}
	}
	return ew.err
}

// CallDetail is the JSON of `analyze --call ID --format json`: the call,
// its kept messages in order, the TLS connections of its ladder and its
// findings.
type CallDetail struct {
	Call     CallJSON           `json:"call"`
	Messages []LadderStep       `json:"messages"`
	TLS      []TLSJSON          `json:"tls"`
	Findings []*finding.Finding `json:"findings"`
}

// LadderStep is one message of a call's ladder.
type LadderStep struct {
	Time      finding.Time `json:"time"`
	From      string       `json:"from"`
	To        string       `json:"to"`
	Transport string       `json:"transport"`
	Origin    string       `json:"origin"`
	Label     string       `json:"label"`
	CSeq      string       `json:"cseq"`
	Reason    string       `json:"reason,omitempty"`
	ReferTo   string       `json:"refer_to,omitempty"`
	SipFrag   string       `json:"sipfrag,omitempty"`
}

// WriteCallJSON writes one call's detail as JSON.
func (r *Report) WriteCallJSON(w io.Writer, callID string) error {
	l, err := r.ladder(callID)
	if err != nil {
		return err
	}
	return l.writeJSON(w)
}

func (l *callLadder) writeJSON(w io.Writer) error {
	call := l.call
	d := CallDetail{Call: CallView(call), Messages: []LadderStep{}, TLS: []TLSJSON{}, Findings: []*finding.Finding{}}
	for _, m := range call.Messages {
		d.Messages = append(d.Messages, LadderStep{Time: finding.Time(m.Time), From: m.Src.String(), To: m.Dst.String(),
			Transport: m.Transport, Origin: m.Origin, Label: m.Summary(), CSeq: fmt.Sprintf("%d %s", m.CSeq, m.CSeqMethod),
			Reason: m.ReasonHdr, ReferTo: m.ReferTo, SipFrag: m.SipFrag})
	}
	for _, c := range l.conns {
		d.TLS = append(d.TLS, c.View)
	}
	d.Findings = append(d.Findings, l.findings...)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}

// call finds a call record by Call-ID.
func (r *Report) call(callID string) (*sip.Call, error) {
	for _, c := range r.CallRecords {
		if c.CallID == callID {
			return c, nil
		}
	}
	return nil, errNoCall(callID)
}

// errNoCall is the error of --call for a Call-ID the input lacks.
func errNoCall(callID string) error {
	return fmt.Errorf("no call with Call-ID %q in this capture", callID)
}

// RelatedConns returns the TLS connections that belong on a call's
// ladder: those between the call's start and a little after its end that
// involve the call's SBC side or its Microsoft peer.
func RelatedConns(call *sip.Call, conns []*tlsaudit.Conn) []*tlsaudit.Conn {
	end := ladderEnd(call)
	var out []*tlsaudit.Conn
	for _, c := range conns {
		if related(call, end, c.FirstSeen, c.Client.Addr(), c.Server.Addr()) {
			out = append(out, c)
		}
	}
	return out
}

// related is RelatedConns' test for one connection (first seen at first,
// between client and server); end is the call's end plus 5 s.
func related(call *sip.Call, end, first time.Time, client, server netip.Addr) bool {
	if first.Before(call.Start) || first.After(end) {
		return false
	}
	touches := func(a netip.Addr) bool { return a.IsValid() && (client == a || server == a) }
	return touches(call.SBCSide.Addr()) || (call.MicrosoftAddr.IsValid() && touches(call.MicrosoftAddr))
}

// ladderEnd is the end of the window RelatedConns looks in.
func ladderEnd(call *sip.Call) time.Time {
	end := call.End
	if end.IsZero() {
		end = call.Last
	}
	return end.Add(5 * time.Second)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, a ...any) {
	fmt.Fprintf(e, format, a...)
}
