package analyze

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
)

// labExpect is testdata/lab/<scenario>.expect.json, written by hand from
// each scenario's definition (not from sbcwatch's output).
type labExpect struct {
	Rules        []string `json:"rules"`
	BlamedCallID string   `json:"blamed_call_id"`
	Notes        string   `json:"notes"`
}

// TestLabGolden runs analyze on every lab capture and fails when a finding
// appears or disappears: the set of rules must equal the expectation, and
// a refer_delivery_failed must blame the expected call.
func TestLabGolden(t *testing.T) {
	dir := filepath.Join("..", "testdata", "lab")
	caps, _ := filepath.Glob(filepath.Join(dir, "*.pcap"))
	if len(caps) == 0 {
		t.Fatalf("no lab captures in %s", dir)
	}
	cfgPath := filepath.Join(dir, "sbcwatch.yaml")
	for _, pcap := range caps {
		scenario := strings.TrimSuffix(filepath.Base(pcap), ".pcap")
		t.Run(scenario, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, scenario+".expect.json"))
			if err != nil {
				t.Fatalf("expectation: %v", err)
			}
			var want labExpect
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatalf("expectation: %v", err)
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Files(context.Background(), []string{pcap}, Options{Config: cfg})
			if err != nil {
				t.Fatalf("analyze: %v", err)
			}
			got := ruleSet(rep.Findings)
			wantSet := uniqSorted(want.Rules)
			if strings.Join(got, ",") != strings.Join(wantSet, ",") {
				for _, f := range rep.Findings {
					t.Logf("%s %s %s: %s", f.ID, f.Severity, f.Rule, f.Summary)
				}
				t.Fatalf("rules = %v, want %v", got, wantSet)
			}
			if want.BlamedCallID != "" {
				var blamed []string
				for _, f := range rep.Findings {
					if f.Rule == finding.ReferDeliveryFailed && f.CallID != "" {
						blamed = append(blamed, f.CallID)
					}
				}
				if len(blamed) != 1 || blamed[0] != want.BlamedCallID {
					t.Fatalf("refer_delivery_failed blames %v, want [%s]", blamed, want.BlamedCallID)
				}
			}
			// The blamed call's verdict names the real cause of the failures.
			if want.BlamedCallID != "" && strings.Contains(scenario, "expired") {
				for _, f := range rep.Findings {
					if f.Rule == finding.ReferDeliveryFailed && !strings.Contains(f.Summary, "expired") {
						t.Errorf("verdict does not say the certificate expired: %s", f.Summary)
					}
				}
			}
			// The verdict printed first is the most severe finding.
			if len(rep.Findings) > 0 && rep.Findings[0].Severity != finding.Critical && hasSeverity(rep.Findings, finding.Critical) {
				t.Fatalf("first finding %s is not critical", rep.Findings[0].Rule)
			}
		})
	}
}

func ruleSet(fs []*finding.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Rule)
	}
	return uniqSorted(out)
}

func uniqSorted(in []string) []string {
	m := map[string]bool{}
	for _, s := range in {
		m[s] = true
	}
	out := make([]string, 0, len(m))
	for s := range m {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func hasSeverity(fs []*finding.Finding, s finding.Severity) bool {
	for _, f := range fs {
		if f.Severity == s {
			return true
		}
	}
	return false
}

// TestLadderShowsTLSAttempts: the blamed call's ladder draws Microsoft's
// failed TLS attempts between the ACK and the BYE, at their times.
func TestLadderShowsTLSAttempts(t *testing.T) {
	dir := filepath.Join("..", "testdata", "lab")
	b, err := os.ReadFile(filepath.Join(dir, "transfer_fails_default_cert.expect.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want labExpect
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "sbcwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Files(context.Background(), []string{filepath.Join(dir, "transfer_fails_default_cert.pcap")}, Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := rep.WriteLadder(&out, want.BlamedCallID); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	ack, bye, tlsLines := -1, -1, 0
	for i, l := range lines {
		if strings.HasPrefix(l, "Findings:") {
			break
		}
		switch {
		case strings.Contains(l, " ACK ") && ack < 0:
			ack = i
		case strings.Contains(l, " BYE ") && bye < 0:
			bye = i
		case strings.Contains(l, "new TLS connection"):
			tlsLines++
			if ack < 0 || bye >= 0 {
				t.Errorf("TLS attempt outside ACK..BYE: %s", l)
			}
			if !strings.Contains(l, "self-signed") || !strings.Contains(l, "bad_certificate") {
				t.Errorf("attempt line lacks the served certificate or the alert: %s", l)
			}
		}
	}
	if tlsLines != 4 || ack < 0 || bye < 0 {
		t.Fatalf("ladder: %d TLS attempts, ack %d, bye %d:\n%s", tlsLines, ack, bye, out.String())
	}
}
