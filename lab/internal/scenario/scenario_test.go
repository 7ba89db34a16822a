package scenario

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTableMatchesRunScriptAndGoldens keeps the scenario table, run.sh's
// list and the committed captures and expectations in step.
func TestTableMatchesRunScriptAndGoldens(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ALL=\(([^)]*)\)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("run.sh has no ALL=(...) line")
	}
	script := strings.Fields(string(m[1]))
	slices.Sort(script)
	if !slices.Equal(script, Names()) {
		t.Fatalf("run.sh runs %v, the table has %v", script, Names())
	}
	dir := filepath.Join("..", "..", "..", "testdata", "lab")
	for _, name := range Names() {
		if _, err := os.Stat(filepath.Join(dir, name+".pcap")); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, name+".expect.json"))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var e struct {
			Rules        []string `json:"rules"`
			BlamedCallID string   `json:"blamed_call_id"`
			Notes        string   `json:"notes"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if e.Rules == nil || e.Notes == "" {
			t.Errorf("%s: rules and notes are required", name)
		}
		if slices.Contains(e.Rules, "refer_delivery_failed") != (e.BlamedCallID != "") {
			t.Errorf("%s: blamed_call_id must be set exactly when refer_delivery_failed is expected", name)
		}
	}
}

// TestCallsOutlastShortCallThreshold keeps every answered call longer than
// the 10 s short-call threshold, which the expectations rely on.
func TestCallsOutlastShortCallThreshold(t *testing.T) {
	for _, name := range Names() {
		sc, _ := Get(name)
		for _, c := range sc.Calls {
			if c.HangupAfter < 12*time.Second {
				t.Errorf("%s/%s lasts %v", name, c.Name, c.HangupAfter)
			}
			if c.Transfer != nil && (c.Transfer.After < 12*time.Second || c.HangupAfter-c.Transfer.After < 12*time.Second) {
				t.Errorf("%s/%s: a leg of a transfer would last under 12 s", name, c.Name)
			}
			if c.Transfer != nil {
				last := c.Transfer.After + LateRetry
				for _, d := range ReferRetries {
					last += d
				}
				if c.HangupAfter-last < 2*time.Second {
					t.Errorf("%s/%s: the caller hangs up before Microsoft's last REFER attempt", name, c.Name)
				}
			}
			if end := c.Start + c.HangupAfter + time.Second; end > sc.Length-time.Second {
				t.Errorf("%s/%s ends at %v, too close to the scenario's end %v", name, c.Name, end, sc.Length)
			}
		}
	}
}
