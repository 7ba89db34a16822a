package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// StoreOptions bound the StoreCollector's queries. Zero values take the
// defaults.
type StoreOptions struct {
	// QueryTimeout bounds one scrape's queries together (default 5s);
	// they run at most three at a time, each on a pool connection.
	QueryTimeout time.Duration
	// MinInterval is how long a result is reused: scrapes within it cost
	// the database nothing (default 15s).
	MinInterval time.Duration
	// Lookback bounds the certificate, audit, poll and KPI queries to
	// rows newer than now minus Lookback (default 7 days).
	Lookback time.Duration
	// MaxSeries caps the rows each query returns, so a misbehaving input
	// cannot make a scrape unbounded (default 5000).
	MaxSeries int
	// Logger logs failed queries (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now), for tests.
	Now func() time.Time
}

// StoreCollector exports the domain state stored in PostgreSQL, read at
// scrape time: findings, certificates served, audits, polls, KPIs and the
// connection pool. Create it with NewStoreCollector and Register it.
type StoreCollector struct {
	pool *pgxpool.Pool
	opts StoreOptions
	log  *slog.Logger

	mu      sync.Mutex
	at      time.Time
	cached  []prometheus.Metric
	lastErr error
	took    time.Duration

	up, dur, queryUp                         *prometheus.Desc
	findingsHour                             *prometheus.Desc
	openUnack                                *prometheus.Desc
	openProblems                             *prometheus.Desc
	certNotAfter                             *prometheus.Desc
	auditOK, auditDur, auditLast             *prometheus.Desc
	pollUp, pollLastSuccess                  *prometheus.Desc
	kpiNER, kpiACD, kpiShort                 *prometheus.Desc
	poolMax, poolTotal, poolAcquired         *prometheus.Desc
	poolIdle, poolAcquires, poolEmpty, poolW *prometheus.Desc
}

var _ prometheus.Collector = (*StoreCollector)(nil)

// NewStoreCollector returns a collector over pool.
func NewStoreCollector(pool *pgxpool.Pool, opts StoreOptions) *StoreCollector {
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = 5 * time.Second
	}
	if opts.MinInterval <= 0 {
		opts.MinInterval = 15 * time.Second
	}
	if opts.Lookback <= 0 {
		opts.Lookback = 7 * 24 * time.Hour
	}
	if opts.MaxSeries <= 0 {
		opts.MaxSeries = 5000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
	}
	fl := []string{"sbc", "rule", "severity"}
	return &StoreCollector{
		pool: pool, opts: opts, log: opts.Logger.With("component", "metrics"),
		up:              d("store_up", "1 when every store query of the last scrape succeeded, else 0 (see store_query_up for which failed)."),
		dur:             d("store_query_duration_seconds", "Time the last store queries for /metrics took."),
		queryUp:         d("store_query_up", "1 when the named store query of the last scrape succeeded, else 0 (its metrics are then left out).", "query"),
		findingsHour:    d("findings_last_hour", "Findings stored with a time in the last hour, by SBC, rule and severity.", fl...),
		openProblems:    d("open_problems", "Open problems (one per rule and subject on an SBC: see docs/findings.md), by SBC, rule and severity.", fl...),
		openUnack:       d("open_problems_unacknowledged", "Open problems nobody acknowledged yet, by SBC, rule and severity.", fl...),
		certNotAfter:    d("cert_not_after_timestamp_seconds", "Earliest not_after (Unix seconds) of the certificate chain last served per SBC, listener (ip:port) and SNI, seen passively (source=\"passive\") or by an audit (source=\"audit\"); like blackbox_exporter's probe_ssl_earliest_cert_expiry.", "sbc", "listener", "sni", "source"),
		auditOK:         d("audit_success", "1 when the last TLS audit of the target was clean, else 0.", "sbc", "target"),
		auditDur:        d("audit_duration_seconds", "Duration of the last TLS audit of the target.", "sbc", "target"),
		auditLast:       d("audit_last_run_timestamp_seconds", "Start (Unix seconds) of the last TLS audit of the target.", "sbc", "target"),
		pollUp:          d("poll_up", "1 when the last counter poll of the SBC succeeded, else 0.", "sbc"),
		pollLastSuccess: d("poll_last_success_timestamp_seconds", "Time (Unix seconds) of the SBC's last successful counter poll.", "sbc"),
		kpiNER:          d("kpi_ner_percent", "Network effectiveness ratio of the last poll interval, percent.", "sbc", "scope"),
		kpiACD:          d("kpi_average_call_duration_seconds", "Average call duration of the last poll interval.", "sbc", "scope"),
		kpiShort:        d("kpi_short_call_ratio", "Short calls per established call in the last poll interval.", "sbc", "scope"),
		poolMax:         d("db_pool_max_conns", "Maximum connections of the database pool."),
		poolTotal:       d("db_pool_total_conns", "Open connections of the database pool."),
		poolAcquired:    d("db_pool_acquired_conns", "Connections of the database pool in use."),
		poolIdle:        d("db_pool_idle_conns", "Idle connections of the database pool."),
		poolAcquires:    d("db_pool_acquires_total", "Connections acquired from the database pool."),
		poolEmpty:       d("db_pool_empty_acquires_total", "Acquires that had to wait for a connection."),
		poolW:           d("db_pool_acquire_wait_seconds_total", "Time spent waiting for a database connection."),
	}
}

