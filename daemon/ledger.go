package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sbcwatch/sbcwatch/alert"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/store"
)

// storeLedger is the alerts' ledger in the database (alert_deliveries,
// migration 008): rows name this instance (serve.instance), so the
// deliveries a run left pending are made by the next run of the same
// instance, and a finding key recorded by any instance is not delivered
// by another.
type storeLedger struct{ st *store.Store }

var _ alert.Ledger = storeLedger{}

func (l storeLedger) Record(ctx context.Context, ds []alert.Delivery) (int, error) {
	rows := make([]store.AlertDelivery, 0, len(ds))
	for _, d := range ds {
		js, err := json.Marshal(d.Finding)
		if err != nil {
			return 0, fmt.Errorf("daemon: alert ledger: %w", err)
		}
		rows = append(rows, store.AlertDelivery{Receiver: d.Receiver, Key: d.Key, Rule: d.Finding.Rule,
			Severity: string(d.Finding.Severity), Finding: js, After: d.After})
	}
	got, err := l.st.RecordAlerts(ctx, rows)
	return len(got), err
}

func (l storeLedger) Claim(ctx context.Context, receiver, token string, limit int, lease time.Duration) ([]alert.Delivery, error) {
	rows, err := l.st.ClaimAlerts(ctx, receiver, token, limit, lease)
	if err != nil {
		return nil, err
	}
	out := make([]alert.Delivery, 0, len(rows))
	for _, r := range rows {
		var f finding.Finding
		if err := json.Unmarshal(r.Finding, &f); err != nil {
			// Unreadable: refuse it for good rather than claim it forever.
			_ = l.st.FinishAlert(ctx, r.Receiver, r.Key, false, "unreadable finding: "+err.Error())
			continue
		}
		out = append(out, alert.Delivery{Receiver: r.Receiver, Key: r.Key, Finding: &f})
	}
	return out, nil
}

func (l storeLedger) Finish(ctx context.Context, receiver, key string, delivered bool, errText string) error {
	return l.st.FinishAlert(ctx, receiver, key, delivered, errText)
}
