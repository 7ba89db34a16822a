package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestAnalyzeNDJSON: --format ndjson writes one typed record per line as
// decided, the same records --format json holds.
func TestAnalyzeNDJSON(t *testing.T) {
	file := filepath.Join("..", "..", "testdata", "lab", "transfer_fails_default_cert.pcap")
	cfg := filepath.Join("..", "..", "testdata", "lab", "sbcwatch.yaml")
	code, out, errOut := runCLI("analyze", "--config", cfg, "--format", "ndjson", file)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	count := map[string]int{}
	rules := map[string]bool{}
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var rec struct {
			Type, ID, Key, Rule string
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		count[rec.Type]++
		if rec.Type == "finding" {
			if rec.ID == "" || rec.Key == "" {
				t.Errorf("finding without id or key: %s", line)
			}
			rules[rec.Rule] = true
		}
	}
	code, js, errOut := runCLI("analyze", "--config", cfg, "--format", "json", file)
	if code != exitOK {
		t.Fatalf("json: exit %d: %s", code, errOut)
	}
	var doc struct {
		Calls, TLS []json.RawMessage
		Findings   []struct{ Rule string }
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		t.Fatal(err)
	}
	if count["call"] != len(doc.Calls) || count["tls"] != len(doc.TLS) || count["stats"] != 1 || count["finding"] < len(doc.Findings) {
		t.Fatalf("ndjson %v; json has %d calls, %d tls, %d findings", count, len(doc.Calls), len(doc.TLS), len(doc.Findings))
	}
	for _, f := range doc.Findings {
		if !rules[f.Rule] {
			t.Errorf("%s in json, not in ndjson", f.Rule)
		}
	}
	if !rules["refer_delivery_failed"] {
		t.Error("the lost transfer is not in the stream")
	}

	code, out, errOut = runCLI("analyze", "--format", "ndjson", "--call", "x", file)
	if code != exitUsage || out != "" || !strings.Contains(errOut, "ndjson") {
		t.Fatalf("--format ndjson --call: exit %d, %q", code, errOut)
	}
}
