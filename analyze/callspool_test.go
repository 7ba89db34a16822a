package analyze

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/report"
)

// TestCallSpoolMatchesReport: the ladder and the JSON detail of a call
// built while streaming (report.CallSpool: `analyze --call`) are byte for
// byte those of the report held in memory, for every call of the lab
// captures and up to 12 calls of each shared capture (the first ones, the
// last ones and those with findings), unlimited and at 80 columns; a
// Call-ID the input lacks is the same error.
func TestCallSpoolMatchesReport(t *testing.T) {
	lab := filepath.Join("..", "testdata", "lab")
	labCfg, err := config.Load(filepath.Join(lab, "sbcwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type input struct {
		path string
		cfg  *config.Config
		all  bool
	}
	var inputs []input
	caps, _ := filepath.Glob(filepath.Join(lab, "*.pcap"))
	for _, c := range caps {
		inputs = append(inputs, input{c, labCfg, true})
	}
	for _, c := range allCaptures(t, capturesDir(t)) {
		inputs = append(inputs, input{c, config.Default(), false})
	}
	ctx := context.Background()
	ladders := 0
	for _, in := range inputs {
		t.Run(filepath.Base(in.path), func(t *testing.T) {
			rep, err := Files(ctx, []string{in.path}, Options{Config: in.cfg})
			if err != nil {
				t.Skipf("not a capture sbcwatch reads: %v", err)
			}
			ids := pickCalls(rep, in.all)
			ids = append(ids, "no-such-call@nowhere")
			var sinks Tee
			spools := map[string]*report.CallSpool{}
			for _, id := range ids {
				cs, err := report.NewCallSpool(t.TempDir(), id)
				if err != nil {
					t.Fatal(err)
				}
				defer cs.Close()
				spools[id] = cs
				sinks = append(sinks, cs)
			}
			if _, err := Stream(ctx, []string{in.path}, Options{Config: in.cfg}, sinks); err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				cs := spools[id]
				for _, width := range []int{0, 80} {
					var want, got bytes.Buffer
					werr := rep.WriteLadderWidth(&want, id, width)
					gerr := cs.WriteLadder(&got, width)
					if errText(werr) != errText(gerr) {
						t.Fatalf("%s: error %v, in memory %v", id, gerr, werr)
					}
					if got.String() != want.String() {
						t.Fatalf("ladder of %s at width %d differs:\n--- memory\n%s\n--- streamed\n%s", id, width, want.String(), got.String())
					}
				}
				var want, got bytes.Buffer
				werr := rep.WriteCallJSON(&want, id)
				gerr := cs.WriteCallJSON(&got)
				if errText(werr) != errText(gerr) {
					t.Fatalf("%s: JSON error %v, in memory %v", id, gerr, werr)
				}
				if got.String() != want.String() {
					t.Fatalf("JSON of %s differs:\n--- memory\n%s\n--- streamed\n%s", id, want.String(), got.String())
				}
				if werr == nil {
					ladders++
				}
			}
		})
	}
	t.Logf("%d ladders compared", ladders)
	if ladders < 50 {
		t.Errorf("only %d ladders compared", ladders)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// pickCalls is every Call-ID of the report, or a sample: the first four,
// the last four and four with findings.
func pickCalls(rep *report.Report, all bool) []string {
	var ids []string
	seen := map[string]bool{}
	add := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	n := len(rep.Calls)
	for i, c := range rep.Calls {
		if all || i < 4 || i >= n-4 {
			add(c.CallID)
		}
	}
	k := 0
	for _, f := range rep.Findings {
		if f.CallID != "" && !seen[f.CallID] && k < 4 {
			add(f.CallID)
			k++
		}
	}
	return ids
}
