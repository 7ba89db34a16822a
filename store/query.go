package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
)

// Page bounds. A limit of 0 means DefaultLimit.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// ErrBadCursor is returned for a cursor this store did not hand out.
var ErrBadCursor = errors.New("store: invalid cursor")

// ErrBadLimit is returned for a limit outside 1..MaxLimit.
var ErrBadLimit = fmt.Errorf("store: limit must be between 1 and %d", MaxLimit)

// Page is one page of a keyset-paginated list. NextCursor is empty on the
// last page.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// cursor is the position after the last item of a page. It is opaque to
// clients (base64url of JSON).
type cursor struct {
	T  time.Time `json:"t"`
	ID int64     `json:"i,omitempty"`
	K  string    `json:"k,omitempty"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (*cursor, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || !utf8.Valid(b) {
		return nil, ErrBadCursor
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil || c.T.IsZero() || strings.ContainsRune(c.K, 0) {
		return nil, ErrBadCursor
	}
	return &c, nil
}

// likeEscape makes s match itself in a LIKE pattern (escape character
// backslash): a user's "%" or "_" is not a wildcard.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(s)
}

// pageArgs checks a page request's limit and decodes its cursor.
func pageArgs(limit int, cur string) (int, *cursor, error) {
	n, err := checkLimit(limit)
	if err != nil {
		return 0, nil, err
	}
	c, err := decodeCursor(cur)
	if err != nil {
		return 0, nil, err
	}
	return n, c, nil
}

// pageOf makes a page from up to limit+1 rows: the extra row only says
// that another page exists, and the last kept row gives the cursor.
func pageOf[T any](items []T, limit int, key func(T) cursor) Page[T] {
	p := Page[T]{Items: items}
	if len(items) > limit {
		p.Items = items[:limit]
		p.NextCursor = key(p.Items[limit-1]).encode()
	}
	if p.Items == nil {
		p.Items = []T{}
	}
	return p
}

func checkLimit(n int) (int, error) {
	if n == 0 {
		return DefaultLimit, nil
	}
	if n < 1 || n > MaxLimit {
		return 0, ErrBadLimit
	}
	return n, nil
}

// where builds a conjunction with numbered arguments.
type where struct {
	conds []string
	args  []any
}

// add appends a condition; each "?" in cond becomes the next $n.
func (w *where) add(cond string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		cond = strings.Replace(cond, "?", fmt.Sprintf("$%d", len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

// eq adds "col = v" when v is set.
func (w *where) eq(col, v string) {
	if v != "" {
		w.add(col+" = ?", v)
	}
}

// within adds "from <= col < to" for the bounds that are set.
func (w *where) within(col string, from, to time.Time) {
	if !from.IsZero() {
		w.add(col+" >= ?", from)
	}
	if !to.IsZero() {
		w.add(col+" < ?", to)
	}
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return "where " + strings.Join(w.conds, " and ")
}

// CallQuery selects calls. Zero fields do not filter.
type CallQuery struct {
	// Number matches the end of the caller's or the callee's digits
	// (NumberSuffix), so "+49 69 12345600", "069 12345600" and
	// "12345600" all find +496912345600.
	Number string
	// From and To select the calls active in [From, To): started before
	// To and ended (or last seen) at or after From. Calls longer than
	// MaxCallSpan are found by their start only.
	From   time.Time
	To     time.Time
	CallID string
	SBC    string
	// HasFindings keeps calls with (true) or without (false) findings.
	HasFindings *bool
	// Rule keeps calls with a finding of this rule.
	Rule   string
	Limit  int
	Cursor string
}

// Call is a stored call.
type Call struct {
	ID           int64           `json:"-" db:"id"`
	SBC          string          `json:"sbc" db:"sbc"`
	CallID       string          `json:"call_id" db:"call_id"`
	Kind         string          `json:"kind" db:"kind"`
	From         string          `json:"from" db:"from_number"`
	To           string          `json:"to" db:"to_number"`
	FromURI      string          `json:"from_uri" db:"from_uri"`
	ToURI        string          `json:"to_uri" db:"to_uri"`
	RequestURI   string          `json:"request_uri" db:"request_uri"`
	PAI          string          `json:"pai" db:"pai"`
	Caller       string          `json:"caller" db:"caller"`
	Callee       string          `json:"callee" db:"callee"`
	Start        time.Time       `json:"start" db:"start_time"`
	Answer       *time.Time      `json:"answer" db:"answer_time"`
	End          *time.Time      `json:"end" db:"end_time"`
	Last         *time.Time      `json:"last" db:"last_time"`
	DurationS    float64         `json:"duration_s" db:"duration_s"`
	Answered     bool            `json:"answered" db:"answered"`
	FinalStatus  int             `json:"final_status" db:"final_status"`
	EndedBy      string          `json:"ended_by" db:"ended_by"`
	EndReason    string          `json:"end_reason" db:"end_reason"`
	ByeReason    string          `json:"bye_reason" db:"bye_reason"`
	Q850Cause    int             `json:"q850_cause" db:"q850"`
	ReasonText   string          `json:"reason_text" db:"reason_text"`
	ReferCount   int             `json:"refer_count" db:"refer_count"`
	Invites      int             `json:"invites" db:"invites"`
	Messages     int             `json:"messages" db:"message_count"`
	Microsoft    bool            `json:"microsoft" db:"microsoft"`
	MicrosoftIP  string          `json:"microsoft_addr" db:"microsoft_addr"`
	SBCSide      string          `json:"sbc_side" db:"sbc_side"`
	SBCContact   string          `json:"sbc_contact" db:"sbc_contact"`
	SBCAllow     string          `json:"sbc_allow" db:"sbc_allow"`
	Truncated    bool            `json:"truncated" db:"truncated"`
	UserAgents   []string        `json:"user_agents" db:"user_agents"`
	Refers       json.RawMessage `json:"refers" db:"refers"`
	FindingCount int             `json:"finding_count" db:"finding_count"`
	Rules        []string        `json:"rules" db:"rules"`
	// ProvisionalRules are the rules among Rules with a finding on this
	// call that is still provisional (serve; see Finding.Provisional).
	ProvisionalRules []string `json:"provisional_rules,omitempty" db:"provisional_rules"`
}

const callSelect = `select c.id, c.sbc, c.call_id, c.kind, c.from_number, c.to_number, c.from_uri, c.to_uri,
  c.request_uri, c.pai, c.caller, c.callee, c.start_time, c.answer_time, c.end_time, c.last_time,
  coalesce(case when c.answered then extract(epoch from c.end_time - c.answer_time)::float8 end, 0) as duration_s,
  c.answered, c.final_status, c.ended_by, c.end_reason, c.bye_reason, c.q850, c.reason_text, c.refer_count,
  c.invites, c.message_count, c.microsoft, c.microsoft_addr, c.sbc_side, c.sbc_contact, c.sbc_allow,
  c.truncated, c.user_agents, c.refers,
  coalesce(fs.n, 0)::int as finding_count, coalesce(fs.rules, '{}') as rules,
  coalesce(fs.prov, '{}') as provisional_rules
from calls c
left join lateral (select count(*) as n, array_agg(distinct f.rule order by f.rule) as rules,
  array_agg(distinct f.rule order by f.rule) filter (where f.provisional) as prov
  from findings f where f.call_id = c.call_id and f.sbc = c.sbc and not f.retracted) fs on true
`

// callsWithFindings selects the calls of inner (a query over calls c,
// already ordered and limited) with each one's findings count and rules.
// The per-call findings lookup runs only for the rows inner returns, never
// for every match of a search.
func callsWithFindings(inner string) string {
	return strings.Replace(callSelect, "from calls c\n", "from ("+inner+") c\n", 1) +
		"order by c.start_time desc, c.id desc"
}

// callOrder is the order of call lists, newest first; the calls indexes
// (start_time desc, id desc), alone or after a number, serve it.
const callOrder = " order by c.start_time desc, c.id desc"

// ListCalls returns calls newest first.
func ListCalls(ctx context.Context, db DBTX, q CallQuery) (Page[Call], error) {
	var page Page[Call]
	var nv *numberValues
	if q.Number != "" {
		var err error
		if nv, err = findNumberValues(ctx, db, NumberSuffix(q.Number)); err != nil {
			return page, err
		}
	}
	sql, args, limit, err := listCallsSQL(q, nv)
	if err != nil {
		return page, err
	}
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return page, fmt.Errorf("store: calls: %w", err)
	}
	items, err := pgx.CollectRows(rows, pgx.RowToStructByName[Call])
	if err != nil {
		return page, fmt.Errorf("store: calls: %w", err)
	}
	return pageOf(items, limit, func(last Call) cursor { return cursor{T: last.Start, ID: last.ID} }), nil
}

// listCallsSQL builds ListCalls' query. A number search is the union of
// two index range scans, calls from the number and calls to it (not also
// from it), each stopping after the page, merged; the findings of the
// page's calls are counted last.
func listCallsSQL(q CallQuery, nv *numberValues) (sql string, args []any, limit int, err error) {
	limit, cur, err := pageArgs(q.Limit, q.Cursor)
	if err != nil {
		return "", nil, 0, err
	}
	var w where
	var number string
	if q.Number != "" {
		number = NumberSuffix(q.Number)
		if number == "" {
			return "", nil, 0, fmt.Errorf("%w: number %q has no digits", ErrBadQuery, q.Number)
		}
	}
	if !q.From.IsZero() {
		// Active at or after From: ended (or last seen) then, or still
		// open. The start bound keeps the index range short.
		w.add("coalesce(c.end_time, c.last_time, c.start_time) >= ?", q.From)
		w.add("c.start_time >= ?", q.From.Add(-MaxCallSpan))
	}
	if !q.To.IsZero() {
		w.add("c.start_time < ?", q.To)
	}
	if q.CallID != "" {
		w.add("c.call_id = ?", q.CallID)
	}
	if q.SBC != "" {
		w.add("c.sbc = ?", q.SBC)
	}
	if q.HasFindings != nil {
		if *q.HasFindings {
			w.add("exists (select 1 from findings f where f.call_id = c.call_id and f.sbc = c.sbc and not f.retracted)")
		} else {
			w.add("not exists (select 1 from findings f where f.call_id = c.call_id and f.sbc = c.sbc and not f.retracted)")
		}
	}
	if q.Rule != "" {
		w.add("exists (select 1 from findings f where f.call_id = c.call_id and f.sbc = c.sbc and f.rule = ? and not f.retracted)", q.Rule)
	}
	if cur != nil {
		w.add("(c.start_time, c.id) < (?, ?)", cur.T, cur.ID)
	}
	page := fmt.Sprintf(" limit %d", limit+1)
	if number == "" {
		return callsWithFindings("select c.* from calls c " + w.sql() + callOrder + page), w.args, limit, nil
	}
	// Each stored number that ends in the digits is its own index range
	// in (digits, start_time desc, id desc): one paged scan per number and
	// side, so a busy number costs a page, not every call it ever had.
	// Too many distinct numbers (a very short suffix) fall back to the
	// suffix range and a sort.
	side := func(cond string) string {
		return "(select c.* from calls c where " + strings.Join(append(slices.Clone(w.conds), cond), " and ") + callOrder + page + ")"
	}
	arg := func(v any) string {
		w.args = append(w.args, v)
		return fmt.Sprintf("$%d", len(w.args))
	}
	var sides []string
	if nv == nil || len(nv.from) > maxNumberValues || len(nv.to) > maxNumberValues {
		lo, hi := suffixRange(number)
		l, h := arg(lo), arg(hi)
		from := fmt.Sprintf(`reverse(c.from_digits) collate "C" >= %s and reverse(c.from_digits) collate "C" < %s`, l, h)
		to := fmt.Sprintf(`reverse(c.to_digits) collate "C" >= %s and reverse(c.to_digits) collate "C" < %s`, l, h)
		sides = []string{side(from), side(to + " and not (" + from + ")")}
	} else {
		for _, v := range nv.from {
			sides = append(sides, side("c.from_digits = "+arg(v)))
		}
		for _, v := range nv.to {
			cond := "c.to_digits = " + arg(v)
			if len(nv.from) > 0 {
				// Found on the caller side already.
				cond += " and c.from_digits <> all(" + arg(nv.from) + "::text[])"
			}
			sides = append(sides, side(cond))
		}
	}
	if len(sides) == 0 {
		// No stored number ends in the digits: an empty page.
		sides = []string{side("false")}
	}
	inner := "select * from (" + strings.Join(sides, " union all ") + ") c" + callOrder + page
	return callsWithFindings(inner), w.args, limit, nil
}

// NumberSuffix is the digits a number search matches at the end of the
// stored numbers: the digits of n without the trunk or international
// prefix's leading zeros, so "+49 69 12345600", "0049 69 12345600",
// "069 12345600" and "12345600" all find "+496912345600".
func NumberSuffix(n string) string {
	return strings.TrimLeft(config.Digits(n), "0")
}

// maxNumberValues bounds how many distinct stored numbers a number
// search pages through one by one.
const maxNumberValues = 16

// numberValues are the distinct stored numbers (digits) that end in a
// search's digits, as callers and as callees, at most maxNumberValues+1
// of each.
type numberValues struct{ from, to []string }

// suffixRange is the range of reversed digits that end in d: [lo, hi).
func suffixRange(d string) (lo, hi string) {
	lo = reverse(d)
	return lo, lo[:len(lo)-1] + string(lo[len(lo)-1]+1)
}

// findNumberValues lists the distinct stored numbers ending in d with a
// loose index scan of the reversed-digits indexes: one index probe per
// distinct number, however many calls each has.
func findNumberValues(ctx context.Context, db DBTX, d string) (*numberValues, error) {
	if d == "" {
		return nil, nil
	}
	lo, hi := suffixRange(d)
	var nv numberValues
	for _, col := range []string{"from_digits", "to_digits"} {
		e := `reverse(` + col + `) collate "C"`
		rows, err := db.Query(ctx, `with recursive v(d) as (
  (select `+e+` from calls where `+e+` >= $1 and `+e+` < $2 order by 1 limit 1)
  union all
  select (select `+e+` from calls where `+e+` > v.d and `+e+` < $2 order by 1 limit 1)
  from v where v.d is not null
) select reverse(d) from v where d is not null limit $3`, lo, hi, maxNumberValues+1)
		if err != nil {
			return nil, fmt.Errorf("store: calls: numbers ending in %s: %w", d, err)
		}
		vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("store: calls: numbers ending in %s: %w", d, err)
		}
		if col == "from_digits" {
			nv.from = vals
		} else {
			nv.to = vals
		}
	}
	return &nv, nil
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// MaxCallSpan bounds how long before From a call may have started and
// still be found as active in a time window.
const MaxCallSpan = 12 * time.Hour

// ErrBadQuery is returned for a query parameter that cannot be used.
var ErrBadQuery = errors.New("store: bad query")

// GetCall returns the most recent call with the Call-ID (on the SBC when
// sbc is not empty).
func GetCall(ctx context.Context, db DBTX, callID, sbc string) (Call, error) {
	var w where
	w.add("c.call_id = ?", callID)
	if sbc != "" {
		w.add("c.sbc = ?", sbc)
	}
	rows, err := db.Query(ctx, callsWithFindings("select c.* from calls c "+w.sql()+callOrder+" limit 1"), w.args...)
	if err != nil {
		return Call{}, fmt.Errorf("store: call: %w", err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Call])
	if errors.Is(err, pgx.ErrNoRows) {
		return Call{}, ErrNotFound
	}
	if err != nil {
		return Call{}, fmt.Errorf("store: call: %w", err)
	}
	return c, nil
}

// Message is a stored SIP message.
type Message struct {
	Time       time.Time `json:"time" db:"time"`
	ID         string    `json:"id" db:"id"`
	SBC        string    `json:"sbc" db:"sbc"`
	Frame      int64     `json:"frame" db:"frame"`
	Src        string    `json:"src" db:"src"`
	Dst        string    `json:"dst" db:"dst"`
	Transport  string    `json:"transport" db:"transport"`
	Origin     string    `json:"origin" db:"origin"`
	IsRequest  bool      `json:"is_request" db:"is_request"`
	Method     string    `json:"method" db:"method"`
	Status     int       `json:"status" db:"status"`
	Reason     string    `json:"reason" db:"reason"`
	RequestURI string    `json:"request_uri" db:"request_uri"`
	CallID     string    `json:"call_id" db:"call_id"`
	CSeq       int64     `json:"cseq" db:"cseq"`
	CSeqMethod string    `json:"cseq_method" db:"cseq_method"`
	FromUser   string    `json:"from_user" db:"from_user"`
	ToUser     string    `json:"to_user" db:"to_user"`
	FromTag    string    `json:"from_tag" db:"from_tag"`
	ToTag      string    `json:"to_tag" db:"to_tag"`
	Branch     string    `json:"branch" db:"branch"`
	Contact    string    `json:"contact" db:"contact"`
	UserAgent  string    `json:"user_agent" db:"user_agent"`
	ReferTo    string    `json:"refer_to" db:"refer_to"`
	ReasonHdr  string    `json:"reason_header" db:"reason_hdr"`
	Q850Cause  int       `json:"q850_cause" db:"q850"`
	Raw        string    `json:"raw" db:"raw"`
}

// Label is the ladder label: "INVITE" or "200 OK" (with the CSeq method
// for responses).
func (m Message) Label() string {
	if m.IsRequest {
		return m.Method
	}
	s := fmt.Sprint(m.Status)
	if m.Reason != "" {
		s += " " + m.Reason
	}
	if m.CSeqMethod != "" {
		s += " (" + m.CSeqMethod + ")"
	}
	return s
}

// CallMessages returns the stored messages of a call in wire order.
func CallMessages(ctx context.Context, db DBTX, sbc, callID string) ([]Message, error) {
	rows, err := db.Query(ctx, `select time, id, sbc, frame, src, dst, transport, origin, is_request, method,
  status, reason, request_uri, call_id, cseq, cseq_method, from_user, to_user, from_tag, to_tag, branch,
  contact, user_agent, refer_to, reason_hdr, q850, raw
from sip_messages where call_id = $1 and sbc = $2 order by time, frame, id`, callID, sbc)
	if err != nil {
		return nil, fmt.Errorf("store: messages: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[Message])
	if err != nil {
		return nil, fmt.Errorf("store: messages: %w", err)
	}
	return out, nil
}

// Finding is a stored finding.
type Finding struct {
	ID             string          `json:"id" db:"id"`
	LocalID        string          `json:"local_id,omitempty" db:"local_id"`
	Rule           string          `json:"rule" db:"rule"`
	Severity       string          `json:"severity" db:"severity"`
	SeverityRank   int             `json:"-" db:"severity_rank"`
	CallID         string          `json:"call_id,omitempty" db:"call_id"`
	Connection     string          `json:"connection,omitempty" db:"connection"`
	SBC            string          `json:"sbc,omitempty" db:"sbc"`
	Time           time.Time       `json:"time" db:"time"`
	Summary        string          `json:"summary" db:"summary"`
	Evidence       json.RawMessage `json:"evidence" db:"evidence"`
	Cites          []string        `json:"cites,omitempty" db:"cites"`
	Source         string          `json:"source,omitempty" db:"source"`
	Acknowledged   bool            `json:"acknowledged" db:"acknowledged"`
	AcknowledgedAt *time.Time      `json:"acknowledged_at,omitempty" db:"acknowledged_at"`
	AcknowledgedBy string          `json:"acknowledged_by,omitempty" db:"acknowledged_by"`
	// ProblemID and State are those of the problem this finding is a
	// sighting of (unset for findings stored before schema version 3).
	ProblemID *int64 `json:"problem_id,omitempty" db:"problem_id"`
	State     string `json:"state,omitempty" db:"state"`
	// Provisional, SettlesAt and Retracted are the engine's (serve's
	// early refer_delivery_failed, finding.Finding): a provisional finding
	// is settled by SettlesAt, confirmed or retracted; retracted ones are
	// listed only when asked for.
	Provisional bool       `json:"provisional,omitempty" db:"provisional"`
	SettlesAt   *time.Time `json:"settles_at,omitempty" db:"settles_at"`
	Retracted   bool       `json:"retracted,omitempty" db:"retracted"`
	// Advice is what to check or change (finding.Advice of the rule).
	Advice string `json:"advice,omitempty" db:"-"`
	// CausedBy and Explains are the root-cause references among the
	// findings of one answer (see Fold).
	CausedBy string   `json:"caused_by,omitempty" db:"-"`
	Explains []string `json:"explains,omitempty" db:"-"`
}

// findingSelect reads findings (alias f) with their problem (alias p):
// the acknowledgement is the problem's when there is one.
const findingSelect = `select f.id, f.local_id, f.rule, f.severity, f.severity_rank, f.call_id, f.connection, f.sbc,
  f.time, f.summary, f.evidence, f.cites, f.source, coalesce(p.acknowledged, f.acknowledged) as acknowledged,
  case when p.id is null then f.acknowledged_at else p.acknowledged_at end as acknowledged_at,
  case when p.id is null then f.acknowledged_by else p.acknowledged_by end as acknowledged_by,
  p.id as problem_id, coalesce(p.state, '') as state, f.provisional, f.settles_at, f.retracted
from findings f left join problems p on p.sbc = f.sbc and p.rule = f.rule and p.subject = f.subject `

// FindingQuery selects findings. Zero fields do not filter.
type FindingQuery struct {
	Rule         string
	Severity     string
	SBC          string
	CallID       string
	From, To     time.Time
	Acknowledged *bool
	// State keeps the findings whose problem is open or resolved.
	State string
	// Retracted lists the retracted (provisional, withdrawn) findings
	// too; they are left out by default.
	Retracted bool
	Limit     int
	Cursor    string
}

// ListFindings returns findings newest first.
func ListFindings(ctx context.Context, db DBTX, q FindingQuery) (Page[Finding], error) {
	var page Page[Finding]
	limit, cur, err := pageArgs(q.Limit, q.Cursor)
	if err != nil {
		return page, err
	}
	if err := checkState(q.State); err != nil {
		return page, err
	}
	var w where
	w.eq("f.rule", q.Rule)
	w.eq("f.severity", q.Severity)
	w.eq("f.sbc", q.SBC)
	w.eq("f.call_id", q.CallID)
	w.within("f.time", q.From, q.To)
	w.eq("p.state", q.State)
	if !q.Retracted {
		w.add("not f.retracted")
	}
	if q.Acknowledged != nil {
		w.add("coalesce(p.acknowledged, f.acknowledged) = ?", *q.Acknowledged)
	}
	if cur != nil {
		w.add("(f.time, f.id) < (?, ?)", cur.T, cur.K)
	}
	rows, err := db.Query(ctx, findingSelect+w.sql()+fmt.Sprintf(" order by f.time desc, f.id desc limit %d", limit+1), w.args...)
	if err != nil {
		return page, fmt.Errorf("store: findings: %w", err)
	}
	items, err := pgx.CollectRows(rows, pgx.RowToStructByNameLax[Finding])
	if err != nil {
		return page, fmt.Errorf("store: findings: %w", err)
	}
	for i := range items {
		items[i].Advice = finding.Advice(items[i].Rule)
	}
	return pageOf(items, limit, func(last Finding) cursor { return cursor{T: last.Time, K: last.ID} }), nil
}

// CallFindings returns the findings about a call plus the findings they
// cite (transitively, a few levels), most severe first; retracted ones
// are left out.
func CallFindings(ctx context.Context, db DBTX, sbc, callID string) ([]Finding, error) {
	rows, err := db.Query(ctx, `
with recursive fs as (
  select f.id, f.time, 0 as depth from findings f where f.call_id = $1 and f.sbc = $2 and not f.retracted
  union
  select g.id, g.time, fs.depth + 1 from fs
  join findings f on f.id = fs.id and f.time = fs.time
  join findings g on g.id = any(f.cites)
  where fs.depth < 4
)
`+findingSelect+` where (f.id, f.time) in (select id, time from fs)
order by f.severity_rank, f.time, f.id`, callID, sbc)
	if err != nil {
		return nil, fmt.Errorf("store: call findings: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByNameLax[Finding])
	if err != nil {
		return nil, fmt.Errorf("store: call findings: %w", err)
	}
	Fold(out)
	return out, nil
}

// AckFinding marks a finding acknowledged by who, and with it the problem
// it is a sighting of, and returns it. Asking again keeps the first
// acknowledgement.
func AckFinding(ctx context.Context, db DBTX, id, who string) (Finding, error) {
	tag, err := db.Exec(ctx, `update findings set acknowledged = true,
  acknowledged_at = coalesce(acknowledged_at, now()),
  acknowledged_by = case when acknowledged then acknowledged_by else $2 end
where id = $1`, id, who)
	if err != nil {
		return Finding{}, fmt.Errorf("store: ack: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return Finding{}, ErrNotFound
	}
	if _, err := db.Exec(ctx, `update problems p set acknowledged = true,
  acknowledged_at = coalesce(p.acknowledged_at, now()),
  acknowledged_by = case when p.acknowledged then p.acknowledged_by else $2 end
from findings f where f.id = $1 and p.sbc = f.sbc and p.rule = f.rule and p.subject = f.subject`, id, who); err != nil {
		return Finding{}, fmt.Errorf("store: ack: %w", err)
	}
	rows, err := db.Query(ctx, findingSelect+`where f.id = $1 order by f.time desc limit 1`, id)
	if err != nil {
		return Finding{}, fmt.Errorf("store: ack: %w", err)
	}
	f, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByNameLax[Finding])
	if err != nil {
		return Finding{}, fmt.Errorf("store: ack: %w", err)
	}
	f.Advice = finding.Advice(f.Rule)
	return f, nil
}

// Fold sets CausedBy and Explains among fs from their Cites (see
// finding.Fold) and fills Advice.
func Fold(fs []Finding) {
	view := make([]*finding.Finding, len(fs))
	for i := range fs {
		view[i] = &finding.Finding{ID: fs[i].ID, Rule: fs[i].Rule, Cites: fs[i].Cites}
	}
	finding.Fold(view)
	for i := range fs {
		fs[i].CausedBy, fs[i].Explains = view[i].CausedBy, view[i].Explains
		fs[i].Advice = finding.Advice(fs[i].Rule)
	}
}

// TLSConn is a stored TLS connection.
type TLSConn struct {
	ID            string          `json:"id" db:"id"`
	SBC           string          `json:"sbc" db:"sbc"`
	ConnID        string          `json:"connection" db:"conn_id"`
	Client        string          `json:"client" db:"client"`
	Server        string          `json:"server" db:"server"`
	SNI           string          `json:"sni" db:"sni"`
	Version       string          `json:"version" db:"version"`
	Cipher        string          `json:"cipher" db:"cipher"`
	Outcome       string          `json:"outcome" db:"outcome"`
	Alert         string          `json:"alert" db:"alert"`
	ClosedBy      string          `json:"closed_by" db:"closed_by"`
	DurationMS    float64         `json:"duration_ms" db:"duration_ms"`
	FromMicrosoft bool            `json:"from_microsoft" db:"from_microsoft"`
	ToMicrosoft   bool            `json:"to_microsoft" db:"to_microsoft"`
	Established   bool            `json:"established" db:"established"`
	AppData       bool            `json:"app_data" db:"app_data"`
	CertEncrypted bool            `json:"cert_encrypted" db:"cert_encrypted"`
	CertRequested bool            `json:"cert_requested" db:"cert_requested"`
	Fingerprint   string          `json:"cert_fingerprint_sha256" db:"fingerprint"`
	Chain         []string        `json:"chain" db:"chain"`
	CertSubject   string          `json:"cert_subject" db:"cert_subject"`
	CertIssuer    string          `json:"cert_issuer" db:"cert_issuer"`
	JA3           string          `json:"ja3,omitempty" db:"ja3"`
	JA4           string          `json:"ja4,omitempty" db:"ja4"`
	BytesC2S      int64           `json:"bytes_client_to_server" db:"bytes_c2s"`
	BytesS2C      int64           `json:"bytes_server_to_client" db:"bytes_s2c"`
	FirstSeen     time.Time       `json:"first_seen" db:"first_seen"`
	LastSeen      *time.Time      `json:"last_seen" db:"last_seen"`
	Alerts        json.RawMessage `json:"alerts" db:"alerts"`
	Check         json.RawMessage `json:"check,omitempty" db:"cert_check"`
	Anomalies     []string        `json:"anomalies,omitempty" db:"anomalies"`
}

// Failed reports whether the handshake did not complete or the connection
// closed before any application data (as tlsaudit.Conn.Failed).
func (c TLSConn) Failed() bool { return c.Outcome != "established" && c.Outcome != "incomplete" }

const tlsSelect = `select id, sbc, conn_id, client, server, sni, version, cipher, outcome, alert, closed_by,
  duration_ms, from_microsoft, to_microsoft, established, app_data, cert_encrypted, cert_requested,
  fingerprint, chain, cert_subject, cert_issuer, ja3, ja4, bytes_c2s, bytes_s2c, first_seen, last_seen,
  alerts, cert_check, anomalies from tls_connections `

// TLSQuery selects TLS connections. Zero fields do not filter.
type TLSQuery struct {
	SBC           string
	From, To      time.Time // first_seen in [From, To)
	Outcome       string
	FromMicrosoft *bool
	// Failed keeps connections that did (true) or did not (false) fail.
	Failed      *bool
	SNI         string
	Fingerprint string
	// Peer matches the client or server IP (with or without port).
	Peer   string
	Limit  int
	Cursor string
}

// ListTLS returns TLS connections newest first.
func ListTLS(ctx context.Context, db DBTX, q TLSQuery) (Page[TLSConn], error) {
	var page Page[TLSConn]
	limit, cur, err := pageArgs(q.Limit, q.Cursor)
	if err != nil {
		return page, err
	}
	var w where
	w.eq("sbc", q.SBC)
	w.within("first_seen", q.From, q.To)
	w.eq("outcome", q.Outcome)
	if q.FromMicrosoft != nil {
		w.add("from_microsoft = ?", *q.FromMicrosoft)
	}
	if q.Failed != nil {
		if *q.Failed {
			w.add("outcome not in ('established', 'incomplete')")
		} else {
			w.add("outcome in ('established', 'incomplete')")
		}
	}
	w.eq("sni", q.SNI)
	if q.Fingerprint != "" {
		w.add("fingerprint = ?", strings.ToLower(q.Fingerprint))
	}
	if q.Peer != "" {
		w.add(`(client = ? or server = ? or client like ? escape '\' or server like ? escape '\')`, q.Peer, q.Peer, likeEscape(q.Peer)+":%", likeEscape(q.Peer)+":%")
	}
	if cur != nil {
		w.add("(first_seen, id) < (?, ?)", cur.T, cur.K)
	}
	rows, err := db.Query(ctx, tlsSelect+w.sql()+fmt.Sprintf(" order by first_seen desc, id desc limit %d", limit+1), w.args...)
	if err != nil {
		return page, fmt.Errorf("store: tls: %w", err)
	}
	items, err := pgx.CollectRows(rows, pgx.RowToStructByName[TLSConn])
	if err != nil {
		return page, fmt.Errorf("store: tls: %w", err)
	}
	return pageOf(items, limit, func(last TLSConn) cursor { return cursor{T: last.FirstSeen, K: last.ID} }), nil
}

