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
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sbcwatch/sbcwatch/store"
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

const serveHelp = `usage: sbcwatch serve [--db DSN] [--migrate] [--listen ADDR] [--config FILE] [--interface NAME]...
       [--acdr-listen ADDR] [--hep-listen ADDR] [--syslog-listen ADDR] [--sbc-fqdn FQDN]
       [--sbc-addr IP] [--expect-transfer NUMBER] [--check-config]

Runs the daemon: the REST API and the pages (/calls, /certificates) over
what is stored and, when the configuration or the flags say so, live
capture and exported SIP and syslog (see live/README.md), polls, audits
and alerts (see daemon/README.md). Flags override the file.
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
