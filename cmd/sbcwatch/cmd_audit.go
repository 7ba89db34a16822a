package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/tlsaudit/audit"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("empty value")
	}
	*s = append(*s, v)
	return nil
}

const auditUsage = `usage: sbcwatch audit tls HOST:PORT [flags]

Connects to the SBC the way Microsoft's Direct Routing proxy does and
checks every TLS context it answers with: SNI = each expected FQDN, no
SNI, an unrelated SNI (each once per round), TLS 1.0/1.1 alone (must be
refused), TLS 1.2 with Microsoft's cipher suites (must work), TLS 1.3,
client-certificate requests, and a SIP OPTIONS after each handshake.

Exit status: 0 no critical finding, 1 a critical finding, 2 usage error
or the SBC could not be reached (one-line error on standard error).

flags (may follow HOST:PORT; repeatable ones marked ...):

`

// cmdAuditTLS runs `sbcwatch audit tls`.
func cmdAuditTLS(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sbcwatch audit tls", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var fqdns, trust stringList
	fs.Var(&fqdns, "sni", "expected SBC FQDN, sent as SNI and checked against the certificate (...)")
	fs.Var(&fqdns, "fqdn", "same as --sni (...)")
	fs.Var(&trust, "trust", "PEM file of trusted root certificates, added to the system roots (...)")
	noSystem := fs.Bool("no-system-roots", false, "trust only the --trust files")
	count := fs.Int("count", audit.DefaultCount, "rounds: each SNI probe is repeated this many times per address")
	interval := fs.Duration("interval", 0, "pause between rounds (with --count, a connection-quality series)")
	timeout := fs.Duration("timeout", audit.DefaultTimeout, "limit per attempt (connect, handshake, SIP OPTIONS)")
	certFile := fs.String("client-cert", "", "PEM client certificate to offer when the SBC asks for one")
	keyFile := fs.String("client-key", "", "PEM private key of --client-cert")
	format := fs.String("format", "text", "output format: text or json")
	unrelated := fs.String("unrelated-sni", audit.DefaultUnrelatedSNI, "SNI for the unrelated-name probe")
	clientFQDN := fs.String("client-fqdn", "", "host name for Via/From/Contact of the OPTIONS (default: this host's FQDN or sbcwatch.invalid)")
	noSIP := fs.Bool("no-sip", false, "do not send SIP OPTIONS after the handshakes")
	expiryDays := fs.Int("expiry-days", 30, "warn when the certificate expires within this many days")
	verbose := fs.Bool("verbose", false, "log every attempt to standard error")
	// Flags may come before or after HOST:PORT.
	positional, code, ok := parseArgs(fs, args, true, auditUsage, stdout, stderr)
	if !ok {
		return code
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "sbcwatch audit tls: "+format+"\n", args...)
		return exitUsage
	}
	if len(positional) != 1 {
		return fail("want exactly one HOST:PORT, got %d arguments (try -h)", len(positional))
	}
	target := positional[0]
	if h, p, err := net.SplitHostPort(target); err != nil || h == "" || p == "" {
		return fail("target %q: want HOST:PORT, e.g. sbc.contoso.com:5061", target)
	}
	switch {
	case *format != "text" && *format != "json":
		return fail("--format %q: want text or json", *format)
	case *count < 1:
		return fail("--count %d: want at least 1", *count)
	case *timeout <= 0 || *interval < 0:
		return fail("--timeout must be positive and --interval not negative")
	case (*certFile == "") != (*keyFile == ""):
		return fail("--client-cert and --client-key go together")
	case *expiryDays < 0:
		return fail("--expiry-days must not be negative")
	}

	roots, err := certcheck.LoadTrust(trust, *noSystem)
	if err != nil {
		return fail("%v", err)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	o := audit.Options{
		FQDNs:         dedupe(fqdns),
		UnrelatedSNI:  *unrelated,
		Roots:         roots,
		Count:         *count,
		Interval:      *interval,
		Timeout:       *timeout,
		ClientFQDN:    *clientFQDN,
		NoSIP:         *noSIP,
		ExpiryWarning: time.Duration(*expiryDays) * 24 * time.Hour,
		UserAgent:     "sbcwatch/" + version,
		Logger:        slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	if *certFile != "" {
		cc, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fail("client certificate: %v", err)
		}
		o.ClientCert = &cc
	}

	rep, runErr := audit.Run(ctx, target, o)
	if rep != nil {
		var werr error
		if *format == "json" {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			werr = enc.Encode(rep)
		} else {
			werr = rep.WriteText(stdout)
		}
		if werr != nil {
			fmt.Fprintf(stderr, "sbcwatch audit tls: write report: %v\n", werr)
			return exitInternal
		}
	}
	switch {
	case runErr == nil:
	case errors.Is(runErr, context.Canceled) && rep != nil:
		fmt.Fprintln(stderr, "sbcwatch audit tls: interrupted; the report covers the rounds done")
	default:
		fmt.Fprintf(stderr, "sbcwatch audit tls: %v\n", runErr)
		return exitUsage
	}
	if rep.Critical() {
		return exitFinding
	}
	return exitOK
}

func dedupe(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		k := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(x), "."))
		if k != "" && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}
