package finding

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"testing"
	"time"
)

// Every rule in the catalog (docs/findings.md) has advice, and the
// catalog repeats it.
func TestEveryRuleHasAdvice(t *testing.T) {
	doc, err := os.ReadFile("../docs/findings.md")
	if err != nil {
		t.Fatal(err)
	}
	rules := regexp.MustCompile("(?m)^\\| `([a-z_0-9]+)` \\|").FindAllSubmatch(doc, -1)
	if len(rules) < 20 {
		t.Fatalf("found %d rules in docs/findings.md", len(rules))
	}
	for _, m := range rules {
		r := string(m[1])
		if Advice(r) == "" {
			t.Errorf("rule %s has no advice", r)
		} else if !bytes.Contains(doc, []byte("| `"+r+"` | "+Advice(r)+" |")) {
			t.Errorf("docs/findings.md does not give rule %s its advice", r)
		}
	}
}

func TestFoldRootCauseFirst(t *testing.T) {
	at := time.Date(2026, 11, 21, 20, 52, 31, 0, time.UTC)
	mk := func(id, rule string, cites ...string) *Finding {
		f := New(rule, Critical, at, "%s", id)
		f.ID, f.Cites = id, cites
		return f
	}
	hs1, hs2 := mk("F1", TLSHandshakeFailed), mk("F2", TLSHandshakeFailed)
	cert := mk("F3", TLSCertUntrusted)
	other := mk("F4", TLSCertUntrusted)
	root := mk("F5", ReferDeliveryFailed, "F1", "F2", "F3", "F9")
	second := mk("F6", ReferDeliveryFailed, "F2", "F5")
	fs := []*Finding{root, second, hs1, hs2, cert, other}
	Fold(fs)
	Fold(fs) // idempotent
	if !slices.Equal(root.Explains, []string{"F1", "F2", "F3"}) {
		t.Errorf("root explains %v", root.Explains)
	}
	for _, f := range []*Finding{hs1, hs2, cert} {
		if f.CausedBy != "F5" {
			t.Errorf("%s caused by %q", f.ID, f.CausedBy)
		}
	}
	// A root cause is never folded under another one.
	if root.CausedBy != "" || second.CausedBy != "" || len(second.Explains) != 0 {
		t.Errorf("second root: caused by %q explains %v", second.CausedBy, second.Explains)
	}
	if other.CausedBy != "" || other.Advice == "" {
		t.Errorf("unrelated finding: %+v", other)
	}
}

func TestSubjectSameForAuditAndCapture(t *testing.T) {
	at := time.Now()
	passive := New(TLSCertExpiring, Warning, at, "x")
	passive.Connection = "52.114.75.24:50001->192.0.2.10:5061"
	passive.Evidence["fingerprint_sha256"] = "ABCD"
	audit := New(TLSCertExpiring, Warning, at, "y")
	audit.Connection = "audit sbc:5061 (192.0.2.10)"
	audit.Evidence["fingerprint_sha256"] = "abcd"
	if Subject(passive) != Subject(audit) || Subject(audit) != "cert abcd" {
		t.Errorf("subjects %q %q", Subject(passive), Subject(audit))
	}
	hsP := New(TLSHandshakeFailed, Warning, at, "x")
	hsP.Connection = "52.114.75.24:50001->192.0.2.10:5061"
	hsP.Evidence["server"] = "192.0.2.10:5061"
	hsP.Evidence["sni"] = "sbc.example.com"
	hsA := New(TLSHandshakeFailed, Warning, at, "y")
	hsA.Evidence["address"] = "192.0.2.10:5061"
	hsA.Evidence["sni"] = "SBC.example.com"
	if Subject(hsP) != Subject(hsA) {
		t.Errorf("handshake subjects %q %q", Subject(hsP), Subject(hsA))
	}
	call := New(MediaErrorBye, Warning, at, "z")
	call.CallID = "abc@host"
	if Subject(call) != "call abc@host" {
		t.Errorf("call subject %q", Subject(call))
	}
}
