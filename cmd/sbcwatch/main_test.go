package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("this is not a capture\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.pcap")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"no command":     {},
		"unknown":        {"frobnicate"},
		"no file":        {"analyze"},
		"missing file":   {"analyze", filepath.Join(dir, "nope.pcap")},
		"text file":      {"analyze", text},
		"empty file":     {"analyze", empty},
		"bad format":     {"analyze", "--format", "xml", text},
		"bad flag":       {"analyze", "--bogus", text},
		"keep, no store": {"analyze", "--keep-packets", filepath.Join("..", "..", "testdata", "lab", "transfer_fails_default_cert.pcap")},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runCLI(args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d (stderr %q)", code, exitUsage, errOut)
			}
			if out != "" {
				t.Fatalf("stdout not empty: %q", out)
			}
			if name != "no command" && strings.Count(strings.TrimRight(errOut, "\n"), "\n") != 0 {
				t.Fatalf("error is not one line: %q", errOut)
			}
		})
	}
}

// TestAnalyzeJSONContract runs the CLI on a public capture and checks the
// members docs/findings.md requires.
func TestAnalyzeJSONContract(t *testing.T) {
	dir := os.Getenv("SBCWATCH_CAPTURES")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "captures")
	}
	file := filepath.Join(dir, "heplify", "sip_ipv4_tcp.pcap")
	if _, err := os.Stat(file); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("capture missing: %v", err)
		}
		t.Skipf("shared captures not found (%v)", err)
	}
	code, out, errOut := runCLI("analyze", "--format", "json", file)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	for _, k := range []string{"calls", "tls", "findings", "stats"} {
		if _, ok := doc[k]; !ok {
			t.Fatalf("member %q missing", k)
		}
	}
	var calls []map[string]any
	if err := json.Unmarshal(doc["calls"], &calls); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 {
		t.Fatalf("calls = %d, want 1", len(calls))
	}
	c := calls[0]
	for _, k := range []string{"call_id", "kind", "from", "to", "start", "end", "duration_s", "answered", "refer_count", "ended_by", "end_reason", "messages"} {
		if _, ok := c[k]; !ok {
			t.Errorf("call member %q missing", k)
		}
	}
	if c["call_id"] != "158936656982201062716@10.33.6.100" || c["kind"] != "invite" || c["answered"] != true || c["messages"] != float64(7) {
		t.Fatalf("call = %v", c)
	}
	// Times are RFC 3339 with fractional seconds, UTC.
	for _, k := range []string{"start", "end"} {
		if v, _ := c[k].(string); !timeRE.MatchString(v) {
			t.Errorf("%s = %q, want RFC 3339 with a fraction, UTC", k, v)
		}
	}
	var stats map[string]any
	if err := json.Unmarshal(doc["stats"], &stats); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"packets", "bytes", "sip_messages", "tls_handshakes", "seconds"} {
		if _, ok := stats[k]; !ok {
			t.Errorf("stats member %q missing", k)
		}
	}
	if stats["packets"] != float64(84) || stats["sip_messages"] != float64(7) {
		t.Fatalf("stats = %v", stats)
	}
	// One call as JSON: its messages in order.
	code, out, errOut = runCLI("analyze", "--format", "json", "--call", "158936656982201062716@10.33.6.100", file)
	var detail struct {
		Call     map[string]any   `json:"call"`
		Messages []map[string]any `json:"messages"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &detail) != nil || len(detail.Messages) != 7 || detail.Messages[0]["label"] != "INVITE" {
		t.Fatalf("--call --format json: exit %d %s %s", code, out, errOut)
	}
	// The text report and the ladder work on the same file.
	code, out, errOut = runCLI("analyze", file, "--call", "158936656982201062716@10.33.6.100")
	if code != exitOK || !strings.Contains(out, "INVITE") || !strings.Contains(out, "BYE") {
		t.Fatalf("ladder: exit %d %s %s", code, out, errOut)
	}
}
