package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/analyze"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
)

var update = flag.Bool("update", false, "rewrite the golden text reports")

// The failing-transfer lab capture: the text report leads with the root
// cause, its advice and "+ N supporting findings" named by the ids the
// JSON carries, and lists the folded findings nowhere else.
func TestGoldenTextFoldsRootCause(t *testing.T) {
	cfg, err := config.Load(filepath.Join("..", "testdata", "lab", "sbcwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := analyze.Files(context.Background(), []string{filepath.Join("..", "testdata", "lab", "transfer_fails_default_cert.pcap")},
		analyze.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "transfer_fails_default_cert.txt")
	if *update {
		if err := os.WriteFile(golden, text.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./report -update to write it)", err)
	}
	if !bytes.Equal(text.Bytes(), want) {
		t.Errorf("text report differs from %s (go test ./report -update rewrites it):\n%s", golden, text.String())
	}

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var doc struct{ Findings []finding.Finding }
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	byID := map[string]finding.Finding{}
	var root *finding.Finding
	for i, f := range doc.Findings {
		byID[f.ID] = f
		if f.Advice == "" {
			t.Errorf("%s %s has no advice in JSON", f.ID, f.Rule)
		}
		if f.Rule == finding.ReferDeliveryFailed {
			root = &doc.Findings[i]
		}
	}
	if root == nil || len(root.Explains) < 5 {
		t.Fatalf("no refer_delivery_failed explaining the handshakes: %+v", root)
	}
	verdicts, _, _ := strings.Cut(text.String(), "\nCalls (")
	// Every id in the text is a JSON id.
	ids := regexp.MustCompile(`\bF\d+\b`).FindAllString(verdicts, -1)
	for _, id := range ids {
		if _, ok := byID[id]; !ok {
			t.Errorf("text names %s, which the JSON does not have", id)
		}
	}
	// The root cause comes first, with its supporting findings by id.
	lines := strings.Split(verdicts, "\n")
	first := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "F") })
	if first < 0 || !strings.HasPrefix(strings.TrimSpace(lines[first]), root.ID+" ") || !strings.Contains(lines[first], "refer_delivery_failed") {
		t.Fatalf("first verdict is not the root cause %s: %q", root.ID, lines[first])
	}
	if !strings.HasPrefix(strings.TrimSpace(lines[first+1]), "Advice: ") {
		t.Errorf("no advice under the root cause: %q", lines[first+1])
	}
	sup := strings.TrimSpace(lines[first+2])
	if !strings.HasPrefix(sup, "+ ") || !strings.Contains(sup, " supporting findings: ") {
		t.Fatalf("no supporting line: %q", sup)
	}
	named := regexp.MustCompile(`\bF\d+\b`).FindAllString(sup, -1)
	if !slices.Equal(sortedCopy(named), sortedCopy(root.Explains)) {
		t.Errorf("supporting line names %v, JSON explains %v", named, root.Explains)
	}
	for _, id := range root.Explains {
		if byID[id].CausedBy != root.ID {
			t.Errorf("%s caused_by %q, want %s", id, byID[id].CausedBy, root.ID)
		}
		// A folded finding is not listed again as a verdict of its own.
		for _, l := range lines[first+3:] {
			if strings.HasPrefix(strings.TrimSpace(l), id+" ") {
				t.Errorf("%s is folded under %s and listed again: %q", id, root.ID, l)
			}
		}
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// A report that lacks some of a root cause's findings (a filtered view)
// names only those it has, and a finding whose root cause is missing
// stands on its own.
func TestFoldWithMissingFindings(t *testing.T) {
	at := time.Date(2026, 11, 21, 20, 52, 31, 0, time.UTC)
	mk := func(id, rule string, cites ...string) *finding.Finding {
		f := finding.New(rule, finding.Critical, at, "%s summary", id)
		f.ID, f.Cites = id, cites
		return f
	}
	root := mk("F1", finding.ReferDeliveryFailed, "F2", "F3")
	hs2, hs3 := mk("F2", finding.TLSHandshakeFailed), mk("F3", finding.TLSHandshakeFailed)
	finding.Fold([]*finding.Finding{root, hs2, hs3})
	var b bytes.Buffer
	if err := (&report.Report{Findings: []*finding.Finding{root, hs2}}).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "+ 1 supporting finding: tls_handshake_failed F2\n") || strings.Contains(b.String(), "F3") {
		t.Errorf("root with a missing finding:\n%s", b.String())
	}
	b.Reset()
	if err := (&report.Report{Findings: []*finding.Finding{hs3}}).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "F3 CRITICAL tls_handshake_failed") {
		t.Errorf("orphan not listed:\n%s", b.String())
	}
}
