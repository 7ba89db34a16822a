package alert

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/spool"
)

// memLedger is a Ledger in memory with the store's semantics (one row
// per receiver and key; claims by token and lease); down makes every
// call fail, as a database outage does.
type memLedger struct {
	mu   sync.Mutex
	rows map[[2]string]*memRow
	down atomic.Bool
}

type memRow struct {
	d     Delivery
	state string
	by    string
	until time.Time
}

func newMemLedger() *memLedger { return &memLedger{rows: map[[2]string]*memRow{}} }

var errDown = errors.New("connection refused")

func (l *memLedger) Record(_ context.Context, ds []Delivery) (int, error) {
	if l.down.Load() {
		return 0, errDown
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, d := range ds {
		k := [2]string{d.Receiver, d.Key}
		if d.After != "" && l.rows[[2]string{d.Receiver, d.After}] == nil {
			continue
		}
		if l.rows[k] == nil {
			l.rows[k] = &memRow{d: d, state: "pending"}
			n++
		}
	}
	return n, nil
}

func (l *memLedger) Claim(_ context.Context, receiver, token string, limit int, lease time.Duration) ([]Delivery, error) {
	if l.down.Load() {
		return nil, errDown
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Delivery
	for k, r := range l.rows {
		if len(out) >= limit {
			break
		}
		if k[0] != receiver || r.state != "pending" || (r.by == token && time.Now().Before(r.until)) {
			continue
		}
		r.by, r.until = token, time.Now().Add(lease)
		out = append(out, r.d)
	}
	return out, nil
}

func (l *memLedger) Finish(_ context.Context, receiver, key string, delivered bool, _ string) error {
	if l.down.Load() {
		return errDown
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.rows[[2]string{receiver, key}]; r != nil && r.state == "pending" {
		r.state = "failed"
		if delivered {
			r.state = "delivered"
		}
	}
	return nil
}

func (l *memLedger) states() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, r := range l.rows {
		out[r.state]++
	}
	return out
}

// TestLedgerDeliversOnceAcrossRestartsAndOutages: a finding is delivered
// once though it is notified again (an update), by a second process on
// the same ledger (another instance, or the next run), and after the
// ledger was down; a delivery pending when a process stops is delivered
// by the next one; the outbox keeps what waits on disk.
func TestLedgerDeliversOnceAcrossRestartsAndOutages(t *testing.T) {
	const secret = "k"
	var mu sync.Mutex
	got := map[string]int{}
	var hold atomic.Bool // the receiver answers 503 while set
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if hold.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if !Verify(secret, r.Header.Get("X-Sbcwatch-Timestamp"), body, r.Header.Get("X-Sbcwatch-Signature")) {
			t.Errorf("bad signature")
		}
		mu.Lock()
		got[r.Header.Get("X-Sbcwatch-Delivery")]++
		mu.Unlock()
	}))
	defer srv.Close()
	count := func(k string) int { mu.Lock(); defer mu.Unlock(); return got[k] }
	led := newMemLedger()
	dir := t.TempDir()
	start := func() (*Notifier, func()) {
		box, err := spool.Open(dir, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		n := New([]Webhook{{Name: "soc", Kind: KindJSON, URL: srv.URL, Secret: secret}},
			Options{Ledger: led, Outbox: box, FirstBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
				Attempts: 1000, ClaimEvery: 20 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = n.Run(ctx); close(done) }()
		return n, func() { cancel(); <-done; box.Close() }
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: got %v, ledger %v", what, got, led.states())
			}
		}
	}
	f := finding.New(finding.ReferDeliveryFailed, finding.Critical, time.Now(), "REFER lost")

	n1, stop1 := start()
	n1.Notify("k1", f)
	wait("k1 delivered", func() bool { return count("k1") == 1 && led.states()["delivered"] == 1 })
	n1.Notify("k1", f) // an update: nothing
	// The ledger is down: the finding waits in the outbox, then goes.
	led.down.Store(true)
	n1.Notify("k2", f)
	time.Sleep(100 * time.Millisecond)
	if count("k2") != 0 || n1.Pending() == 0 {
		t.Fatalf("delivered without the ledger: %v, pending %d", got, n1.Pending())
	}
	led.down.Store(false)
	wait("k2 after the outage", func() bool { return count("k2") == 1 })
	// A delivery under way when the process stops stays pending.
	hold.Store(true)
	n1.Notify("k3", f)
	wait("k3 claimed", func() bool { return n1.Pending() > 0 && led.states()["pending"] == 1 })
	stop1()
	hold.Store(false)

	// The next run (or another instance on the same ledger): k1 and k2
	// again are duplicates; k3 is delivered now.
	n2, stop2 := start()
	defer stop2()
	n2.Notify("k1", f)
	n2.Notify("k2", f)
	wait("k3 after restart", func() bool { return count("k3") == 1 })
	wait("all recorded", func() bool { return led.states()["delivered"] == 3 && n2.Pending() == 0 })
	time.Sleep(100 * time.Millisecond)
	if count("k1") != 1 || count("k2") != 1 || count("k3") != 1 {
		t.Fatalf("deliveries %v", got)
	}
	if dup, _ := n2.Duplicates(); dup != 2 {
		t.Fatalf("duplicates %d, want 2", dup)
	}
}

