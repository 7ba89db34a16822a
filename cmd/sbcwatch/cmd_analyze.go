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
	"time"

	"github.com/sbcwatch/sbcwatch/analyze"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/pipeline"
	"github.com/sbcwatch/sbcwatch/report"
)

// parseInterleaved parses flags that may come before, between or after
// the positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// analyzeFlags are the flags shared by analyze (and its config).
type analyzeFlags struct {
	format, call, configFile, sbcName, db string
	store, progress, noSystem, keep       bool
	fqdns, addrs, expect, trust, ranges   stringList
	shortCall, referWindow, giveUp        time.Duration
	// The view of the text and CSV reports.
	onlyFindings         bool
	number, since, until string
	limit, width         int
}

const analyzeHelp = `usage: sbcwatch analyze [flags] FILE|DIR|-...

Reads packet captures (pcap, pcapng, gzip), AudioCodes SBC logs and
directories of them as one input in time order, and prints the verdicts,
the calls and the TLS connections. "-" reads a capture from standard
input; a FIFO, /dev/stdin and <(process substitution) work too.

The text report fits the terminal (or --width); --only-findings,
--number, --since, --until and --limit narrow it; --format csv prints
the calls table as CSV.
`

func cmdAnalyze(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sbcwatch analyze", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f analyzeFlags
	fs.StringVar(&f.format, "format", "text", "output `format`: text, json, csv (the calls table) or ndjson (one record per line as decided)")
	fs.StringVar(&f.call, "call", "", "print a ladder of the call with this Call-ID")
	fs.StringVar(&f.configFile, "config", "", "YAML configuration file (shared with serve)")
	fs.Var(&f.fqdns, "sbc-fqdn", "the SBC's FQDN (repeatable)")
	fs.Var(&f.addrs, "sbc-addr", "an SBC address (repeatable)")
	fs.Var(&f.expect, "expect-transfer", "a called number that expects a transfer, e.g. an Auto Attendant (repeatable)")
	fs.Var(&f.trust, "trust", "PEM file of trusted root certificates (repeatable; added to the system roots)")
	fs.BoolVar(&f.noSystem, "no-system-roots", false, "trust only the --trust files")
	fs.Var(&f.ranges, "ms-range", "Microsoft CIDR range (repeatable; replaces the defaults)")
	fs.DurationVar(&f.shortCall, "short-call", 0, "short-call threshold (default 10s)")
	fs.DurationVar(&f.referWindow, "refer-window", 0, "time the SBC has to follow an accepted REFER (default 10s)")
	fs.DurationVar(&f.giveUp, "give-up-window", 0, "how soon after failed TLS attempts a call must end to be blamed (default 60s)")
	fs.BoolVar(&f.store, "store", false, "write what was found to the database (--db or DATABASE_URL)")
	fs.StringVar(&f.db, "db", "", "database URL for --store (default $DATABASE_URL)")
	fs.StringVar(&f.sbcName, "sbc", "", "SBC name to file the results under with --store")
	fs.BoolVar(&f.keep, "keep-packets", false, "with --store, also store the raw frames behind each call (its SIP and its TLS connections) for the evidence pcap")
	fs.BoolVar(&f.progress, "progress", true, "show progress on standard error when it is a terminal")
	fs.BoolVar(&f.onlyFindings, "only-findings", false, "text and csv: only the calls and TLS connections with findings")
	fs.StringVar(&f.number, "number", "", "text and csv: only calls from or to this `number` (part of it, any form: 12345600, 069 12345600, +49 69 …)")
	fs.StringVar(&f.since, "since", "", "text and csv: only what happened from this `time` on (2026-03-02 09:55, RFC 3339; UTC)")
	fs.StringVar(&f.until, "until", "", "text and csv: only what happened before this `time`")
	fs.IntVar(&f.limit, "limit", 0, "text: at most this many rows per table (0: all)")
	fs.IntVar(&f.width, "width", 0, "text and the --call ladder: wrap to this many columns (default: the terminal's width; unlimited when not a terminal)")
	paths, code, ok := parseArgs(fs, args, true, analyzeHelp, stdout, stderr)
	if !ok {
		return code
	}
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "sbcwatch analyze: no capture file given (usage: sbcwatch analyze [flags] FILE|DIR|-...; try -h)")
		return exitUsage
	}
	if f.format != "text" && f.format != "json" && f.format != "csv" && f.format != "ndjson" {
		fmt.Fprintf(stderr, "sbcwatch analyze: --format must be text, json, csv or ndjson, not %q\n", f.format)
		return exitUsage
	}
	if f.format == "csv" && f.call != "" {
		fmt.Fprintln(stderr, "sbcwatch analyze: --call prints a ladder (text) or JSON, not csv")
		return exitUsage
	}
	if f.format == "ndjson" && (f.call != "" || f.store) {
		fmt.Fprintln(stderr, "sbcwatch analyze: --format ndjson streams the records; it does not go with --call or --store")
		return exitUsage
	}
	view, err := f.view()
	if err != nil {
		fmt.Fprintf(stderr, "sbcwatch analyze: %v\n", err)
		return exitUsage
	}
	cfg, err := f.config()
	if err != nil {
		fmt.Fprintf(stderr, "sbcwatch analyze: %v\n", oneLine(err))
		return exitUsage
	}
	if f.keep && !f.store {
		fmt.Fprintln(stderr, "sbcwatch analyze: --keep-packets needs --store")
		return exitUsage
	}
	opt := analyze.Options{Config: cfg}
	if f.keep {
		opt.KeepPackets = &analyze.PacketLimits{}
	}
	if f.progress && isTerminal(os.Stderr) && stderr == io.Writer(os.Stderr) {
		opt.Progress = progressPrinter(stderr)
	}
	paths, streams, renames, cleanup, err := spoolInputs(ctx, paths, os.Stdin)
	opt.Streams = streams
	defer cleanup()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "sbcwatch analyze: interrupted while reading the input")
			return exitInterrupted
		}
		fmt.Fprintf(stderr, "sbcwatch analyze: %v\n", oneLine(err))
		return exitUsage
	}
	if len(renames) > 0 {
		// Messages name an input copied to a temporary file by its own
		// name ("standard input", the FIFO), not the copy's.
		stderr = &renamingWriter{w: stderr, r: strings.NewReplacer(renames...)}
	}
	if !f.store {
		// Nothing needs the records after the report: stream them.
		return f.streamReport(ctx, paths, opt, view, nil, stdout, stderr)
	}
	// The store takes the records as they are decided, in batches (with
	// --keep-packets the frames behind each call go with it).
	if f.sbcName == "" && len(cfg.SBCs) == 1 {
		f.sbcName = cfg.SBCs[0].Name // file it under the one configured SBC
	}
	ss, code := openStoreSink(ctx, f.db, f.sbcName, strings.Join(paths, ","), stderr)
	if code == exitInternal {
		// The database is away: the report still comes, exit 3.
		opt.KeepPackets = nil
		if rc := f.streamReport(ctx, paths, opt, view, nil, stdout, stderr); rc != exitOK {
			return rc
		}
		return exitInternal
	}
	if code != exitOK {
		return code
	}
	ss.retention = cfg.Serve.Retention
	return f.streamReport(ctx, paths, opt, view, ss, stdout, stderr)
}

