package web

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/store"
)

// Ladder geometry, in SVG user units (pixels at 100 %).
const (
	ladderLeft   = 200 // time labels live left of this
	laneTop      = 18  // lane titles
	firstRow     = 96  // y of the first event
	rowHeight    = 38
	gapExtra     = 26 // extra room where time jumps
	gapThreshold = 2 * time.Second
	laneMargin   = 130 // from ladderLeft to the first lifeline
)

// DefaultLadderSteps bounds the rows the ladder draws, SIP messages and
// TLS connections together, so that a call of thousands of messages or
// hours does not make an unbounded SVG (Options.LadderSteps overrides
// it). A longer call draws its TLS connections (the failed ones first)
// in up to half the rows, then its first and its last SIP messages; each
// run of events left out is one row saying how many, and the page says
// how many in all. The evidence bundle has every one.
const DefaultLadderSteps = 500

// ladder is the laid-out SVG of a call: lifelines, message arrows and
// TLS attempts, all with coordinates computed here so the template only
// places them.
type ladder struct {
	Width, Height int
	LifelineTop   int
	Lanes         []lane
	Msgs          []arrow
	TLS           []arrow
	Gaps          []gap
	// Skips are the rows standing for events left out.
	Skips []gap
	// OmittedMsgs and OmittedTLS count the events not drawn.
	OmittedMsgs, OmittedTLS int
	// drawnMsgs and drawnTLS are the indexes in the evidence's Messages
	// and TLS of the events drawn.
	drawnMsgs, drawnTLS map[int]bool
}

type lane struct {
	X     int
	Role  string // "SBC", "Microsoft", "Peer"
	Addr  string
	Class string
}

// arrow is one event: a SIP message or a TLS connection.
type arrow struct {
	Index      int
	X1, X2, Y  int
	LabelX     int
	LabelY     int
	Label      string
	Time       string // absolute, left column
	Rel        string // offset from the first event
	Title      string // tooltip
	Class      string
	Self       bool   // from and to on the same lifeline
	SelfPath   string // its loop
	Connection string
	BandX      int
	BandW      int
}

type gap struct {
	Y     int
	Label string
	X2    int
}

type event struct {
	t   time.Time
	msg *store.Message
	tls *store.TLSConn
	seq int
}

// pickEnds returns the first (keep+1)/2 and the last keep/2 of idx.
func pickEnds(idx []int, keep int) []int {
	if keep >= len(idx) {
		return idx
	}
	if keep <= 0 {
		return nil
	}
	head := (keep + 1) / 2
	return append(slices.Clone(idx[:head]), idx[len(idx)-(keep-head):]...)
}

// selectRows tells which of evs (in time order) the ladder draws: all of
// them when they fit in limit rows. Else the TLS connections, which are
// what the page is about, get up to half the rows (or whatever the
// messages leave), the failed ones before the established ones; the
// messages get the rest, split between the call's first and its last
// messages (its set-up and its end, where failures show).
func selectRows(evs []event, limit int) []bool {
	draw := make([]bool, len(evs))
	if len(evs) <= limit {
		for i := range draw {
			draw[i] = true
		}
		return draw
	}
	var msgs, failed, ok []int
	for i, e := range evs {
		switch {
		case e.msg != nil:
			msgs = append(msgs, i)
		case e.tls.Failed():
			failed = append(failed, i)
		default:
			ok = append(ok, i)
		}
	}
	tlsRows := min(len(failed)+len(ok), max(limit/2, limit-len(msgs)))
	mark := func(idx []int) {
		for _, i := range idx {
			draw[i] = true
		}
	}
	f := pickEnds(failed, tlsRows)
	mark(f)
	mark(pickEnds(ok, tlsRows-len(f)))
	mark(pickEnds(msgs, limit-tlsRows))
	return draw
}

// skipped counts a run of events left out of the ladder.
type skipped struct {
	msgs, tls int
	from, to  time.Time
}