// TestSetWebhooksKeepsQueueAndSent: a reload that changes a webhook's
// URL sends the next finding to the new URL, not the old one, and does
// not send again what was sent; a new webhook starts.
func TestSetWebhooksKeepsQueueAndSent(t *testing.T) {
	var a, b, c atomic.Int32
	mk := func(n *atomic.Int32) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1) }))
	}
	sa, sb, sc := mk(&a), mk(&b), mk(&c)
	defer sa.Close()
	defer sb.Close()
	defer sc.Close()
	n := New([]Webhook{{Name: "soc", Kind: KindTeams, URL: sa.URL}}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	f := finding.New(finding.TLSHandshakeFailed, finding.Warning, time.Now(), "x")
	n.Notify("k1", f)
	for deadline := time.Now().Add(5 * time.Second); a.Load() != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not delivered")
		}
	}
	n.SetWebhooks([]Webhook{{Name: "soc", Kind: KindTeams, URL: sb.URL}, {Name: "ops", Kind: KindTeams, URL: sc.URL}})
	n.SetMinSeverity(finding.Critical)
	n.Notify("k1", f)                                                                          // soc sent it already; ops is below critical
	n.Notify("k2", finding.New(finding.TLSHandshakeFailed, finding.Critical, time.Now(), "y")) // both
	for deadline := time.Now().Add(5 * time.Second); b.Load() != 1 || c.Load() != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after reload: old %d new %d added %d", a.Load(), b.Load(), c.Load())
		}
	}
	time.Sleep(50 * time.Millisecond)
	if a.Load() != 1 || b.Load() != 1 || c.Load() != 1 {
		t.Fatalf("after reload: old %d new %d added %d", a.Load(), b.Load(), c.Load())
	}
}

// TestLedgerRetriesAReceiverThatIsDown: every attempt failing (503)
// leaves the delivery pending, tried again after the lease, until the
// receiver takes it; a final 400 ends it as failed, never tried again.
func TestLedgerRetriesAReceiverThatIsDown(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	var ok, bad atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("X-Sbcwatch-Delivery") == "refused":
			bad.Add(1)
			w.WriteHeader(http.StatusBadRequest)
		case down.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			ok.Add(1)
		}
	}))
	defer srv.Close()
	led := newMemLedger()
	box, err := spool.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	n := New([]Webhook{{Name: "soc", Kind: KindJSON, URL: srv.URL, Secret: "k"}},
		Options{Ledger: led, Outbox: box, Attempts: 2, FirstBackoff: time.Millisecond, Lease: 200 * time.Millisecond, ClaimEvery: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	f := finding.New(finding.ReferDeliveryFailed, finding.Critical, time.Now(), "x")
	n.Notify("down", f)
	n.Notify("refused", f)
	for deadline := time.Now().Add(5 * time.Second); n.Stats()["soc"].Failed < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not retried after the lease: %+v %v", n.Stats(), led.states())
		}
	}
	if st := led.states(); st["pending"] != 1 || st["failed"] != 1 {
		t.Fatalf("ledger while the receiver is down: %v", st)
	}
	down.Store(false)
	for deadline := time.Now().Add(5 * time.Second); led.states()["delivered"] != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not delivered once the receiver is back: %v", led.states())
		}
	}
	time.Sleep(300 * time.Millisecond)
	if ok.Load() != 1 || bad.Load() != 1 {
		t.Fatalf("delivered %d, refused attempts %d", ok.Load(), bad.Load())
	}
}

