package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
)

// CallSearch is the pages' call search: every filter of CallQuery plus
// the ones an admin asks for at the desk. Zero fields do not filter.
type CallSearch struct {
	// Number matches part of the caller's or the callee's digits:
	// "+49 69 1234", "4969 1234" and the national "069 1234" (leading
	// zeros are dropped) all find +49691234….
	Number   string
	From, To time.Time // active in [From, To), as CallQuery
	SBC      string
	Kind     string // "invite", "options", …
	Rule     string
	// Severity keeps calls with a finding of at least this severity
	// (critical, warning, info).
	Severity string
	Answered *bool
	// MinTalk and MaxTalk bound the talk time of answered calls (set
	// either and unanswered calls drop out).
	MinTalk, MaxTalk time.Duration
	// FinalStatus keeps calls whose final response is this code; 1…6
	// means the class (4 keeps 4xx).
	FinalStatus int
	Limit       int
	Cursor      string
}

// numberPattern is the LIKE pattern of a partial number: its digits
// without leading zeros (the national trunk prefix), or "" when none
// are left.
func numberPattern(s string) string {
	d := strings.TrimLeft(config.Digits(s), "0")
	if d == "" {
		return ""
	}
	return "%" + d + "%"
}

// SearchCalls returns the calls matching q, newest first.
func SearchCalls(ctx context.Context, db DBTX, q CallSearch) (Page[Call], error) {
	var page Page[Call]
	limit, cur, err := pageArgs(q.Limit, q.Cursor)
	if err != nil {
		return page, err
	}
	var w where
	if strings.TrimSpace(q.Number) != "" {
		pat := numberPattern(q.Number)
		if pat == "" {
			return page, fmt.Errorf("%w: number %q has no digits", ErrBadQuery, q.Number)
		}
		w.add("(c.from_digits like ? or c.to_digits like ?)", pat, pat)
	}
	if !q.From.IsZero() {
		w.add("coalesce(c.end_time, c.last_time, c.start_time) >= ?", q.From)
		w.add("c.start_time >= ?", q.From.Add(-MaxCallSpan))
	}
	if !q.To.IsZero() {
		w.add("c.start_time < ?", q.To)
	}
	w.eq("c.sbc", q.SBC)
	w.eq("c.kind", q.Kind)
	if q.Rule != "" {
		w.add("exists (select 1 from findings f where f.call_id = c.call_id and f.sbc = c.sbc and f.rule = ? and not f.retracted)", q.Rule)
	}
	if q.Severity != "" {
		rank := finding.Severity(q.Severity).Rank() // lower is more severe
		if rank > finding.Info.Rank() {
			return page, fmt.Errorf("%w: severity %q is not critical, warning or info", ErrBadQuery, q.Severity)
		}
		w.add("exists (select 1 from findings f where f.call_id = c.call_id and f.sbc = c.sbc and f.severity_rank <= ? and not f.retracted)", rank)
	}
	if q.Answered != nil {
		w.add("c.answered = ?", *q.Answered)
	}
	talk := "extract(epoch from c.end_time - c.answer_time)"
	if q.MinTalk > 0 {
		w.add("c.answered and "+talk+" >= ?", q.MinTalk.Seconds())
	}
	if q.MaxTalk > 0 {
		w.add("c.answered and "+talk+" <= ?", q.MaxTalk.Seconds())
	}
	switch {
	case q.FinalStatus >= 1 && q.FinalStatus <= 6:
		w.add("c.final_status / 100 = ?", q.FinalStatus)
	case q.FinalStatus >= 100 && q.FinalStatus <= 699:
		w.add("c.final_status = ?", q.FinalStatus)
	case q.FinalStatus != 0:
		return page, fmt.Errorf("%w: final response %d is not a SIP status (100-699) or class (1-6)", ErrBadQuery, q.FinalStatus)
	}
	if cur != nil {
		w.add("(c.start_time, c.id) < (?, ?)", cur.T, cur.ID)
	}
	sql := callSelect + w.sql() + fmt.Sprintf(" order by c.start_time desc, c.id desc limit %d", limit+1)
	rows, err := db.Query(ctx, sql, w.args...)
	if err != nil {
		return page, fmt.Errorf("store: search calls: %w", err)
	}
	items, err := pgx.CollectRows(rows, pgx.RowToStructByName[Call])
	if err != nil {
		return page, fmt.Errorf("store: search calls: %w", err)
	}
	return pageOf(items, limit, func(last Call) cursor { return cursor{T: last.Start, ID: last.ID} }), nil
}

