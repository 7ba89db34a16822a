package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sbcwatch/sbcwatch/api"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/internal/forwarded"
	"github.com/sbcwatch/sbcwatch/metrics"
	"github.com/sbcwatch/sbcwatch/store"
)

// Hooks through which the capture, poll and audit wiring joins `serve`
// (set them from an init function in their own file of package main).
var (
	// serveHooks each run in their own goroutine under serve's context
	// once the store is migrated, and must return when the context ends.
	// An error is logged; it does not stop the API.
	serveHooks []func(ctx context.Context, cfg *config.Config, st *store.Store, log *slog.Logger) error
	// serveRunAudit, when set and a config is given, builds the function
	// that answers POST /api/v1/audits/run.
	serveRunAudit func(cfg *config.Config, st *store.Store, log *slog.Logger) func(context.Context, api.AuditRunRequest) (any, error)
)

// storeDSN returns --db, else DATABASE_URL.
func storeDSN(flagValue string, getenv func(string) string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if v := getenv("DATABASE_URL"); v != "" {
		return v, nil
	}
	return "", errors.New("--db DSN or DATABASE_URL is required")
}

// storeOpen connects (bounded to 10 s) and returns a one-line error.
func storeOpen(ctx context.Context, dsn string) (*store.Store, error) {
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := store.Open(octx, dsn)
	if err != nil {
		return nil, storeHint(err, dsn)
	}
	return st, nil
}

// storeHint turns the usual first-run connection failures into one
// sentence saying what to do; other errors pass unchanged.
func storeHint(err error, dsn string) error {
	cfg, perr := pgconn.ParseConfig(dsn)
	if perr != nil {
		return err
	}
	at := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "3D000": // invalid_catalog_name
			return hinted{fmt.Sprintf("database %q does not exist on %s: create it with 'createdb -h %s -p %d %s', then run 'sbcwatch migrate'",
				cfg.Database, at, cfg.Host, cfg.Port, cfg.Database), err}
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return hinted{fmt.Sprintf("PostgreSQL at %s refused user %q (%s): check the user and password in --db or DATABASE_URL", at, cfg.User, pg.Message), err}
		}
	}
	var op *net.OpError
	if errors.As(err, &op) && strings.Contains(err.Error(), "connection refused") {
		return hinted{fmt.Sprintf("nothing listens at %s (connection refused): is PostgreSQL running there? (--db or DATABASE_URL)", at), err}
	}
	return err
}

// hinted is an error shown as a sentence saying what to do, wrapping
// the driver's error.
type hinted struct {
	msg string
	err error
}

func (e hinted) Error() string { return e.msg }
func (e hinted) Unwrap() error { return e.err }

// storeLine flattens an error to one line.
func storeLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// storeFlagSet is a silent FlagSet with --db; parse with storeParse.
func storeFlagSet(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	db := fs.String("db", "", "Postgres URL (default $DATABASE_URL)")
	return fs, db
}

// storeParse parses args: -h prints the help and flags to stdout (done,
// exit 0), a bad flag is one line on stderr (exit 2).
func storeParse(fs *flag.FlagSet, args []string, help string, stdout, stderr io.Writer) (code int, ok bool) {
	_, code, ok = parseArgs(fs, args, false, help, stdout, stderr)
	return code, ok
}

// storeGetenv is the environment lookup (a variable for tests).
var storeGetenv = os.Getenv

// cmdMigrate applies the database schema: sbcwatch migrate --db DSN.
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, db := storeFlagSet("sbcwatch migrate", stderr)
	if code, ok := storeParse(fs, args, migrateHelp, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sbcwatch migrate: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	dsn, err := storeDSN(*db, storeGetenv)
	if err != nil {
		fmt.Fprintln(stderr, "sbcwatch migrate:", err)
		return exitUsage
	}
	st, err := storeOpen(ctx, dsn)
	if err != nil {
		fmt.Fprintln(stderr, "sbcwatch migrate:", storeLine(err))
		return exitUsage
	}
	defer st.Close()
	st.SetLogger(slog.New(slog.NewTextHandler(stderr, nil)))
	if err := st.Migrate(ctx); err != nil {
		fmt.Fprintln(stderr, "sbcwatch migrate:", storeLine(err))
		return exitInternal
	}
	v, err := st.SchemaVersion(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "sbcwatch migrate:", storeLine(err))
		return exitInternal
	}
	fmt.Fprintf(stdout, "schema at version %d\n", v)
	return exitOK
}

