package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sbcwatch/sbcwatch/finding"
)

// SBC is one watched SBC as stored.
type SBC struct {
	Name      string    `json:"name"`
	FQDNs     []string  `json:"fqdns"`
	Addresses []string  `json:"addresses"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// UpsertSBC records an SBC (by name), refreshing last_seen; non-empty
// FQDNs and Addresses replace the stored ones.
func UpsertSBC(ctx context.Context, db DBTX, s SBC) error {
	if s.Name == "" {
		return errors.New("store: sbc name is required")
	}
	fq, ad := s.FQDNs, s.Addresses
	if fq == nil {
		fq = []string{}
	}
	if ad == nil {
		ad = []string{}
	}
	_, err := db.Exec(ctx, `
insert into sbcs (name, fqdns, addresses) values ($1, $2, $3)
on conflict (name) do update set last_seen = now(),
  fqdns = case when cardinality(excluded.fqdns) > 0 then excluded.fqdns else sbcs.fqdns end,
  addresses = case when cardinality(excluded.addresses) > 0 then excluded.addresses else sbcs.addresses end`,
		clean(s.Name), fq, ad)
	if err != nil {
		return fmt.Errorf("store: sbc %s: %w", s.Name, err)
	}
	return nil
}

// ListSBCs returns every SBC by name.
func ListSBCs(ctx context.Context, db DBTX) ([]SBC, error) {
	rows, err := db.Query(ctx, `select name, fqdns, addresses, first_seen, last_seen from sbcs order by name`)
	if err != nil {
		return nil, fmt.Errorf("store: sbcs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SBC, error) {
		var s SBC
		err := r.Scan(&s.Name, &s.FQDNs, &s.Addresses, &s.FirstSeen, &s.LastSeen)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: sbcs: %w", err)
	}
	return out, nil
}

// CounterSample is one polled value of an SBC counter.
type CounterSample struct {
	SBC     string `json:"sbc"`
	Counter string `json:"counter"`
	// Scope is "global" (the default) or a sub-scope such as "ipgroup:3".
	Scope string    `json:"scope"`
	Time  time.Time `json:"time"`
	Value float64   `json:"value"`
	// Delta and Rate (per second) against the previous sample, when known.
	Delta *float64 `json:"delta,omitempty"`
	Rate  *float64 `json:"rate,omitempty"`
}

// SaveCounterSamples stores samples; a sample already stored (same SBC,
// counter, scope and time) is left alone.
func (s *Store) SaveCounterSamples(ctx context.Context, samples []CounterSample) error {
	if len(samples) == 0 {
		return nil
	}
	ts := make([]time.Time, len(samples))
	rows := make([][]any, len(samples))
	sbcs := map[string]bool{}
	for i, c := range samples {
		if c.SBC == "" || c.Counter == "" || c.Time.IsZero() {
			return fmt.Errorf("store: counter sample %d: sbc, counter and time are required", i)
		}
		scope := c.Scope
		if scope == "" {
			scope = "global"
		}
		ts[i] = c.Time
		rows[i] = []any{c.Time.UTC(), c.SBC, c.Counter, scope, c.Value, c.Delta, c.Rate}
		sbcs[c.SBC] = true
	}
	if err := EnsurePartitions(ctx, s.pool, "counter_samples", ts); err != nil {
		return err
	}
	err := inTx(ctx, s.pool, func(tx pgx.Tx) error {
		if err := noteStored(ctx, tx, map[string][]time.Time{"counter_samples": ts}); err != nil {
			return err
		}
		for name := range sbcs {
			if err := UpsertSBC(ctx, tx, SBC{Name: name}); err != nil {
				return err
			}
		}
		_, err := copyInsert(ctx, tx, "counter_samples",
			[]string{"time", "sbc", "counter", "scope", "value", "delta", "rate"}, rows, 0, "on conflict do nothing")
		return err
	})
	if err != nil {
		return fmt.Errorf("store: counter samples: %w", err)
	}
	return nil
}

// AuditRecord is one run of an active audit (TLS or other) with its
// per-target results; payloads are any JSON-able values.
type AuditRecord struct {
	ID   int64  `json:"id"`
	SBC  string `json:"sbc"`
	Kind string `json:"kind"` // e.g. "tls"
	// Target is what was audited ("host:port"). An audit that reached
	// its target resolves the open problems earlier audits of the same
	// target saw and this one did not.
	Target     string    `json:"target,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	OK         bool      `json:"ok"`
	Summary    string    `json:"summary"`
	// Report is the whole audit report.
	Report  any           `json:"report"`
	Results []AuditResult `json:"results"`
	// Findings the audit produced; they are stored with the others.
	Findings []*finding.Finding `json:"findings,omitempty"`
}

