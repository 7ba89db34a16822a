// Command sbcwatch watches Microsoft Teams Direct Routing SBCs and tells a
// UC admin why calls fail, with the evidence attached.
//
// Subcommands: analyze, serve, audit tls, poll, migrate, token. Run
// `sbcwatch help` for usage.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes shared by every subcommand.
const (
	exitOK       = 0
	exitFinding  = 1 // audit: a critical finding
	exitUsage    = 2 // bad input, usage, or network error
	exitInternal = 3
	// exitInterrupted: stopped by SIGINT or SIGTERM (128 + SIGINT).
	exitInterrupted = 130
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: sbcwatch <command> [flags]

commands:
  analyze FILE|DIR...   read captures or SBC logs, print calls, TLS connections and findings
  serve                 run the daemon: API over what is stored (and, when configured, capture)
  audit tls HOST:PORT   audit the SBC's TLS contexts the way Microsoft connects
  poll                  read an SBC's call counters once (SNMP or REST)
  migrate               apply the database schema
  token                 create, list or revoke API tokens
  version               print the version, commit and build date

Run 'sbcwatch help <command>' (or 'sbcwatch <command> -h') for one command's help.
`

// run dispatches to a subcommand and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "analyze":
		return cmdAnalyze(ctx, rest, stdout, stderr)
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "audit":
		if len(rest) > 0 && (rest[0] == "-h" || rest[0] == "--help") {
			return cmdHelp(ctx, "audit", stdout, stderr)
		}
		if len(rest) == 0 || rest[0] != "tls" {
			fmt.Fprintln(stderr, "sbcwatch audit: usage: sbcwatch audit tls HOST:PORT [flags]")
			return exitUsage
		}
		return cmdAuditTLS(ctx, rest[1:], stdout, stderr)
	case "poll":
		return cmdPoll(ctx, rest, stdout, stderr)
	case "migrate":
		return cmdMigrate(ctx, rest, stdout, stderr)
	case "token":
		return cmdToken(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		if len(rest) > 0 {
			return cmdHelp(ctx, rest[0], stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	case "version", "--version":
		readBuildInfo().write(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "sbcwatch: unknown command %q (try 'sbcwatch help')\n", cmd)
	return exitUsage
}
