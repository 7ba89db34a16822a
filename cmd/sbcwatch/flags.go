package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/internal/suggest"
)

// parseArgs parses args with fs. With interleaved, flags may come
// before, between or after the positional arguments (returned in
// order). -h or --help prints help and the flags to stdout: ok is false
// and code exitOK. A bad flag is one line on stderr naming the command,
// the flag and what to give it (ok false, code exitUsage).
func parseArgs(fs *flag.FlagSet, args []string, interleaved bool, help string, stdout, stderr io.Writer) (pos []string, code int, ok bool) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var err error
	if interleaved {
		pos, err = parseInterleaved(fs, args)
	} else {
		err = fs.Parse(args)
		pos = fs.Args()
	}
	switch {
	case err == nil:
		return pos, exitOK, true
	case errors.Is(err, flag.ErrHelp):
		printHelp(fs, help, stdout)
		return nil, exitOK, false
	}
	fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), flagError(fs, err))
	return nil, exitUsage, false
}

// printHelp writes help (ending in a newline) and the flags, "--name"
// style, to w.
func printHelp(fs *flag.FlagSet, help string, w io.Writer) {
	if help == "" {
		help = "usage: " + fs.Name() + " [flags]\n"
	}
	fmt.Fprint(w, help)
	if !strings.HasSuffix(strings.TrimRight(help, "\n"), ":") {
		fmt.Fprintln(w, "\nflags:")
	}
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintln(w, line)
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "[]" && !strings.Contains(usage, "default") {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "        %s%s\n", usage, def)
	})
	fmt.Fprintf(w, "\n-h prints this help; 'sbcwatch help' lists the commands.\n")
}

var (
	undefinedRE = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	needsArgRE  = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
	badValueRE  = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for (?:flag )?-+([^:]*): (.*)$`)
)

// flagError turns the flag package's error into a sentence with a
// hint: the nearest known flag for a typo, an example of the value a
// flag wants.
func flagError(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	if m := undefinedRE.FindStringSubmatch(msg); m != nil {
		if near := nearestFlag(fs, m[1]); near != "" {
			return fmt.Sprintf("unknown flag --%s; did you mean --%s? (try -h)", m[1], near)
		}
		return fmt.Sprintf("unknown flag --%s (try -h)", m[1])
	}
	if m := needsArgRE.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("--%s needs a value: %s", m[1], valueHint(fs.Lookup(m[1])))
	}
	if m := badValueRE.FindStringSubmatch(msg); m != nil {
		f := fs.Lookup(m[2])
		hint := valueHint(f)
		if _, isPlain := f.Value.(flag.Getter); !isPlain || hint == "" {
			hint = strings.TrimSpace(m[3])
		}
		return fmt.Sprintf("--%s %s: %s", m[2], m[1], hint)
	}
	return strings.Join(strings.Fields(msg), " ")
}

// valueHint says what a flag takes, by the type of its value.
func valueHint(f *flag.Flag) string {
	if f == nil {
		return "see -h"
	}
	if g, ok := f.Value.(flag.Getter); ok {
		switch g.Get().(type) {
		case time.Duration:
			return "use a duration such as 10s, 1m30s or 2h"
		case int, int64, uint, uint64:
			return "use a whole number such as 30"
		case float64:
			return "use a number such as 1.5"
		case bool:
			return "use true or false (--" + f.Name + "=false)"
		}
	}
	if name, _ := flag.UnquoteUsage(f); name != "" && name != "value" {
		return "give a " + name
	}
	return "see -h for what it takes"
}

// nearestFlag is the defined flag closest to name (by edit distance,
// or one that contains it), or "" when none is close.
func nearestFlag(fs *flag.FlagSet, name string) string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return suggest.Nearest(name, names, func(s, n string) bool {
		return strings.Contains(n, s) || strings.Contains(s, n)
	})
}

// columnsEnv is $COLUMNS when it is a positive number, else 0.
func columnsEnv() int {
	var n int
	if _, err := fmt.Sscanf(os.Getenv("COLUMNS"), "%d", &n); err != nil || n < 0 {
		return 0
	}
	return n
}

// cmdHelp prints one command's help: sbcwatch help CMD.
func cmdHelp(ctx context.Context, topic string, stdout, stderr io.Writer) int {
	switch topic {
	case "analyze", "serve", "poll", "migrate":
		return run(ctx, []string{topic, "-h"}, stdout, stderr)
	case "audit":
		return run(ctx, []string{"audit", "tls", "-h"}, stdout, stderr)
	case "token":
		return run(ctx, []string{"token", "-h"}, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "version":
		fmt.Fprintln(stdout, "usage: sbcwatch version\n\nPrints the version, commit, build date and Go version.")
		return exitOK
	}
	fmt.Fprintf(stderr, "sbcwatch help: unknown command %q (commands: analyze, serve, audit, poll, migrate, token, version)\n", topic)
	return exitUsage
}
