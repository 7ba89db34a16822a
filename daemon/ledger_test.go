package daemon

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/alert"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/spool"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

// TestAlertsThroughADatabaseOutage: the alert ledger is the database,
// reached through a proxy the test stops: findings decided while it is
// away wait in the outbox on disk and are delivered once when it is
// back; a restarted notifier (the next run) delivers nothing twice.
func TestAlertsThroughADatabaseOutage(t *testing.T) {
	_, dsn := storetest.New(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newDBProxy(t, u.Host)
	u.Host = proxy.addr
	idsn, err := InstanceDSN(u.String(), "outage-test")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, idsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const secret = "outage"
	var mu sync.Mutex
	got := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !alert.Verify(secret, r.Header.Get("X-Sbcwatch-Timestamp"), body, r.Header.Get("X-Sbcwatch-Signature")) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		got[r.Header.Get("X-Sbcwatch-Delivery")]++
		mu.Unlock()
	}))
	defer hook.Close()
	count := func(k string) int { mu.Lock(); defer mu.Unlock(); return got[k] }
	dir := t.TempDir()
	start := func() (*alert.Notifier, func()) {
		box, err := spool.Open(dir, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		n := alert.New([]alert.Webhook{{Name: "soc", Kind: alert.KindJSON, URL: hook.URL, Secret: secret}},
			alert.Options{Instance: "outage-test", Ledger: storeLedger{st}, Outbox: box, ClaimEvery: 50 * time.Millisecond})
		c, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = n.Run(c); close(done) }()
		return n, func() { cancel(); <-done; box.Close() }
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: deliveries %v", what, got)
			}
		}
	}
	f := func(summary string) *finding.Finding {
		return finding.New(finding.TLSContextWrong, finding.Critical, time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC), "%s", summary)
	}
	n1, stop1 := start()
	n1.Notify("k1", f("one"))
	wait("k1", func() bool { return count("k1") == 1 })

	proxy.stop()
	n1.Notify("k2", f("two"))
	n1.Notify("k3", f("three"))
	time.Sleep(time.Second)
	if count("k2")+count("k3") != 0 {
		t.Fatalf("delivered while the ledger was away: %v", got)
	}
	if n1.Pending() == 0 {
		t.Fatal("nothing waits in the outbox")
	}
	proxy.start(proxy.addr)
	wait("k2 and k3 after the outage", func() bool { return count("k2") == 1 && count("k3") == 1 })
	wait("outcomes recorded", func() bool {
		s, err := st.AlertStates(ctx, "soc")
		return err == nil && s["delivered"] == 3
	})
	stop1()

	n2, stop2 := start()
	defer stop2()
	for _, k := range []string{"k1", "k2", "k3"} {
		n2.Notify(k, f("again"))
	}
	wait("the next run finds them recorded", func() bool { d, _ := n2.Duplicates(); return d == 3 })
	time.Sleep(200 * time.Millisecond)
	for _, k := range []string{"k1", "k2", "k3"} {
		if count(k) != 1 {
			t.Fatalf("deliveries %v", got)
		}
	}
}
