package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sbcwatch/sbcwatch/api"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/daemon"
	"github.com/sbcwatch/sbcwatch/internal/forwarded"
	"github.com/sbcwatch/sbcwatch/metrics"
	"github.com/sbcwatch/sbcwatch/store"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// serveFlags are serve's flags; they override the configuration file.
type serveFlags struct {
	db, listen, cfgPath                 *string
	retention                           *int
	interfaces, fqdns, addrs, transfers listFlag
	acdrListen, hepListen, syslogListen *string
	checkConfig, migrate                *bool
	logFlags                            *logFlags
	tlsCert, tlsKey, proxies            *string
}

func newServeFlags(stderr io.Writer) (*flag.FlagSet, *serveFlags) {
	fs, db := storeFlagSet("sbcwatch serve", stderr)
	f := &serveFlags{db: db}
	f.listen = fs.String("listen", "", "API address (default serve.listen of the config, else 127.0.0.1:8080)")
	f.cfgPath = fs.String("config", "", "configuration file")
	f.retention = fs.Int("retention-days", 0, "days of data to keep (default serve.retention_days, else 30)")
	fs.Var(&f.interfaces, "interface", "capture on this interface (repeatable; AF_PACKET, needs CAP_NET_RAW)")
	f.acdrListen = fs.String("acdr-listen", "", "receive AudioCodes debug recording on this host:port (UDP and TCP)")
	f.hepListen = fs.String("hep-listen", "", "receive HEP v3 on this host:port (UDP and TCP)")
	f.syslogListen = fs.String("syslog-listen", "", "receive AudioCodes syslog on this host:port (UDP and TCP)")
	fs.Var(&f.fqdns, "sbc-fqdn", "the SBC's FQDN (repeatable; replaces the configured SBC's)")
	fs.Var(&f.addrs, "sbc-addr", "the SBC's IP address (repeatable; replaces the configured SBC's)")
	fs.Var(&f.transfers, "expect-transfer", "a called number whose answered calls must end in a REFER (repeatable)")
	f.checkConfig = fs.Bool("check-config", false, "check the configuration (and flags), list every problem, and exit")
	f.migrate = fs.Bool("migrate", false, "apply the database schema first (as sbcwatch migrate)")
	f.logFlags = addLogFlags(fs, storeGetenv)
	f.tlsCert = fs.String("tls-cert", "", "serve HTTPS with this PEM certificate (chain); reloaded on SIGHUP")
	f.tlsKey = fs.String("tls-key", "", "the PEM private key of --tls-cert")
	f.proxies = fs.String("trusted-proxy", "", "reverse proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-Proto: https marks sign-in cookies Secure")
	return fs, f
}

// loadServeConfig reads the file (or the defaults) and applies the flags
// over it, then validates the result: every problem is in the error.
func loadServeConfig(f *serveFlags) (*config.Config, error) {
	cfg := config.Default()
	if *f.cfgPath != "" {
		// Validation problems are listed again below, after the flags.
		c, err := config.LoadAll(*f.cfgPath)
		if c == nil {
			return nil, err
		}
		cfg = c
	}
	var errs []error
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.Serve.Listen, *f.listen)
	set(&cfg.Serve.ACDRListen, *f.acdrListen)
	set(&cfg.Serve.HEPListen, *f.hepListen)
	set(&cfg.Serve.SyslogListen, *f.syslogListen)
	if *f.retention != 0 {
		cfg.Serve.Retention = *f.retention
	}
	if len(f.interfaces) > 0 {
		cfg.Serve.Interfaces = append([]string(nil), f.interfaces...)
	}
	if len(f.transfers) > 0 {
		cfg.ExpectTransfer = append([]string(nil), f.transfers...)
	}
	if len(f.fqdns) > 0 || len(f.addrs) > 0 {
		switch len(cfg.SBCs) {
		case 0:
			name := "sbc"
			if len(f.fqdns) > 0 {
				name = f.fqdns[0]
			}
			cfg.SBCs = []config.SBC{{Name: name}}
		case 1:
		default:
			errs = append(errs, fmt.Errorf("--sbc-fqdn and --sbc-addr need a configuration with at most one SBC (it has %d)", len(cfg.SBCs)))
		}
		if len(cfg.SBCs) == 1 {
			if len(f.fqdns) > 0 {
				cfg.SBCs[0].FQDNs = append([]string(nil), f.fqdns...)
			}
			if len(f.addrs) > 0 {
				cfg.SBCs[0].Addresses = append([]string(nil), f.addrs...)
			}
		}
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		if *f.cfgPath != "" {
			err = fmt.Errorf("%s: %w", *f.cfgPath, err)
		}
		errs = append(errs, err)
	}
	// What Validate cannot see from the file alone.
	for _, w := range cfg.Serve.Alerts.Webhooks {
		if _, err := w.Secret(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range cfg.Serve.Interfaces {
		if _, err := net.InterfaceByName(n); err != nil && strings.TrimSpace(n) != "" {
			errs = append(errs, fmt.Errorf("serve.interfaces: %q: %w", n, err))
		}
	}
	return cfg, errors.Join(errs...)
}

// problems flattens a (joined) error into one problem per line.
func problems(err error) []string {
	var out []string
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "config:"))
		// The YAML decoder's problems come as "line n: …; line m: …".
		for _, p := range strings.Split(l, "; line ") {
			if p = strings.TrimSpace(p); p != "" {
				if len(out) > 0 && !strings.HasPrefix(p, "line ") && strings.Contains(l, "; line "+p) {
					p = "line " + p
				}
				out = append(out, p)
			}
		}
	}
	return out
}

