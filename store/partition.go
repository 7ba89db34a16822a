package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// PartitionedTables are the tables range-partitioned by UTC day.
var PartitionedTables = []string{"sip_messages", "tls_connections", "counter_samples", "findings", "packets"}

// DefaultRetentionDays is how many days DropOlderThan keeps when asked
// for 0 or fewer.
const DefaultRetentionDays = 30

const partitionLayout = "20060102"

// partitionLockKey serialises partition DDL between instances.
const partitionLockKey = int64(0x5bc_3a7c_0001)

func partitionName(table string, day time.Time) string {
	return table + "_p" + day.UTC().Format(partitionLayout)
}

// days returns the distinct UTC days of ts, sorted.
func days(ts []time.Time) []time.Time {
	seen := map[time.Time]bool{}
	var out []time.Time
	for _, t := range ts {
		d := t.UTC().Truncate(24 * time.Hour)
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// EnsurePartitions creates the daily partitions of table that hold the
// given times, when they do not exist yet. It is safe to call from several
// instances at once.
func EnsurePartitions(ctx context.Context, db DBTX, table string, ts []time.Time) error {
	if !slices.Contains(PartitionedTables, table) {
		return fmt.Errorf("store: %s is not partitioned", table)
	}
	ds := days(ts)
	if len(ds) == 0 {
		return nil
	}
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = partitionName(table, d)
	}
	missing, err := missingTables(ctx, db, names)
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		return nil
	}
	// DDL under a transaction-scoped advisory lock so two writers do not
	// race on CREATE TABLE.
	run := func(tx DBTX) error {
		if _, err := tx.Exec(ctx, "select pg_advisory_xact_lock($1)", partitionLockKey); err != nil {
			return err
		}
		for i, d := range ds {
			if !slices.Contains(missing, names[i]) {
				continue
			}
			sql := fmt.Sprintf("create table if not exists %s partition of %s for values from ('%s') to ('%s')",
				pgx.Identifier{names[i]}.Sanitize(), pgx.Identifier{table}.Sanitize(),
				d.Format("2006-01-02 15:04:05Z07:00"), d.Add(24*time.Hour).Format("2006-01-02 15:04:05Z07:00"))
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	}
	var err2 error
	switch b := db.(type) {
	case pgx.Tx:
		err2 = run(b)
	case interface {
		Begin(context.Context) (pgx.Tx, error)
	}:
		tx, err := b.Begin(ctx)
		if err != nil {
			return fmt.Errorf("store: partitions of %s: %w", table, err)
		}
		if err2 = run(tx); err2 == nil {
			err2 = tx.Commit(ctx)
		} else {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	default:
		err2 = run(db)
	}
	if err2 != nil {
		return fmt.Errorf("store: partitions of %s: %w", table, err2)
	}
	return nil
}

func missingTables(ctx context.Context, db DBTX, names []string) ([]string, error) {
	rows, err := db.Query(ctx, `select n from unnest($1::text[]) n where to_regclass(quote_ident(n)) is null`, names)
	if err != nil {
		return nil, fmt.Errorf("store: partitions: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: partitions: %w", err)
	}
	return out, nil
}

// EnsureUpcoming creates today's and the next days' partitions of every
// partitioned table ahead of the data, so live writes rarely wait on DDL.
func (s *Store) EnsureUpcoming(ctx context.Context, days int) error {
	now := time.Now().UTC()
	var ts []time.Time
	for d := 0; d <= days; d++ {
		ts = append(ts, now.Add(time.Duration(d)*24*time.Hour))
	}
	for _, t := range PartitionedTables {
		if err := EnsurePartitions(ctx, s.pool, t, ts); err != nil {
			return err
		}
	}
	return nil
}

// Partition is one daily partition.
type Partition struct {
	Table string    `json:"table"`
	Name  string    `json:"name"`
	Day   time.Time `json:"day"`
}

// Partitions lists the daily partitions of the partitioned tables in the
// current schema, oldest first.
func Partitions(ctx context.Context, db DBTX) ([]Partition, error) {
	rows, err := db.Query(ctx, `
select p.relname, c.relname
from pg_inherits i
join pg_class p on p.oid = i.inhparent
join pg_class c on c.oid = i.inhrelid
where p.relname = any($1) and p.relnamespace = current_schema()::regnamespace
order by c.relname`, PartitionedTables)
	if err != nil {
		return nil, fmt.Errorf("store: partitions: %w", err)
	}
	defer rows.Close()
	var out []Partition
	for rows.Next() {
		var parent, child string
		if err := rows.Scan(&parent, &child); err != nil {
			return nil, fmt.Errorf("store: partitions: %w", err)
		}
		suffix, ok := strings.CutPrefix(child, parent+"_p")
		if !ok {
			continue
		}
		d, err := time.Parse(partitionLayout, suffix)
		if err != nil {
			continue // not one of ours
		}
		out = append(out, Partition{Table: parent, Name: child, Day: d})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: partitions: %w", err)
	}
	slices.SortFunc(out, func(a, b Partition) int {
		if c := a.Day.Compare(b.Day); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// DropOlderThan applies the retention of days days (0 or less means
// DefaultRetentionDays) and returns the partitions dropped. Retention
// counts from when data was stored, not from its own times: a daily
// partition is dropped once its day has ended more than days days ago and
// nothing was stored into it for days days, so a capture from two months
// ago stored today is kept for days days. Calls follow the same rule;
// audits and resolved problems go days days after they were last written.
// It also resolves the open problems not seen again for the store's
// resolve-after days (SetResolveAfter).
// Data newer than the cut-off is never touched.
func (s *Store) DropOlderThan(ctx context.Context, days int) ([]string, error) {
	return dropOlderThan(ctx, s, days, time.Now())
}

// KeptUntil is when data stored at stored will at the earliest be dropped
// under a retention of days days (0 or less means DefaultRetentionDays).
func KeptUntil(stored time.Time, days int) time.Time {
	if days <= 0 {
		days = DefaultRetentionDays
	}
	return stored.Add(time.Duration(days) * 24 * time.Hour)
}

func dropOlderThan(ctx context.Context, s *Store, days int, now time.Time) ([]string, error) {
	if days <= 0 {
		days = DefaultRetentionDays
	}
	cut := now.UTC().Add(-time.Duration(days) * 24 * time.Hour)
	parts, err := Partitions(ctx, s.pool)
	if err != nil {
		return nil, err
	}
	stored, err := lastStored(ctx, s.pool)
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, p := range parts {
		if p.Day.Add(24 * time.Hour).After(cut) {
			continue
		}
		if t, ok := stored[p.Table+"|"+p.Day.Format("2006-01-02")]; ok && t.After(cut) {
			continue
		}
		err := inTx(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "select pg_advisory_xact_lock($1)", partitionLockKey); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "drop table if exists "+pgx.Identifier{p.Name}.Sanitize()); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "delete from stored_days where table_name = $1 and day = $2::date", p.Table, p.Day.Format("2006-01-02"))
			return err
		})
		if err != nil {
			return dropped, fmt.Errorf("store: drop %s: %w", p.Name, err)
		}
		dropped = append(dropped, p.Name)
	}
	// The unpartitioned tables follow the same cut-off.
	if _, err := s.pool.Exec(ctx, `delete from calls where coalesce(last_time, end_time, start_time) < $1 and stored_at < $1`, cut); err != nil {
		return dropped, fmt.Errorf("store: retention of calls: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `delete from audits where started_at < $1`, cut); err != nil {
		return dropped, fmt.Errorf("store: retention of audits: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `delete from problems where state = 'resolved' and updated_at < $1`, cut); err != nil {
		return dropped, fmt.Errorf("store: retention of problems: %w", err)
	}
	resolveAfter := s.resolveAfter
	if resolveAfter == 0 {
		resolveAfter = DefaultResolveAfterDays
	}
	if n, err := resolveStale(ctx, s.pool, resolveAfter, now); err != nil {
		return dropped, err
	} else if n > 0 {
		s.log.Info("problems resolved after days without a new sighting", "count", n, "days", resolveAfter)
	}
	if len(dropped) > 0 {
		s.log.Info("retention dropped partitions", "days", days, "count", len(dropped), "oldest", dropped[0])
	}
	return dropped, nil
}

// lastStored maps "table|YYYY-MM-DD" to when rows were last stored into
// that day's partition.
func lastStored(ctx context.Context, db DBTX) (map[string]time.Time, error) {
	rows, err := db.Query(ctx, `select table_name || '|' || to_char(day, 'YYYY-MM-DD'), last_stored from stored_days`)
	if err != nil {
		return nil, fmt.Errorf("store: stored days: %w", err)
	}
	out := map[string]time.Time{}
	var k string
	var t time.Time
	_, err = pgx.ForEachRow(rows, []any{&k, &t}, func() error {
		out[k] = t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: stored days: %w", err)
	}
	return out, nil
}
