package analyze

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
)

// idRef matches a finding ID inside text ("F12").
var idRef = regexp.MustCompile(`\bF[0-9]+\b`)

// canonFindings writes each finding without its analysis-local ID: the
// IDs it mentions (cites, explained_by, summary) become the cited
// finding's rule, call and connection, so two reports numbered
// differently compare equal when they say the same.
func canonFindings(t *testing.T, fs []*finding.Finding) []string {
	t.Helper()
	name := map[string]string{}
	for _, f := range fs {
		name[f.ID] = fmt.Sprintf("<%s %s %s %s>", f.Rule, f.CallID, f.Connection, f.Time.Format("15:04:05.000000"))
	}
	sub := func(s string) string {
		return idRef.ReplaceAllStringFunc(s, func(id string) string {
			if n, ok := name[id]; ok {
				return n
			}
			return id
		})
	}
	var out []string
	for _, f := range fs {
		ev, err := json.Marshal(f.Evidence)
		if err != nil {
			t.Fatal(err)
		}
		var cites []string
		for _, c := range f.Cites {
			cites = append(cites, sub(c))
		}
		slices.Sort(cites)
		out = append(out, fmt.Sprintf("%s %s call=%s conn=%s t=%s cites=%v\n  %s\n  %s",
			f.Severity, f.Rule, f.CallID, f.Connection, f.Time.Format("2006-01-02T15:04:05.000000"), cites, sub(f.Summary), sub(string(ev))))
	}
	slices.Sort(out)
	return out
}

