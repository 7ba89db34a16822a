package analyze

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/report"
)

// TestSpooledReportMatches checks that the report built from the spool
// (what `analyze --format json|text` writes without holding the records)
// is byte for byte the report built from every record in memory, and
// that the ndjson stream carries the same records.
func TestSpooledReportMatches(t *testing.T) {
	lab := filepath.Join("..", "testdata", "lab")
	cfg, err := config.Load(filepath.Join(lab, "sbcwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	caps, _ := filepath.Glob(filepath.Join(lab, "*.pcap"))
	if len(caps) == 0 {
		t.Fatal("no lab captures")
	}
	ctx := context.Background()
	for _, pcap := range caps {
		t.Run(filepath.Base(pcap), func(t *testing.T) {
			rep, err := Files(ctx, []string{pcap}, Options{Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			var want, wantText bytes.Buffer
			if err := rep.WriteJSON(&want); err != nil {
				t.Fatal(err)
			}
			if err := rep.WriteText(&wantText); err != nil {
				t.Fatal(err)
			}

			sp, err := report.NewSpool(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			sum, err := Stream(ctx, []string{pcap}, Options{Config: cfg}, sp)
			if err != nil {
				t.Fatal(err)
			}
			var got, gotText bytes.Buffer
			if err := sp.WriteJSON(&got, sum.Stats, sum.Hints, sum.Warnings); err != nil {
				t.Fatal(err)
			}
			if !json.Valid(got.Bytes()) {
				t.Fatalf("spooled JSON is not valid:\n%s", got.String())
			}
			if got.String() != want.String() {
				t.Fatalf("spooled JSON differs:\n--- memory\n%s\n--- spool\n%s", want.String(), got.String())
			}
			r2, err := sp.Report(sum.Stats, sum.Hints, sum.Warnings)
			if err != nil {
				t.Fatal(err)
			}
			if err := r2.WriteText(&gotText); err != nil {
				t.Fatal(err)
			}
			if gotText.String() != wantText.String() {
				t.Fatalf("spooled text differs:\n--- memory\n%s\n--- spool\n%s", wantText.String(), gotText.String())
			}

			var nd bytes.Buffer
			w := report.NewNDJSON(&nd)
			sum, err = Stream(ctx, []string{pcap}, Options{Config: cfg}, w)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.End(sum.Stats, sum.Hints, sum.Warnings); err != nil {
				t.Fatal(err)
			}
			count := map[string]int{}
			ids := map[string]bool{}
			for _, line := range strings.Split(strings.TrimSpace(nd.String()), "\n") {
				var rec struct {
					Type string `json:"type"`
					ID   string `json:"id"`
				}
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("ndjson line %q: %v", line, err)
				}
				if rec.Type == "finding" {
					if ids[rec.ID] {
						continue // an update of a finding already out
					}
					ids[rec.ID] = true
				}
				count[rec.Type]++
			}
			if count["call"] != len(rep.Calls) || count["tls"] != len(rep.TLS) || count["finding"] != len(rep.Findings) || count["stats"] != 1 || count["hint"] != len(rep.Hints) {
				t.Fatalf("ndjson has %v; the report has %d calls, %d tls, %d findings, %d hints",
					count, len(rep.Calls), len(rep.TLS), len(rep.Findings), len(rep.Hints))
			}
		})
	}
}
