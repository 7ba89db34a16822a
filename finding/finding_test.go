package finding

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestLessOrdersVerdictsFirst(t *testing.T) {
	t0 := time.Date(2026, 4, 1, 9, 55, 0, 0, time.UTC)
	fs := []*Finding{
		{Rule: ShortCall, Severity: Info, Time: t0},
		{Rule: TLSHandshakeFailed, Severity: Critical, Time: t0},
		{Rule: TLSCertInconsistent, Severity: Critical, Time: t0.Add(-time.Minute)},
		{Rule: TransferMissing, Severity: Warning, Time: t0},
		{Rule: ReferDeliveryFailed, Severity: Critical, Time: t0.Add(time.Minute)},
		{Rule: TLSHandshakeFailed, Severity: Critical, Time: t0.Add(-time.Second)},
	}
	sort.SliceStable(fs, func(i, j int) bool { return Less(fs[i], fs[j]) })
	want := []string{ReferDeliveryFailed, TLSCertInconsistent, TLSHandshakeFailed, TLSHandshakeFailed, TransferMissing, ShortCall}
	for i, f := range fs {
		if f.Rule != want[i] {
			t.Fatalf("order[%d] = %s, want %s", i, f.Rule, want[i])
		}
	}
	if !fs[2].Time.Before(fs[3].Time) {
		t.Fatal("same rule: earlier first")
	}
}

func TestJSONTimesHaveFractions(t *testing.T) {
	f := New(ShortCall, Info, time.Date(2026, 4, 1, 9, 55, 4, 0, time.FixedZone("CEST", 7200)), "x")
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"time":"2026-04-01T07:55:04.000000Z"`) || strings.Count(string(b), `"time"`) != 1 {
		t.Fatalf("%s", b)
	}
	var back Finding
	if err := json.Unmarshal(b, &back); err != nil || !back.Time.Equal(f.Time) || back.Rule != ShortCall {
		t.Fatalf("round trip: %v %+v", err, back)
	}
}

func TestKeyOfIgnoresSummaryAndCounters(t *testing.T) {
	at := time.Date(2026, 4, 1, 9, 55, 4, 0, time.UTC)
	a := New(TLSCertUntrusted, Critical, at, "192.0.2.10:5061 served a self-signed certificate")
	a.Connection = "52.114.75.24:1->192.0.2.10:5061"
	a.Evidence["listener"] = "192.0.2.10:5061"
	a.Evidence["fingerprint_sha256"] = "ab"
	a.Evidence["connections"] = 1
	b := *a
	b.Evidence = map[string]any{"listener": "192.0.2.10:5061", "fingerprint_sha256": "ab", "connections": 7}
	b.Summary = "reworded"
	b.ID = "F9"
	if KeyOf(a) != KeyOf(&b) {
		t.Fatalf("key changed with summary, ID or a counter: %s vs %s", KeyOf(a), KeyOf(&b))
	}
	c := b
	c.Evidence = map[string]any{"listener": "192.0.2.10:5061", "fingerprint_sha256": "cd"}
	if KeyOf(&c) == KeyOf(a) {
		t.Fatal("two certificates on one listener share a key")
	}
	d := *a
	d.Evidence = map[string]any{"refer_time": at}
	e := *a
	e.Evidence = map[string]any{"refer_time": at.Add(time.Second)}
	if KeyOf(&d) == KeyOf(&e) {
		t.Fatal("two REFERs of one call share a key")
	}
}

// A provisional finding says so, and when it settles; a final one keeps
// the JSON it always had (the new members are left out).
func TestProvisionalJSON(t *testing.T) {
	f := New(ReferDeliveryFailed, Critical, time.Date(2026, 4, 1, 9, 54, 50, 0, time.UTC), "lost")
	f.ID, f.Key = "F1", KeyOf(f)
	plain, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"provisional", "settles_at", "retracted"} {
		if strings.Contains(string(plain), `"`+k+`"`) {
			t.Errorf("final finding has %q: %s", k, plain)
		}
	}
	f.Provisional, f.SettlesAt = true, time.Date(2026, 4, 1, 9, 58, 0, 0, time.UTC)
	b, _ := json.Marshal(f)
	if !strings.Contains(string(b), `"provisional":true`) || !strings.Contains(string(b), `"settles_at":"2026-04-01T09:58:00.000000Z"`) {
		t.Errorf("provisional JSON: %s", b)
	}
	var back Finding
	if err := json.Unmarshal(b, &back); err != nil || !back.Provisional || !back.SettlesAt.Equal(f.SettlesAt) || KeyOf(&back) != f.Key {
		t.Errorf("round trip: %v %+v", err, back)
	}
	f.Provisional, f.Retracted = false, true
	b, _ = json.Marshal(f)
	if !strings.Contains(string(b), `"retracted":true`) || strings.Contains(string(b), `"provisional"`) {
		t.Errorf("retraction JSON: %s", b)
	}
}
