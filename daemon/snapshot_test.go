package daemon

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/spool"
)

// TestWriterKeepsTheFindingAsHandedOver: the engine updates a finding it
// emitted in place (more Cites, new evidence) and emits it again; what
// the writer queued before is the version it was handed, not the one
// the engine is changing on its own goroutine.
func TestWriterKeepsTheFindingAsHandedOver(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var saved [][]*finding.Finding
	w := newWriter("fra", func(_ context.Context, b *batch) error {
		saved = append(saved, b.Findings)
		return nil
	}, sp, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f := finding.New(finding.ReferDeliveryFailed, finding.Critical, time.Now(), "lost")
	f.ID, f.CallID, f.Cites = "F1", "c1", []string{"F2"}
	f.Evidence = map[string]any{"calls_up": 1}
	w.Finding(f)
	// The engine's update, before the writer ran.
	f.Cites = append(f.Cites[:1], "F3")
	f.Cites[0] = "F9"
	f.Evidence["calls_up"] = 2
	f.Summary = "changed"
	w.cycle(context.Background())
	if len(saved) != 1 || len(saved[0]) != 1 {
		t.Fatalf("saved %v", saved)
	}
	g := saved[0][0]
	if g == f || !slices.Equal(g.Cites, []string{"F2"}) || g.Evidence["calls_up"] != 1 || g.Summary != "lost" {
		t.Fatalf("queued %+v, changed under the writer", g)
	}
}