func (s *skipped) add(e event) {
	if s.msgs+s.tls == 0 {
		s.from = e.t
	}
	s.to = e.t
	if e.msg != nil {
		s.msgs++
	} else {
		s.tls++
	}
}

func (s *skipped) label() string {
	var what string
	switch {
	case s.msgs > 0 && s.tls > 0:
		what = plural(s.msgs, "SIP message") + " and " + plural(s.tls, "TLS connection")
	case s.msgs > 0:
		what = plural(s.msgs, "SIP message")
	default:
		what = plural(s.tls, "TLS connection")
	}
	span := s.from.UTC().Format("15:04:05.000")
	if s.to.After(s.from) {
		span += " to " + s.to.UTC().Format("15:04:05.000") + ", " + roundDur(s.to.Sub(s.from))
	}
	return fmt.Sprintf("%s not drawn (%s); the evidence bundle has them", what, span)
}

// plural is "1 SIP message", "1\u00a0234 SIP messages".
func plural(n int, noun string) string { return groupDigits(n) + " " + pluralNoun(n, noun) }

// groupDigits writes n with its thousands apart (no-break spaces), as in
// "1\u00a0234".
func groupDigits(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteRune('\u00a0')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// layoutLadder lays out at most limit rows of events (see
// DefaultLadderSteps).
func layoutLadder(ev *evidence, limit int) *ladder {
	var evs []event
	for i := range ev.Messages {
		evs = append(evs, event{t: ev.Messages[i].Time, msg: &ev.Messages[i], seq: i})
	}
	for i := range ev.TLS {
		evs = append(evs, event{t: ev.TLS[i].FirstSeen, tls: &ev.TLS[i], seq: len(ev.Messages) + i})
	}
	slices.SortStableFunc(evs, func(a, b event) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return a.seq - b.seq
	})

	// Lanes: who is the SBC, who is Microsoft, the rest are peers
	// (carrier, PBX). Peers left, SBC in the middle, Microsoft right.
	sbcHosts := map[string]bool{}
	msHosts := map[string]bool{}
	if ev.Call.SBCSide != "" {
		sbcHosts[host(ev.Call.SBCSide)] = true
	}
	if ev.Call.MicrosoftIP != "" {
		msHosts[host(ev.Call.MicrosoftIP)] = true
	}
	for _, c := range ev.TLS {
		if c.FromMicrosoft {
			msHosts[host(c.Client)] = true
			sbcHosts[host(c.Server)] = true
		}
		if c.ToMicrosoft {
			msHosts[host(c.Server)] = true
			sbcHosts[host(c.Client)] = true
		}
	}
	var order []string
	seen := map[string]bool{}
	add := func(a string) {
		h := host(a)
		if h != "" && !seen[h] {
			seen[h] = true
			order = append(order, h)
		}
	}
	draw := selectRows(evs, limit)
	for i, e := range evs {
		if !draw[i] {
			continue // no lane for hosts only left-out events have
		}
		if e.msg != nil {
			add(e.msg.Src)
			add(e.msg.Dst)
		} else {
			add(e.tls.Client)
			add(e.tls.Server)
		}
	}
	rank := func(h string) int {
		switch {
		case sbcHosts[h] && !msHosts[h]:
			return 1
		case msHosts[h]:
			return 2
		}
		return 0
	}
	slices.SortStableFunc(order, func(a, b string) int { return rank(a) - rank(b) })

	l := &ladder{LifelineTop: laneTop + 44}
	spacing := 360
	if n := len(order); n > 3 {
		spacing = max(230, 800/(n-1))
	}
	x := map[string]int{}
	for i, h := range order {
		ln := lane{X: ladderLeft + laneMargin + i*spacing, Addr: h}
		switch rank(h) {
		case 1:
			ln.Role, ln.Class = "SBC", "lane-sbc"
		case 2:
			ln.Role, ln.Class = "Microsoft", "lane-ms"
		default:
			ln.Role, ln.Class = "Peer", "lane-peer"
		}
		x[h] = ln.X
		l.Lanes = append(l.Lanes, ln)
	}
	right := ladderLeft + laneMargin
	if len(l.Lanes) > 0 {
		right = l.Lanes[len(l.Lanes)-1].X
	}
	l.Width = right + laneMargin + 40

	l.drawnMsgs, l.drawnTLS = map[int]bool{}, map[int]bool{}
	y := firstRow
	placed := false // a row is at y
	var t0, prev time.Time
	if len(evs) > 0 {
		t0 = evs[0].t
	}
	var skip skipped
	// skipRow places the row standing for the run of events left out.
	skipRow := func() {
		if placed {
			y += rowHeight
		}
		l.Skips = append(l.Skips, gap{Y: y, Label: skip.label(), X2: l.Width - 10})
		l.OmittedMsgs += skip.msgs
		l.OmittedTLS += skip.tls
		skip = skipped{}
		placed = true
	}
	for i, e := range evs {
		if !draw[i] {
			skip.add(e)
			continue
		}
		switch {
		case skip.msgs+skip.tls > 0:
			skipRow()
			y += rowHeight
		case placed:
			if d := e.t.Sub(prev); d >= gapThreshold {
				l.Gaps = append(l.Gaps, gap{Y: y + (rowHeight+gapExtra)/2, Label: fmt.Sprintf("%s later", roundDur(d)), X2: l.Width - 10})
				y += gapExtra
			}
			y += rowHeight
		}
		placed = true
		prev = e.t
		if e.msg != nil {
			l.drawnMsgs[e.seq] = true
		} else {
			l.drawnTLS[e.seq-len(ev.Messages)] = true
		}
		a := arrow{Index: i, Y: y, Time: e.t.UTC().Format("15:04:05.000"),
			Rel: "+" + fmt.Sprintf("%.3f s", e.t.Sub(t0).Seconds())}
		var from, to string
		if e.msg != nil {
			m := e.msg
			from, to = host(m.Src), host(m.Dst)
			a.Label = msgLabel(*m)
			a.Class = "msg"
			if !m.IsRequest && m.Status >= 300 {
				a.Class += " msg-error"
			}
			a.Title = fmt.Sprintf("%s → %s (%s) %s", m.Src, m.Dst, m.Transport, m.Time.UTC().Format(time.RFC3339Nano))
		} else {
			c := e.tls
			from, to = host(c.Client), host(c.Server)
			a.Label = tlsLabel(*c)
			a.Connection = c.ConnID
			a.Class = "tls"
			if c.Failed() {
				a.Class += " tls-failed"
			} else {
				a.Class += " tls-ok"
			}
			a.Title = fmt.Sprintf("%s → %s SNI %q %s %s sha256:%s", c.Client, c.Server, c.SNI, c.Version, c.Outcome, c.Fingerprint)
		}
		a.X1, a.X2 = x[from], x[to]
		if a.X1 == a.X2 {
			a.Self = true
			a.SelfPath = fmt.Sprintf("M%d,%d h50 v14 h-46", a.X1, y-7)
			a.LabelX = a.X1 + 60
		} else {
			a.LabelX = (a.X1 + a.X2) / 2
		}
		a.LabelY = y - 7
		a.BandX = ladderLeft
		a.BandW = l.Width - ladderLeft
		if e.msg != nil {
			l.Msgs = append(l.Msgs, a)
		} else {
			l.TLS = append(l.TLS, a)
		}
	}
	if skip.msgs+skip.tls > 0 {
		skipRow()
	}
	l.Height = y + 40
	if !placed {
		l.Height = firstRow + 20
	}
	return l
}

func msgLabel(m store.Message) string {
	if m.IsRequest {
		return fmt.Sprintf("%s (CSeq %d)", m.Method, m.CSeq)
	}
	s := fmt.Sprint(m.Status)
	if m.Reason != "" {
		s += " " + m.Reason
	}
	return fmt.Sprintf("%s (CSeq %d %s)", s, m.CSeq, m.CSeqMethod)
}

func roundDur(d time.Duration) string {
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}
