package web

import (
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/store"
)

// searchParams are the query parameters of /calls and /calls.csv, in
// the order the form shows them.
var searchParams = []string{"number", "from", "to", "sbc", "kind", "rule", "severity", "answered",
	"min", "max", "status", "limit", "after"}

// searchForm is the form's state: what the user typed (to show it
// again) and the store query it means.
type searchForm struct {
	Number, From, To, SBC, Kind, Rule, Severity, Answered, Min, Max, Status, Limit string
	Q                                                                              store.CallSearch
}

// defaultPageSize is the rows a result page shows unless limit says.
const defaultPageSize = 50

// parseSearch reads the search from the URL; the error is one sentence
// for the user.
func parseSearch(v url.Values) (searchForm, error) {
	for k := range v {
		if !contains(searchParams, k) {
			return searchForm{}, fmt.Errorf("unknown query parameter %q (known: %s)", k, strings.Join(searchParams, ", "))
		}
	}
	g := func(k string) string { return strings.TrimSpace(v.Get(k)) }
	f := searchForm{Number: g("number"), From: g("from"), To: g("to"), SBC: g("sbc"), Kind: g("kind"),
		Rule: g("rule"), Severity: g("severity"), Answered: g("answered"), Min: g("min"), Max: g("max"),
		Status: g("status"), Limit: g("limit")}
	if !v.Has("kind") {
		f.Kind = "invite" // calls, not OPTIONS pings, unless asked
	}
	q := store.CallSearch{Number: f.Number, SBC: f.SBC, Rule: f.Rule, Cursor: g("after"), Limit: defaultPageSize}
	if f.Kind != "any" {
		q.Kind = f.Kind
	}
	var err error
	if q.From, err = parseWhen("from", f.From); err != nil {
		return f, err
	}
	if q.To, err = parseWhen("to", f.To); err != nil {
		return f, err
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return f, errors.New("the time range ends before it starts")
	}
	switch f.Severity {
	case "", "critical", "warning", "info":
		q.Severity = f.Severity
	default:
		return f, fmt.Errorf("severity %q: use critical, warning or info", f.Severity)
	}
	switch f.Answered {
	case "":
	case "yes", "no":
		b := f.Answered == "yes"
		q.Answered = &b
	default:
		return f, fmt.Errorf("answered %q: use yes or no", f.Answered)
	}
	if q.MinTalk, err = parseSpan("min", f.Min); err != nil {
		return f, err
	}
	if q.MaxTalk, err = parseSpan("max", f.Max); err != nil {
		return f, err
	}
	if s := strings.ToLower(strings.TrimSuffix(strings.ToLower(f.Status), "xx")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || !(n >= 1 && n <= 6 || n >= 100 && n <= 699) {
			return f, fmt.Errorf("final response %q: use a SIP status such as 486 or a class such as 4xx", f.Status)
		}
		q.FinalStatus = n
	}
	if f.Limit != "" {
		n, err := strconv.Atoi(f.Limit)
		if err != nil || n < 1 || n > store.MaxLimit {
			return f, fmt.Errorf("limit %q: use a number from 1 to %d", f.Limit, store.MaxLimit)
		}
		q.Limit = n
	}
	if q.Number != "" && strings.Trim(q.Number, "0+ -()/.") == "" {
		return f, fmt.Errorf("number %q: type some digits of the number", f.Number)
	}
	f.Q = q
	return f, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// whenLayouts are the times the form takes, read as UTC.
var whenLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02"}

// parseWhen reads a time: RFC 3339, a datetime-local value or a date
// (UTC), or a span back from now such as "2h" or "3d".
func parseWhen(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, l := range whenLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	if d, err := parseSpan(name, strings.TrimPrefix(s, "-")); err == nil {
		return time.Now().Add(-d).Truncate(time.Second), nil
	}
	return time.Time{}, fmt.Errorf("%s %q: use a time such as 2026-03-02 09:55 (UTC) or a span back from now such as 2h or 3d", name, s)
}

// parseSpan reads a Go duration or a number of days ("3d"); a bare
// number is seconds.
func parseSpan(name, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil && n >= 0 {
		return time.Duration(n * float64(time.Second)), nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseFloat(d, 64); err == nil && n >= 0 {
			return time.Duration(n * 24 * float64(time.Hour)), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return d, nil
	}
	return 0, fmt.Errorf("%s %q: use a duration such as 10s, 5m or 2h", name, s)
}

// query is the search as a URL query, without the cursor: for the
// next page's link, the CSV link and a ticket.
func (f searchForm) query() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("number", f.Number)
	set("from", f.From)
	set("to", f.To)
	set("sbc", f.SBC)
	if f.Kind != "invite" {
		v.Set("kind", f.Kind)
	}
	set("rule", f.Rule)
	set("severity", f.Severity)
	set("answered", f.Answered)
	set("min", f.Min)
	set("max", f.Max)
	set("status", f.Status)
	set("limit", f.Limit)
	return v
}

type searchData struct {
	Form   searchForm
	Error  string
	Calls  []store.Call
	Next   string // URL of the next page, or ""
	CSV    string // URL of the whole result as CSV
	First  string // URL of the first page when on a later one
	Shown  int
	Filter bool // any filter set
}

func (p *Pages) handleCalls(w http.ResponseWriter, r *http.Request, _ string) {
	f, err := parseSearch(r.URL.Query())
	d := searchData{Form: f}
	if err != nil {
		d.Error = err.Error()
		p.render(w, http.StatusBadRequest, "calls.html", page{Title: "Find calls", Authed: true, Data: d})
		return
	}
	pg, err := store.SearchCalls(r.Context(), p.opts.Store.Pool(), f.Q)
	switch {
	case errors.Is(err, store.ErrBadQuery), errors.Is(err, store.ErrBadCursor), errors.Is(err, store.ErrBadLimit):
		d.Error = strings.TrimPrefix(err.Error(), "store: ")
		p.render(w, http.StatusBadRequest, "calls.html", page{Title: "Find calls", Authed: true, Data: d})
		return
	case err != nil:
		p.log.Error("search calls", "err", err)
		p.renderError(w, http.StatusServiceUnavailable, "The call search failed: the database does not answer.")
		return
	}
	q := f.query()
	d.Calls, d.Shown = pg.Items, len(pg.Items)
	d.Filter = len(q) > 0
	d.CSV = "/calls.csv"
	if len(q) > 0 {
		d.CSV += "?" + q.Encode()
	}
	if pg.NextCursor != "" {
		nq := f.query()
		nq.Set("after", pg.NextCursor)
		d.Next = "/calls?" + nq.Encode()
	}
	if f.Q.Cursor != "" {
		d.First = "/calls"
		if len(q) > 0 {
			d.First += "?" + q.Encode()
		}
	}
	p.render(w, http.StatusOK, "calls.html", page{Title: "Find calls", Authed: true, Data: d})
}

// maxCSVRows bounds one CSV export.
const maxCSVRows = 100000

// csvHeader is the CSV export's columns.
var csvHeader = []string{"start_utc", "sbc", "kind", "from", "to", "answered", "final_status", "talk_s",
	"ended_by", "end_reason", "q850", "refers", "findings", "rules", "call_id", "page"}

func (p *Pages) handleCallsCSV(w http.ResponseWriter, r *http.Request, _ string) {
	f, err := parseSearch(r.URL.Query())
	if err != nil {
		p.renderError(w, http.StatusBadRequest, err.Error())
		return
	}
	q := f.Q
	q.Limit = store.MaxLimit
	if f.Limit != "" {
		q.Limit = f.Q.Limit
	}
	first, err := store.SearchCalls(r.Context(), p.opts.Store.Pool(), q)
	if err != nil {
		if errors.Is(err, store.ErrBadQuery) || errors.Is(err, store.ErrBadCursor) {
			p.renderError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "store: "))
			return
		}
		p.log.Error("search calls", "err", err)
		p.renderError(w, http.StatusServiceUnavailable, "The call search failed: the database does not answer.")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="sbcwatch-calls-`+time.Now().UTC().Format("20060102-150405")+`.csv"`)
	cw := csv.NewWriter(w)
	_ = cw.Write(csvHeader)
	pg, n := first, 0
	for {
		for _, c := range pg.Items {
			_ = cw.Write(callCSV(c))
			n++
		}
		// An explicit limit is one page; else the whole result.
		if pg.NextCursor == "" || f.Limit != "" || n >= maxCSVRows {
			break
		}
		q.Cursor = pg.NextCursor
		if pg, err = store.SearchCalls(r.Context(), p.opts.Store.Pool(), q); err != nil {
			p.log.Error("search calls: csv", "err", err, "rows", n)
			_ = cw.Write([]string{"# export cut short: " + err.Error()})
			break
		}
	}
	cw.Flush()
}

func callCSV(c store.Call) []string {
	talk := ""
	if c.Answered {
		talk = strconv.FormatFloat(c.DurationS, 'f', 1, 64)
	}
	status := ""
	if c.FinalStatus != 0 {
		status = strconv.Itoa(c.FinalStatus)
	}
	q850 := ""
	if c.Q850Cause != 0 {
		q850 = strconv.Itoa(c.Q850Cause)
	}
	return []string{c.Start.UTC().Format("2006-01-02 15:04:05.000"), c.SBC, c.Kind, csvSafe(c.From), csvSafe(c.To),
		strconv.FormatBool(c.Answered), status, talk, c.EndedBy, csvSafe(c.EndReason), q850,
		strconv.Itoa(c.ReferCount), strconv.Itoa(c.FindingCount), strings.Join(c.Rules, " "), csvSafe(c.CallID),
		CallPath(c.CallID, c.SBC)}
}

// csvSafe keeps a spreadsheet from reading a cell as a formula ("+49…"
// would be one, and so would "=cmd|…" in a hostile From header).
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
