package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/sbcwatch/sbcwatch/analyze"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
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
	storedLines(stderr, sbc, res, retentionDays)
	return exitOK
}

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
// `analyze --store` writes at once, and storeWriters how many saves run
// side by side (each a transaction on its own connection).
var (
	storeBatch   = 1000
	storeWriters = 2
)

// storePacketBytes is how many bytes of kept frames (--keep-packets) a
// batch holds at most before it is written (storeWriters+1 batches may be
// held at once).
const storePacketBytes = 8 << 20

// storeSink writes a streaming analysis to the store as the engine
// decides it: calls (with their SIP messages), TLS connections and, with
// --keep-packets, the frames behind them (analyze.PacketSink) in batches
// of storeBatch records or storePacketBytes of frames, each an
// idempotent save (the same capture stored again adds nothing), so
// memory does not grow with the input. The saves
// run on storeWriters writer goroutines while the analysis goes on (the
// database works on one batch per writer while the engine fills the
// next); the analysis waits when every writer is busy, so at most
// storeWriters+1 batches are held. Findings are saved at the end, after
// the batches, from the report's spool, with the report's IDs and
// references, in batches of storeBatch too (finish, saveFindings). A
// failed save stops the writing (exit 3) but not the analysis or its
// report.
type storeSink struct {
	ctx         context.Context
	st          *store.Store
	sbc, source string
	calls       []*sip.Call
	conns       []*tlsaudit.Conn
	packets     []report.Packet
	pbytes      int
	retention   int // days, for the closing line (0: the default)

	queue     chan sinkBatch // to the writers; closed by stop
	writers   sync.WaitGroup
	closeOnce sync.Once

	mu    sync.Mutex
	total store.SaveResult
	err   error // the first failed save: the writers save nothing more
}

// sinkBatch is what one save of a writer stores.
type sinkBatch struct {
	calls   []*sip.Call
	conns   []*tlsaudit.Conn
	packets []report.Packet
}

var _ analyze.PacketSink = (*storeSink)(nil)

// openStoreSink opens the database for a streaming --store and starts
// its writer, which runs until finish or stop; a code other than exitOK
// is the exit status after its one-line error.
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
	s := &storeSink{ctx: ctx, st: st, sbc: sbc, source: source, queue: make(chan sinkBatch)}
	for range max(storeWriters, 1) {
		s.writers.Go(s.write)
	}
	return s, exitOK
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

// write is a writer goroutine: it saves batches from the queue until the
// queue is closed. After a failed save (or once the context is done,
// which fails the saves) the writers only drain the queue, so the
// analysis never blocks on them. Batches are independent: the saves of
// two writers touch different rows, and a call stored twice keeps its
// latest view whichever save commits last.
func (s *storeSink) write() {
	for b := range s.queue {
		// The engine is done with these records: nothing changes them
		// while they are saved.
		s.save(&report.Report{CallRecords: b.calls, Conns: b.conns, Packets: b.packets, Findings: []*finding.Finding{}})
	}
}

// save writes one report and adds up what it stored.
func (s *storeSink) save(r *report.Report) {
	s.mu.Lock()
	failed := s.err != nil
	s.mu.Unlock()
	if failed {
		return
	}
	res, err := s.st.SaveReportResult(s.ctx, s.sbc, s.source, r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.err == nil {
			s.err = err
		}
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

// flush hands the pending records to a writer (waiting until one is
// free).
func (s *storeSink) flush() {
	if len(s.calls)+len(s.conns)+len(s.packets) > 0 {
		s.queue <- sinkBatch{s.calls, s.conns, s.packets}
	}
	s.calls, s.conns, s.packets, s.pbytes = nil, nil, nil, 0
}

// stop ends the writers once they have saved what they hold, and waits
// for them; it may be called more than once.
func (s *storeSink) stop() {
	s.closeOnce.Do(func() { close(s.queue) })
	s.writers.Wait()
}

// close stops the writers and closes the database (when the analysis
// failed: nothing more is written).
func (s *storeSink) close() {
	s.stop()
	s.st.Close()
}

// finish writes what is pending and the findings of sp, says what was
// stored and how long it is kept, and returns the exit status (exitOK,
// or exitInternal when a save failed).
func (s *storeSink) finish(sp *report.Spool, st report.Stats, stderr io.Writer) int {
	defer s.st.Close()
	s.flush()
	s.stop()
	if err := s.saveFindings(sp, st); err != nil && s.err == nil { // the writers are done: no lock needed
		s.err = err
	}
	if s.err != nil {
		fmt.Fprintf(stderr, "sbcwatch analyze: --store: %s\n", storeLine(s.err))
		return exitInternal
	}
	storedLines(stderr, s.sbc, s.total, s.retention)
	return exitOK
}

// findingRefs are the evidence fields that name another finding by its
// ID, as Cites do.
var findingRefs = [...]string{"explained_by", "possibly_explained_by"}

// saveFindings saves the findings of sp in report order, in batches of
// storeBatch, the last one with the run's stats. A finding may cite one
// in another batch (the root cause comes first in the report, the
// handshake failures it rests on later), so the references are first
// rewritten to the store's ids: one pass over the spool finds the IDs
// that are cited, a second computes the store ids of those, the third
// saves. Memory grows with the findings that are cited, not with all of
// them.
func (s *storeSink) saveFindings(sp *report.Spool, st report.Stats) error {
	cited := map[string]string{}
	err := sp.Findings(func(f *finding.Finding) error {
		for _, c := range f.Cites {
			cited[c] = ""
		}
		for _, k := range findingRefs {
			if v, ok := f.Evidence[k].(string); ok {
				cited[v] = ""
			}
		}
		return nil
	})
	if err == nil && len(cited) > 0 {
		err = sp.Findings(func(f *finding.Finding) error {
			if _, ok := cited[f.ID]; ok {
				cited[f.ID] = store.StoredFindingID(s.sbc, f)
			}
			return nil
		})
	}
	if err != nil {
		return err
	}
	var fs []*finding.Finding
	err = sp.Findings(func(f *finding.Finding) error {
		fs = append(fs, storeRefs(f, cited))
		if len(fs) >= storeBatch {
			s.save(&report.Report{Findings: fs})
			fs = nil
		}
		return nil
	})
	s.save(&report.Report{Findings: fs, Stats: st})
	return err
}

// storeRefs returns f with its references to other findings rewritten
// to their store ids (ids; a reference not there stays as it is).
func storeRefs(f *finding.Finding, ids map[string]string) *finding.Finding {
	if len(ids) == 0 {
		return f
	}
	g := *f
	g.Cites = slices.Clone(f.Cites)
	for i, c := range g.Cites {
		if id := ids[c]; id != "" {
			g.Cites[i] = id
		}
	}
	cloned := false
	for _, k := range findingRefs {
		if v, ok := f.Evidence[k].(string); ok && ids[v] != "" {
			if !cloned {
				g.Evidence, cloned = maps.Clone(f.Evidence), true
			}
			g.Evidence[k] = ids[v]
		}
	}
	return &g
}
