package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/alert"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/spool"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

// lostTransfer is a refer_delivery_failed about call id, provisional or
// settled (retracted or confirmed), as the engine emits it.
func lostTransfer(id string, t0 time.Time, provisional, retracted bool) *finding.Finding {
	f := finding.New(finding.ReferDeliveryFailed, finding.Critical, t0, "the transfer never arrived (%s)", id)
	f.CallID, f.ID, f.SBC = id, "F1", "fra"
	f.Key = finding.KeyOf(f)
	f.Provisional, f.Retracted = provisional, retracted
	if provisional || retracted {
		f.SettlesAt = t0.Add(3 * time.Minute)
	}
	return f
}

// TestWriterSpoolsProvisionalInOrder: with the database down, a
// provisional finding and then its confirmation (call c1), and a
// provisional finding and its retraction (call c2), go to the spool in
// separate batches; replayed in order when it returns, the store holds
// one row per key, c1 confirmed with one problem sighting, c2 retracted
// and hidden, no problem for it. Replaying the spool once more (a write
// that committed but timed out) changes nothing.
func TestWriterSpoolsProvisionalInOrder(t *testing.T) {
	st, _ := storetest.New(t)
	sp, err := spool.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	down.Store(true)
	var batches [][]*finding.Finding
	save := storeSave(st)
	w := newWriter("fra", func(ctx context.Context, b *batch) error {
		if down.Load() {
			return errors.New("connection refused")
		}
		batches = append(batches, b.Findings)
		return save(ctx, b)
	}, sp, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Millisecond)
	for _, f := range []*finding.Finding{
		lostTransfer("c1", t0, true, false), lostTransfer("c2", t0, true, false),
		lostTransfer("c1", t0, false, false), lostTransfer("c2", t0, false, true),
	} {
		w.Call(&sip.Call{CallID: f.CallID, Kind: "invite", Start: t0.Add(-time.Minute), Last: t0})
		w.Finding(f)
		w.cycle(ctx)
	}
	if c := w.Counters(); c["spooled"] != 8 {
		t.Fatalf("not spooled: %v", c)
	}
	down.Store(false)
	if err := w.replay(ctx); err != nil {
		t.Fatal(err)
	}
	var seq []string
	for _, b := range batches {
		for _, f := range b {
			seq = append(seq, fmt.Sprintf("%s p=%v r=%v", f.CallID, f.Provisional, f.Retracted))
		}
	}
	if want := []string{"c1 p=true r=false", "c2 p=true r=false", "c1 p=false r=false", "c2 p=false r=true"}; !slices.Equal(seq, want) {
		t.Fatalf("replayed %q, want %q", seq, want)
	}
	check := func() {
		t.Helper()
		var rows, prov, retr int
		if err := st.Pool().QueryRow(ctx, `select count(*), count(*) filter (where provisional), count(*) filter (where retracted)
from findings where rule = 'refer_delivery_failed'`).Scan(&rows, &prov, &retr); err != nil {
			t.Fatal(err)
		}
		if rows != 2 || prov != 0 || retr != 1 {
			t.Fatalf("stored %d rows, %d provisional, %d retracted; want 2, 0, 1", rows, prov, retr)
		}
		ps, err := store.ListProblems(ctx, st.Pool(), store.ProblemQuery{Rule: finding.ReferDeliveryFailed})
		if err != nil || len(ps.Items) != 1 || ps.Items[0].Count != 1 || ps.Items[0].Subject != "call c1" {
			t.Fatalf("problems %+v %v", ps.Items, err)
		}
		fs, err := store.ListFindings(ctx, st.Pool(), store.FindingQuery{Rule: finding.ReferDeliveryFailed})
		if err != nil || len(fs.Items) != 1 || fs.Items[0].CallID != "c1" || fs.Items[0].Provisional {
			t.Fatalf("listed %+v %v", fs.Items, err)
		}
	}
	check()
	// The same batches again, in order (a replay after writes that
	// committed): nothing changes.
	for _, b := range slices.Clone(batches) {
		if err := save(ctx, &batch{SBC: "fra", Findings: b}); err != nil {
			t.Fatal(err)
		}
	}
	check()
}

// TestAlertPolicyForProvisionalFindings: by default a provisional
// finding alerts nobody and its confirmation alerts once; a retraction of
// a finding never alerted sends nothing. With serve.alerts.provisional
// the provisional finding alerts at once, its confirmation (same key)
// adds nothing, and a retraction sends one follow-up.
func TestAlertPolicyForProvisionalFindings(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			Finding finding.Finding `json:"finding"`
		}
		_ = json.NewDecoder(r.Body).Decode(&p)
		mu.Lock()
		got = append(got, fmt.Sprintf("%s %s p=%v r=%v", r.Header.Get("X-Sbcwatch-Delivery")[:2], p.Finding.CallID, p.Finding.Provisional, p.Finding.Retracted))
		mu.Unlock()
	}))
	defer srv.Close()
	run := func(early bool, fs ...*finding.Finding) []string {
		t.Helper()
		cfg := config.Default()
		cfg.Serve.Alerts.Provisional = early
		d := &Daemon{}
		d.cfg.Store(cfg)
		n := alert.New([]alert.Webhook{{Name: "soc", Kind: alert.KindJSON, URL: srv.URL, Secret: "s"}}, alert.Options{FirstBackoff: time.Millisecond})
		d.alerts.Store(n)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = n.Run(ctx); close(done) }()
		mu.Lock()
		got = nil
		mu.Unlock()
		for _, f := range fs {
			d.notify(f)
		}
		time.Sleep(100 * time.Millisecond)
		for deadline := time.Now().Add(5 * time.Second); n.Pending() > 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		}
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	lost := func(id string, p, r bool) *finding.Finding {
		f := lostTransfer(id, t0, p, r)
		f.Key = "k" + id // the delivery id's first two characters name the call
		return f
	}
	if g := run(false, lost("1", true, false), lost("1", false, false), lost("2", true, false), lost("2", false, true)); !slices.Equal(g, []string{"k1 1 p=false r=false"}) {
		t.Errorf("default policy delivered %q", g)
	}
	g := run(true, lost("1", true, false), lost("1", false, false), lost("2", true, false), lost("2", false, true))
	slices.Sort(g)
	if want := []string{"k1 1 p=true r=false", "k2 2 p=false r=true", "k2 2 p=true r=false"}; !slices.Equal(g, want) {
		t.Errorf("opt-in policy delivered %q, want %q", g, want)
	}
}