// AuditResult is the result for one target.
type AuditResult struct {
	Target string `json:"target"`
	SNI    string `json:"sni"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Result any    `json:"result"`
}

// SaveAudit stores an audit, its results and its findings and returns the
// audit's id.
func (s *Store) SaveAudit(ctx context.Context, a AuditRecord) (int64, error) {
	if a.Kind == "" || a.StartedAt.IsZero() {
		return 0, errors.New("store: audit: kind and started_at are required")
	}
	if a.FinishedAt.IsZero() {
		a.FinishedAt = a.StartedAt
	}
	rep, err := jsonb(a.Report)
	if err != nil {
		return 0, fmt.Errorf("store: audit: report: %w", err)
	}
	if string(rep) == "null" {
		rep = []byte("{}")
	}
	if a.Target == "" {
		// An audit report names its target (tlsaudit/audit.Report).
		var named struct {
			Target string `json:"target"`
		}
		if json.Unmarshal(rep, &named) == nil {
			a.Target = named.Target
		}
	}
	// finding.New marks findings passive; an audit's findings come from
	// the audit unless they say otherwise.
	fs := make([]*finding.Finding, 0, len(a.Findings))
	for _, f := range a.Findings {
		if f == nil {
			continue
		}
		g := *f
		if g.Source == "" || g.Source == finding.SourcePassive {
			g.Source = finding.SourceAudit
		}
		fs = append(fs, &g)
	}
	b := buildBatch(a.SBC, nil, nil, fs)
	if err := EnsurePartitions(ctx, s.pool, "findings", b.findingTimes); err != nil {
		return 0, err
	}
	var id int64
	err = inTx(ctx, s.pool, func(tx pgx.Tx) error {
		if a.SBC != "" {
			if err := UpsertSBC(ctx, tx, SBC{Name: a.SBC}); err != nil {
				return err
			}
		}
		if err := noteStored(ctx, tx, map[string][]time.Time{"findings": b.findingTimes}); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `insert into audits (sbc, kind, started_at, finished_at, ok, summary, report, target)
values ($1, $2, $3, $4, $5, $6, $7, $8) returning id`, a.SBC, a.Kind, a.StartedAt.UTC(), a.FinishedAt.UTC(), a.OK,
			clean(a.Summary), json.RawMessage(rep), clean(a.Target)).Scan(&id)
		if err != nil {
			return err
		}
		for _, r := range a.Results {
			res, err := jsonb(r.Result)
			if err != nil {
				return fmt.Errorf("result %s: %w", r.Target, err)
			}
			if string(res) == "null" {
				res = []byte("{}")
			}
			if _, err := tx.Exec(ctx, `insert into audit_results (audit_id, target, sni, ok, error, result)
values ($1, $2, $3, $4, $5, $6)`, id, r.Target, r.SNI, r.OK, clean(r.Error), json.RawMessage(res)); err != nil {
				return err
			}
		}
		if _, _, err := insertFindings(ctx, tx, b.findings, 0); err != nil {
			return err
		}
		// Only an audit that reached its target vouches for what it did
		// not see.
		var rules, subjects []string
		for _, f := range fs {
			if f.Rule == finding.SBCUnreachable {
				return nil
			}
			rules, subjects = append(rules, f.Rule), append(subjects, clean(finding.Subject(f)))
		}
		_, err = resolveByAudit(ctx, tx, a.SBC, clean(a.Target), id, rules, subjects)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: audit: %w", err)
	}
	return id, nil
}

// Token scopes.
const (
	ScopeRead  = "read"
	ScopeAdmin = "admin"
)

// Token is an API token as stored (never the secret itself).
type Token struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Scope     string     `json:"scope"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// ErrTokenExists is returned when a live token already has the name.
var ErrTokenExists = errors.New("store: a live token with that name exists")

// HashToken returns the stored form of a token: hex SHA-256.
func HashToken(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// CreateToken makes a new random token with the given name and scope,
// stores its hash and returns the token. The token is shown once; only
// its hash is kept.
func CreateToken(ctx context.Context, db DBTX, name, scope string) (string, error) {
	if name == "" {
		return "", errors.New("store: token name is required")
	}
	if scope != ScopeRead && scope != ScopeAdmin {
		return "", fmt.Errorf("store: token scope %q is not read or admin", scope)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("store: token: %w", err)
	}
	tok := "sbcw_" + base64.RawURLEncoding.EncodeToString(raw[:])
	_, err := db.Exec(ctx, `insert into api_tokens (name, scope, hash) values ($1, $2, $3)`, name, scope, HashToken(tok))
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" {
			return "", fmt.Errorf("%w: %q", ErrTokenExists, name)
		}
		return "", fmt.Errorf("store: token: %w", err)
	}
	return tok, nil
}

// RevokeToken revokes the live token with the given name.
func RevokeToken(ctx context.Context, db DBTX, name string) error {
	tag, err := db.Exec(ctx, `update api_tokens set revoked_at = now() where name = $1 and revoked_at is null`, name)
	if err != nil {
		return fmt.Errorf("store: revoke token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: no live token named %q", ErrNotFound, name)
	}
	return nil
}

// ListTokens returns every token, live and revoked, oldest first.
func ListTokens(ctx context.Context, db DBTX) ([]Token, error) {
	rows, err := db.Query(ctx, `select id, name, scope, created_at, revoked_at from api_tokens order by id`)
	if err != nil {
		return nil, fmt.Errorf("store: tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Token, error) {
		var t Token
		err := r.Scan(&t.ID, &t.Name, &t.Scope, &t.CreatedAt, &t.RevokedAt)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: tokens: %w", err)
	}
	return out, nil
}

// LookupToken returns the live token whose secret is token, or
// ErrNotFound.
func LookupToken(ctx context.Context, db DBTX, token string) (Token, error) {
	var t Token
	token = strings.TrimSpace(token)
	if token == "" {
		return t, ErrNotFound
	}
	err := db.QueryRow(ctx, `select id, name, scope, created_at, revoked_at from api_tokens
where hash = $1 and revoked_at is null`, HashToken(token)).Scan(&t.ID, &t.Name, &t.Scope, &t.CreatedAt, &t.RevokedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, ErrNotFound
	}
	if err != nil {
		return t, fmt.Errorf("store: token lookup: %w", err)
	}
	return t, nil
}
