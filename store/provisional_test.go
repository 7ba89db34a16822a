package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

// A provisional finding is stored and listed, marked, but is no sighting
// of a problem; its confirmation is the same row and the sighting; a
// retracted one is hidden and counts nothing; a settled row stays settled
// when an older version is replayed.
func TestProvisionalFindingLifecycle(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	db := st.Pool()
	now := time.Now().UTC().Truncate(time.Second)
	call := func(id string) *sip.Call {
		return &sip.Call{CallID: id, Kind: "invite", From: "+4930111222", To: "+4969987654", Start: now.Add(-time.Minute),
			Answer: now.Add(-50 * time.Second), Answered: true, End: now.Add(-20 * time.Second), Last: now.Add(-20 * time.Second)}
	}
	lost := func(id string, prov, retracted bool) *finding.Finding {
		f := finding.New(finding.ReferDeliveryFailed, finding.Critical, now.Add(-30*time.Second), "the transfer never arrived")
		f.CallID, f.ID = id, "F9"
		f.Evidence["call_id"] = id
		f.Key = finding.KeyOf(f)
		f.Provisional, f.Retracted = prov, retracted
		if prov {
			f.SettlesAt = now.Add(2 * time.Minute)
		}
		if retracted {
			f.SettlesAt = now.Add(2 * time.Minute)
		}
		return f
	}
	save := func(name string, calls []*sip.Call, fs ...*finding.Finding) store.SaveResult {
		t.Helper()
		res, err := st.SaveReportResult(ctx, "sbc1", "live", report.Build(calls, nil, fs))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return res
	}
	list := func(q store.FindingQuery) []store.Finding {
		t.Helper()
		q.Rule = finding.ReferDeliveryFailed
		p, err := store.ListFindings(ctx, db, q)
		if err != nil {
			t.Fatal(err)
		}
		return p.Items
	}
	problems := func() []store.Problem {
		t.Helper()
		p, err := store.ListProblems(ctx, db, store.ProblemQuery{Rule: finding.ReferDeliveryFailed})
		if err != nil {
			t.Fatal(err)
		}
		return p.Items
	}

	// Provisional: listed, marked, no problem yet; the call list says so.
	if res := save("provisional", []*sip.Call{call("c1")}, lost("c1", true, false)); res.Findings != 1 || res.Problems != 0 {
		t.Fatalf("provisional save: %+v", res)
	}
	fs := list(store.FindingQuery{})
	if len(fs) != 1 || !fs[0].Provisional || fs[0].SettlesAt == nil || !fs[0].SettlesAt.Equal(now.Add(2*time.Minute)) {
		t.Fatalf("provisional finding listed as %+v", fs)
	}
	if n := len(problems()); n != 0 {
		t.Fatalf("a provisional finding made %d problems", n)
	}
	calls, err := store.ListCalls(ctx, db, store.CallQuery{CallID: "c1"})
	if err != nil || len(calls.Items) != 1 || !slices.Equal(calls.Items[0].ProvisionalRules, []string{finding.ReferDeliveryFailed}) {
		t.Fatalf("call c1: %+v %v", calls.Items, err)
	}

	// Confirmed: the same row, now final, and one sighting.
	if res := save("confirmed", nil, lost("c1", false, false)); res.Findings != 0 || res.Problems != 1 {
		t.Fatalf("confirmation: %+v", res)
	}
	fs = list(store.FindingQuery{})
	if len(fs) != 1 || fs[0].Provisional || fs[0].SettlesAt != nil || fs[0].Retracted || fs[0].ID != store.StoredFindingID("sbc1", lost("c1", false, false)) {
		t.Fatalf("confirmed finding listed as %+v", fs)
	}
	if ps := problems(); len(ps) != 1 || ps[0].Count != 1 || ps[0].State != store.StateOpen {
		t.Fatalf("problems after confirmation: %+v", ps)
	}
	// A late replay of the provisional version, or a retraction, does not
	// unsettle it, nor count.
	for _, late := range []*finding.Finding{lost("c1", true, false), lost("c1", false, true)} {
		if res := save("late", nil, late); res.Problems != 0 {
			t.Fatalf("late version counted: %+v", res)
		}
	}
	if fs = list(store.FindingQuery{}); len(fs) != 1 || fs[0].Provisional || fs[0].Retracted {
		t.Fatalf("late versions changed the confirmed row: %+v", fs)
	}
	if ps := problems(); ps[0].Count != 1 {
		t.Fatalf("count %d after late versions", ps[0].Count)
	}

	// Retracted: hidden from the lists, the call and its page, no problem;
	// listed only when asked for; a late provisional version stays hidden.
	save("provisional c2", []*sip.Call{call("c2")}, lost("c2", true, false))
	if res := save("retracted c2", nil, lost("c2", false, true)); res.Problems != 0 {
		t.Fatalf("retraction counted: %+v", res)
	}
	save("late c2", nil, lost("c2", true, false))
	if fs = list(store.FindingQuery{CallID: "c2"}); len(fs) != 0 {
		t.Fatalf("retracted finding listed: %+v", fs)
	}
	if fs = list(store.FindingQuery{CallID: "c2", Retracted: true}); len(fs) != 1 || !fs[0].Retracted || fs[0].Provisional {
		t.Fatalf("retracted finding asked for: %+v", fs)
	}
	if cf, err := store.CallFindings(ctx, db, "sbc1", "c2"); err != nil || len(cf) != 0 {
		t.Fatalf("call page findings of c2: %+v %v", cf, err)
	}
	has := true
	calls, err = store.ListCalls(ctx, db, store.CallQuery{HasFindings: &has})
	if err != nil || len(calls.Items) != 1 || calls.Items[0].CallID != "c1" || len(calls.Items[0].ProvisionalRules) != 0 {
		t.Fatalf("calls with findings: %+v %v", calls.Items, err)
	}
	if calls, err = store.ListCalls(ctx, db, store.CallQuery{CallID: "c2"}); err != nil || calls.Items[0].FindingCount != 0 || len(calls.Items[0].Rules) != 0 {
		t.Fatalf("call c2: %+v %v", calls.Items, err)
	}
	if ps := problems(); len(ps) != 1 {
		t.Fatalf("problems: %+v", ps)
	}
}
