package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/sbcwatch/sbcwatch/migrations"
)

// DBTX is what the query functions need: a *pgxpool.Pool, a *pgx.Conn or
// a pgx.Tx.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
}

var (
	_ DBTX = (*pgxpool.Pool)(nil)
	_ DBTX = (pgx.Tx)(nil)
)

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("store: not found")

// VersionTable is the table tern keeps the schema version in.
const VersionTable = "sbcwatch_schema_version"

// Store is a connection pool to the sbcwatch database.
type Store struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	// resolveAfter is the days without a sighting after which
	// DropOlderThan resolves a problem (0: DefaultResolveAfterDays,
	// negative: never).
	resolveAfter int
}

// DefaultResolveAfterDays is how long a problem stays open without a new
// sighting when SetResolveAfter was not called.
const DefaultResolveAfterDays = 14

// SetResolveAfter sets after how many days without a new sighting the
// retention run (DropOlderThan) resolves an open problem: 0 means
// DefaultResolveAfterDays, a negative value never.
func (s *Store) SetResolveAfter(days int) { s.resolveAfter = days }

// Open parses dsn (a postgres:// URL or key=value string; pgxpool's
// pool_* parameters apply), connects and pings. The caller must Close.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error may echo the DSN, which can hold a password.
		return nil, errors.New("store: cannot parse the database URL")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: ping %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	return &Store{pool: pool, log: slog.Default().With("component", "store")}, nil
}

// SetLogger replaces the logger (default: slog.Default()).
func (s *Store) SetLogger(l *slog.Logger) { s.log = l.With("component", "store") }

// Pool returns the underlying pool, for transactions and the query
// functions.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Migrate applies the embedded migrations that are not yet applied. tern
// holds a Postgres advisory lock while it works, so concurrent calls (two
// instances starting at once) apply each migration exactly once.
func (s *Store) Migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer conn.Release()
	m, err := migrate.NewMigrator(ctx, conn.Conn(), VersionTable)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if err := m.LoadMigrations(migrations.FS); err != nil {
		return fmt.Errorf("store: migrate: load: %w", err)
	}
	from, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	to, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if to != from {
		s.log.Info("schema migrated", "from", from, "to", to)
	}
	return nil
}

// SchemaVersion returns the applied schema version (0 when none).
func (s *Store) SchemaVersion(ctx context.Context) (int32, error) {
	var v int32
	err := s.pool.QueryRow(ctx, "select version from "+VersionTable).Scan(&v)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
			return 0, nil
		}
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return v, nil
}

// ErrNotMigrated is returned by CheckSchema when the database schema is
// missing or older than this sbcwatch needs.
var ErrNotMigrated = errors.New("run sbcwatch migrate")

// LatestVersion is the schema version this sbcwatch needs: the number of
// embedded migrations.
func LatestVersion() int32 {
	ents, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		return 0
	}
	return int32(len(ents))
}

// CheckSchema checks, without changing anything, that the schema is
// migrated to LatestVersion. It returns an error wrapping ErrNotMigrated
// when it is not, whose message is one line for an admin.
func (s *Store) CheckSchema(ctx context.Context) error {
	v, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if want := LatestVersion(); v < want {
		if v == 0 {
			return fmt.Errorf("store: the database has no sbcwatch schema: %w", ErrNotMigrated)
		}
		return fmt.Errorf("store: the database schema is at version %d, this sbcwatch needs %d: %w", v, want, ErrNotMigrated)
	}
	return nil
}

// inTx runs fn in a transaction on the pool, committing when fn returns
// nil.
func inTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	return tx.Commit(ctx)
}
