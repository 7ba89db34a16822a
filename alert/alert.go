// Package alert delivers new findings to people and systems: a generic
// JSON webhook signed with HMAC-SHA256 and a Microsoft Teams channel
// message (through a Teams Workflows webhook, as an Adaptive Card).
//
// Each finding is delivered once per webhook and finding key (Notify;
// with a Ledger, across restarts and the processes sharing it, see
// Ledger); a finding withdrawn after it was alerted (a retracted
// provisional finding) gets one follow-up to the webhooks that had it
// (Retract); a failed delivery is retried with exponential backoff (1 s doubling up
// to 5 min, 8 attempts) unless the receiver refused it for good (a 4xx
// other than 408 and 429). The queue per webhook is bounded: when it is
// full, the finding is dropped and counted (queued again by the next
// Notify of its key), and the caller never waits.
//
// # Signature (json webhooks)
//
// The body is one JSON object: {"key", "instance", "finding": {...}}.
// Headers: X-Sbcwatch-Timestamp (Unix seconds), X-Sbcwatch-Delivery
// (the finding key), and X-Sbcwatch-Signature: "sha256=" and the hex
// HMAC-SHA256, under the shared secret, of the timestamp, a dot and the
// body. A receiver recomputes it, compares in constant time and rejects
// old timestamps (replays).
package alert

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/spool"
)

// Kinds of webhook.
const (
	KindJSON  = "json"
	KindTeams = "teams"
)

// Webhook is one destination.
type Webhook struct {
	Name   string
	Kind   string
	URL    string
	Secret string // HMAC key of a json webhook
}

// Options tune a Notifier; zero values take the defaults.
type Options struct {
	// MinSeverity is critical or warning (default warning).
	MinSeverity finding.Severity
	// Instance names this serve in the payload.
	Instance string
	// Client defaults to an http.Client with a 10 s timeout.
	Client *http.Client
	// QueueSize bounds the findings waiting per webhook (default 1024).
	QueueSize int
	// Attempts bounds the tries per delivery (default 8); FirstBackoff
	// (default 1 s) doubles up to MaxBackoff (default 5 min).
	Attempts     int
	FirstBackoff time.Duration
	MaxBackoff   time.Duration
	// Now is the clock of the signature timestamp (default time.Now).
	Now func() time.Time
	// Logger defaults to discarding.
	Logger *slog.Logger

	// Ledger, when set, persists every delivery (see ledger.go): the
	// one-delivery-per-key rule then survives a restart and holds across
	// the processes sharing the ledger. Outbox is required with it.
	Ledger Ledger
	// Outbox is the on-disk queue of what waits for the ledger (new
	// findings, outcomes of deliveries) while it does not answer.
	Outbox *spool.Spool
	// Lease is how long a claimed delivery is held by this process
	// (default 15 min, longer than every attempt and backoff of one
	// delivery); ClaimEvery how often the ledger is asked for pending
	// deliveries besides when a finding arrives (default 5 s).
	Lease      time.Duration
	ClaimEvery time.Duration
}

// Notifier fans findings out to its webhooks.
type Notifier struct {
	o Options

	mu      sync.RWMutex
	hooks   []*hook
	minSev  finding.Severity
	runCtx  context.Context // set while Run runs: hooks added later start under it
	runWG   *sync.WaitGroup
	token   string // this Notifier's claims in the ledger
	kick    chan struct{}
	ledgerB atomic.Bool // the ledger did not answer (logged once per outage)

	seenMu sync.Mutex
	seen   map[string]bool // keys handed to the outbox (bounded)

	duplicates, outboxDrops atomic.Uint64
}

type hook struct {
	name   string
	mu     sync.Mutex
	cfg    Webhook // Kind, URL, Secret: replaced by SetWebhooks
	queue  chan delivery
	sent   map[string]bool // finding keys queued or delivered (bounded; without a ledger)
	cancel context.CancelFunc

	inflightMu sync.Mutex
	inflight   map[string]bool // claimed from the ledger, outcome not yet recorded there

	delivered, failed, dropped, retries atomic.Uint64
	working                             atomic.Int64
}

