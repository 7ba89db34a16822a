package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

// TestSaveWithNULInEvidence: a NUL in a recorded string (a hostile SNI)
// does not make the save fail.
func TestSaveWithNULInEvidence(t *testing.T) {
	st, _ := storetest.New(t)
	f := finding.New(finding.TLSHandshakeFailed, finding.Warning, time.Now().Add(-time.Minute), "handshake with SNI evil\x00host failed")
	f.ID, f.Connection = "F1", "198.51.100.1:1->192.0.2.10:5061"
	f.Evidence["sni"] = "evil\x00host"
	if err := st.SaveReport(context.Background(), "lab", "nul", &report.Report{Findings: []*finding.Finding{f}}); err != nil {
		t.Fatalf("save: %v", err)
	}
}