func canonCalls(calls []report.CallJSON) []string {
	var out []string
	for _, c := range calls {
		b, _ := json.Marshal(c)
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

func canonTLS(conns []report.TLSJSON) []string {
	var out []string
	for _, c := range conns {
		b, _ := json.Marshal(c)
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

// diffLists returns the lines only in a and only in b.
func diffLists(a, b []string) (onlyA, onlyB []string) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i] < b[j]:
			onlyA = append(onlyA, a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			onlyB = append(onlyB, b[j])
			j++
		default:
			i++
			j++
		}
	}
	return onlyA, onlyB
}

// TestStreamingMatchesBatch runs every capture under testdata/ and
// ../shared/captures twice — the streaming engine analyze now uses, and
// the whole-input batch correlation it replaced — and requires the same
// calls, TLS connections, findings and hints. Findings compare without
// their analysis-local IDs (the streaming report numbers them in report
// order; batch numbered TLS findings first), references resolved to what
// they point at.
//
// Known, named differences (SBCWATCH_EQUIV_EXTRA adds inputs, separated
// as PATH is): a Call-ID seen again more than the tracker's linger after
// its call ended is a second call (relet checks each such split is
// exactly that: the same messages, pieces apart by more than the
// linger; aaa.pcap re-REGISTERs and retries an INVITE after 407 with
// one Call-ID minutes apart). The clock advances every 30 s of
// capture time, so this shows on short captures too. Otherwise the
// streaming engine differs from batch only on inputs longer than its
// windows (see correlate/README.md, "Streaming"): grouped TLS findings
// list connections in the order they ended; a run of tls_context_wrong
// sockets cut by a decision round is two findings.
func TestStreamingMatchesBatch(t *testing.T) {
	type input struct {
		path string
		cfg  *config.Config
	}
	var inputs []input
	lab := filepath.Join("..", "testdata", "lab")
	labCfg, err := config.Load(filepath.Join(lab, "sbcwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	caps, _ := filepath.Glob(filepath.Join(lab, "*.pcap"))
	if len(caps) == 0 {
		t.Fatal("no lab captures")
	}
	for _, c := range caps {
		inputs = append(inputs, input{c, labCfg})
	}
	for _, c := range allCaptures(t, capturesDir(t)) {
		inputs = append(inputs, input{c, config.Default()})
	}
	// The SBC's own log: tls_context_wrong, sockets standing in for
	// connections the capture lacks; alone and beside a capture.
	logCfg := config.Default()
	logCfg.LogYear = 2026
	log := filepath.Join("..", "audiocodes", "syslog", "testdata", "field-evidence.log")
	inputs = append(inputs, input{log, logCfg})
	// Beside a capture of another day (the log is of January, the
	// capture of November), the SBC's address is configured: a socket's
	// stand-in connection needs it, and the stream learns it from calls
	// only once they are let go ("seen so far, plus configuration"),
	// here months after the log's sockets were judged.
	bothCfg := config.Default()
	bothCfg.LogYear = 2026
	bothCfg.SBCs = []config.SBC{{Name: "lab", Addresses: []string{"192.0.2.10"}}}
	inputs = append(inputs, input{log + string(filepath.ListSeparator) + filepath.Join(lab, "transfer_fails_default_cert.pcap"), bothCfg})
	// Longer than every window: decisions are taken mid-stream, grouped
	// TLS findings merged across rounds.
	inputs = append(inputs, input{busyCapture(t, "1500", "150"), config.Default()})
	for _, c := range filepath.SplitList(os.Getenv("SBCWATCH_EQUIV_EXTRA")) {
		inputs = append(inputs, input{c, config.Default()})
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in.path), func(t *testing.T) {
			ctx := context.Background()
			paths := filepath.SplitList(in.path)
			batch, berr := Files(ctx, paths, Options{Config: in.cfg, batch: true})
			stream, serr := Files(ctx, paths, Options{Config: in.cfg})
			if (berr == nil) != (serr == nil) {
				t.Fatalf("batch error %v, streaming error %v", berr, serr)
			}
			if berr != nil {
				return // not a capture sbcwatch reads: the same error both ways
			}
			check := func(what string, a, b []string) {
				t.Helper()
				onlyBatch, onlyStream := diffLists(a, b)
				for _, l := range onlyBatch {
					t.Errorf("%s only in batch:\n%s", what, l)
				}
				for _, l := range onlyStream {
					t.Errorf("%s only in streaming:\n%s", what, l)
				}
			}
			bc, sc := relet(t, batch.Calls, stream.Calls)
			check("call", canonCalls(bc), canonCalls(sc))
			check("tls", canonTLS(batch.TLS), canonTLS(stream.TLS))
			check("finding", canonFindings(t, batch.Findings), canonFindings(t, stream.Findings))
			check("hint", slices.Sorted(slices.Values(batch.Hints)), slices.Sorted(slices.Values(stream.Hints)))
			if !statsEqual(batch.Stats, stream.Stats) {
				t.Errorf("stats: batch %+v, streaming %+v", batch.Stats, stream.Stats)
			}
			if len(stream.Findings) > 0 && stream.Findings[0].ID != "F1" {
				t.Errorf("first finding is %s, want F1", stream.Findings[0].ID)
			}
			if len(batch.Findings) != len(stream.Findings) {
				t.Errorf("findings: batch %d, streaming %d", len(batch.Findings), len(stream.Findings))
			}
		})
	}
}

// statsEqual compares stats but for the streaming windows' own
// counters (batch has no windows).
func statsEqual(a, b report.Stats) bool {
	for _, s := range []*report.Stats{&a, &b} {
		extra := map[string]uint64{}
		for k, v := range s.Extra {
			if !strings.HasPrefix(k, "window_") {
				extra[k] = v
			}
		}
		s.Extra = extra
	}
	x, _ := json.Marshal(a) // map keys marshal sorted
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// trackerLinger is how long the tracker keeps an ended call for late
// messages (sip.TrackerOptions.Linger's default).
const trackerLinger = 32 * time.Second

// relet takes out of both lists the calls of each Call-ID that batch
// holds as one call and streaming as several, when the several are that
// one call cut where the Call-ID came back more than the linger after a
// piece ended: the same first start, the messages adding up (batch's
// call keeps the first ending, e.g. of the first REGISTER transaction).
// Any other split stays in the lists and fails the comparison.
func relet(t *testing.T, batch, stream []report.CallJSON) ([]report.CallJSON, []report.CallJSON) {
	t.Helper()
	byID := func(cs []report.CallJSON) map[string][]report.CallJSON {
		m := map[string][]report.CallJSON{}
		for _, c := range cs {
			m[c.CallID] = append(m[c.CallID], c)
		}
		return m
	}
	bm, sm := byID(batch), byID(stream)
	split := map[string]bool{}
	for id, b := range bm {
		s := sm[id]
		if len(b) != 1 || len(s) < 2 {
			continue
		}
		slices.SortFunc(s, func(x, y report.CallJSON) int { return time.Time(x.Start).Compare(time.Time(y.Start)) })
		ok := time.Time(s[0].Start).Equal(time.Time(b[0].Start))
		n := 0
		for i, c := range s {
			n += c.Messages
			if i > 0 && (s[i-1].End == nil || time.Time(c.Start).Sub(time.Time(*s[i-1].End)) <= trackerLinger) {
				ok = false
			}
		}
		if ok && n == b[0].Messages {
			split[id] = true
			t.Logf("named difference: Call-ID %s is %d calls streaming (seen again more than %s after it ended), one in batch", id, len(s), trackerLinger)
		}
	}
	drop := func(cs []report.CallJSON) []report.CallJSON {
		return slices.DeleteFunc(slices.Clone(cs), func(c report.CallJSON) bool { return split[c.CallID] })
	}
	return drop(batch), drop(stream)
}
