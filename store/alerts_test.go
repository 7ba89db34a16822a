package store_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

// TestAlertDeliveriesOncePerReceiverAndKey: two instances on one
// database record the same finding key for the same receiver: one row,
// delivered by the instance whose insert won; claims hold against the
// same process and are taken over by the instance's next run; an
// outcome is recorded once.
func TestAlertDeliveriesOncePerReceiverAndKey(t *testing.T) {
	t.Parallel()
	dsn := storetest.Schema(t)
	ctx := context.Background()
	open := func(instance string) *store.Store {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("sbcwatch.instance", instance)
		u.RawQuery = q.Encode()
		st, err := store.Open(ctx, u.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		return st
	}
	fra, ams := open("fra-1"), open("ams-1")
	if err := fra.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	d := store.AlertDelivery{Receiver: "soc", Key: "k1", Rule: "refer_delivery_failed", Severity: "critical", Finding: []byte(`{"rule":"refer_delivery_failed"}`)}
	got, err := fra.RecordAlerts(ctx, []store.AlertDelivery{d})
	if err != nil || len(got) != 1 {
		t.Fatalf("first record: %v %v", got, err)
	}
	// The other instance saw the same finding: nothing stored, nothing
	// for it to claim.
	if got, err := ams.RecordAlerts(ctx, []store.AlertDelivery{d, {Receiver: "soc", Key: "k2", Rule: "r", Severity: "warning", Finding: []byte(`{}`)}}); err != nil || len(got) != 1 || got[0].Key != "k2" {
		t.Fatalf("second instance recorded %v %v", got, err)
	}
	if c, err := ams.ClaimAlerts(ctx, "soc", "ams-run1", 10, time.Minute); err != nil || len(c) != 1 || c[0].Key != "k2" {
		t.Fatalf("ams claims %v %v", c, err)
	}
	c, err := fra.ClaimAlerts(ctx, "soc", "fra-run1", 10, time.Minute)
	if err != nil || len(c) != 1 || c[0].Key != "k1" || string(c[0].Finding) != `{"rule": "refer_delivery_failed"}` {
		t.Fatalf("fra claims %+v %v", c, err)
	}
	// Held by this run; a later run of the instance takes it over.
	if c, _ := fra.ClaimAlerts(ctx, "soc", "fra-run1", 10, time.Minute); len(c) != 0 {
		t.Fatalf("claimed twice by one run: %v", c)
	}
	if c, _ := fra.ClaimAlerts(ctx, "soc", "fra-run2", 10, time.Minute); len(c) != 1 {
		t.Fatalf("the next run does not take over: %v", c)
	}
	if err := fra.FinishAlert(ctx, "soc", "k1", true, ""); err != nil {
		t.Fatal(err)
	}
	if err := fra.FinishAlert(ctx, "soc", "k1", false, "late"); err != nil {
		t.Fatal(err)
	}
	if c, _ := fra.ClaimAlerts(ctx, "soc", "fra-run3", 10, time.Minute); len(c) != 0 {
		t.Fatalf("a delivered alert claimed again: %v", c)
	}
	// Recorded again (an update of the finding, a restart): nothing.
	if got, _ := fra.RecordAlerts(ctx, []store.AlertDelivery{d}); len(got) != 0 {
		t.Fatalf("recorded again: %v", got)
	}
	// A retraction's follow-up is recorded only where the finding went.
	retr := []store.AlertDelivery{
		{Receiver: "soc", Key: "k1/retracted", After: "k1", Rule: "r", Severity: "critical", Finding: []byte(`{}`)},
		{Receiver: "ops", Key: "k1/retracted", After: "k1", Rule: "r", Severity: "critical", Finding: []byte(`{}`)},
	}
	if got, err := fra.RecordAlerts(ctx, retr); err != nil || len(got) != 1 || got[0].Receiver != "soc" {
		t.Fatalf("retractions recorded %v %v", got, err)
	}
	if c, _ := fra.ClaimAlerts(ctx, "soc", "fra-run4", 10, time.Minute); len(c) != 1 || c[0].Key != "k1/retracted" {
		t.Fatalf("retraction claims %v", c)
	}
	if err := fra.FinishAlert(ctx, "soc", "k1/retracted", true, ""); err != nil {
		t.Fatal(err)
	}
	st, err := fra.AlertStates(ctx, "soc")
	if err != nil || st["delivered"] != 2 || st["pending"] != 1 {
		t.Fatalf("states %v %v", st, err)
	}
	var inst string
	if err := fra.Pool().QueryRow(ctx, "select instance from alert_deliveries where finding_key = 'k2'").Scan(&inst); err != nil || inst != "ams-1" {
		t.Fatalf("instance %q %v", inst, err)
	}
	if n, err := fra.PruneAlerts(ctx, 1); err != nil || n != 0 {
		t.Fatalf("pruned %d fresh rows: %v", n, err)
	}
}

// TestRetractionOnlyWhereTheOriginalMayHaveArrived: a retraction's
// follow-up (After) is recorded for a receiver whose delivery of the
// original is pending or delivered, not for one that refused it for
// good, nor for one that never had it.
func TestRetractionOnlyWhereTheOriginalMayHaveArrived(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	orig := func(receiver string) store.AlertDelivery {
		return store.AlertDelivery{Receiver: receiver, Key: "k", Rule: "refer_delivery_failed", Severity: "critical", Finding: []byte(`{}`)}
	}
	if got, err := st.RecordAlerts(ctx, []store.AlertDelivery{orig("ok"), orig("gone"), orig("later")}); err != nil || len(got) != 3 {
		t.Fatalf("originals recorded %v %v", got, err)
	}
	if err := st.FinishAlert(ctx, "ok", "k", true, ""); err != nil {
		t.Fatal(err)
	}
	if err := st.FinishAlert(ctx, "gone", "k", false, "410 Gone"); err != nil {
		t.Fatal(err)
	}
	var rs []store.AlertDelivery
	for _, r := range []string{"ok", "gone", "later", "never"} {
		d := orig(r)
		d.Key, d.After = "k/retracted", "k"
		rs = append(rs, d)
	}
	got, err := st.RecordAlerts(ctx, rs)
	if err != nil {
		t.Fatal(err)
	}
	var to []string
	for _, d := range got {
		to = append(to, d.Receiver)
	}
	if len(to) != 2 || to[0] != "ok" || to[1] != "later" {
		t.Fatalf("retraction recorded for %v, want [ok later]", to)
	}
}
