package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// Resolver resolves host names; *net.Resolver satisfies it.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Run audits target ("host:port") and returns the report. It returns an
// error for a malformed target, when the first resolution fails, or
// (wrapping ErrUnreachable) when no address could be connected to at
// all; in the last two cases the report is returned too. A cancelled
// context ends the run early with the report so far and ctx.Err().
func Run(ctx context.Context, target string, o Options) (*Report, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("audit target %q: want HOST:PORT", target)
	}
	o = o.withDefaults(host)
	rep := &Report{Target: target, Host: host, Port: port, FQDNs: o.FQDNs, Started: time.Now().UTC(),
		Rounds: []Round{}, Attempts: []Attempt{}, Addresses: []AddrStats{}, Certificates: []CertSeen{}}
	a := &auditor{o: o, rep: rep, log: o.Logger, target: target, host: host, port: port,
		certs: map[certKey]*CertSeen{}, misses: map[string]*missRun{}, versioned: map[string]bool{}}

	runErr := a.rounds(ctx)
	rep.Finished = time.Now().UTC()
	a.summarise()
	rep.Findings = a.findings()
	if rep.Findings == nil {
		rep.Findings = []*finding.Finding{}
	}
	if runErr != nil {
		rep.Error = runErr.Error()
		return rep, runErr
	}
	if !a.anyConnected {
		err := fmt.Errorf("%s: %w: %s", target, ErrUnreachable, a.lastConnErr)
		rep.Error = err.Error()
		return rep, err
	}
	return rep, nil
}

func (o Options) withDefaults(host string) Options {
	if len(o.FQDNs) == 0 && net.ParseIP(host) == nil {
		o.FQDNs = []string{host}
	}
	if o.FQDNs == nil {
		o.FQDNs = []string{}
	}
	if o.UnrelatedSNI == "" {
		o.UnrelatedSNI = DefaultUnrelatedSNI
	}
	if o.Count <= 0 {
		o.Count = DefaultCount
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MissesBeforeFinding <= 0 {
		o.MissesBeforeFinding = DefaultMisses
	}
	if o.ClientFQDN == "" {
		o.ClientFQDN = "sbcwatch.invalid"
		if h, err := os.Hostname(); err == nil && strings.Contains(h, ".") {
			o.ClientFQDN = h
		}
	}
	if o.UserAgent == "" {
		o.UserAgent = "sbcwatch"
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

type certKey struct{ addr, probe, sni, fp string }

// missRun tracks consecutive failed connects to one address.
type missRun struct {
	n, worst  int
	since     time.Time
	worstFrom time.Time
	lastErr   string
}

type auditor struct {
	o                  Options
	rep                *Report
	log                *slog.Logger
	target, host, port string

	certs     map[certKey]*CertSeen
	certOrder []certKey
	misses    map[string]*missRun
	versioned map[string]bool // address → version probes done

	anyConnected bool
	lastConnErr  string
}

func (a *auditor) rounds(ctx context.Context) error {
	for n := 1; n <= a.o.Count; n++ {
		if n > 1 && a.o.Interval > 0 {
			t := time.NewTimer(a.o.Interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		addrs, dnsMs, err := a.resolve(ctx, n)
		if err != nil {
			if n == 1 {
				return err
			}
			continue // recorded in the round; try again next round
		}
		for _, ip := range addrs {
			addr := net.JoinHostPort(ip, a.port)
			if !a.versioned[addr] {
				a.versioned[addr] = true
				for _, p := range versionProbes(a.o.ClientCert != nil) {
					if err := a.attempt(ctx, n, dnsMs, addr, p); err != nil {
						return err
					}
				}
			}
			for _, p := range a.sniProbes() {
				if err := a.attempt(ctx, n, dnsMs, addr, p); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// resolve looks the host up once for round n, records the round and
// returns the addresses and the lookup time (ms).
func (a *auditor) resolve(ctx context.Context, n int) ([]string, float64, error) {
	r := Round{N: n, Time: time.Now().UTC()}
	defer func() { a.rep.Rounds = append(a.rep.Rounds, r) }()
	if ip := net.ParseIP(a.host); ip != nil {
		r.Addresses = []string{ip.String()}
		return r.Addresses, 0, nil
	}
	rctx, cancel := context.WithTimeout(ctx, a.o.Timeout)
	defer cancel()
	start := time.Now()
	ips, err := a.o.Resolver.LookupIPAddr(rctx, a.host)
	r.DNSMs = ms(time.Since(start))
	if err == nil && len(ips) == 0 {
		err = errors.New("no addresses")
	}
	if err != nil {
		r.Error = err.Error()
		a.log.Warn("audit: resolve failed", "target", a.target, "round", n, "err", err)
		return nil, r.DNSMs, fmt.Errorf("resolve %s: %w", a.host, err)
	}
	for _, ip := range ips {
		r.Addresses = append(r.Addresses, ip.IP.String())
	}
	return r.Addresses, r.DNSMs, nil
}

// attempt runs one probe and records it; it returns an error only when
// the context is done.
func (a *auditor) attempt(ctx context.Context, round int, dnsMs float64, addr string, p probe) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	at := a.runProbe(ctx, addr, p)
	at.Round, at.DNSMs = round, dnsMs
	a.rep.Attempts = append(a.rep.Attempts, at)
	a.log.Debug("audit attempt", "target", a.target, "address", addr, "probe", at.Probe, "sni", at.SNI,
		"connect_ms", at.ConnectMs, "handshake_ms", at.HandshakeMs, "fingerprint", at.Fingerprint, "err", at.Error)

	m := a.misses[addr]
	if m == nil {
		m = &missRun{}
		a.misses[addr] = m
	}
	if at.Connected {
		a.anyConnected = true
		m.n = 0
	} else if ctx.Err() == nil {
		if m.n == 0 {
			m.since = at.Time
		}
		m.n++
		m.lastErr = at.Error
		a.lastConnErr = at.Error
		if m.n > m.worst {
			m.worst, m.worstFrom = m.n, m.since
		}
	}
	return ctx.Err()
}

// sniProbes are the per-round probes: each FQDN, no SNI, unrelated SNI.
func (a *auditor) sniProbes() []probe {
	var ps []probe
	for _, f := range a.o.FQDNs {
		ps = append(ps, probe{kind: ProbeSNI, sni: f, sip: !a.o.NoSIP})
	}
	ps = append(ps, probe{kind: ProbeNoSNI}, probe{kind: ProbeUnrelatedSNI, sni: a.o.UnrelatedSNI})
	return ps
}

// recordCert counts a served certificate and returns its verdict.
func (a *auditor) recordCert(addr string, p probe, at *Attempt, chain certChain) *certcheck.Result {
	names := a.o.FQDNs
	if p.kind == ProbeSNI {
		names = []string{p.sni}
	}
	res := certcheck.Check(chain, certcheck.Options{Roots: a.o.Roots, Names: names, At: at.Time, ExpiryWarning: a.o.ExpiryWarning})
	k := certKey{addr, p.kind, p.sni, res.Fingerprint}
	cs := a.certs[k]
	if cs == nil {
		cs = &CertSeen{Address: addr, Probe: p.kind, SNI: p.sni, Fingerprint: res.Fingerprint, First: at.Time, Check: res}
		a.certs[k] = cs
		a.certOrder = append(a.certOrder, k)
	}
	cs.Count++
	cs.Last = at.Time
	return res
}
