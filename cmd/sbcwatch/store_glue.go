package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/store"
)

// storeReport writes an analysis to a migrated database, idempotently,
// and says how long the store keeps it (retentionDays, 0 for the
// default).
func storeReport(ctx context.Context, dsnFlag, sbc, source string, r *report.Report, retentionDays int, stderr io.Writer) int {
	dsn, err := storeDSN(dsnFlag, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "sbcwatch analyze: --store: %v\n", err)
		return exitUsage
	}
	if sbc == "" {
		sbc = "default"
	}
	st, err := storeOpen(ctx, dsn)
	if err != nil {
		fmt.Fprintf(stderr, "sbcwatch analyze: --store: %s\n", storeLine(err))
		return exitInternal
	}
	defer st.Close()
	if err := st.CheckSchema(ctx); err != nil {
		fmt.Fprintf(stderr, "sbcwatch analyze: --store: %s\n", storeLine(err))
		if errors.Is(err, store.ErrNotMigrated) {
			return exitUsage // the admin's step: sbcwatch migrate
		}
		return exitInternal
	}
	res, err := st.SaveReportResult(ctx, sbc, source, r)
	if err != nil {
		fmt.Fprintf(stderr, "sbcwatch analyze: --store: %s\n", storeLine(err))
		return exitInternal
	}
	fmt.Fprintf(stderr, "stored under SBC %q: %d new calls, %d SIP messages, %d TLS connections, %d certificates, %d findings (sightings of %d problems), %d packets\n",
		sbc, res.Calls, res.Messages, res.Connections, res.Certificates, res.Findings, res.Problems, res.Packets)
	if retentionDays <= 0 {
		retentionDays = store.DefaultRetentionDays
	}
	fmt.Fprintf(stderr, "kept for %d days from now (serve.retention_days), until at least %s, whatever the capture's own dates\n",
		retentionDays, store.KeptUntil(time.Now().UTC(), retentionDays).Format("2006-01-02"))
	return exitOK
}
