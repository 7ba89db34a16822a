package web_test

import (
	"context"
	"html"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/tlsaudit/audit"
)

// seedOps stores three audits of one target (two addresses, one
// attempt failing, one slow) and a day of counters of SBC sbc-ops with a
// short-call spike.
func seedOps(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	if err := store.UpsertSBC(ctx, e.st.Pool(), store.SBC{Name: "sbc-ops", FQDNs: []string{"sbc.contoso.example"}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Minute)
	for i, ms := range [][2]float64{{21, 24}, {22, 0}, {23, 380}} {
		start := now.Add(time.Duration(i-3) * time.Hour)
		rec := store.AuditRecord{SBC: "sbc-ops", Kind: "tls", Target: "sbc.contoso.example:5061", StartedAt: start,
			FinishedAt: start.Add(5 * time.Second), OK: ms[1] != 0, Summary: map[bool]string{true: "all contexts fine", false: "52.0.0.2 refused the handshake"}[ms[1] != 0],
			Report: map[string]any{}}
		for j, addr := range []string{"52.0.0.1:5061", "52.0.0.2:5061"} {
			a := audit.Attempt{Time: start.Add(time.Duration(j) * time.Second), Address: addr, Probe: audit.ProbeSNI,
				SNI: "sbc.contoso.example", Connected: true, Handshake: ms[j] != 0, HandshakeMs: ms[j]}
			if ms[j] == 0 {
				a.Error = "connection reset"
			}
			rec.Results = append(rec.Results, store.AuditResult{Target: addr, SNI: a.SNI, OK: a.Handshake, Error: a.Error, Result: a})
		}
		if _, err := e.st.SaveAudit(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	var samples []store.CounterSample
	total := 0.0
	for i := range 60 {
		ts := now.Add(time.Duration(i-60) * 5 * time.Minute)
		d := float64(1 + i%2)
		if i == 40 {
			d = 35 // the spike
		}
		total += d
		dd := d
		samples = append(samples,
			store.CounterSample{SBC: "sbc-ops", Counter: "short_calls", Scope: "global", Time: ts, Value: total, Delta: &dd},
			store.CounterSample{SBC: "sbc-ops", Counter: "ner_interval", Scope: "global", Time: ts, Value: 97 + float64(i%3)},
			store.CounterSample{SBC: "sbc-ops", Counter: "poll_up", Scope: "global", Time: ts, Value: 1})
	}
	if err := e.st.SaveCounterSamples(ctx, samples); err != nil {
		t.Fatal(err)
	}
}

func TestAuditsAndSBCsPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	seedOps(t, e)
	auth := []string{"Authorization", "Bearer " + e.tok}

	res := e.get(t, "/audits", auth...)
	if res.status != 200 {
		t.Fatalf("/audits: %d %s", res.status, res.body)
	}
	text := html.UnescapeString(res.body)
	for _, w := range []string{"sbc.contoso.example:5061", "Last audit", "passed", "3 audits, 1 failed; 6 attempts charted.",
		`data-series="52.0.0.1:5061"`, `data-series="52.0.0.2:5061"`, `<g class="failed"><title>52.0.0.2:5061`, "connection reset",
		`<svg xmlns="http://www.w3.org/2000/svg" class="chart"`} {
		if !strings.Contains(text, w) {
			t.Errorf("/audits lacks %q", w)
		}
	}
	if strings.Contains(res.body, "<script") {
		t.Error("/audits uses JavaScript")
	}

	res = e.get(t, "/sbcs", auth...)
	if res.status != 200 {
		t.Fatalf("/sbcs: %d %s", res.status, res.body)
	}
	text = html.UnescapeString(res.body)
	for _, w := range []string{"sbc-ops", "Poll up at", "Short calls per poll (60 samples)", "1 spike", `class="spike"`,
		"35 (usual 2)", "NER (60 samples)", "No samples in this window: ACD."} {
		if !strings.Contains(text, w) {
			t.Errorf("/sbcs lacks %q", w)
		}
	}
	if n := strings.Count(res.body, `class="spike"`); n != 1 {
		t.Errorf("%d spikes marked, want 1 (the short-call one)", n)
	}
	if res := e.get(t, "/sbcs?window=2y", auth...); res.status != 400 {
		t.Errorf("bad window: %d", res.status)
	}
}