const tokenUsage = `usage: sbcwatch token create --name NAME --scope read|admin [--db DSN]
       sbcwatch token revoke --name NAME [--db DSN]
       sbcwatch token list [--db DSN]`

const migrateHelp = `usage: sbcwatch migrate [--db DSN]

Creates or updates the database schema. The database itself must exist:
createdb sbcwatch (or CREATE DATABASE sbcwatch as a superuser).
`

const serveHelp = `usage: sbcwatch serve [--db DSN] [--migrate] [--listen ADDR] [--config FILE]

Runs the daemon: the REST API and the pages (/calls, /certificates) over
what is stored, and, when the configuration says so, capture, polls and
audits.
`

// cmdToken creates, revokes and lists API tokens. create prints the new
// token alone on stdout; only its SHA-256 is stored.
func cmdToken(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprintln(stdout, tokenUsage)
		return exitOK
	}
	if len(args) == 0 || (args[0] != "create" && args[0] != "revoke" && args[0] != "list") {
		fmt.Fprintln(stderr, "sbcwatch token: expected create, revoke or list; "+strings.ReplaceAll(tokenUsage, "\n       ", " | "))
		return exitUsage
	}
	sub := args[0]
	fs, db := storeFlagSet("sbcwatch token "+sub, stderr)
	name := fs.String("name", "", "token name (create, revoke)")
	scope := fs.String("scope", "read", "read (GET) or admin (GET and POST) (create)")
	if code, ok := storeParse(fs, args[1:], tokenUsage+"\n", stdout, stderr); !ok {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sbcwatch token %s: %s\n", sub, fmt.Sprintf(format, a...))
		return exitUsage
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	if sub != "list" && *name == "" {
		return fail("--name is required")
	}
	if sub == "create" && *scope != store.ScopeRead && *scope != store.ScopeAdmin {
		return fail("--scope must be read or admin, not %q", *scope)
	}
	dsn, err := storeDSN(*db, storeGetenv)
	if err != nil {
		return fail("%v", err)
	}
	st, err := storeOpen(ctx, dsn)
	if err != nil {
		return fail("%s", storeLine(err))
	}
	defer st.Close()
	st.SetLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := st.CheckSchema(ctx); err != nil {
		return fail("%s", storeLine(err))
	}
	switch sub {
	case "create":
		tok, err := store.CreateToken(ctx, st.Pool(), *name, *scope)
		if err != nil {
			return fail("%s", storeLine(err))
		}
		fmt.Fprintln(stdout, tok)
	case "revoke":
		if err := store.RevokeToken(ctx, st.Pool(), *name); err != nil {
			return fail("%s", storeLine(err))
		}
		fmt.Fprintf(stderr, "token %q revoked\n", *name)
	case "list":
		toks, err := store.ListTokens(ctx, st.Pool())
		if err != nil {
			return fail("%s", storeLine(err))
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSCOPE\tCREATED\tREVOKED")
		for _, t := range toks {
			rev := "-"
			if t.RevokedAt != nil {
				rev = t.RevokedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, t.Scope, t.CreatedAt.UTC().Format(time.RFC3339), rev)
		}
		tw.Flush()
	}
	return exitOK
}

// cmdServe serves the API over what is stored, until ctx ends: sbcwatch
// serve --db DSN [--migrate] [--listen ADDR] [--config FILE]. The schema
// must be current; only --migrate applies it.
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, db := storeFlagSet("sbcwatch serve", stderr)
	listen := fs.String("listen", "", "API address (default serve.listen of the config, else 127.0.0.1:8080)")
	cfgPath := fs.String("config", "", "configuration file (SBCs, retention; capture, polls and audits when wired)")
	retention := fs.Int("retention-days", 0, "days of data to keep (default serve.retention_days of the config, else 30)")
	migrate := fs.Bool("migrate", false, "apply the database schema first (as sbcwatch migrate)")
	lf := addLogFlags(fs, storeGetenv)
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this PEM certificate (chain); reloaded on SIGHUP")
	tlsKey := fs.String("tls-key", "", "the PEM private key of --tls-cert")
	proxies := fs.String("trusted-proxy", "", "reverse proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-Proto: https marks sign-in cookies Secure")
	if code, ok := storeParse(fs, args, serveHelp, stdout, stderr); !ok {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "sbcwatch serve: %s\n", fmt.Sprintf(format, a...))
		return code
	}
	if fs.NArg() > 0 {
		return fail(exitUsage, "unexpected argument %q", fs.Arg(0))
	}
	dsn, err := storeDSN(*db, storeGetenv)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	var cfg *config.Config
	if *cfgPath != "" {
		if cfg, err = config.Load(*cfgPath); err != nil {
			return fail(exitUsage, "%s", storeLine(err))
		}
	}
	addr := *listen
	keep := *retention
	resolveAfter := 0
	if cfg != nil {
		resolveAfter = cfg.Serve.ResolveAfterDays
		if addr == "" {
			addr = cfg.Serve.Listen
		}
		if keep == 0 {
			keep = cfg.Serve.Retention
		}
	}
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	if keep < 0 {
		return fail(exitUsage, "--retention-days must not be negative")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fail(exitUsage, "--listen %q: %v", addr, err)
	}

	log, err := lf.logger(stderr)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	trusted, err := forwarded.Parse(*proxies)
	if err != nil {
		return fail(exitUsage, "--trusted-proxy: %v", err)
	}
	var serveOpts []api.ServeOption
	scheme := "http"
	if (*tlsCert == "") != (*tlsKey == "") {
		return fail(exitUsage, "--tls-cert and --tls-key go together")
	} else if *tlsCert != "" {
		serveOpts, scheme = append(serveOpts, api.WithTLS(*tlsCert, *tlsKey)), "https"
	}
	st, err := storeOpen(ctx, dsn)
	if err != nil {
		return fail(exitUsage, "%s", storeLine(err))
	}
	defer st.Close()
	st.SetLogger(log)
	if *migrate {
		if err := st.Migrate(ctx); err != nil {
			return fail(exitInternal, "%s", storeLine(err))
		}
	}
	if err := st.CheckSchema(ctx); err != nil {
		return fail(exitUsage, "%s", storeLine(err))
	}
	bi := readBuildInfo()
	opts := api.Options{Logger: log, Metrics: metrics.New(bi.Version, bi.Commit, bi.Date), TrustedProxies: trusted}
	if cfg != nil {
		for _, s := range cfg.SBCs {
			if err := store.UpsertSBC(ctx, st.Pool(), store.SBC{Name: s.Name, FQDNs: s.FQDNs, Addresses: s.Addresses}); err != nil {
				return fail(exitInternal, "%s", storeLine(err))
			}
		}
		if serveRunAudit != nil {
			opts.RunAudit = serveRunAudit(cfg, st, log)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	st.SetResolveAfter(resolveAfter)
	wg.Go(func() { serveRetention(ctx, st, keep, log) })
	if cfg != nil {
		for _, h := range serveHooks {
			wg.Go(func() {
				if err := h(ctx, cfg, st, log); err != nil && ctx.Err() == nil {
					log.Error("serve component stopped", "err", err)
				}
			})
		}
	}
	if cfg == nil || len(serveHooks) == 0 {
		log.Info("serving stored data only; nothing is captured, polled or audited by this process")
	}
	err = api.ListenAndServe(ctx, addr, api.NewServer(st, opts), log, func(a net.Addr) {
		fmt.Fprintf(stdout, "listening on %s://%s\n", scheme, a)
	}, serveOpts...)
	cancel()
	if err != nil {
		return fail(exitUsage, "%s", storeLine(err))
	}
	return exitOK
}

// serveRetention drops old partitions, resolves the problems not seen
// again for serve.resolve_after_days (in DropOlderThan) and creates the
// next days' partitions, at start and then hourly.
func serveRetention(ctx context.Context, st *store.Store, days int, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if _, err := st.DropOlderThan(ctx, days); err != nil && ctx.Err() == nil {
			log.Warn("retention failed", "err", err)
		}
		if err := st.EnsureUpcoming(ctx, 2); err != nil && ctx.Err() == nil {
			log.Warn("creating partitions ahead failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