// streamReport runs the analysis with the records leaving as they are
// decided: straight to stdout for ndjson, through a spool on disk for
// json and text, so memory does not grow with the input. With --call,
// a report.CallSpool keeps only that call and reads back the TLS
// connections of its ladder at the end.
//
// With ss (--store) the records also go to the store as they are
// decided; a store that fails is exit 3 and still leaves the report.
func (f *analyzeFlags) streamReport(ctx context.Context, paths []string, opt analyze.Options, view report.View, ss *storeSink, stdout, stderr io.Writer) int {
	format := f.format
	fail := func(err error) int {
		if ss != nil {
			ss.close()
		}
		return analyzeFailed(ctx, err, opt, stderr)
	}
	opt.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	var sum analyze.Summary
	var err error
	var write func() error
	var spool *report.Spool
	if f.call != "" {
		cs, err := report.NewCallSpool("", f.call)
		if err != nil {
			return fail(err)
		}
		defer cs.Close()
		spool = cs.Findings()
		var sink pipeline.Sink = cs
		if ss != nil {
			sink = analyze.Tee{cs, ss}
		}
		if sum, err = analyze.Stream(ctx, paths, opt, sink); err != nil {
			return fail(err)
		}
		write = func() error {
			var err error
			if format == "json" {
				err = cs.WriteCallJSON(stdout)
			} else {
				err = cs.WriteLadder(stdout, f.textWidth(stdout))
			}
			if err != nil {
				// No such call (or the ladder could not be written): a
				// usage error, as it always was.
				return callError{err}
			}
			return nil
		}
	} else if format == "ndjson" {
		nd := report.NewNDJSON(stdout)
		if sum, err = analyze.Stream(ctx, paths, opt, nd); err != nil {
			return fail(err)
		}
		write = func() error { return nd.End(sum.Stats, sum.Hints, sum.Warnings) }
	} else {
		sp, err := report.NewSpool("")
		if err != nil {
			return fail(err)
		}
		spool = sp
		defer sp.Close()
		var sink pipeline.Sink = sp
		if ss != nil {
			sink = analyze.Tee{sp, ss}
		}
		if sum, err = analyze.Stream(ctx, paths, opt, sink); err != nil {
			return fail(err)
		}
		write = func() error {
			if format == "json" {
				return sp.WriteJSON(stdout, sum.Stats, sum.Hints, sum.Warnings)
			}
			// Two passes over the spool: memory grows with the
			// findings, not the calls.
			if format == "csv" {
				return sp.WriteCallsCSV(stdout, view, sum.Stats, sum.Hints, sum.Warnings)
			}
			return sp.WriteText(stdout, view, f.textWidth(stdout), sum.Stats, sum.Hints, sum.Warnings)
		}
	}
	if opt.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	for _, w := range sum.Warnings {
		fmt.Fprintf(stderr, "sbcwatch analyze: warning: %s\n", w)
	}
	stored := exitOK
	if ss != nil {
		stored = ss.finish(spool, sum.Stats, stderr)
	}
	if err := write(); err != nil {
		var ce callError
		if errors.As(err, &ce) {
			fmt.Fprintf(stderr, "sbcwatch analyze: %v\n", ce.err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "sbcwatch analyze: writing the report: %v\n", err)
		return exitInternal
	}
	return stored
}

// callError is an error of the --call output: exit 2 (usage), as for a
// Call-ID the input lacks.
type callError struct{ err error }

func (e callError) Error() string { return e.err.Error() }
func (e callError) Unwrap() error { return e.err }

// analyzeFailed reports an analysis that ended in err on stderr (after
// clearing the progress line) and returns the exit status: interrupted,
// bad input (usage) or internal.
func analyzeFailed(ctx context.Context, err error, opt analyze.Options, stderr io.Writer) int {
	if opt.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "sbcwatch analyze: interrupted")
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "sbcwatch analyze: %v\n", oneLine(err))
	if errors.Is(err, analyze.ErrInput) {
		return exitUsage
	}
	return exitInternal
}