// Describe implements prometheus.Collector.
func (c *StoreCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.dur, c.queryUp, c.findingsHour, c.openProblems, c.openUnack, c.certNotAfter,
		c.auditOK, c.auditDur, c.auditLast, c.pollUp, c.pollLastSuccess, c.kpiNER, c.kpiACD, c.kpiShort,
		c.poolMax, c.poolTotal, c.poolAcquired, c.poolIdle, c.poolAcquires, c.poolEmpty, c.poolW} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the pool statistics now, the
// domain state from the last query within MinInterval or a new one.
func (c *StoreCollector) Collect(ch chan<- prometheus.Metric) {
	ps := c.pool.Stat()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	k := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(c.poolMax, float64(ps.MaxConns()))
	g(c.poolTotal, float64(ps.TotalConns()))
	g(c.poolAcquired, float64(ps.AcquiredConns()))
	g(c.poolIdle, float64(ps.IdleConns()))
	k(c.poolAcquires, float64(ps.AcquireCount()))
	k(c.poolEmpty, float64(ps.EmptyAcquireCount()))
	k(c.poolW, ps.EmptyAcquireWaitTime().Seconds())

	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	if c.at.IsZero() || now.Sub(c.at) >= c.opts.MinInterval {
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.QueryTimeout)
		start := time.Now()
		ms, err := c.query(ctx, now)
		cancel()
		c.at, c.took, c.lastErr, c.cached = now, time.Since(start), err, ms
		if err != nil {
			c.log.Warn("metrics: store queries failed", "err", err)
		}
	}
	up := 1.0
	if c.lastErr != nil {
		up = 0
	}
	g(c.up, up)
	g(c.dur, c.took.Seconds())
	for _, m := range c.cached {
		ch <- m
	}
}

// storeQuery is one of the collector's queries: it emits through gauge.
type storeQuery struct {
	name string
	run  func(ctx context.Context, gauge func(d *prometheus.Desc, v float64, labels ...string)) error
}

