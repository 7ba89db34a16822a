package store_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/migrations"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

func TestMigrateFromEmptyTwiceAndConcurrently(t *testing.T) {
	t.Parallel()
	dsn := storetest.Schema(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	stores := make([]*store.Store, 4)
	for i := range stores {
		st, err := store.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		stores[i] = st
	}
	for i := range stores {
		wg.Go(func() { errs[i] = stores[i].Migrate(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate %d: %v", i, err)
		}
	}
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	v, err := stores[0].SchemaVersion(ctx)
	if want := store.LatestVersion(); err != nil || v != want || int(want) != len(files) {
		t.Fatalf("schema version = %d, %v; want %d (%d migration files)", v, err, want, len(files))
	}
	// Again: a no-op.
	if err := stores[0].Migrate(ctx); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	var rows int
	if err := stores[0].Pool().QueryRow(ctx, "select count(*) from "+store.VersionTable).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("version table rows = %d, %v", rows, err)
	}
	counts, err := store.TableCounts(ctx, stores[0].Pool())
	if err != nil {
		t.Fatal(err)
	}
	for table, n := range counts {
		if n != 0 {
			t.Errorf("%s has %d rows after migrate", table, n)
		}
	}
}

func TestSaveReportIdempotent(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	r := storetest.FieldCase(t0, "abc@192.0.2.10")
	r.CallRecords = append(r.CallRecords, storetest.PlainCall(t0.Add(time.Minute), "plain-1", "+4930111", "+4930222"))

	res, err := st.SaveReportResult(ctx, "sbc1", "capture.pcap", r)
	if err != nil {
		t.Fatal(err)
	}
	want := store.SaveResult{IngestID: res.IngestID, Calls: 2, Messages: 8, Connections: 4, Certificates: 1, Findings: 6, Problems: 3}
	if res != want {
		t.Fatalf("first save = %+v, want %+v", res, want)
	}
	before, err := store.TableCounts(ctx, st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	res2, err := st.SaveReportResult(ctx, "sbc1", "capture.pcap", r)
	if err != nil {
		t.Fatal(err)
	}
	if res2 != (store.SaveResult{IngestID: res.IngestID}) {
		t.Fatalf("second save added rows: %+v", res2)
	}
	after, err := store.TableCounts(ctx, st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s: %d rows, then %d after saving again", k, v, after[k])
		}
	}
	if before["ingests"] != 1 || before["calls"] != 2 || before["sip_messages"] != 8 || before["findings"] != 6 {
		t.Errorf("unexpected counts %v", before)
	}

	// Cites were rewritten to store ids.
	fs, err := store.CallFindings(ctx, st.Pool(), "sbc1", "abc@192.0.2.10")
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 6 {
		t.Fatalf("call findings = %d, want 6 (1 + 5 cited)", len(fs))
	}
	var rdf *store.Finding
	for i := range fs {
		if fs[i].Rule == finding.ReferDeliveryFailed {
			rdf = &fs[i]
		}
	}
	if rdf == nil || len(rdf.Cites) != 5 || len(rdf.Cites[0]) != 32 {
		t.Fatalf("refer_delivery_failed cites = %+v", rdf)
	}

	// REFERs are stored in snake_case JSON.
	c0 := *r.CallRecords[1]
	c0.CallID = "with-refer"
	c0.Refers = []*sip.Refer{{Time: t0, Src: storetest.MSProxy, Dst: storetest.SBCAddr, CSeq: 3,
		ReferTo: "sip:+4969999@sip.pstnhub.microsoft.com", Response: 202, ResponseReason: "Accepted",
		Notifies: []sip.Notify{{Time: t0.Add(time.Second), SipFrag: "SIP/2.0 200 OK"}}}}
	if err := st.SaveReport(ctx, "sbc1", "refer.pcap", &report.Report{CallRecords: []*sip.Call{&c0}}); err != nil {
		t.Fatal(err)
	}
	wr, err := store.GetCall(ctx, st.Pool(), "with-refer", "sbc1")
	if err != nil || wr.ReferCount != 1 || !strings.Contains(string(wr.Refers), `"refer_to": "sip:+4969999@sip.pstnhub.microsoft.com"`) ||
		!strings.Contains(string(wr.Refers), `"sipfrag": "SIP/2.0 200 OK"`) {
		t.Fatalf("refers = %s, %v", wr.Refers, err)
	}
	// A later, longer view of the same call updates it in place.
	c := *r.CallRecords[1]
	c.End = c.End.Add(time.Minute)
	c.Last = c.End
	c.MessageCount = 9
	if err := st.SaveReport(ctx, "sbc1", "capture-2.pcap", &report.Report{CallRecords: []*sip.Call{&c}}); err != nil {
		t.Fatal(err)
	}
	got, err := store.GetCall(ctx, st.Pool(), "plain-1", "sbc1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Messages != 9 || !got.End.Equal(c.End) {
		t.Errorf("updated call = %d messages, end %v", got.Messages, got.End)
	}
}

func TestSaveReportCleansText(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	c := storetest.PlainCall(time.Now().Add(-time.Hour), "bin\x00ary", "+1", "+2")
	c.Messages[0].Raw = []byte("INVITE sip:x SIP/2.0\r\nX: \xff\x00\r\n\r\n")
	if err := st.SaveReport(ctx, "sbc1", "x", &report.Report{CallRecords: []*sip.Call{c}}); err != nil {
		t.Fatal(err)
	}
	page, err := store.ListCalls(ctx, st.Pool(), store.CallQuery{})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("calls = %v, %v", page.Items, err)
	}
	ms, err := store.CallMessages(ctx, st.Pool(), "sbc1", page.Items[0].CallID)
	if err != nil || len(ms) != 2 || !strings.Contains(ms[0].Raw, "\uFFFD") {
		t.Fatalf("messages = %v, %v", ms, err)
	}
}

func TestRetentionDropsOldPartitions(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	now := time.Now().UTC()
	old := now.Add(-40 * 24 * time.Hour)
	recent := now.Add(-2 * time.Hour)
	withPacket := func(t0 time.Time, callID string) *report.Report {
		r := storetest.FieldCase(t0, callID)
		r.Packets = []report.Packet{{Time: t0, Frame: 1, LinkType: 1, Data: []byte(callID), CallID: callID}}
		return r
	}
	if err := st.SaveReport(ctx, "sbc1", "old", withPacket(old, "old-call")); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveReport(ctx, "sbc1", "new", withPacket(recent, "new-call")); err != nil {
		t.Fatal(err)
	}
	d1, d2 := 1.0, 0.5
	if err := st.SaveCounterSamples(ctx, []store.CounterSample{
		{SBC: "sbc1", Counter: "short_calls", Time: old, Value: 1},
		{SBC: "sbc1", Counter: "short_calls", Time: recent, Value: 2, Delta: &d1, Rate: &d2},
	}); err != nil {
		t.Fatal(err)
	}
	// Retention counts from when data was stored: make the old rows look
	// stored 40 days ago, as they would be on a running system.
	if _, err := st.Pool().Exec(ctx, `update stored_days set last_stored = last_stored - interval '40 days' where day < $1::date`,
		now.Add(-35*24*time.Hour).Format("2006-01-02")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `update calls set stored_at = stored_at - interval '40 days' where call_id = 'old-call'`); err != nil {
		t.Fatal(err)
	}
	parts, err := store.Partitions(ctx, st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < 8 {
		t.Fatalf("partitions = %v, want 2 days × 5 tables at least", parts)
	}
	dropped, err := st.DropOlderThan(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	oldDay := old.Format("20060102")
	if len(dropped) != 5 {
		t.Fatalf("dropped %v, want the 5 partitions of %s", dropped, oldDay)
	}
	for _, name := range dropped {
		if !strings.HasSuffix(name, "_p"+oldDay) {
			t.Errorf("dropped %s, which is not from %s", name, oldDay)
		}
	}
	counts, err := store.TableCounts(ctx, st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if counts["sip_messages"] != 6 || counts["tls_connections"] != 4 || counts["findings"] != 6 ||
		counts["counter_samples"] != 1 || counts["calls"] != 1 || counts["packets"] != 1 {
		t.Errorf("after retention: %v", counts)
	}
	if _, err := store.GetCall(ctx, st.Pool(), "old-call", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old call still there: %v", err)
	}
	if _, err := store.GetCall(ctx, st.Pool(), "new-call", ""); err != nil {
		t.Errorf("new call gone: %v", err)
	}
	if err := st.EnsureUpcoming(ctx, 2); err != nil {
		t.Fatal(err)
	}
	parts, err = store.Partitions(ctx, st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	tomorrow := now.Add(48 * time.Hour).Format("20060102")
	n := 0
	for _, p := range parts {
		if strings.HasSuffix(p.Name, "_p"+tomorrow) {
			n++
		}
	}
	if n != 5 {
		t.Errorf("partitions for %s: %d, want 5", tomorrow, n)
	}
	// Old data arriving again gets its partition back.
	if err := st.SaveReport(ctx, "sbc1", "old", storetest.FieldCase(old, "old-call")); err != nil {
		t.Fatalf("re-save after retention: %v", err)
	}
}

func TestListCallsPaginationAndNumber(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-20 * time.Hour).Truncate(time.Second)
	r := &report.Report{}
	for i := range 250 {
		// Pairs share a start time so the id tie-break is exercised.
		r.CallRecords = append(r.CallRecords, storetest.PlainCall(t0.Add(time.Duration(i/2)*time.Minute),
			fmt.Sprintf("call-%03d", i), fmt.Sprintf("+4930100%03d", i%10), "+4969123456"))
	}
	if err := st.SaveReport(ctx, "sbc1", "many", r); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	cur := ""
	pages := 0
	var prev *store.Call
	for {
		p, err := store.ListCalls(ctx, st.Pool(), store.CallQuery{Limit: 7, Cursor: cur})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for i := range p.Items {
			c := p.Items[i]
			if seen[c.CallID] {
				t.Fatalf("page %d repeats %s", pages, c.CallID)
			}
			seen[c.CallID] = true
			if prev != nil && c.Start.After(prev.Start) {
				t.Fatalf("order broken at %s", c.CallID)
			}
			prev = &c
		}
		if p.NextCursor == "" {
			break
		}
		cur = p.NextCursor
	}
	if len(seen) != 250 || pages != 36 {
		t.Fatalf("saw %d calls in %d pages, want 250 in 36", len(seen), pages)
	}
	for _, n := range []string{"+4930100003", "4930100003", "+49 30 100003"} {
		p, err := store.ListCalls(ctx, st.Pool(), store.CallQuery{Number: n, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) != 25 {
			t.Errorf("number %q: %d calls, want 25", n, len(p.Items))
		}
	}
	// Calls last 62 s: a window starting 30 s after a call's start still
	// finds it.
	win, err := store.ListCalls(ctx, st.Pool(), store.CallQuery{From: t0.Add(90 * time.Second), To: t0.Add(2 * time.Minute), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range win.Items {
		ids = append(ids, c.CallID)
	}
	slices.Sort(ids)
	// Starts are t0 + (i/2) min: calls 0..3 start at 0 and 1 min and end
	// 62 s later; only those starting at 1 min (2, 3) are up at 1m30s.
	if !slices.Equal(ids, []string{"call-002", "call-003"}) {
		t.Errorf("window 1m30s-2m: %v", ids)
	}
	p, err := store.ListCalls(ctx, st.Pool(), store.CallQuery{Number: "4969123456", Limit: 1000})
	if err != nil || len(p.Items) != 250 {
		t.Errorf("callee search: %d, %v", len(p.Items), err)
	}
	if _, err := store.ListCalls(ctx, st.Pool(), store.CallQuery{Limit: 1001}); !errors.Is(err, store.ErrBadLimit) {
		t.Errorf("limit 1001: %v", err)
	}
	if _, err := store.ListCalls(ctx, st.Pool(), store.CallQuery{Cursor: "garbage!"}); !errors.Is(err, store.ErrBadCursor) {
		t.Errorf("bad cursor: %v", err)
	}
}

func TestBatcherFlushesOnSizeAndCancel(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	b := st.NewBatcher("sbc1", "live:eth0", store.BatcherOptions{MaxItems: 10, Interval: time.Hour})
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t0 := time.Now().UTC().Add(-time.Hour)
	for i := range 10 {
		b.AddCall(storetest.PlainCall(t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("live-%d", i), "+1", "+2"))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := store.ListCalls(ctx, st.Pool(), store.CallQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("size flush did not happen: %d calls, stats %+v", len(p.Items), b.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.AddFinding(finding.New(finding.ShortCall, finding.Info, t0, "short"))
	b.AddSample(store.CounterSample{SBC: "sbc1", Counter: "calls", Time: t0, Value: 3})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("final flush: %v", err)
	}
	counts, err := store.TableCounts(context.Background(), st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if counts["findings"] != 1 || counts["counter_samples"] != 1 || b.Stats().Pending != 0 {
		t.Errorf("after cancel: %v, %+v", counts, b.Stats())
	}
}

func TestTokensAndAudits(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	db := st.Pool()
	tok, err := store.CreateToken(ctx, db, "ticketing", store.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateToken(ctx, db, "ticketing", store.ScopeAdmin); !errors.Is(err, store.ErrTokenExists) {
		t.Errorf("duplicate name: %v", err)
	}
	if _, err := store.CreateToken(ctx, db, "x", "root"); err == nil {
		t.Error("scope root accepted")
	}
	got, err := store.LookupToken(ctx, db, tok)
	if err != nil || got.Scope != store.ScopeRead || got.Name != "ticketing" {
		t.Fatalf("lookup = %+v, %v", got, err)
	}
	var stored string
	if err := db.QueryRow(ctx, "select hash from api_tokens").Scan(&stored); err != nil || stored == tok || stored != store.HashToken(tok) {
		t.Fatalf("stored %q for the token", stored)
	}
	if err := store.RevokeToken(ctx, db, "ticketing"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.LookupToken(ctx, db, tok); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoked token still valid: %v", err)
	}
	if err := store.RevokeToken(ctx, db, "ticketing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second revoke: %v", err)
	}
	if _, err := store.CreateToken(ctx, db, "ticketing", store.ScopeAdmin); err != nil {
		t.Errorf("reuse of a revoked name: %v", err)
	}

	now := time.Now().UTC()
	f := finding.New(finding.TLSCertUntrusted, finding.Critical, now, "self-signed")
	f.SBC = "sbc1"
	id, err := st.SaveAudit(ctx, store.AuditRecord{SBC: "sbc1", Kind: "tls", StartedAt: now, FinishedAt: now.Add(time.Second),
		Summary: "1 of 2 handshakes served a self-signed certificate", Report: map[string]any{"targets": 1},
		Results:  []store.AuditResult{{Target: "sbc:5061", SNI: "sbc.example.com", OK: false, Error: "untrusted", Result: map[string]int{"n": 2}}},
		Findings: []*finding.Finding{f}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := store.GetAudit(ctx, db, id)
	if err != nil || len(a.Results) != 1 || a.Results[0].Error != "untrusted" {
		t.Fatalf("audit = %+v, %v", a, err)
	}
	fp, err := store.ListFindings(ctx, db, store.FindingQuery{SBC: "sbc1"})
	if err != nil || len(fp.Items) != 1 || fp.Items[0].Source != finding.SourceAudit {
		t.Fatalf("audit findings = %+v, %v", fp.Items, err)
	}
	acked, err := store.AckFinding(ctx, db, fp.Items[0].ID, "alice")
	if err != nil || !acked.Acknowledged || acked.AcknowledgedBy != "alice" {
		t.Fatalf("ack = %+v, %v", acked, err)
	}
	if _, err := store.AckFinding(ctx, db, "nope", "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ack unknown: %v", err)
	}
}

func TestSaveReportConcurrentSameCapture(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	r := storetest.FieldCase(time.Now().UTC().Add(-time.Hour), "race@x")
	for i := range 50 {
		r.CallRecords = append(r.CallRecords, storetest.PlainCall(time.Now().UTC().Add(-time.Duration(i)*time.Minute), fmt.Sprintf("r%d", i), "+1", "+2"))
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = st.SaveReport(ctx, "sbc1", "same.pcap", r) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("save %d: %v", i, err)
		}
	}
	counts, err := store.TableCounts(ctx, st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if counts["ingests"] != 1 || counts["calls"] != 51 || counts["sip_messages"] != 106 || counts["findings"] != 6 || counts["tls_connections"] != 4 {
		t.Errorf("after 4 concurrent saves: %v", counts)
	}
}

func TestSaveReportFromJSONView(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	end := finding.Time(t0.Add(30 * time.Second))
	r := &report.Report{
		Calls: []report.CallJSON{{CallID: "j1", Kind: "invite", From: "+4930111", To: "+4930222", Start: finding.Time(t0), End: &end,
			Answered: true, ReferCount: 1, EndedBy: "callee", EndReason: "BYE", Messages: 7}},
		TLS: []report.TLSJSON{{Client: "52.114.75.24:50001", Server: "192.0.2.10:5061", SNI: "sbc.example.com",
			Outcome: "alert", Alert: "unknown_ca", DurationMS: 6, FromMicrosoft: true, Start: finding.Time(t0.Add(time.Second)),
			CertFingerprint: "ABCDEF", CertSubject: "CN=x"}},
	}
	if err := st.SaveReport(ctx, "sbc1", "analyze.json", r); err != nil {
		t.Fatal(err)
	}
	c, err := store.GetCall(ctx, st.Pool(), "j1", "sbc1")
	if err != nil || c.ReferCount != 1 || c.Messages != 7 || c.From != "+4930111" {
		t.Fatalf("call from JSON = %+v, %v", c, err)
	}
	p, err := store.ListTLS(ctx, st.Pool(), store.TLSQuery{Failed: ptr(true), Fingerprint: "abcdef"})
	if err != nil || len(p.Items) != 1 || p.Items[0].Alert != "unknown_ca" || p.Items[0].ConnID != "52.114.75.24:50001->192.0.2.10:5061" {
		t.Fatalf("tls from JSON = %+v, %v", p.Items, err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestBatcherKeepsRecordsWhenTheDatabaseFails(t *testing.T) {
	t.Parallel()
	st, dsn := storetest.New(t)
	ctx := context.Background()
	other, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	b := other.NewBatcher("sbc1", "live", store.BatcherOptions{MaxItems: 100, MaxPending: 3})
	t0 := time.Now().UTC().Add(-time.Hour)
	for i := range 5 {
		b.AddCall(storetest.PlainCall(t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("k%d", i), "+1", "+2"))
	}
	if s := b.Stats(); s.Pending != 3 || s.Dropped != 2 {
		t.Fatalf("stats = %+v, want 3 pending and 2 dropped", s)
	}
	other.Close()
	if err := b.Flush(ctx); err == nil {
		t.Fatal("flush on a closed pool succeeded")
	}
	if s := b.Stats(); s.Pending != 3 || s.LastErr == "" {
		t.Fatalf("after failed flush: %+v", s)
	}
	// The same records flushed through a working store arrive once.
	b2 := st.NewBatcher("sbc1", "live", store.BatcherOptions{})
	for i := range 3 {
		b2.AddCall(storetest.PlainCall(t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("k%d", i), "+1", "+2"))
	}
	if err := b2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := store.ListCalls(ctx, st.Pool(), store.CallQuery{})
	if err != nil || len(p.Items) != 3 || b2.Stats().Flushes != 1 {
		t.Fatalf("calls = %d, %v, stats %+v", len(p.Items), err, b2.Stats())
	}
}

// TestCallPackets: kept frames are stored once, and a call's frames are
// its SIP frames plus the frames of the TLS connections asked for, in
// capture order; another call's frames and other connections' are not.
func TestCallPackets(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
	r := storetest.FieldCase(t0, "pk@192.0.2.10")
	other := storetest.PlainCall(t0, "other-call", "+4930111", "+4930222")
	r.CallRecords = append(r.CallRecords, other)
	c0, c1 := r.Conns[0], r.Conns[1]
	r.Packets = []report.Packet{
		{Time: t0, Frame: 10, LinkType: 1, Data: []byte("invite"), CallID: "pk@192.0.2.10"},
		{Time: c0.FirstSeen, Frame: 20, LinkType: 1, Data: []byte("syn"), ConnID: c0.ID, ConnStart: c0.FirstSeen},
		{Time: c0.FirstSeen.Add(time.Millisecond), Frame: 21, LinkType: 1, Data: []byte("hello"), ConnID: c0.ID, ConnStart: c0.FirstSeen},
		{Time: c1.FirstSeen, Frame: 30, LinkType: 1, Data: []byte("other conn"), ConnID: c1.ID, ConnStart: c1.FirstSeen},
		{Time: t0.Add(time.Second), Frame: 40, LinkType: 1, Data: []byte("other call"), CallID: "other-call"},
		{Time: t0.Add(40 * time.Second), Frame: 50, LinkType: 1, Data: []byte("bye"), CallID: "pk@192.0.2.10"},
	}
	res, err := st.SaveReportResult(ctx, "sbc1", "pk.pcap", r)
	if err != nil {
		t.Fatal(err)
	}
	if res.Packets != 6 {
		t.Fatalf("stored %d packets, want 6", res.Packets)
	}
	if res, err = st.SaveReportResult(ctx, "sbc1", "pk.pcap", r); err != nil || res.Packets != 0 {
		t.Fatalf("second save stored %d packets (%v), want 0", res.Packets, err)
	}
	conns, err := store.CallTLS(ctx, st.Pool(), "sbc1", t0, t0.Add(time.Minute), nil)
	if err != nil {
		t.Fatal(err)
	}
	var tlsID string
	for _, c := range conns {
		if c.ConnID == c0.ID {
			tlsID = c.ID
		}
	}
	if tlsID == "" {
		t.Fatalf("connection %s not stored: %+v", c0.ID, conns)
	}
	got, err := store.CallPackets(ctx, st.Pool(), "sbc1", "pk@192.0.2.10", t0, t0.Add(40*time.Second), []string{tlsID})
	if err != nil {
		t.Fatal(err)
	}
	var frames []uint64
	for _, p := range got {
		frames = append(frames, p.Frame)
	}
	if !slices.Equal(frames, []uint64{10, 20, 21, 50}) || string(got[2].Data) != "hello" || got[0].LinkType != 1 {
		t.Fatalf("call packets = %v", frames)
	}
	n, err := store.CountCallPackets(ctx, st.Pool(), "sbc1", "pk@192.0.2.10", t0, t0.Add(40*time.Second), []string{tlsID})
	if err != nil || n != 4 {
		t.Fatalf("count = %d, %v; want 4", n, err)
	}
	if n, err := store.CountCallPackets(ctx, st.Pool(), "sbc2", "pk@192.0.2.10", t0, t0.Add(40*time.Second), nil); err != nil || n != 0 {
		t.Fatalf("another SBC's count = %d, %v; want 0", n, err)
	}
}

// TestUpdatedFindingKeepsItsRow: the engine may send a finding again with
// the same stable key and a new summary (more attempts seen, say). Saved
// in a later batch, it updates the stored row instead of adding a second
// one, and counts no new sighting of its problem.
func TestUpdatedFindingKeepsItsRow(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	r := storetest.FieldCase(t0, "upd@192.0.2.10")
	for _, f := range r.Findings {
		f.Key = finding.KeyOf(f)
	}
	if _, err := st.SaveReportResult(ctx, "sbc1", "batch-1", r); err != nil {
		t.Fatal(err)
	}
	before, err := store.TableCounts(ctx, st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	f := r.Findings[0]
	f.Summary += " (updated: one more attempt)"
	f.Evidence["attempts"] = 5
	res, err := st.SaveReportResult(ctx, "sbc1", "batch-2", &report.Report{Findings: []*finding.Finding{f}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Findings != 0 || res.Problems != 0 {
		t.Errorf("the update counted as new: %+v", res)
	}
	after, err := store.TableCounts(ctx, st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if after["findings"] != before["findings"] {
		t.Errorf("findings %d -> %d: the update added a row", before["findings"], after["findings"])
	}
	var summary string
	if err := st.Pool().QueryRow(ctx, `select summary from findings where rule = $1 and call_id = $2 and connection = $3 and time = $4`,
		f.Rule, f.CallID, f.Connection, f.Time).Scan(&summary); err != nil {
		t.Fatal(err)
	}
	if summary != f.Summary {
		t.Errorf("stored summary %q, want the update %q", summary, f.Summary)
	}
	// Without a key (an audit's finding) the summary still names it: a
	// new summary is a new finding, as before.
	g := *r.Findings[1]
	g.Key, g.Summary, g.ID = "", g.Summary+" (other)", ""
	res, err = st.SaveReportResult(ctx, "sbc1", "batch-3", &report.Report{Findings: []*finding.Finding{&g}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Findings != 1 {
		t.Errorf("a finding without a key and a new summary: %+v, want 1 new finding", res)
	}
}

// TestMovedFindingKeepsItsRow: tls_cert_inconsistent is dated by, and
// cites, the earliest connection seen so far; when an earlier connection
// ends later (serve), a new version comes dated earlier. It is the same
// finding: one row, moved to the new time, acknowledgement kept, no new
// sighting of its problem.
func TestMovedFindingKeepsItsRow(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	t1 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	t0 := t1.Add(-20 * time.Minute)
	version := func(at time.Time, conn, summary string) *finding.Finding {
		f := finding.New(finding.TLSCertInconsistent, finding.Critical, at, "%s", summary)
		f.Connection = conn
		f.Evidence["listener"] = "192.0.2.10:5061"
		f.Evidence["sni"] = "sbc.contoso.example"
		f.Key = finding.KeyOf(f)
		return f
	}
	first := version(t1, "c-late", "2 certificates on 192.0.2.10:5061")
	res, err := st.SaveReportResult(ctx, "sbc1", "live-1", &report.Report{Findings: []*finding.Finding{first}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Findings != 1 || res.Problems != 1 {
		t.Fatalf("first version: %+v, want 1 finding, 1 problem", res)
	}
	id := store.StoredFindingID("sbc1", first)
	if _, err := store.AckFinding(ctx, st.Pool(), id, "oncall"); err != nil {
		t.Fatal(err)
	}
	moved := version(t0, "c-early", "2 certificates on 192.0.2.10:5061 (3 connections)")
	if moved.Key != first.Key || store.StoredFindingID("sbc1", moved) != id {
		t.Fatalf("key or id moved with the time: %s/%s, %s/%s", first.Key, moved.Key, id, store.StoredFindingID("sbc1", moved))
	}
	res, err = st.SaveReportResult(ctx, "sbc1", "live-2", &report.Report{Findings: []*finding.Finding{moved}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Findings != 0 || res.Problems != 0 {
		t.Errorf("the moved version counted as new: %+v", res)
	}
	var n int
	var at time.Time
	var conn, summary string
	var acked bool
	if err := st.Pool().QueryRow(ctx, `select count(*) over (), time, connection, summary, acknowledged
		from findings where rule = $1`, finding.TLSCertInconsistent).Scan(&n, &at, &conn, &summary, &acked); err != nil {
		t.Fatal(err)
	}
	if n != 1 || !at.Equal(t0) || conn != "c-early" || summary != moved.Summary || !acked {
		t.Errorf("stored %d rows, time %s, connection %q, summary %q, acknowledged %v; want 1 row at %s, c-early, the new summary, acknowledged",
			n, at, conn, summary, acked, t0)
	}
	var count int
	if err := st.Pool().QueryRow(ctx, `select count from problems where rule = $1`, finding.TLSCertInconsistent).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != 1 {
		t.Errorf("problem count %d, want 1", count)
	}
}
