package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

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
		return nil, err
	}
	return st, nil
}

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

// storeParse parses args: -h prints the flags to stdout (done, exit 0), a
// bad flag is one line on stderr (exit 2).
func storeParse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	err := fs.Parse(args)
	if err == nil {
		return 0, true
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "usage of %s:\n", fs.Name())
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return exitOK, false
	}
	fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), storeLine(err))
	return exitUsage, false
}

// storeGetenv is the environment lookup (a variable for tests).
var storeGetenv = os.Getenv

// cmdMigrate applies the database schema: sbcwatch migrate --db DSN.
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, db := storeFlagSet("sbcwatch migrate", stderr)
	if code, ok := storeParse(fs, args, stdout, stderr); !ok {
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

// cmdToken creates, revokes and lists API tokens. create prints the new
// token alone on stdout; only its SHA-256 is stored.
func cmdToken(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "create" && args[0] != "revoke" && args[0] != "list") {
		fmt.Fprintln(stderr, "sbcwatch token: expected create, revoke or list; "+strings.ReplaceAll(tokenUsage, "\n       ", " | "))
		return exitUsage
	}
	sub := args[0]
	fs, db := storeFlagSet("sbcwatch token "+sub, stderr)
	name := fs.String("name", "", "token name (create, revoke)")
	scope := fs.String("scope", "read", "read (GET) or admin (GET and POST) (create)")
	if code, ok := storeParse(fs, args[1:], stdout, stderr); !ok {
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
	if err := st.Migrate(ctx); err != nil {
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
