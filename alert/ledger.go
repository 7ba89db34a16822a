package alert

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
)

// Ledger persists deliveries, one per receiver (webhook name) and
// finding key, shared by every process that uses it (serve: the table
// alert_deliveries). Implementations must be idempotent: a record or an
// outcome applied twice (an outbox segment replayed after a crash)
// changes nothing the second time.
type Ledger interface {
	// Record stores each delivery as pending unless one of the same
	// receiver and key exists, whatever its state or writer; it returns
	// how many it stored.
	Record(ctx context.Context, ds []Delivery) (int, error)
	// Claim takes up to limit pending deliveries of receiver that this
	// process may deliver and no other process holds, holding them for
	// token until lease passes.
	Claim(ctx context.Context, receiver, token string, limit int, lease time.Duration) ([]Delivery, error)
	// Finish records the outcome of a claimed delivery: delivered, or
	// refused for good (errText says why). Only a pending delivery
	// changes.
	Finish(ctx context.Context, receiver, key string, delivered bool, errText string) error
}

// Delivery is one finding for one receiver.
type Delivery struct {
	Receiver string
	// Key is the finding key, or the key and "/retracted" for the
	// follow-up of a retraction.
	Key     string
	Finding *finding.Finding
	// After, when set, is a key the receiver must have a delivery of for
	// this one to be recorded (a retraction follows up only where the
	// finding went).
	After string
}

// outRec is one outbox record: a new finding for some receivers, or the
// outcome of a delivery.
type outRec struct {
	Op        string           `json:"op"` // "new" or "done"
	Key       string           `json:"key"`
	Receivers []string         `json:"receivers,omitempty"`
	Finding   *finding.Finding `json:"finding,omitempty"`
	After     string           `json:"after,omitempty"`
	Receiver  string           `json:"receiver,omitempty"`
	Delivered bool             `json:"delivered,omitempty"`
	Error     string           `json:"error,omitempty"`
}

// record puts a new finding in the outbox for the webhooks that did not
// see its key in this process yet (a cheap first filter: the ledger is
// the one that decides).
func (n *Notifier) record(key string, f *finding.Finding, hooks []*hook) {
	if !n.mark(key) {
		return
	}
	r := outRec{Op: "new", Key: key, Finding: f}
	for _, h := range hooks {
		r.Receivers = append(r.Receivers, h.name)
	}
	if err := n.append(r); err != nil {
		n.forget(key) // not handed over: a later update of it tries again
		for _, h := range hooks {
			h.dropped.Add(1)
		}
		n.o.Logger.Error("alert: finding not recorded for delivery: the outbox refused it", "rule", f.Rule, "key", key, "err", err)
		return
	}
	n.wake()
}

// recordRetraction puts the follow-up of a retracted finding in the
// outbox; the ledger records it only for the webhooks that have a
// delivery of key.
func (n *Notifier) recordRetraction(key string, f *finding.Finding, hooks []*hook) {
	id := key + retractedSuffix
	if !n.mark(id) {
		return
	}
	r := outRec{Op: "new", Key: id, After: key, Finding: f}
	for _, h := range hooks {
		r.Receivers = append(r.Receivers, h.name)
	}
	if err := n.append(r); err != nil {
		n.forget(id)
		n.o.Logger.Error("alert: retraction not recorded for delivery: the outbox refused it", "rule", f.Rule, "key", key, "err", err)
		return
	}
	n.wake()
}

// mark notes key as handed to the outbox; false when it already was.
// The keys are bounded (maxKeys): past it they are forgotten, and the
// ledger alone tells a key seen before.
func (n *Notifier) mark(key string) bool {
	n.seenMu.Lock()
	defer n.seenMu.Unlock()
	if n.seen[key] {
		return false
	}
	if len(n.seen) >= maxKeys {
		clear(n.seen)
	}
	n.seen[key] = true
	return true
}

// forget drops key from the keys handed to the outbox (the outbox
// refused it).
func (n *Notifier) forget(key string) {
	n.seenMu.Lock()
	delete(n.seen, key)
	n.seenMu.Unlock()
}

func (n *Notifier) append(r outRec) error {
	if n.o.Outbox == nil {
		return errNoOutbox
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("alert: outbox: %w", err)
	}
	if err := n.o.Outbox.Append(b); err != nil {
		n.outboxDrops.Add(1)
		return fmt.Errorf("alert: outbox: %w", err)
	}
	return nil
}

func (n *Notifier) wake() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// finished records a delivery's outcome through the outbox. One cut
// short (aborted) or whose attempts all failed (gaveUp: the receiver is
// down) stays pending in the ledger: claimed again when its lease
// passes, or at once by the next process. Only a 2xx (delivered) or a
// final 4xx (refused) ends it.
func (n *Notifier) finished(h *hook, d delivery, res outcome, err error) {
	id := cmp.Or(d.id, d.key) // the ledger's key
	if res == aborted || res == gaveUp {
		h.inflightMu.Lock()
		delete(h.inflight, id)
		h.inflightMu.Unlock()
		return
	}
	r := outRec{Op: "done", Key: id, Receiver: h.name, Delivered: res == delivered}
	if err != nil {
		r.Error = err.Error()
	}
	if aerr := n.append(r); aerr != nil {
		// It stays pending: delivered again after the lease (at least
		// once rather than lost).
		n.o.Logger.Error("alert: outcome of a delivery not recorded", "webhook", h.name, "key", id, "err", aerr)
		h.inflightMu.Lock()
		delete(h.inflight, id)
		h.inflightMu.Unlock()
		return
	}
	n.wake()
}

