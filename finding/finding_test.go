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
