package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sbcwatch/sbcwatch/analyze"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// storedLines says what a save stored and how long it is kept.
func storedLines(stderr io.Writer, sbc string, res store.SaveResult, retentionDays int) {
	fmt.Fprintf(stderr, "stored under SBC %q: %d new calls, %d SIP messages, %d TLS connections, %d certificates, %d findings (sightings of %d problems), %d packets\n",
		sbc, res.Calls, res.Messages, res.Connections, res.Certificates, res.Findings, res.Problems, res.Packets)
	if retentionDays <= 0 {
		retentionDays = store.DefaultRetentionDays
	}
	fmt.Fprintf(stderr, "kept for %d days from now (serve.retention_days), until at least %s, whatever the capture's own dates\n",
		retentionDays, store.KeptUntil(time.Now().UTC(), retentionDays).Format("2006-01-02"))
}

// storeBatch is how many calls and TLS connections a streaming
// `analyze --store` writes at once.
var storeBatch = 2000

// storePacketBytes is how many bytes of kept frames (--keep-packets) a
// batch holds at most before it is written.
const storePacketBytes = 16 << 20

// storeSink writes a streaming analysis to the store as the engine
// decides it: calls (with their SIP messages), TLS connections and, with
// --keep-packets, the frames behind them (analyze.PacketSink) in batches
// of storeBatch records or storePacketBytes of frames, each an
// idempotent save (the same capture stored again adds nothing), so
// memory does not grow with the input. Findings are saved once at the
// end, from the report's spool, with the report's IDs and references
// (finish). A failed save stops the writing (exit 3) but not the
// analysis or its report.
type storeSink struct {
	ctx         context.Context
	st          *store.Store
	sbc, source string
	calls       []*sip.Call
	conns       []*tlsaudit.Conn
	packets     []report.Packet
	pbytes      int
	total       store.SaveResult
	err         error
	retention   int // days, for the closing line (0: the default)
}

var _ analyze.PacketSink = (*storeSink)(nil)

// openStoreSink opens the database for a streaming --store; a code other
// than exitOK is the exit status after its one-line error.
func openStoreSink(ctx context.Context, dsnFlag, sbc, source string, stderr io.Writer) (*storeSink, int) {
	dsn, err := storeDSN(dsnFlag, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "sbcwatch analyze: --store: %v\n", err)
		return nil, exitUsage
	}
	if sbc == "" {
		sbc = "default"
	}
	st, err := storeOpen(ctx, dsn)
	if err != nil {
		fmt.Fprintf(stderr, "sbcwatch analyze: --store: %s\n", storeLine(err))
		return nil, exitInternal
	}
	if err := st.CheckSchema(ctx); err != nil {
		st.Close()
		fmt.Fprintf(stderr, "sbcwatch analyze: --store: %s\n", storeLine(err))
		if errors.Is(err, store.ErrNotMigrated) {
			return nil, exitUsage // the admin's step: sbcwatch migrate
		}
		return nil, exitInternal
	}
	return &storeSink{ctx: ctx, st: st, sbc: sbc, source: source}, exitOK
}

func (s *storeSink) Call(c *sip.Call) {
	s.calls = append(s.calls, c)
	if len(s.calls)+len(s.conns) >= storeBatch {
		s.flush()
	}
}

func (s *storeSink) TLSConn(c *tlsaudit.Conn) {
	s.conns = append(s.conns, c)
	if len(s.calls)+len(s.conns) >= storeBatch {
		s.flush()
	}
}

// Packets takes the frames kept behind a call or a connection it had.
func (s *storeSink) Packets(ps []report.Packet) {
	s.packets = append(s.packets, ps...)
	for _, p := range ps {
		s.pbytes += len(p.Data)
	}
	if s.pbytes >= storePacketBytes || len(s.calls)+len(s.conns)+len(s.packets) >= storeBatch {
		s.flush()
	}
}

// Finding is a no-op: findings are saved by finish, numbered as in the
// report.
func (s *storeSink) Finding(*finding.Finding) {}

// save writes one report and adds up what it stored.
func (s *storeSink) save(r *report.Report) {
	if s.err != nil {
		return
	}
	res, err := s.st.SaveReportResult(s.ctx, s.sbc, s.source, r)
	if err != nil {
		s.err = err
		return
	}
	t := &s.total
	t.IngestID = res.IngestID
	t.Calls += res.Calls
	t.Messages += res.Messages
	t.Connections += res.Connections
	t.Certificates += res.Certificates
	t.Findings += res.Findings
	t.Packets += res.Packets
	t.Problems += res.Problems
}

func (s *storeSink) flush() {
	if len(s.calls)+len(s.conns)+len(s.packets) > 0 {
		r := report.Build(s.calls, s.conns, nil)
		r.Packets = s.packets
		s.save(r)
	}
	s.calls, s.conns, s.packets, s.pbytes = nil, nil, nil, 0
}

// finish writes what is pending and the findings of sp, says what was
// stored and how long it is kept, and returns the exit status (exitOK,
// or exitInternal when a save failed).
func (s *storeSink) finish(sp *report.Spool, st report.Stats, stderr io.Writer) int {
	defer s.st.Close()
	s.flush()
	var fs []*finding.Finding
	if err := sp.Findings(func(f *finding.Finding) error { fs = append(fs, f); return nil }); err != nil && s.err == nil {
		s.err = err
	}
	s.save(&report.Report{Findings: fs, Stats: st})
	if s.err != nil {
		fmt.Fprintf(stderr, "sbcwatch analyze: --store: %s\n", storeLine(s.err))
		return exitInternal
	}
	storedLines(stderr, s.sbc, s.total, s.retention)
	return exitOK
}
