package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// AlertDelivery is one alert to one receiver (a webhook, by name) about
// one finding key (table alert_deliveries, migration 008).
type AlertDelivery struct {
	Receiver string
	Key      string
	Rule     string
	Severity string
	// Finding is the finding's JSON as it was first decided.
	Finding []byte
	// After, when set, is a finding key: the delivery is recorded only
	// when the receiver has one of After (a retraction's follow-up goes
	// only where the finding went).
	After string
}

// Alert delivery states.
const (
	AlertPending   = "pending"
	AlertDelivered = "delivered"
	AlertFailed    = "failed"
)

// RecordAlerts stores each delivery (with After, only when the receiver
// has a delivery of After that did not fail for good: a retraction of
// what never arrived is not sent) unless one of the same receiver and key exists (delivered, failed or pending, by this instance or another
// one): it returns the deliveries it inserted, the ones this process may
// deliver. Each row names the instance of the connection's
// sbcwatch.instance setting.
func (s *Store) RecordAlerts(ctx context.Context, ds []AlertDelivery) ([]AlertDelivery, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	var out []AlertDelivery
	err := inTx(ctx, s.pool, func(tx pgx.Tx) error {
		out = out[:0]
		b := &pgx.Batch{}
		for _, d := range ds {
			b.Queue(`insert into alert_deliveries (receiver, finding_key, rule, severity, finding)
select $1, $2, $3, $4, $5::jsonb
where $6 = '' or exists (select 1 from alert_deliveries where receiver = $1 and finding_key = $6 and state <> 'failed')
on conflict (receiver, finding_key) do nothing`,
				d.Receiver, d.Key, d.Rule, d.Severity, string(d.Finding), d.After)
		}
		br := tx.SendBatch(ctx, b)
		for _, d := range ds {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return err
			}
			if tag.RowsAffected() == 1 {
				out = append(out, d)
			}
		}
		return br.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("store: record alerts: %w", err)
	}
	return out, nil
}

// ClaimAlerts takes up to limit pending deliveries of receiver stored by
// this instance (the connection's sbcwatch.instance) that no process
// holds: never claimed, claimed by another process of the instance (an
// earlier run: token differs) or whose claim expired. They are held for
// token until lease passes. Oldest first.
func (s *Store) ClaimAlerts(ctx context.Context, receiver, token string, limit int, lease time.Duration) ([]AlertDelivery, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `
with c as (
  select receiver, finding_key from alert_deliveries
  where state = 'pending' and receiver = $1
    and instance = coalesce(current_setting('sbcwatch.instance', true), '')
    and (claimed_by is distinct from $2 or claimed_until < now())
  order by created_at, finding_key
  limit $3
  for update skip locked)
update alert_deliveries a set claimed_by = $2, claimed_until = now() + $4::interval
from c where a.receiver = c.receiver and a.finding_key = c.finding_key
returning a.receiver, a.finding_key, a.rule, a.severity, a.finding::text, a.created_at`,
		receiver, token, limit, fmt.Sprintf("%d milliseconds", lease.Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("store: claim alerts: %w", err)
	}
	type row struct {
		d  AlertDelivery
		at time.Time
	}
	var got []row
	for rows.Next() {
		var r row
		var js string
		if err := rows.Scan(&r.d.Receiver, &r.d.Key, &r.d.Rule, &r.d.Severity, &js, &r.at); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: claim alerts: %w", err)
		}
		r.d.Finding = []byte(js)
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: claim alerts: %w", err)
	}
	// UPDATE … RETURNING does not keep the CTE's order.
	slices.SortFunc(got, func(a, b row) int { return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.d.Key, b.d.Key)) })
	out := make([]AlertDelivery, 0, len(got))
	for _, r := range got {
		out = append(out, r.d)
	}
	return out, nil
}

// FinishAlert records the outcome of a delivery: delivered, or failed for
// good with errText. A pending row only changes: a delivery finished twice
// keeps its first outcome.
func (s *Store) FinishAlert(ctx context.Context, receiver, key string, delivered bool, errText string) error {
	state := AlertFailed
	if delivered {
		state = AlertDelivered
	}
	_, err := s.pool.Exec(ctx, `update alert_deliveries set state = $3, error = $4, finished_at = now(),
  claimed_by = null, claimed_until = null
where receiver = $1 and finding_key = $2 and state = 'pending'`, receiver, key, state, errText)
	if err != nil {
		return fmt.Errorf("store: finish alert: %w", err)
	}
	return nil
}

// AlertStates counts the deliveries of receiver by state (all instances).
func (s *Store) AlertStates(ctx context.Context, receiver string) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `select state, count(*) from alert_deliveries where receiver = $1 group by state`, receiver)
	if err != nil {
		return nil, fmt.Errorf("store: alert states: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("store: alert states: %w", err)
		}
		out[st] = n
	}
	return out, rows.Err()
}

// PruneAlerts deletes the finished deliveries older than days days (0 or
// less: DefaultRetentionDays), with the findings they were about; pending
// ones stay whatever their age.
func (s *Store) PruneAlerts(ctx context.Context, days int) (int64, error) {
	if days <= 0 {
		days = DefaultRetentionDays
	}
	tag, err := s.pool.Exec(ctx, `delete from alert_deliveries where state <> 'pending' and finished_at < now() - $1::interval`,
		fmt.Sprintf("%d days", days))
	if err != nil {
		return 0, fmt.Errorf("store: prune alerts: %w", err)
	}
	return tag.RowsAffected(), nil
}
