package daemon

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sbcwatch/sbcwatch/api"
	"github.com/sbcwatch/sbcwatch/audiocodes/poll"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/tlsaudit/audit"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// pollSink stores poller samples as counter samples and poller findings
// with the other findings, and hands the findings to the alerts.
type pollSink struct {
	st     *store.Store
	notify func(*finding.Finding)
}

func (p pollSink) Samples(ctx context.Context, ss []poll.Sample) error {
	out := make([]store.CounterSample, 0, len(ss))
	for _, s := range ss {
		if s.Value == nil { // "not supported" or a gap: nothing to store
			continue
		}
		out = append(out, store.CounterSample{
			SBC: s.SBC, Counter: s.Counter, Scope: s.Scope, Time: s.Time,
			Value: *s.Value, Delta: s.Delta, Rate: s.Rate,
		})
	}
	if len(out) == 0 {
		return nil
	}
	return p.st.SaveCounterSamples(ctx, out)
}

func (p pollSink) Finding(ctx context.Context, f *finding.Finding) error {
	if p.notify != nil {
		p.notify(f)
	}
	return p.st.SaveReport(ctx, f.SBC, "poll", &report.Report{Findings: []*finding.Finding{f}})
}

// RunPollers runs the counter pollers of the SBCs that have one until
// ctx ends.
func RunPollers(ctx context.Context, cfg *config.Config, st *store.Store, log *slog.Logger) error {
	return runPollers(ctx, cfg, st, log, nil)
}

func runPollers(ctx context.Context, cfg *config.Config, st *store.Store, log *slog.Logger, notify func(*finding.Finding)) error {
	for _, s := range cfg.SBCs {
		if s.Poll != nil {
			return poll.NewScheduler(cfg, pollSink{st, notify}, poll.WithLogger(log.With("component", "poll"))).Run(ctx)
		}
	}
	return nil
}