// runLedger moves the outbox into the ledger and claims the deliveries
// this process makes, until ctx ends; then it gives the outbox one last
// bounded try.
func (n *Notifier) runLedger(ctx context.Context) {
	t := time.NewTicker(n.o.ClaimEvery)
	defer t.Stop()
	backoff, next := time.Duration(0), time.Time{}
	for {
		if time.Now().After(next) {
			if err := n.sync(ctx); err != nil && ctx.Err() == nil {
				backoff = min(max(2*backoff, time.Second), 30*time.Second)
				next = time.Now().Add(backoff)
				if !n.ledgerB.Swap(true) {
					n.o.Logger.Warn("alert: the delivery ledger does not answer: findings wait in the outbox until it does", "err", err)
				}
			} else if err == nil {
				backoff = 0
				if n.ledgerB.Swap(false) {
					n.o.Logger.Info("alert: the delivery ledger answers again")
				}
			}
		}
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = n.drain(fctx)
			cancel()
			return
		case <-n.kick:
		case <-t.C:
		}
	}
}

// sync drains the outbox, then claims for every webhook as much as its
// queue takes. Claims wait for an empty outbox, so an outcome recorded
// on disk is in the ledger before the delivery could be claimed again.
func (n *Notifier) sync(ctx context.Context) error {
	if err := n.drain(ctx); err != nil {
		return err
	}
	hooks, _ := n.current()
	for _, h := range hooks {
		free := cap(h.queue) - len(h.queue)
		if free <= 0 {
			continue
		}
		ds, err := n.o.Ledger.Claim(ctx, h.name, n.token, free, n.o.Lease)
		if err != nil {
			return err
		}
		for _, d := range ds {
			h.inflightMu.Lock()
			busy := h.inflight[d.Key]
			if !busy {
				h.inflight[d.Key] = true
			}
			h.inflightMu.Unlock()
			if busy || d.Finding == nil {
				continue
			}
			select {
			case h.queue <- delivery{key: strings.TrimSuffix(d.Key, retractedSuffix), f: d.Finding, id: d.Key}:
			default: // cannot happen: claimed no more than the queue's room
				h.inflightMu.Lock()
				delete(h.inflight, d.Key)
				h.inflightMu.Unlock()
			}
		}
	}
	return nil
}

// drain applies the outbox to the ledger, oldest first.
func (n *Notifier) drain(ctx context.Context) error {
	for ctx.Err() == nil {
		seg, ok, err := n.o.Outbox.Oldest()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		var news []Delivery
		var done []outRec
		for _, raw := range seg.Records {
			var r outRec
			if err := json.Unmarshal(raw, &r); err != nil {
				n.o.Logger.Error("alert: unreadable outbox record skipped", "err", err)
				continue
			}
			switch r.Op {
			case "new":
				if r.Finding == nil {
					n.o.Logger.Error("alert: outbox record without its finding skipped", "key", r.Key)
					continue
				}
				for _, rc := range r.Receivers {
					news = append(news, Delivery{Receiver: rc, Key: r.Key, Finding: r.Finding, After: r.After})
				}
			case "done":
				done = append(done, r)
			}
		}
		if len(news) > 0 {
			stored, err := n.o.Ledger.Record(ctx, news)
			if err != nil {
				return err
			}
			if dup := len(news) - stored; dup > 0 {
				n.duplicates.Add(uint64(dup))
			}
		}
		for _, r := range done {
			if err := n.o.Ledger.Finish(ctx, r.Receiver, r.Key, r.Delivered, r.Error); err != nil {
				return err
			}
		}
		if err := n.o.Outbox.Remove(seg); err != nil {
			return err
		}
		hooks, _ := n.current()
		for _, r := range done {
			for _, h := range hooks {
				if h.name == r.Receiver {
					h.inflightMu.Lock()
					delete(h.inflight, r.Key)
					h.inflightMu.Unlock()
				}
			}
		}
	}
	return ctx.Err()
}

// Duplicates counts the deliveries the ledger already held (this finding
// key was recorded for that webhook earlier, by this process before a
// restart or by another instance), and OutboxDrops the records the
// outbox refused (full).
func (n *Notifier) Duplicates() (duplicates, outboxDrops uint64) {
	return n.duplicates.Load(), n.outboxDrops.Load()
}

// errNoOutbox is returned by Run when a Ledger is set without an Outbox.
var errNoOutbox = errors.New("alert: a ledger needs an outbox")
