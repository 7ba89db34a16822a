package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/sbcwatch/sbcwatch/report"
)

// storeReport writes an analysis to the database: it migrates first (a
// no-op when the schema is current), then saves idempotently.
func storeReport(ctx context.Context, dsnFlag, sbc, source string, r *report.Report, stderr io.Writer) int {
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
	if err := st.Migrate(ctx); err != nil {
		fmt.Fprintf(stderr, "sbcwatch analyze: --store: %s\n", storeLine(err))
		return exitInternal
	}
	res, err := st.SaveReportResult(ctx, sbc, source, r)
	if err != nil {
		fmt.Fprintf(stderr, "sbcwatch analyze: --store: %s\n", storeLine(err))
		return exitInternal
	}
	fmt.Fprintf(stderr, "stored under SBC %q: %d new calls, %d SIP messages, %d TLS connections, %d certificates, %d findings, %d packets\n",
		sbc, res.Calls, res.Messages, res.Connections, res.Certificates, res.Findings, res.Packets)
	return exitOK
}