type delivery struct {
	key string
	f   *finding.Finding
	// id is the X-Sbcwatch-Delivery header: the key, or the key and
	// "/retracted" for the follow-up of a retraction.
	id string
}

// retractedSuffix names the follow-up of a retracted finding among the
// keys sent and in X-Sbcwatch-Delivery.
const retractedSuffix = "/retracted"

// maxKeys bounds the keys remembered per webhook.
const maxKeys = 100000

// New returns a Notifier; run it with Run.
func New(hooks []Webhook, o Options) *Notifier {
	if o.MinSeverity == "" {
		o.MinSeverity = finding.Warning
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	if o.Attempts <= 0 {
		o.Attempts = 8
	}
	if o.FirstBackoff <= 0 {
		o.FirstBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Lease <= 0 {
		o.Lease = 15 * time.Minute
	}
	if o.ClaimEvery <= 0 {
		o.ClaimEvery = 5 * time.Second
	}
	var tok [8]byte
	_, _ = rand.Read(tok[:])
	n := &Notifier{o: o, minSev: o.MinSeverity, kick: make(chan struct{}, 1), seen: map[string]bool{},
		token: o.Instance + "/" + hex.EncodeToString(tok[:])}
	for _, h := range hooks {
		n.hooks = append(n.hooks, n.newHook(h))
	}
	return n
}

func (n *Notifier) newHook(w Webhook) *hook {
	return &hook{name: w.Name, cfg: w, queue: make(chan delivery, n.o.QueueSize), sent: map[string]bool{}, inflight: map[string]bool{}}
}

// SetWebhooks replaces the webhooks (a reload): a webhook whose name is
// kept keeps its queue and what it already sent, and takes the new URL,
// kind and secret from its next attempt on; a new one starts; one no
// longer listed stops (its queued deliveries stay pending in the ledger,
// and are delivered if it comes back).
func (n *Notifier) SetWebhooks(ws []Webhook) {
	n.mu.Lock()
	defer n.mu.Unlock()
	old := map[string]*hook{}
	for _, h := range n.hooks {
		old[h.name] = h
	}
	var next []*hook
	for _, w := range ws {
		if h := old[w.Name]; h != nil {
			h.mu.Lock()
			h.cfg = w
			h.mu.Unlock()
			delete(old, w.Name)
			next = append(next, h)
			continue
		}
		h := n.newHook(w)
		next = append(next, h)
		if n.runCtx != nil {
			n.start(h)
		}
	}
	for _, h := range old {
		if h.cancel != nil {
			h.cancel()
		}
	}
	n.hooks = next
	n.wake()
}

// SetMinSeverity changes the least severe finding sent (a reload).
func (n *Notifier) SetMinSeverity(s finding.Severity) {
	if s == "" {
		s = finding.Warning
	}
	n.mu.Lock()
	n.minSev = s
	n.mu.Unlock()
}

func (n *Notifier) current() ([]*hook, finding.Severity) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.hooks, n.minSev
}

// Notify queues f for every webhook unless it is below the minimum
// severity or its key was already queued; it never blocks. With a
// Ledger, f goes to the outbox first (see Options.Ledger).
func (n *Notifier) Notify(key string, f *finding.Finding) {
	hooks, minSev := n.current()
	if f == nil || f.Severity.Rank() > minSev.Rank() || len(hooks) == 0 {
		return
	}
	if n.o.Ledger != nil {
		n.record(key, f, hooks)
		return
	}
	for _, h := range hooks {
		h.mu.Lock()
		if h.sent[key] {
			h.mu.Unlock()
			continue
		}
		if len(h.sent) >= maxKeys {
			clear(h.sent)
		}
		h.sent[key] = true
		h.mu.Unlock()
		n.enqueue(h, delivery{key: key, f: f, id: key})
	}
}

// enqueue queues d for h, or drops and counts it when the queue is full;
// a dropped key is forgotten, so that a later update of the finding is
// queued again.
func (n *Notifier) enqueue(h *hook, d delivery) {
	select {
	case h.queue <- d:
	default:
		h.mu.Lock()
		delete(h.sent, cmp.Or(d.id, d.key))
		h.mu.Unlock()
		h.dropped.Add(1)
		n.o.Logger.Warn("alert: queue full, finding not sent", "webhook", h.name, "rule", d.f.Rule)
	}
}

// Retract follows up a finding that was alerted and is now withdrawn (a
// provisional finding the full verdict does not hold, f.Retracted): each
// webhook that was sent key gets f once more, marked retracted, under
// the delivery id key+"/retracted"; a webhook never sent key gets
// nothing. It never blocks. With a Ledger, "was sent" is the ledger's:
// a webhook with a delivery of key recorded (by any run).
func (n *Notifier) Retract(key string, f *finding.Finding) {
	hooks, _ := n.current()
	if f == nil || len(hooks) == 0 {
		return
	}
	if n.o.Ledger != nil {
		n.recordRetraction(key, f, hooks)
		return
	}
	for _, h := range hooks {
		h.mu.Lock()
		if !h.sent[key] || h.sent[key+retractedSuffix] {
			h.mu.Unlock()
			continue
		}
		h.sent[key+retractedSuffix] = true
		h.mu.Unlock()
		n.enqueue(h, delivery{key: key, f: f, id: key + retractedSuffix})
	}
}

// Run delivers until ctx ends (one goroutine per webhook, and the
// ledger's, all owned by ctx).
func (n *Notifier) Run(ctx context.Context) error {
	if n.o.Ledger != nil && n.o.Outbox == nil {
		return errNoOutbox
	}
	var wg sync.WaitGroup
	n.mu.Lock()
	n.runCtx, n.runWG = ctx, &wg
	for _, h := range n.hooks {
		n.start(h)
	}
	n.mu.Unlock()
	if n.o.Ledger != nil {
		wg.Go(func() { n.runLedger(ctx) })
	}
	<-ctx.Done()
	n.mu.Lock()
	n.runCtx = nil // SetWebhooks starts no worker any more
	n.mu.Unlock()
	wg.Wait()
	return nil
}

// start runs h's worker under Run's context (n.mu held).
func (n *Notifier) start(h *hook) {
	hctx, cancel := context.WithCancel(n.runCtx)
	h.cancel = cancel
	n.runWG.Go(func() {
		for {
			select {
			case <-hctx.Done():
				return
			case d := <-h.queue:
				h.working.Add(1)
				res, err := n.deliver(hctx, h, d)
				if n.o.Ledger != nil {
					n.finished(h, d, res, err)
				}
				h.working.Add(-1)
			}
		}
	})
}

// Outcomes of a delivery.
type outcome int

const (
	delivered outcome = iota
	refused           // a final 4xx: never again
	gaveUp            // every attempt failed (the receiver is down)
	aborted           // stopped (shutdown, webhook removed): still pending
)

func (n *Notifier) deliver(ctx context.Context, h *hook, d delivery) (outcome, error) {
	wait := n.o.FirstBackoff
	var last error
	res := gaveUp
	for attempt := 1; attempt <= n.o.Attempts; attempt++ {
		retry, err := n.post(ctx, h, d)
		if err == nil {
			h.delivered.Add(1)
			return delivered, nil
		}
		last = err
		if ctx.Err() != nil {
			return aborted, err
		}
		if !retry {
			res = refused
			break
		}
		if attempt == n.o.Attempts {
			break
		}
		h.retries.Add(1)
		select {
		case <-ctx.Done():
			return aborted, last
		case <-time.After(wait):
		}
		wait = min(2*wait, n.o.MaxBackoff)
	}
	h.failed.Add(1)
	again := ""
	if res == gaveUp && n.o.Ledger != nil {
		again = fmt.Sprintf("; it stays pending and is tried again in %s", n.o.Lease)
	}
	n.o.Logger.Warn("alert: delivery failed"+again, "webhook", h.name, "rule", d.f.Rule, "key", d.key, "err", last)
	return res, last
}

// post sends one delivery; retry says whether a failure may pass.
func (n *Notifier) post(ctx context.Context, hk *hook, d delivery) (retry bool, err error) {
	hk.mu.Lock()
	h := hk.cfg
	hk.mu.Unlock()
	var body []byte
	switch h.Kind {
	case KindTeams:
		body, err = json.Marshal(TeamsMessage(d.f, n.o.Instance))
	default:
		body, err = json.Marshal(map[string]any{"key": d.key, "instance": n.o.Instance, "finding": d.f})
	}
	if err != nil {
		return false, fmt.Errorf("alert: encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("alert: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sbcwatch")
	if h.Kind != KindTeams {
		ts := strconv.FormatInt(n.o.Now().Unix(), 10)
		req.Header.Set("X-Sbcwatch-Timestamp", ts)
		req.Header.Set("X-Sbcwatch-Delivery", cmp.Or(d.id, d.key))
		req.Header.Set("X-Sbcwatch-Signature", Sign(h.Secret, ts, body))
	}
	resp, err := n.o.Client.Do(req)
	if err != nil {
		return true, fmt.Errorf("alert: post: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	retry = resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout
	return retry, fmt.Errorf("alert: post: HTTP %d", resp.StatusCode)
}

// Pending is the number of deliveries queued or under way, over every
// webhook, plus one while the outbox holds records not yet in the
// ledger (serve waits for it to reach 0, within its bound, when
// stopping).
func (n *Notifier) Pending() int {
	hooks, _ := n.current()
	p := 0
	for _, h := range hooks {
		p += len(h.queue) + int(h.working.Load())
	}
	if n.o.Outbox != nil && !n.o.Outbox.Empty() {
		p++
	}
	return p
}

// Sign returns the X-Sbcwatch-Signature value for a body sent at ts.
func Sign(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature in constant time.
func Verify(secret, ts string, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(sig))
}

// TeamsMessage is a Teams channel message holding an Adaptive Card
// (the format Teams Workflows webhooks take).
func TeamsMessage(f *finding.Finding, instance string) map[string]any {
	color := "Warning"
	if f.Severity == finding.Critical {
		color = "Attention"
	}
	title := fmt.Sprintf("sbcwatch: %s (%s)", f.Rule, f.Severity)
	text := f.Summary
	switch {
	case f.Retracted:
		color = "Good"
		title = fmt.Sprintf("sbcwatch: retracted: %s (%s)", f.Rule, f.Severity)
		text = "Retracted: the full verdict does not hold this provisional finding; nothing to do. It said: " + f.Summary
	case f.Provisional:
		title += fmt.Sprintf(" — provisional, settles by %s UTC", f.SettlesAt.UTC().Format("15:04:05"))
	}
	facts := []map[string]string{{"title": "Rule", "value": f.Rule}, {"title": "Severity", "value": string(f.Severity)},
		{"title": "Time", "value": f.Time.UTC().Format(time.RFC3339)}}
	for _, kv := range [][2]string{{"SBC", f.SBC}, {"Call-ID", f.CallID}, {"Connection", f.Connection}, {"Instance", instance}} {
		if kv[1] != "" {
			facts = append(facts, map[string]string{"title": kv[0], "value": kv[1]})
		}
	}
	card := map[string]any{
		"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
		"type":    "AdaptiveCard",
		"version": "1.4",
		"body": []any{
			map[string]any{"type": "TextBlock", "size": "Medium", "weight": "Bolder", "color": color,
				"text": title},
			map[string]any{"type": "TextBlock", "wrap": true, "text": text},
			map[string]any{"type": "FactSet", "facts": facts},
		},
	}
	return map[string]any{"type": "message", "attachments": []any{
		map[string]any{"contentType": "application/vnd.microsoft.card.adaptive", "content": card},
	}}
}

// Stats of one webhook.
type Stats struct {
	Delivered, Failed, Dropped, Retries uint64
}

// Stats returns the counters per webhook name.
func (n *Notifier) Stats() map[string]Stats {
	hooks, _ := n.current()
	out := map[string]Stats{}
	for _, h := range hooks {
		out[h.name] = Stats{Delivered: h.delivered.Load(), Failed: h.failed.Load(), Dropped: h.dropped.Load(), Retries: h.retries.Load()}
	}
	return out
}