// TestLedgerRetraction: a retraction follows up, once, only where the
// finding went: not to a webhook never sent it, not again after a
// restart.
func TestLedgerRetraction(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Header.Get("X-Sbcwatch-Delivery")]++
		mu.Unlock()
	}))
	defer srv.Close()
	count := func(k string) int { mu.Lock(); defer mu.Unlock(); return got[k] }
	led := newMemLedger()
	dir := t.TempDir()
	start := func() (*Notifier, func()) {
		box, err := spool.Open(dir, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		n := New([]Webhook{{Name: "soc", Kind: KindJSON, URL: srv.URL, Secret: "k"}},
			Options{Ledger: led, Outbox: box, ClaimEvery: 20 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = n.Run(ctx); close(done) }()
		return n, func() { cancel(); <-done; box.Close() }
	}
	f := finding.New(finding.ReferDeliveryFailed, finding.Critical, time.Now(), "x")
	r := *f
	r.Retracted = true
	n1, stop1 := start()
	n1.Notify("k1", f)
	for deadline := time.Now().Add(5 * time.Second); count("k1") != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("k1 not delivered: %v", got)
		}
	}
	n1.Retract("k1", &r)
	n1.Retract("never-sent", &r)
	for deadline := time.Now().Add(5 * time.Second); count("k1/retracted") != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the retraction not delivered: %v", got)
		}
	}
	stop1()
	n2, stop2 := start()
	defer stop2()
	n2.Retract("k1", &r)
	time.Sleep(300 * time.Millisecond)
	if count("k1") != 1 || count("k1/retracted") != 1 || count("never-sent/retracted") != 0 || len(got) != 2 {
		t.Fatalf("deliveries %v", got)
	}
	if d, _ := n2.Duplicates(); d != 1 {
		t.Fatalf("duplicates %d, want the retraction found recorded", d)
	}
}

// TestLedgerOutboxRefusalIsNotRemembered: a finding the outbox refused
// (full while the ledger is down) is not marked as handed over: the next
// Notify of its key (an update) records it and it is delivered.
func TestLedgerOutboxRefusalIsNotRemembered(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Header.Get("X-Sbcwatch-Delivery")]++
		mu.Unlock()
	}))
	defer srv.Close()
	count := func(k string) int { mu.Lock(); defer mu.Unlock(); return got[k] }
	f := finding.New(finding.ReferDeliveryFailed, finding.Critical, time.Now(), "x")
	rec, err := json.Marshal(outRec{Op: "new", Key: "k1", Receivers: []string{"soc"}, Finding: f})
	if err != nil {
		t.Fatal(err)
	}
	// Room for one record (and its 8-byte frame), not two.
	box, err := spool.Open(t.TempDir(), int64(len(rec)+8)*3/2)
	if err != nil {
		t.Fatal(err)
	}
	led := newMemLedger()
	led.down.Store(true)
	n := New([]Webhook{{Name: "soc", Kind: KindJSON, URL: srv.URL, Secret: "k"}},
		Options{Ledger: led, Outbox: box, ClaimEvery: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	defer func() { cancel(); <-done; box.Close() }()
	n.Notify("k1", f)
	n.Notify("k2", f) // refused: the outbox is full
	if _, drops := n.Duplicates(); drops != 1 {
		t.Fatalf("outbox drops %d, want 1", drops)
	}
	led.down.Store(false)
	for deadline := time.Now().Add(5 * time.Second); count("k1") != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("k1 not delivered: %v", got)
		}
	}
	n.Notify("k2", f) // the update after the outage
	for deadline := time.Now().Add(5 * time.Second); count("k2") != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("k2, refused by the full outbox once, never delivered: %v, ledger %v", got, led.states())
		}
	}
}

// TestLedgerOutboxRecordWithoutFinding: an outbox record that decodes
// but has no finding (damaged on disk) is skipped with an error line,
// never handed to the ledger (whose Record reads the finding's rule);
// the records around it go on.
func TestLedgerOutboxRecordWithoutFinding(t *testing.T) {
	var delivered atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { delivered.Add(1) }))
	defer srv.Close()
	dir := t.TempDir()
	box, err := spool.Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	if err := box.Append([]byte(`{"op":"new","key":"bad","receivers":["soc"]}`)); err != nil {
		t.Fatal(err)
	}
	f := finding.New(finding.ReferDeliveryFailed, finding.Critical, time.Now(), "x")
	good, err := json.Marshal(outRec{Op: "new", Key: "good", Receivers: []string{"soc"}, Finding: f})
	if err != nil {
		t.Fatal(err)
	}
	if err := box.Append(good); err != nil {
		t.Fatal(err)
	}
	led := &nilCheckLedger{memLedger: newMemLedger(), t: t}
	n := New([]Webhook{{Name: "soc", Kind: KindJSON, URL: srv.URL, Secret: "k"}},
		Options{Ledger: led, Outbox: box, ClaimEvery: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(5 * time.Second); led.states()["delivered"] != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the good record not delivered: ledger %v", led.states())
		}
	}
	if st := led.states(); len(st) != 1 || delivered.Load() != 1 {
		t.Fatalf("ledger %v, deliveries %d; want only the good record", st, delivered.Load())
	}
}

// nilCheckLedger fails the test when a delivery without its finding is
// recorded.
type nilCheckLedger struct {
	*memLedger
	t *testing.T
}

func (l *nilCheckLedger) Record(ctx context.Context, ds []Delivery) (int, error) {
	for _, d := range ds {
		if d.Finding == nil {
			l.t.Errorf("Record got %q without its finding", d.Key)
		}
	}
	return l.memLedger.Record(ctx, ds)
}