// CallTLS returns the TLS connections related to a call on the SBC: those
// from Microsoft whose lifetime overlaps [start, end] (inclusive), plus
// those named by connIDs (the connections its findings cite), oldest
// first.
func CallTLS(ctx context.Context, db DBTX, sbc string, start, end time.Time, connIDs []string) ([]TLSConn, error) {
	if connIDs == nil {
		connIDs = []string{}
	}
	rows, err := db.Query(ctx, tlsSelect+`
where sbc = $1 and (
  (from_microsoft and first_seen <= $3 and coalesce(last_seen, first_seen) >= $2)
  or (conn_id = any($4) and first_seen between $2 - interval '1 hour' and $3 + interval '1 hour'))
order by first_seen, id`, sbc, start, end, connIDs)
	if err != nil {
		return nil, fmt.Errorf("store: call tls: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[TLSConn])
	if err != nil {
		return nil, fmt.Errorf("store: call tls: %w", err)
	}
	return out, nil
}

// Certificate is a stored certificate.
type Certificate struct {
	Fingerprint string    `json:"fingerprint_sha256" db:"fingerprint"`
	DER         []byte    `json:"der" db:"der"`
	Subject     string    `json:"subject" db:"subject"`
	Issuer      string    `json:"issuer" db:"issuer"`
	SANs        []string  `json:"sans" db:"sans"`
	NotBefore   time.Time `json:"not_before" db:"not_before"`
	NotAfter    time.Time `json:"not_after" db:"not_after"`
	SelfSigned  bool      `json:"self_signed" db:"self_signed"`
	FirstSeen   time.Time `json:"first_seen" db:"first_seen"`
}

const certSelect = `select fingerprint, der, subject, issuer, sans, not_before, not_after, self_signed, first_seen from certificates `

// CertQuery selects certificates. Zero fields do not filter.
type CertQuery struct {
	// ExpiresBefore keeps certificates whose notAfter is before it.
	ExpiresBefore time.Time
	Subject       string // substring, case-insensitive
	Limit         int
	Cursor        string
}

// ListCertificates returns certificates by notAfter, soonest first.
func ListCertificates(ctx context.Context, db DBTX, q CertQuery) (Page[Certificate], error) {
	var page Page[Certificate]
	limit, cur, err := pageArgs(q.Limit, q.Cursor)
	if err != nil {
		return page, err
	}
	var w where
	if !q.ExpiresBefore.IsZero() {
		w.add("not_after < ?", q.ExpiresBefore)
	}
	if q.Subject != "" {
		w.add(`subject ilike ? escape '\'`, "%"+likeEscape(q.Subject)+"%")
	}
	if cur != nil {
		w.add("(not_after, fingerprint) > (?, ?)", cur.T, cur.K)
	}
	rows, err := db.Query(ctx, certSelect+w.sql()+fmt.Sprintf(" order by not_after, fingerprint limit %d", limit+1), w.args...)
	if err != nil {
		return page, fmt.Errorf("store: certificates: %w", err)
	}
	items, err := pgx.CollectRows(rows, pgx.RowToStructByName[Certificate])
	if err != nil {
		return page, fmt.Errorf("store: certificates: %w", err)
	}
	return pageOf(items, limit, func(last Certificate) cursor { return cursor{T: last.NotAfter, K: last.Fingerprint} }), nil
}

// CertificatesByFingerprint returns the stored certificates among fps, in
// the order of fps.
func CertificatesByFingerprint(ctx context.Context, db DBTX, fps []string) ([]Certificate, error) {
	if len(fps) == 0 {
		return []Certificate{}, nil
	}
	rows, err := db.Query(ctx, certSelect+`where fingerprint = any($1) order by array_position($1, fingerprint)`, fps)
	if err != nil {
		return nil, fmt.Errorf("store: certificates: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[Certificate])
	if err != nil {
		return nil, fmt.Errorf("store: certificates: %w", err)
	}
	return out, nil
}

// CounterQuery selects one or more counter series. SBC and Counter filter
// when set; Limit bounds the samples (default DefaultLimit).
type CounterQuery struct {
	SBC, Counter, Scope string
	From, To            time.Time
	Limit               int
	Cursor              string
}

// ListCounterSamples returns samples oldest first.
func ListCounterSamples(ctx context.Context, db DBTX, q CounterQuery) (Page[CounterSample], error) {
	var page Page[CounterSample]
	limit, cur, err := pageArgs(q.Limit, q.Cursor)
	if err != nil {
		return page, err
	}
	var w where
	w.eq("sbc", q.SBC)
	w.eq("counter", q.Counter)
	w.eq("scope", q.Scope)
	w.within("time", q.From, q.To)
	if cur != nil {
		w.add("(time, sbc || chr(1) || counter || chr(1) || scope) > (?, ?)", cur.T, cur.K)
	}
	rows, err := db.Query(ctx, `select sbc, counter, scope, time, value, delta, rate from counter_samples `+
		w.sql()+fmt.Sprintf(" order by time, sbc || chr(1) || counter || chr(1) || scope limit %d", limit+1), w.args...)
	if err != nil {
		return page, fmt.Errorf("store: counters: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (CounterSample, error) {
		var c CounterSample
		err := r.Scan(&c.SBC, &c.Counter, &c.Scope, &c.Time, &c.Value, &c.Delta, &c.Rate)
		return c, err
	})
	if err != nil {
		return page, fmt.Errorf("store: counters: %w", err)
	}
	return pageOf(items, limit, func(last CounterSample) cursor {
		return cursor{T: last.Time, K: last.SBC + "\x01" + last.Counter + "\x01" + last.Scope}
	}), nil
}

// AuditQuery selects audits.
type AuditQuery struct {
	SBC, Kind string
	Limit     int
	Cursor    string
}

// ListAudits returns audits newest first, without their results.
func ListAudits(ctx context.Context, db DBTX, q AuditQuery) (Page[AuditRecord], error) {
	var page Page[AuditRecord]
	limit, cur, err := pageArgs(q.Limit, q.Cursor)
	if err != nil {
		return page, err
	}
	var w where
	w.eq("sbc", q.SBC)
	w.eq("kind", q.Kind)
	if cur != nil {
		w.add("(started_at, id) < (?, ?)", cur.T, cur.ID)
	}
	rows, err := db.Query(ctx, `select id, sbc, kind, started_at, finished_at, ok, summary, report from audits `+
		w.sql()+fmt.Sprintf(" order by started_at desc, id desc limit %d", limit+1), w.args...)
	if err != nil {
		return page, fmt.Errorf("store: audits: %w", err)
	}
	items, err := pgx.CollectRows(rows, scanAudit)
	if err != nil {
		return page, fmt.Errorf("store: audits: %w", err)
	}
	return pageOf(items, limit, func(last AuditRecord) cursor { return cursor{T: last.StartedAt, ID: last.ID} }), nil
}

func scanAudit(r pgx.CollectableRow) (AuditRecord, error) {
	var a AuditRecord
	var rep json.RawMessage
	err := r.Scan(&a.ID, &a.SBC, &a.Kind, &a.StartedAt, &a.FinishedAt, &a.OK, &a.Summary, &rep)
	a.Report = rep
	a.Results = []AuditResult{}
	return a, err
}

// GetAudit returns one audit with its results.
func GetAudit(ctx context.Context, db DBTX, id int64) (AuditRecord, error) {
	rows, err := db.Query(ctx, `select id, sbc, kind, started_at, finished_at, ok, summary, report from audits where id = $1`, id)
	if err != nil {
		return AuditRecord{}, fmt.Errorf("store: audit: %w", err)
	}
	a, err := pgx.CollectExactlyOneRow(rows, scanAudit)
	if errors.Is(err, pgx.ErrNoRows) {
		return AuditRecord{}, ErrNotFound
	}
	if err != nil {
		return AuditRecord{}, fmt.Errorf("store: audit: %w", err)
	}
	rows, err = db.Query(ctx, `select target, sni, ok, error, result from audit_results where audit_id = $1 order by id`, id)
	if err != nil {
		return AuditRecord{}, fmt.Errorf("store: audit results: %w", err)
	}
	a.Results, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditResult, error) {
		var x AuditResult
		var res json.RawMessage
		err := r.Scan(&x.Target, &x.SNI, &x.OK, &x.Error, &res)
		x.Result = res
		return x, err
	})
	if err != nil {
		return AuditRecord{}, fmt.Errorf("store: audit results: %w", err)
	}
	return a, nil
}

// TableCounts returns the number of rows per table (for tests and
// operators).
func TableCounts(ctx context.Context, db DBTX) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range []string{"sbcs", "ingests", "calls", "sip_messages", "tls_connections", "certificates",
		"findings", "counter_samples", "audits", "audit_results", "api_tokens", "packets", "problems"} {
		var n int64
		if err := db.QueryRow(ctx, "select count(*) from "+t).Scan(&n); err != nil {
			return nil, fmt.Errorf("store: count %s: %w", t, err)
		}
		out[t] = n
	}
	return out, nil
}

// packetsWhere selects the kept frames of a call: those that carried its
// SIP messages (within an hour of its start and end, so only a few
// partitions are read) and those of the TLS connections tlsIDs (stored
// tls_connections ids).
const packetsWhere = `from packets where sbc = $1 and (
  (call_id = $2 and call_id <> '' and time between $3::timestamptz - interval '1 hour' and $4::timestamptz + interval '1 hour')
  or tls_id = any($5))`

// MaxCallPackets bounds the frames CallPackets returns.
const MaxCallPackets = 50000

// CallPackets returns a call's kept frames in capture order (time, then
// frame number), at most MaxCallPackets.
func CallPackets(ctx context.Context, db DBTX, sbc, callID string, start, end time.Time, tlsIDs []string) ([]report.Packet, error) {
	if tlsIDs == nil {
		tlsIDs = []string{}
	}
	rows, err := db.Query(ctx, `select time, frame, link_type, call_id, data `+packetsWhere+
		fmt.Sprintf(` order by time, frame limit %d`, MaxCallPackets), sbc, callID, start, end, tlsIDs)
	if err != nil {
		return nil, fmt.Errorf("store: call packets: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (report.Packet, error) {
		var p report.Packet
		var frame int64
		err := row.Scan(&p.Time, &frame, &p.LinkType, &p.CallID, &p.Data)
		p.Frame = uint64(frame)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: call packets: %w", err)
	}
	return out, nil
}

// CountCallPackets is how many frames CallPackets would return (before
// its limit).
func CountCallPackets(ctx context.Context, db DBTX, sbc, callID string, start, end time.Time, tlsIDs []string) (int64, error) {
	if tlsIDs == nil {
		tlsIDs = []string{}
	}
	var n int64
	if err := db.QueryRow(ctx, `select count(*) `+packetsWhere, sbc, callID, start, end, tlsIDs).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: call packets: %w", err)
	}
	return n, nil
}
