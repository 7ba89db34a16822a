package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
)

// TestEachFindingOnceSignedWithRetries: the receiver fails the first
// attempt with 503; the delivery is retried, its signature verifies, a
// second Notify of the same key sends nothing, an info finding is not
// sent, and a Teams webhook gets an Adaptive Card.
func TestEachFindingOnceSignedWithRetries(t *testing.T) {
	const secret = "s3cret"
	var mu sync.Mutex
	got := map[string]int{}
	attempts := 0
	badSig := 0
	json1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if !Verify(secret, r.Header.Get("X-Sbcwatch-Timestamp"), body, r.Header.Get("X-Sbcwatch-Signature")) {
			badSig++
		}
		var p struct {
			Key      string          `json:"key"`
			Instance string          `json:"instance"`
			Finding  finding.Finding `json:"finding"`
		}
		if err := json.Unmarshal(body, &p); err != nil || p.Instance != "fra-1" || p.Key != r.Header.Get("X-Sbcwatch-Delivery") {
			badSig++
		}
		got[p.Key+" "+p.Finding.Rule]++
	}))
	defer json1.Close()
	var cards []map[string]any
	teams := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		cards = append(cards, m)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer teams.Close()

	n := New([]Webhook{{Name: "soc", Kind: KindJSON, URL: json1.URL, Secret: secret}, {Name: "teams", Kind: KindTeams, URL: teams.URL}},
		Options{Instance: "fra-1", FirstBackoff: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	f := finding.New(finding.ReferDeliveryFailed, finding.Critical, time.Now(), "REFER lost")
	n.Notify("k1", f)
	n.Notify("k1", f) // same key: once
	n.Notify("k2", finding.New(finding.ContactNotFQDN, finding.Info, time.Now(), "info only"))
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s := n.Stats()
		if s["soc"].Delivered == 1 && s["teams"].Delivered == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", s)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if p := n.Pending(); p != 0 {
		t.Fatalf("%d deliveries still pending after all were delivered", p)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got["k1 refer_delivery_failed"] != 1 || attempts != 2 || badSig != 0 {
		t.Fatalf("got %v after %d attempts, %d bad", got, attempts, badSig)
	}
	if n.Stats()["soc"].Retries != 1 {
		t.Errorf("retries %+v", n.Stats())
	}
	if len(cards) != 1 {
		t.Fatalf("teams got %d messages", len(cards))
	}
	att := cards[0]["attachments"].([]any)[0].(map[string]any)
	if att["contentType"] != "application/vnd.microsoft.card.adaptive" || att["content"].(map[string]any)["type"] != "AdaptiveCard" {
		t.Fatalf("teams message %v", cards[0])
	}
	if Verify("wrong", "1", []byte("x"), Sign(secret, "1", []byte("x"))) {
		t.Fatal("a wrong secret verified")
	}
}

// TestPermanentRefusalIsNotRetried: a 400 is final.
func TestPermanentRefusalIsNotRetried(t *testing.T) {
	var mu sync.Mutex
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer srv.Close()
	n := New([]Webhook{{Name: "x", Kind: KindJSON, URL: srv.URL, Secret: "k"}}, Options{FirstBackoff: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	n.Notify("k", finding.New(finding.TLSHandshakeFailed, finding.Warning, time.Now(), "x"))
	for deadline := time.Now().Add(5 * time.Second); n.Stats()["x"].Failed != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", n.Stats())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if hits != 1 {
		t.Fatalf("%d attempts for a 400", hits)
	}
}

// TestRetractFollowsUpOnlyWhatWasSent: a provisional finding alerted and
// then retracted gets one signed follow-up (delivery id key/retracted,
// the finding marked retracted); a retraction of a key never sent, or
// sent twice, adds nothing; the Teams card says it is provisional, then
// retracted.
func TestRetractFollowsUpOnlyWhatWasSent(t *testing.T) {
	const secret = "s3cret"
	var mu sync.Mutex
	var got []string
	var cards []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/teams" {
			cards = append(cards, string(body))
			return
		}
		var p struct {
			Key     string          `json:"key"`
			Finding finding.Finding `json:"finding"`
		}
		if err := json.Unmarshal(body, &p); err != nil || !Verify(secret, r.Header.Get("X-Sbcwatch-Timestamp"), body, r.Header.Get("X-Sbcwatch-Signature")) {
			t.Errorf("bad delivery %v", err)
		}
		got = append(got, fmt.Sprintf("%s %s provisional=%v retracted=%v", r.Header.Get("X-Sbcwatch-Delivery"), p.Key, p.Finding.Provisional, p.Finding.Retracted))
	}))
	defer srv.Close()
	n := New([]Webhook{{Name: "soc", Kind: KindJSON, URL: srv.URL + "/json", Secret: secret}, {Name: "teams", Kind: KindTeams, URL: srv.URL + "/teams"}},
		Options{FirstBackoff: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	f := finding.New(finding.ReferDeliveryFailed, finding.Critical, time.Now(), "REFER lost")
	f.Provisional, f.SettlesAt = true, time.Date(2026, 4, 1, 9, 58, 7, 0, time.UTC)
	n.Notify("k1", f)
	r := *f
	r.Provisional, r.Retracted = false, true
	n.Retract("k1", &r)
	n.Retract("k1", &r)    // once
	n.Retract("never", &r) // never alerted: nothing
	for deadline := time.Now().Add(5 * time.Second); n.Stats()["soc"].Delivered+n.Stats()["teams"].Delivered < 4; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", n.Stats())
		}
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	want := []string{"k1 k1 provisional=true retracted=false", "k1/retracted k1 provisional=false retracted=true"}
	if !slices.Equal(got, want) {
		t.Errorf("json deliveries %q, want %q", got, want)
	}
	if len(cards) != 2 || !strings.Contains(cards[0], "provisional, settles by 09:58:07 UTC") || !strings.Contains(cards[1], "retracted: refer_delivery_failed") {
		t.Errorf("teams cards %q", cards)
	}
}

// TestDroppedFindingIsQueuedAgain: a finding dropped because the queue
// was full is not remembered as sent: the next Notify of its key (an
// update) queues it, and it is delivered once.
func TestDroppedFindingIsQueuedAgain(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Header.Get("X-Sbcwatch-Delivery")]++
		mu.Unlock()
	}))
	defer srv.Close()
	count := func(k string) int { mu.Lock(); defer mu.Unlock(); return got[k] }
	n := New([]Webhook{{Name: "soc", Kind: KindJSON, URL: srv.URL, Secret: "k"}}, Options{QueueSize: 1})
	f := finding.New(finding.ReferDeliveryFailed, finding.Critical, time.Now(), "x")
	n.Notify("k1", f) // queued (nothing delivers yet)
	n.Notify("k2", f) // the queue is full: dropped
	if st := n.Stats()["soc"]; st.Dropped != 1 {
		t.Fatalf("stats %+v, want one dropped", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(5 * time.Second); count("k1") != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("k1 not delivered: %v", got)
		}
	}
	n.Notify("k2", f)
	n.Notify("k2", f) // queued already: nothing more
	for deadline := time.Now().Add(5 * time.Second); count("k2") != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("k2, dropped once, never queued again: %v", got)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if count("k1") != 1 || count("k2") != 1 {
		t.Fatalf("deliveries %v", got)
	}
}
