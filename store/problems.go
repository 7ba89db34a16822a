package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sbcwatch/sbcwatch/finding"
)

// Problem states.
const (
	StateOpen     = "open"
	StateResolved = "resolved"
)

// Problem is one problem as stored: a rule about one subject on one SBC
// (finding.Subject), however often it was seen. Count is the number of
// stored sightings (saved captures, audit runs, polls) that showed it.
type Problem struct {
	ID             int64      `json:"id" db:"id"`
	SBC            string     `json:"sbc" db:"sbc"`
	Rule           string     `json:"rule" db:"rule"`
	Subject        string     `json:"subject" db:"subject"`
	Severity       string     `json:"severity" db:"severity"`
	SeverityRank   int        `json:"-" db:"severity_rank"`
	State          string     `json:"state" db:"state"`
	FirstSeen      time.Time  `json:"first_seen" db:"first_seen"`
	LastSeen       time.Time  `json:"last_seen" db:"last_seen"`
	Count          int64      `json:"count" db:"count"`
	Summary        string     `json:"summary" db:"summary"`
	LastFindingID  string     `json:"last_finding_id" db:"last_finding_id"`
	Source         string     `json:"source" db:"source"`
	AuditTarget    string     `json:"audit_target,omitempty" db:"audit_target"`
	UpdatedAt      time.Time  `json:"updated_at" db:"updated_at"`
	ResolvedAt     *time.Time `json:"resolved_at,omitempty" db:"resolved_at"`
	ResolvedBy     string     `json:"resolved_by,omitempty" db:"resolved_by"`
	Acknowledged   bool       `json:"acknowledged" db:"acknowledged"`
	AcknowledgedAt *time.Time `json:"acknowledged_at,omitempty" db:"acknowledged_at"`
	AcknowledgedBy string     `json:"acknowledged_by,omitempty" db:"acknowledged_by"`
	// Advice is what to check or change (finding.Advice of the rule).
	Advice string `json:"advice,omitempty" db:"-"`
}

const problemCols = `id, sbc, rule, subject, severity, severity_rank, state, first_seen, last_seen, count, summary,
  last_finding_id, source, audit_target, updated_at, resolved_at, resolved_by, acknowledged, acknowledged_at,
  acknowledged_by`