// runScheduledAudits runs each SBC's TLS audit at its interval, first at start.
func runScheduledAudits(ctx context.Context, cfg *config.Config, st *store.Store, log *slog.Logger, notify func(*finding.Finding)) error {
	roots, err := certcheck.LoadTrust(cfg.Trust, cfg.NoSystemRoots)
	if err != nil {
		return fmt.Errorf("daemon: audits: %w", err)
	}
	log = log.With("component", "audit")
	var wg sync.WaitGroup
	for _, s := range cfg.SBCs {
		if s.Audit == nil || len(s.Audit.Targets) == 0 {
			continue
		}
		wg.Add(1)
		go func(s config.SBC) {
			defer wg.Done()
			t := time.NewTicker(s.Audit.Interval.D())
			defer t.Stop()
			for {
				if _, err := runAudits(ctx, s, "", roots, st, notify); err != nil && ctx.Err() == nil {
					log.Warn("audit failed", "sbc", s.Name, "err", err)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}(s)
	}
	wg.Wait()
	return nil
}

// runAudits audits one SBC's targets (or target, when set) and stores
// each report; it returns the stored audit ids.
func runAudits(ctx context.Context, s config.SBC, target string, roots *x509.CertPool, st *store.Store, notify func(*finding.Finding)) ([]int64, error) {
	targets, opts := audit.FromConfig(s, roots)
	if target != "" {
		targets = []string{target}
	}
	var ids []int64
	var errs []error
	for _, tg := range targets {
		started := time.Now().UTC()
		rep, err := audit.Run(ctx, tg, opts)
		if rep == nil {
			errs = append(errs, fmt.Errorf("%s: %w", tg, err))
			continue
		}
		rec := store.AuditRecord{
			SBC: s.Name, Kind: "tls", Target: tg, StartedAt: started, FinishedAt: time.Now().UTC(),
			OK: err == nil && !rep.Critical(), Report: rep, Findings: rep.Findings,
			Summary: auditSummary(rep, err),
		}
		if rec.OK {
			if f := liveMismatch(ctx, st, s.Name, tg, started); f != nil {
				rec.Findings = append(rec.Findings, f)
				rec.Summary += "; but " + f.Summary
			}
		}
		for _, a := range rep.Attempts {
			rec.Results = append(rec.Results, store.AuditResult{Target: a.Address, SNI: a.SNI, OK: a.Handshake, Error: a.Error, Result: a})
		}
		if notify != nil {
			for _, f := range rec.Findings {
				notify(f)
			}
		}
		id, serr := st.SaveAudit(ctx, rec)
		if serr != nil {
			errs = append(errs, fmt.Errorf("%s: storing: %w", tg, serr))
			continue
		}
		ids = append(ids, id)
	}
	return ids, errors.Join(errs...)
}

// liveLookback is how far back a clean audit looks for failed live
// handshakes from Microsoft to the same SBC.
const liveLookback = 24 * time.Hour

// liveMismatch returns an audit_passes_live_fails finding when the store
// holds failed handshakes from Microsoft to this SBC in the lookback
// before a clean audit: the SBC answers an audit (from a stranger's
// address) differently from Microsoft, typically because it picks the TLS
// context by the client's address (proxy set), so the audit cannot vouch
// for what Microsoft gets.
func liveMismatch(ctx context.Context, st *store.Store, sbc, target string, at time.Time) *finding.Finding {
	yes := true
	page, err := store.ListTLS(ctx, st.Pool(), store.TLSQuery{SBC: sbc, From: at.Add(-liveLookback), To: at.Add(time.Minute), FromMicrosoft: &yes, Failed: &yes, Limit: 100})
	if err != nil || len(page.Items) == 0 {
		return nil
	}
	n := len(page.Items)
	more := ""
	if page.NextCursor != "" {
		more = " or more"
	}
	ex := page.Items[0]
	var samples []map[string]any
	for i, c := range page.Items {
		if i == 5 {
			break
		}
		samples = append(samples, map[string]any{"connection": c.ConnID, "client": c.Client, "server": c.Server,
			"sni": c.SNI, "cert_subject": c.CertSubject, "outcome": c.Outcome, "alert": c.Alert})
	}
	f := finding.New(finding.AuditPassesLiveFails, finding.Warning, at,
		"the audit of %s found the TLS contexts clean, yet %d%s handshakes from Microsoft to this SBC failed in the last %s (for example %s, served %s): the SBC answers Microsoft's addresses differently from an audit, typically by picking the TLS context through the caller's proxy set",
		target, n, more, liveLookback, ex.Client, dashIfEmpty(ex.CertSubject))
	f.SBC, f.Source, f.Connection = sbc, finding.SourceAudit, "audit "+target
	f.Evidence["target"] = target
	f.Evidence["failed_live_handshakes"] = n
	f.Evidence["lookback"] = liveLookback.String()
	f.Evidence["examples"] = samples
	return f
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "no certificate seen"
	}
	return s
}

func auditSummary(rep *audit.Report, err error) string {
	if err != nil {
		return "audit of " + rep.Target + " failed: " + err.Error()
	}
	if len(rep.Findings) == 0 {
		return fmt.Sprintf("audit of %s: %d handshakes, no findings", rep.Target, len(rep.Attempts))
	}
	return fmt.Sprintf("audit of %s: %d handshakes, %d findings; first: %s", rep.Target, len(rep.Attempts), len(rep.Findings), rep.Findings[0].Summary)
}

// auditRunTimeout bounds an audit run from the API; it runs detached from
// the HTTP request, so a slow audit is still stored when the request
// itself times out.
const auditRunTimeout = 10 * time.Minute

// auditRunner answers POST /api/v1/audits/run with the stored audit ids.
// A target may only be one the named SBC is known by (its audit targets,
// FQDNs or addresses): the API is not a port scanner.
func auditRunner(current func() *config.Config, st *store.Store, log *slog.Logger, notify func(*finding.Finding)) func(context.Context, api.AuditRunRequest) (any, error) {
	return func(ctx context.Context, req api.AuditRunRequest) (any, error) {
		cfg := current() // the configuration of the last reload
		if req.Target != "" && req.SBC == "" {
			return nil, &api.Error{Status: http.StatusBadRequest, Code: "bad_request", Message: "sbc is required with a target"}
		}
		var sbcs []config.SBC
		for _, s := range cfg.SBCs {
			if req.SBC != "" && s.Name != req.SBC {
				continue
			}
			if req.Target == "" && (s.Audit == nil || len(s.Audit.Targets) == 0) {
				continue
			}
			sbcs = append(sbcs, s)
		}
		if len(sbcs) == 0 {
			msg := "no SBC with an audit is configured"
			if req.SBC != "" {
				msg = fmt.Sprintf("no SBC named %q with an audit is configured", req.SBC)
			}
			return nil, &api.Error{Status: http.StatusNotFound, Code: "not_found", Message: msg}
		}
		if req.Target != "" && !knownTarget(sbcs[0], req.Target) {
			return nil, &api.Error{Status: http.StatusBadRequest, Code: "bad_request",
				Message: fmt.Sprintf("target %q is not one of SBC %q's audit targets, FQDNs or addresses", req.Target, sbcs[0].Name)}
		}
		roots, err := certcheck.LoadTrust(cfg.Trust, cfg.NoSystemRoots)
		if err != nil {
			return nil, err
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditRunTimeout)
		defer cancel()
		var ids []int64
		var errs []error
		for _, s := range sbcs {
			got, err := runAudits(actx, s, req.Target, roots, st, notify)
			ids = append(ids, got...)
			if err != nil {
				log.Warn("audit run", "sbc", s.Name, "err", err)
				errs = append(errs, err)
			}
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("no audit was stored: %w", errors.Join(errs...))
		}
		out := map[string]any{"audit_ids": ids}
		if len(errs) > 0 {
			out["errors"] = errors.Join(errs...).Error()
		}
		return out, nil
	}
}

// knownTarget reports whether host:port names the SBC: one of its audit
// targets, or a port on one of its FQDNs or addresses.
func knownTarget(s config.SBC, target string) bool {
	if s.Audit != nil && slices.Contains(s.Audit.Targets, target) {
		return true
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return false
	}
	for _, n := range append(append([]string{}, s.FQDNs...), s.Addresses...) {
		if strings.EqualFold(n, host) {
			return true
		}
	}
	return false
}