// textWidth is the width the text report wraps to: --width, else the
// terminal's when stdout is one, else 0 (unlimited).
func (f *analyzeFlags) textWidth(stdout io.Writer) int {
	if f.width == 0 && stdout == io.Writer(os.Stdout) {
		return terminalWidth(os.Stdout)
	}
	return f.width
}

// view is the report view the flags ask for.
func (f *analyzeFlags) view() (report.View, error) {
	v := report.View{OnlyFindings: f.onlyFindings, Number: f.number, Limit: f.limit}
	if f.number != "" && strings.Trim(f.number, "0+ -()/.") == "" {
		return v, fmt.Errorf("--number %q: give some digits of the number", f.number)
	}
	if f.limit < 0 {
		return v, fmt.Errorf("--limit %d: use 0 (all) or more", f.limit)
	}
	if f.width < 0 {
		return v, fmt.Errorf("--width %d: use 0 (the terminal's) or a number of columns such as 80", f.width)
	}
	var err error
	if v.Since, err = parseTime("--since", f.since); err != nil {
		return v, err
	}
	if v.Until, err = parseTime("--until", f.until); err != nil {
		return v, err
	}
	if !v.Since.IsZero() && !v.Until.IsZero() && !v.Until.After(v.Since) {
		return v, fmt.Errorf("--until %s is not after --since %s", f.until, f.since)
	}
	return v, nil
}

// timeLayouts are the forms --since and --until take (UTC unless the
// time says otherwise).
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04", "2006-01-02"}

func parseTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, strings.TrimSpace(s)); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %q: use a time such as \"2026-03-02 09:55\" (UTC) or 2026-03-02T09:55:00+01:00", name, s)
}

// config merges the YAML file (if any) with the flags; flags win.
func (f *analyzeFlags) config() (*config.Config, error) {
	cfg := &config.Config{}
	if f.configFile != "" {
		c, err := config.Load(f.configFile)
		if err != nil {
			return nil, err
		}
		cfg = c
	}
	if len(f.fqdns) > 0 || len(f.addrs) > 0 {
		cfg.SBCs = append(cfg.SBCs, config.SBC{Name: "cli", FQDNs: f.fqdns, Addresses: f.addrs})
	}
	cfg.ExpectTransfer = append(cfg.ExpectTransfer, f.expect...)
	cfg.Trust = append(cfg.Trust, f.trust...)
	if f.noSystem {
		cfg.NoSystemRoots = true
	}
	if len(f.ranges) > 0 {
		cfg.MicrosoftRanges = f.ranges
	}
	if f.shortCall > 0 {
		cfg.ShortCall = config.Duration(f.shortCall)
	}
	if f.referWindow > 0 {
		cfg.ReferWindow = config.Duration(f.referWindow)
	}
	if f.giveUp > 0 {
		cfg.GiveUpWindow = config.Duration(f.giveUp)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// oneLine keeps an error message on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressPrinter returns a callback that redraws one progress line at
// most every 200 ms, and only for inputs worth waiting for.
func progressPrinter(w io.Writer) func(done, total int64) {
	var last time.Time
	return func(done, total int64) {
		if total < 16<<20 || time.Since(last) < 200*time.Millisecond {
			return
		}
		last = time.Now()
		fmt.Fprintf(w, "\rreading: %3.0f%% (%d of %d MB)", 100*float64(done)/float64(total), done>>20, total>>20)
	}
}