// insertFindings copies finding rows (findingCols) into findings and
// records each problem they show: one sighting per problem per call, so a
// save of a capture with three connections serving the same expiring
// certificate counts once. Rows already stored (the same capture saved
// again) are neither inserted nor counted. A sighting re-opens a resolved
// problem and then clears its acknowledgement; an open problem keeps it.
//
// A provisional finding (serve) is stored but is no sighting; its
// confirmation (the same row, provisional false) is, and its retraction
// is not. A settled row stays settled: a provisional version never
// overwrites a confirmed or retracted one, nor a retraction a confirmed
// one (a spool replayed after the fact changes nothing).
func insertFindings(ctx context.Context, tx pgx.Tx, rows [][]any, ingestID int64) (findings, problems int64, err error) {
	if len(rows) == 0 {
		return 0, 0, nil
	}
	if err := copyTemp(ctx, tx, "findings", findingCols, pgx.CopyFromRows(rows)); err != nil {
		return 0, 0, err
	}
	var ingest any
	if ingestID != 0 {
		ingest = ingestID
	}
	err = tx.QueryRow(ctx, `
with pre as (
  -- The rows already stored (all parts of this statement see the table
  -- as it was before it), by id: a finding whose time moves (its id
  -- leaves the time out, StoredFindingID) is the same finding.
  select f.time, f.id, f.provisional or f.retracted as unsettled
  from findings f join _in_findings i on f.id = i.id
), moved as (
  -- A later version dated earlier replaces its row and keeps its
  -- acknowledgement.
  delete from findings f using _in_findings i
  where f.id = i.id and f.time <> i.time
  returning f.id, f.acknowledged, f.acknowledged_at, f.acknowledged_by
), ins as (
  insert into findings (`+joinCols(findingCols)+`, ingest_id, acknowledged, acknowledged_at, acknowledged_by)
  select `+joinColsAs("i", findingCols)+`, $1::bigint,
    coalesce(m.acknowledged, false), m.acknowledged_at, coalesce(m.acknowledged_by, '')
  from _in_findings i left join moved m on m.id = i.id
  on conflict (time, id) do update set
    summary = excluded.summary, evidence = excluded.evidence, cites = excluded.cites,
    severity = excluded.severity, severity_rank = excluded.severity_rank, local_id = excluded.local_id,
    provisional = excluded.provisional, settles_at = excluded.settles_at, retracted = excluded.retracted
  where (findings.summary, findings.evidence, findings.cites, findings.severity,
         findings.provisional, findings.settles_at, findings.retracted)
    is distinct from (excluded.summary, excluded.evidence, excluded.cites, excluded.severity,
         excluded.provisional, excluded.settles_at, excluded.retracted)
    and not (excluded.provisional and not findings.provisional)
    and not (excluded.retracted and not findings.provisional and not findings.retracted)
  returning time, id, rule, severity, severity_rank, sbc, subject, summary, source, provisional, retracted,
    case when source = 'audit' then coalesce(evidence->>'target', '') else '' end as target
), new as (
  select * from ins where not exists (select 1 from pre where pre.id = ins.id)
), sighted as (
  -- Sightings are the findings that became final here: new ones, and
  -- provisional (or retracted) ones confirmed. A later version of a
  -- final finding (same key, new summary or evidence) updates its row
  -- above and is none.
  select * from ins where not ins.provisional and not ins.retracted
    and not exists (select 1 from pre where pre.id = ins.id and not pre.unsettled)
), g as (
  select distinct on (sbc, rule, subject) sbc, rule, subject, severity, severity_rank, summary, id, source, target,
    min(time) over w as first, max(time) over w as last
  from sighted window w as (partition by sbc, rule, subject)
  order by sbc, rule, subject, time desc, id
), up as (
  insert into problems as p (sbc, rule, subject, severity, severity_rank, first_seen, last_seen, summary,
    last_finding_id, source, audit_target)
  select sbc, rule, subject, severity, severity_rank, first, last, summary, id, source, target from g
  on conflict (sbc, rule, subject) do update set
    count = p.count + 1,
    first_seen = least(p.first_seen, excluded.first_seen),
    last_seen = greatest(p.last_seen, excluded.last_seen),
    severity = case when excluded.last_seen >= p.last_seen then excluded.severity else p.severity end,
    severity_rank = case when excluded.last_seen >= p.last_seen then excluded.severity_rank else p.severity_rank end,
    summary = case when excluded.last_seen >= p.last_seen then excluded.summary else p.summary end,
    last_finding_id = case when excluded.last_seen >= p.last_seen then excluded.last_finding_id else p.last_finding_id end,
    source = excluded.source,
    audit_target = case when excluded.audit_target <> '' then excluded.audit_target else p.audit_target end,
    updated_at = now(),
    state = 'open', resolved_at = null, resolved_by = '',
    acknowledged = p.acknowledged and p.state = 'open',
    acknowledged_at = case when p.state = 'open' then p.acknowledged_at end,
    acknowledged_by = case when p.state = 'open' then p.acknowledged_by else '' end
  returning 1
)
select (select count(*) from new), (select count(*) from up)`, ingest).Scan(&findings, &problems)
	if err != nil {
		return 0, 0, fmt.Errorf("findings: insert: %w", err)
	}
	return findings, problems, nil
}

// resolveByAudit resolves the open problems an audit of target on sbc
// was in a position to see and did not: those an audit of the same
// target saw before. rules and subjects pair up as the (rule, subject)
// of the audit's own findings.
func resolveByAudit(ctx context.Context, tx pgx.Tx, sbc, target string, auditID int64, rules, subjects []string) (int64, error) {
	if target == "" {
		return 0, nil
	}
	tag, err := tx.Exec(ctx, `
update problems p set state = 'resolved', resolved_at = now(), resolved_by = $3, updated_at = now()
where p.sbc = $1 and p.audit_target = $2 and p.state = 'open'
  and not exists (select 1 from unnest($4::text[], $5::text[]) as s(rule, subject)
                  where s.rule = p.rule and s.subject = p.subject)`,
		sbc, target, fmt.Sprintf("audit %d", auditID), rules, subjects)
	if err != nil {
		return 0, fmt.Errorf("resolve problems: %w", err)
	}
	return tag.RowsAffected(), nil
}

// ResolveStale resolves the open problems not seen again (no new sighting
// stored) for days days, and returns how many. days <= 0 does nothing.
// DropOlderThan runs it with the store's SetResolveAfter days.
func (s *Store) ResolveStale(ctx context.Context, days int) (int64, error) {
	return resolveStale(ctx, s.pool, days, time.Now())
}

func resolveStale(ctx context.Context, db DBTX, days int, now time.Time) (int64, error) {
	if days <= 0 {
		return 0, nil
	}
	cut := now.Add(-time.Duration(days) * 24 * time.Hour)
	tag, err := db.Exec(ctx, `update problems set state = 'resolved', resolved_at = $2, resolved_by = $3, updated_at = $2
where state = 'open' and updated_at < $1`, cut, now, fmt.Sprintf("no recurrence for %d days", days))
	if err != nil {
		return 0, fmt.Errorf("store: resolve stale problems: %w", err)
	}
	return tag.RowsAffected(), nil
}

