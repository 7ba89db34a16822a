package correlate

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// TestReferencesSurviveJSON: a TLS finding read back from JSON (as the
// store or a spool gives it) still names the connections it is about.
func TestReferencesSurviveJSON(t *testing.T) {
	at := time.Date(2026, 4, 1, 9, 55, 4, 0, time.UTC)
	c := &tlsaudit.Conn{ID: "52.114.75.24:1->192.0.2.10:5061", FirstSeen: at, LastSeen: at,
		Client: netip.MustParseAddrPort("52.114.75.24:1"), Server: netip.MustParseAddrPort("192.0.2.10:5061")}
	other := *c
	other.ID = "52.114.75.24:2->192.0.2.10:5061"
	f := finding.New(finding.TLSContextWrong, finding.Critical, at, "x")
	f.Evidence["connection_ids"] = []string{c.ID}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var back finding.Finding
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if _, ok := back.Evidence["connection_ids"].([]any); !ok {
		t.Fatalf("evidence after JSON is %T", back.Evidence["connection_ids"])
	}
	if !about(&back, c) {
		t.Fatal("the finding read back from JSON is no longer about its connection")
	}
	if about(&back, &other) {
		t.Fatal("the finding read back from JSON is about another connection")
	}
}