// PartnerLegs returns the other legs of c's call on the same SBC: calls
// with another Call-ID whose caller and callee digits are the same as
// c's (either way round) and whose time overlaps c's by the slack. A
// Teams leg finds its carrier leg and the other way round. At most 10,
// nearest start first.
func PartnerLegs(ctx context.Context, db DBTX, c Call, slack time.Duration) ([]Call, error) {
	from, to := config.Digits(c.From), config.Digits(c.To)
	if from == "" && to == "" {
		return []Call{}, nil
	}
	end := c.Start
	for _, t := range []*time.Time{c.End, c.Last} {
		if t != nil && t.After(end) {
			end = *t
		}
	}
	rows, err := db.Query(ctx, callSelect+`
where c.sbc = $1 and c.call_id <> $2 and c.kind = $3
  and ((c.from_digits = $4 and c.to_digits = $5) or (c.from_digits = $5 and c.to_digits = $4))
  and c.start_time <= $7 and c.start_time >= $6::timestamptz - $8::interval
  and coalesce(c.end_time, c.last_time, c.start_time) >= $6
order by abs(extract(epoch from c.start_time - $6::timestamptz)), c.id limit 10`,
		c.SBC, c.CallID, c.Kind, from, to, c.Start.Add(-slack), end.Add(slack), MaxCallSpan)
	if err != nil {
		return nil, fmt.Errorf("store: partner legs: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[Call])
	if err != nil {
		return nil, fmt.Errorf("store: partner legs: %w", err)
	}
	return out, nil
}

// ServedCert is one certificate a listener served for an SNI: how many
// connections got it, when, and the last trust check's verdict.
type ServedCert struct {
	SBC         string     `json:"sbc" db:"sbc"`
	Server      string     `json:"server" db:"server"`
	SNI         string     `json:"sni" db:"sni"`
	Fingerprint string     `json:"fingerprint_sha256" db:"fingerprint"`
	Subject     string     `json:"subject" db:"cert_subject"`
	Issuer      string     `json:"issuer" db:"cert_issuer"`
	Connections int64      `json:"connections" db:"connections"`
	Failed      int64      `json:"failed" db:"failed"`
	FirstSeen   time.Time  `json:"first_seen" db:"first_seen"`
	LastSeen    time.Time  `json:"last_seen" db:"last_seen"`
	NotAfter    *time.Time `json:"not_after" db:"not_after"`
	SelfSigned  bool       `json:"self_signed" db:"self_signed"`
	// Check is the certcheck result of the newest connection that got it.
	Check []byte `json:"check,omitempty" db:"cert_check"`
	// Variants is how many different certificates the listener served
	// for this SNI in the window (more than one: inconsistent).
	Variants int `json:"variants" db:"variants"`
}

// ServedCertificates groups the TLS connections first seen in [from, to)
// (zero bounds do not filter) by SBC, listener, SNI and certificate,
// the inconsistent listeners first. Connections without a certificate
// seen (TLS 1.3, or cut off) are left out. At most limit rows (0: 500).
func ServedCertificates(ctx context.Context, db DBTX, from, to time.Time, limit int) ([]ServedCert, error) {
	if limit <= 0 {
		limit = 500
	}
	var w where
	w.add("t.fingerprint <> ''")
	w.within("t.first_seen", from, to)
	rows, err := db.Query(ctx, `with g as (
  select t.sbc, t.server, t.sni, t.fingerprint, max(t.cert_subject) as cert_subject, max(t.cert_issuer) as cert_issuer,
    count(*) as connections, count(*) filter (where t.outcome not in ('established', 'incomplete')) as failed,
    min(t.first_seen) as first_seen, max(t.first_seen) as last_seen,
    (array_agg(t.cert_check order by t.first_seen desc) filter (where t.cert_check is not null))[1] as cert_check
  from tls_connections t `+w.sql()+`
  group by t.sbc, t.server, t.sni, t.fingerprint)
select g.sbc, g.server, g.sni, g.fingerprint, g.cert_subject, g.cert_issuer, g.connections, g.failed,
  g.first_seen, g.last_seen, c.not_after, coalesce(c.self_signed, false) as self_signed, g.cert_check,
  (count(*) over (partition by g.sbc, g.server, g.sni))::int as variants
from g left join certificates c on c.fingerprint = g.fingerprint
order by variants desc, g.sbc, g.server, g.sni, g.connections desc, g.fingerprint
limit `+fmt.Sprint(limit), w.args...)
	if err != nil {
		return nil, fmt.Errorf("store: served certificates: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[ServedCert])
	if err != nil {
		return nil, fmt.Errorf("store: served certificates: %w", err)
	}
	return out, nil
}

// AuditAttempt is one connection attempt of a stored audit, for the
// audits page's chart.
type AuditAttempt struct {
	AuditID     int64     `json:"audit_id"`
	SBC         string    `json:"sbc"`
	Target      string    `json:"target"`  // what was audited (host:port)
	Address     string    `json:"address"` // the resolved address tried
	SNI         string    `json:"sni"`
	Probe       string    `json:"probe"`
	Time        time.Time `json:"time"`
	OK          bool      `json:"ok"`
	HandshakeMS float64   `json:"handshake_ms"`
	Error       string    `json:"error"`
}

// AuditAttempts returns the attempts of the audits started in [from,
// to) (zero bounds do not filter), oldest first, at most limit (0:
// 5000).
func AuditAttempts(ctx context.Context, db DBTX, from, to time.Time, limit int) ([]AuditAttempt, error) {
	if limit <= 0 {
		limit = 5000
	}
	var w where
	w.within("a.started_at", from, to)
	rows, err := db.Query(ctx, `select a.id, a.sbc, coalesce(nullif(a.target, ''), a.sbc), r.target, r.sni,
  coalesce(r.result->>'probe', ''),
  coalesce((r.result->>'time')::timestamptz, a.started_at), r.ok,
  coalesce((r.result->>'handshake_ms')::float8, 0), r.error
from audit_results r join audits a on a.id = r.audit_id `+w.sql()+
		fmt.Sprintf(` order by a.started_at, r.id limit %d`, limit), w.args...)
	if err != nil {
		return nil, fmt.Errorf("store: audit attempts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditAttempt, error) {
		var a AuditAttempt
		err := r.Scan(&a.AuditID, &a.SBC, &a.Target, &a.Address, &a.SNI, &a.Probe, &a.Time, &a.OK, &a.HandshakeMS, &a.Error)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: audit attempts: %w", err)
	}
	return out, nil
}