// ProblemQuery selects problems. Zero fields do not filter.
type ProblemQuery struct {
	State        string // open or resolved
	Rule         string
	Severity     string
	SBC          string
	Acknowledged *bool
	Limit        int
	Cursor       string
}

// ErrBadState is returned for a state other than open or resolved.
var ErrBadState = fmt.Errorf("%w: state must be open or resolved", ErrBadQuery)

// checkState accepts a state filter: "" (any), open or resolved.
func checkState(s string) error {
	if s != "" && s != StateOpen && s != StateResolved {
		return ErrBadState
	}
	return nil
}

// ListProblems returns problems, most recently seen first.
func ListProblems(ctx context.Context, db DBTX, q ProblemQuery) (Page[Problem], error) {
	var page Page[Problem]
	limit, cur, err := pageArgs(q.Limit, q.Cursor)
	if err != nil {
		return page, err
	}
	if err := checkState(q.State); err != nil {
		return page, err
	}
	var w where
	w.eq("state", q.State)
	w.eq("rule", q.Rule)
	w.eq("severity", q.Severity)
	w.eq("sbc", q.SBC)
	if q.Acknowledged != nil {
		w.add("acknowledged = ?", *q.Acknowledged)
	}
	if cur != nil {
		w.add("(last_seen, id) < (?, ?)", cur.T, cur.ID)
	}
	rows, err := db.Query(ctx, "select "+problemCols+" from problems "+w.sql()+
		fmt.Sprintf(" order by last_seen desc, id desc limit %d", limit+1), w.args...)
	if err != nil {
		return page, fmt.Errorf("store: problems: %w", err)
	}
	items, err := pgx.CollectRows(rows, pgx.RowToStructByNameLax[Problem])
	if err != nil {
		return page, fmt.Errorf("store: problems: %w", err)
	}
	for i := range items {
		items[i].Advice = finding.Advice(items[i].Rule)
	}
	return pageOf(items, limit, func(last Problem) cursor { return cursor{T: last.LastSeen, ID: last.ID} }), nil
}

// GetProblem returns one problem.
func GetProblem(ctx context.Context, db DBTX, id int64) (Problem, error) {
	rows, err := db.Query(ctx, "select "+problemCols+" from problems where id = $1", id)
	if err != nil {
		return Problem{}, fmt.Errorf("store: problem: %w", err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByNameLax[Problem])
	if errors.Is(err, pgx.ErrNoRows) {
		return Problem{}, ErrNotFound
	}
	if err != nil {
		return Problem{}, fmt.Errorf("store: problem: %w", err)
	}
	p.Advice = finding.Advice(p.Rule)
	return p, nil
}

// AckProblem marks a problem acknowledged by who and returns it. Asking
// again keeps the first acknowledgement. The acknowledgement lasts while
// the problem is open, through any number of new sightings; a recurrence
// after it was resolved clears it.
func AckProblem(ctx context.Context, db DBTX, id int64, who string) (Problem, error) {
	rows, err := db.Query(ctx, `update problems set acknowledged = true,
  acknowledged_at = coalesce(acknowledged_at, now()),
  acknowledged_by = case when acknowledged then acknowledged_by else $2 end
where id = $1 returning `+problemCols, id, who)
	if err != nil {
		return Problem{}, fmt.Errorf("store: ack problem: %w", err)
	}
	ps, err := pgx.CollectRows(rows, pgx.RowToStructByNameLax[Problem])
	if err != nil {
		return Problem{}, fmt.Errorf("store: ack problem: %w", err)
	}
	if len(ps) == 0 {
		return Problem{}, ErrNotFound
	}
	ps[0].Advice = finding.Advice(ps[0].Rule)
	return ps[0], nil
}

// noteStored records that rows were just written into the daily
// partitions holding ts, per table: retention keeps a partition while
// anything was stored into it within the retention period.
func noteStored(ctx context.Context, tx pgx.Tx, byTable map[string][]time.Time) error {
	tables := make([]string, 0, len(byTable))
	for t := range byTable {
		tables = append(tables, t)
	}
	slices.Sort(tables)
	var names, ds []string
	for _, t := range tables {
		for _, d := range days(byTable[t]) {
			names = append(names, t)
			ds = append(ds, d.Format("2006-01-02"))
		}
	}
	if len(names) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `insert into stored_days (table_name, day)
select t, d::date from unnest($1::text[], $2::text[]) as s(t, d)
on conflict (table_name, day) do update set last_stored = now()`, names, ds)
	if err != nil {
		return fmt.Errorf("stored days: %w", err)
	}
	return nil
}