// query runs the queries, three at a time (so a scrape never takes the
// whole pool from the API), all bounded by ctx. A query that fails leaves
// its metrics out (and sets its store_query_up to 0); the others are
// still exported.
func (c *StoreCollector) query(ctx context.Context, now time.Time) ([]prometheus.Metric, error) {
	since := now.Add(-c.opts.Lookback).UTC()
	limit := c.opts.MaxSeries
	queries := []storeQuery{
		{"findings", func(ctx context.Context, gauge func(d *prometheus.Desc, v float64, labels ...string)) error {
			// Findings stored with a time in the last hour, per SBC, rule and
			// severity; a retracted (provisional) finding is no finding.
			rows, err := c.pool.Query(ctx, `select sbc, rule, severity, count(*)
from findings where time > $1 and not retracted group by 1, 2, 3 order by 1, 2, 3 limit $2`, now.Add(-time.Hour).UTC(), limit)
			if err != nil {
				return fmt.Errorf("metrics: findings: %w", err)
			}
			for rows.Next() {
				var sbc, rule, sev string
				var n int64
				if err := rows.Scan(&sbc, &rule, &sev, &n); err != nil {
					rows.Close()
					return fmt.Errorf("metrics: findings: %w", err)
				}
				gauge(c.findingsHour, float64(n), sbc, rule, sev)
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("metrics: findings: %w", err)
			}
			return nil
		}},
		{"problems", func(ctx context.Context, gauge func(d *prometheus.Desc, v float64, labels ...string)) error {
			// Problems: the open ones per SBC, rule and severity, and how many of
			// them nobody acknowledged.
			rows, err := c.pool.Query(ctx, `select sbc, rule, severity, count(*), count(*) filter (where not acknowledged)
from problems where state = 'open' group by 1, 2, 3 order by 1, 2, 3 limit $1`, limit)
			if err != nil {
				return fmt.Errorf("metrics: problems: %w", err)
			}
			for rows.Next() {
				var sbc, rule, sev string
				var n, unack int64
				if err := rows.Scan(&sbc, &rule, &sev, &n, &unack); err != nil {
					rows.Close()
					return fmt.Errorf("metrics: problems: %w", err)
				}
				gauge(c.openProblems, float64(n), sbc, rule, sev)
				gauge(c.openUnack, float64(unack), sbc, rule, sev)
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("metrics: problems: %w", err)
			}
			return nil
		}},
		{"certificates", func(ctx context.Context, gauge func(d *prometheus.Desc, v float64, labels ...string)) error {
			// Certificates served, passively seen: the last connection per SBC,
			// listener and SNI that carried a chain, and the earliest not_after
			// in that chain.
			rows, err := c.pool.Query(ctx, `select sbc, server, sni,
  (select extract(epoch from min(not_after))::float8 from certificates where fingerprint = any(l.chain) or fingerprint = l.fingerprint)
from (select distinct on (sbc, server, sni) sbc, server, sni, chain, fingerprint
      from tls_connections where first_seen > $1 and fingerprint <> ''
      order by sbc, server, sni, first_seen desc) l
order by 1, 2, 3 limit $2`, since, limit)
			if err != nil {
				return fmt.Errorf("metrics: certificates: %w", err)
			}
			for rows.Next() {
				var sbc, listener, sni string
				var na *float64
				if err := rows.Scan(&sbc, &listener, &sni, &na); err != nil {
					rows.Close()
					return fmt.Errorf("metrics: certificates: %w", err)
				}
				if na != nil {
					gauge(c.certNotAfter, *na, sbc, listener, sni, "passive")
				}
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("metrics: certificates: %w", err)
			}
			return nil
		}},
		{"audits", func(ctx context.Context, gauge func(d *prometheus.Desc, v float64, labels ...string)) error {
			// Audits: the last TLS audit per SBC and target, and the certificates
			// it was served.
			rows, err := c.pool.Query(ctx, `select distinct on (sbc, report->>'target') sbc, coalesce(report->>'target', ''), ok,
  extract(epoch from finished_at - started_at)::float8, extract(epoch from started_at)::float8,
  coalesce(report->'certificates', 'null'::jsonb)
from audits where kind = 'tls' and started_at > $1
order by sbc, report->>'target', started_at desc, id desc limit $2`, since, limit)
			if err != nil {
				return fmt.Errorf("metrics: audits: %w", err)
			}
			type certKey struct{ sbc, listener, sni string }
			earliest := map[certKey]float64{}
			var keys []certKey
			for rows.Next() {
				var sbc, target string
				var ok bool
				var took, started float64
				var certs []byte
				if err := rows.Scan(&sbc, &target, &ok, &took, &started, &certs); err != nil {
					rows.Close()
					return fmt.Errorf("metrics: audits: %w", err)
				}
				gauge(c.auditOK, b2f(ok), sbc, target)
				gauge(c.auditDur, took, sbc, target)
				gauge(c.auditLast, started, sbc, target)
				var seen []struct {
					Address string `json:"address"`
					SNI     string `json:"sni"`
					Check   *struct {
						NotAfter time.Time `json:"not_after"`
					} `json:"check"`
				}
				if err := json.Unmarshal(certs, &seen); err != nil {
					continue // an older report shape: no certificates to export
				}
				for _, s := range seen {
					if s.Check == nil || s.Check.NotAfter.IsZero() {
						continue
					}
					k := certKey{sbc, s.Address, s.SNI}
					v := float64(s.Check.NotAfter.Unix())
					if old, ok := earliest[k]; !ok {
						keys = append(keys, k)
						earliest[k] = v
					} else if v < old {
						earliest[k] = v
					}
				}
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("metrics: audits: %w", err)
			}
			for i, k := range keys {
				if i == limit {
					break
				}
				gauge(c.certNotAfter, earliest[k], k.sbc, k.listener, k.sni, "audit")
			}
			return nil
		}},
		{"polls", func(ctx context.Context, gauge func(d *prometheus.Desc, v float64, labels ...string)) error {
			// Polls: the last poll_up sample per SBC, and the last one that was 1.
			rows, err := c.pool.Query(ctx, `select sbc, (array_agg(value order by time desc))[1],
  extract(epoch from max(time) filter (where value = 1))::float8
from counter_samples where counter = 'poll_up' and scope = 'global' and time > $1
group by sbc order by sbc limit $2`, since, limit)
			if err != nil {
				return fmt.Errorf("metrics: polls: %w", err)
			}
			for rows.Next() {
				var sbc string
				var up float64
				var last *float64
				if err := rows.Scan(&sbc, &up, &last); err != nil {
					rows.Close()
					return fmt.Errorf("metrics: polls: %w", err)
				}
				gauge(c.pollUp, up, sbc)
				if last != nil {
					gauge(c.pollLastSuccess, *last, sbc)
				}
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("metrics: polls: %w", err)
			}
			return nil
		}},
		{"kpis", func(ctx context.Context, gauge func(d *prometheus.Desc, v float64, labels ...string)) error {
			// KPIs: the last value of each derived counter per SBC and scope.
			rows, err := c.pool.Query(ctx, `select distinct on (sbc, scope, counter) sbc, scope, counter, value
from counter_samples
where counter in ('ner_interval', 'average_call_duration_interval_s', 'short_call_ratio') and time > $1
order by sbc, scope, counter, time desc limit $2`, since, limit)
			if err != nil {
				return fmt.Errorf("metrics: kpis: %w", err)
			}
			for rows.Next() {
				var sbc, scope, counter string
				var v float64
				if err := rows.Scan(&sbc, &scope, &counter, &v); err != nil {
					rows.Close()
					return fmt.Errorf("metrics: kpis: %w", err)
				}
				switch counter {
				case "ner_interval":
					gauge(c.kpiNER, v, sbc, scope)
				case "average_call_duration_interval_s":
					gauge(c.kpiACD, v, sbc, scope)
				case "short_call_ratio":
					gauge(c.kpiShort, v, sbc, scope)
				}
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("metrics: kpis: %w", err)
			}
			return nil
		}},
	}
	results := make([][]prometheus.Metric, len(queries))
	errs := make([]error, len(queries))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 3)
	for i, q := range queries {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = q.run(ctx, func(d *prometheus.Desc, v float64, labels ...string) {
				results[i] = append(results[i], prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
			})
		})
	}
	wg.Wait()
	var out []prometheus.Metric
	var failed []error
	for i, q := range queries {
		up := 1.0
		if errs[i] != nil {
			up = 0
			failed = append(failed, errs[i])
		} else {
			out = append(out, results[i]...)
		}
		out = append(out, prometheus.MustNewConstMetric(c.queryUp, prometheus.GaugeValue, up, q.name))
	}
	return out, errors.Join(failed...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