// cmdServe runs the daemon until ctx ends; see serveUsage.
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newServeFlags(stderr)
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
	cfg, err := loadServeConfig(f)
	if *f.checkConfig {
		if err != nil {
			ps := problems(err)
			fmt.Fprintf(stderr, "sbcwatch serve: %d problem(s) in the configuration:\n", len(ps))
			for _, p := range ps {
				fmt.Fprintln(stderr, "  "+p)
			}
			return exitUsage
		}
		fmt.Fprintln(stdout, "configuration OK")
		return exitOK
	}
	if err != nil {
		return fail(exitUsage, "%s", strings.Join(problems(err), "; "))
	}
	if cfg.Serve.Retention < 0 {
		return fail(exitUsage, "--retention-days must not be negative")
	}
	dsn, err := storeDSN(*f.db, storeGetenv)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	// Every row this instance stores names it (serve.instance).
	if dsn, err = daemon.InstanceDSN(dsn, cfg.Serve.Instance); err != nil {
		return fail(exitUsage, "%v", err)
	}

	log, err := f.logFlags.logger(stderr)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	trusted, err := forwarded.Parse(*f.proxies)
	if err != nil {
		return fail(exitUsage, "--trusted-proxy: %v", err)
	}
	var serveOpts []api.ServeOption
	scheme := "http"
	if (*f.tlsCert == "") != (*f.tlsKey == "") {
		return fail(exitUsage, "--tls-cert and --tls-key go together")
	} else if *f.tlsCert != "" {
		serveOpts, scheme = append(serveOpts, api.WithTLS(*f.tlsCert, *f.tlsKey)), "https"
	}
	st, err := storeOpen(ctx, dsn)
	if err != nil {
		return fail(exitUsage, "%s", storeLine(err))
	}
	defer st.Close()
	st.SetLogger(log)
	if *f.migrate {
		if err := st.Migrate(ctx); err != nil {
			return fail(exitInternal, "%s", storeLine(err))
		}
	}
	if err := st.CheckSchema(ctx); err != nil {
		return fail(exitUsage, "%s", storeLine(err))
	}
	st.SetResolveAfter(cfg.Serve.ResolveAfterDays)
	for _, s := range cfg.SBCs {
		if err := store.UpsertSBC(ctx, st.Pool(), store.SBC{Name: s.Name, FQDNs: s.FQDNs, Addresses: s.Addresses}); err != nil {
			return fail(exitInternal, "%s", storeLine(err))
		}
	}
	bi := readBuildInfo()
	d, err := daemon.New(ctx, daemon.Options{
		Config: cfg, Store: st, Logger: log, Listen: cfg.Serve.Listen, Version: bi.Version,
		Metrics:       metrics.New(bi.Version, bi.Commit, bi.Date),
		RetentionDays: cfg.Serve.Retention, TrustedProxies: trusted, ServeOptions: serveOpts,
		OnListening: func(a net.Addr) { fmt.Fprintf(stdout, "listening on %s://%s\n", scheme, a) },
		Reload:      func() (*config.Config, error) { return loadServeConfig(f) },
	})
	if err != nil {
		return fail(exitUsage, "%s", storeLine(err))
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	go func() {
		for {
			select {
			case <-hctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the configuration")
				d.Reload()
			}
		}
	}()
	if err := d.Run(ctx); err != nil {
		return fail(exitUsage, "%s", storeLine(err))
	}
	return exitOK
}
