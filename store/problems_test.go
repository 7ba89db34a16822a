package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

const (
	expiringFP = "AB12CD34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12"
	auditTgt   = "sbc.example.com:5061"
)

// expiring is the tls_cert_expiring finding for expiringFP as a capture
// (connection set) or an audit (source audit, target) reports it.
func expiring(t time.Time, conn string, audit bool) *finding.Finding {
	f := finding.New(finding.TLSCertExpiring, finding.Warning, t, "certificate CN=sbc.example.com expires in 12 days")
	f.Evidence["fingerprint_sha256"] = expiringFP
	f.Evidence["days_left"] = 12
	f.Connection = conn
	if audit {
		f.Source = finding.SourceAudit
		f.SBC = "sbc1"
		f.Connection = "audit " + auditTgt + " (192.0.2.10)"
		f.Evidence["target"] = auditTgt
	}
	return f
}

func saveAudit(t *testing.T, st *store.Store, at time.Time, fs ...*finding.Finding) int64 {
	t.Helper()
	id, err := st.SaveAudit(context.Background(), store.AuditRecord{SBC: "sbc1", Kind: "tls", Target: auditTgt,
		StartedAt: at, OK: true, Summary: "audit", Findings: fs})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func onlyProblem(t *testing.T, st *store.Store, q store.ProblemQuery) store.Problem {
	t.Helper()
	p, err := store.ListProblems(context.Background(), st.Pool(), q)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 1 {
		t.Fatalf("problems %+v = %d rows, want 1: %+v", q, len(p.Items), p.Items)
	}
	return p.Items[0]
}

func TestProblemLifecycle(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	db := st.Pool()
	now := time.Now().UTC().Truncate(time.Second)

	// Capture 1: two connections served the same expiring certificate.
	c1 := &report.Report{Findings: []*finding.Finding{
		expiring(now.Add(-50*time.Hour), "52.114.75.24:50001->192.0.2.10:5061", false),
		expiring(now.Add(-49*time.Hour), "52.114.75.24:50002->192.0.2.10:5061", false),
	}}
	if res, err := st.SaveReportResult(ctx, "sbc1", "capture1.pcap", c1); err != nil || res.Findings != 2 || res.Problems != 1 {
		t.Fatalf("first save: %+v %v", res, err)
	}
	// The same capture again stores nothing and counts nothing.
	if res, err := st.SaveReportResult(ctx, "sbc1", "capture1.pcap", c1); err != nil || res.Findings != 0 || res.Problems != 0 {
		t.Fatalf("second save: %+v %v", res, err)
	}
	a1 := saveAudit(t, st, now.Add(-48*time.Hour), expiring(now.Add(-48*time.Hour), "", true))
	p := onlyProblem(t, st, store.ProblemQuery{})
	if p.Count != 2 || p.State != store.StateOpen || p.AuditTarget != auditTgt {
		t.Fatalf("after a capture and an audit: %+v", p)
	}
	if p.Subject != "cert "+strings.ToLower(expiringFP) || p.Advice == "" {
		t.Errorf("subject %q advice %q", p.Subject, p.Advice)
	}
	// Acknowledged once, it stays acknowledged through new sightings.
	if _, err := store.AckProblem(ctx, db, p.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	saveAudit(t, st, now.Add(-24*time.Hour), expiring(now.Add(-24*time.Hour), "", true))
	c2 := &report.Report{Findings: []*finding.Finding{expiring(now.Add(-20*time.Hour), "52.114.75.24:50003->192.0.2.10:5061", false)}}
	if err := st.SaveReport(ctx, "sbc1", "capture2.pcap", c2); err != nil {
		t.Fatal(err)
	}
	a3 := saveAudit(t, st, now.Add(-time.Hour), expiring(now.Add(-time.Hour), "", true))
	p = onlyProblem(t, st, store.ProblemQuery{State: store.StateOpen})
	if p.Count != 5 {
		t.Errorf("three audits and two captures: count %d, want 5", p.Count)
	}
	if !p.Acknowledged || p.AcknowledgedBy != "alice" {
		t.Errorf("acknowledgement lost: %+v", p)
	}
	if !p.FirstSeen.Equal(now.Add(-50*time.Hour)) || !p.LastSeen.Equal(now.Add(-time.Hour)) {
		t.Errorf("first/last seen %s %s", p.FirstSeen, p.LastSeen)
	}
	// The findings list shows every sighting, acknowledged with its problem.
	fp, err := store.ListFindings(ctx, db, store.FindingQuery{Rule: finding.TLSCertExpiring, State: store.StateOpen})
	if err != nil {
		t.Fatal(err)
	}
	if len(fp.Items) != 6 {
		t.Fatalf("open findings = %d, want 6 sightings", len(fp.Items))
	}
	for _, f := range fp.Items {
		if !f.Acknowledged || f.ProblemID == nil || *f.ProblemID != p.ID || f.State != store.StateOpen || f.Advice == "" {
			t.Errorf("finding %s: ack %v problem %v state %q", f.ID, f.Acknowledged, f.ProblemID, f.State)
		}
	}
	if a1 == a3 {
		t.Fatal("audits share an id")
	}

	// An audit that reaches the target and no longer sees it resolves it
	// (the target read from the audit report when the record does not
	// name it).
	a4, err := st.SaveAudit(ctx, store.AuditRecord{SBC: "sbc1", Kind: "tls", StartedAt: now, OK: true,
		Report: map[string]any{"target": auditTgt}})
	if err != nil {
		t.Fatal(err)
	}
	p = onlyProblem(t, st, store.ProblemQuery{State: store.StateResolved})
	if p.ResolvedAt == nil || p.ResolvedBy == "" || !strings.Contains(p.ResolvedBy, "audit") {
		t.Errorf("resolved: %+v (audit %d)", p, a4)
	}
	if n, _ := store.ListProblems(ctx, db, store.ProblemQuery{State: store.StateOpen}); len(n.Items) != 0 {
		t.Errorf("still open: %+v", n.Items)
	}
	// An unreachable target resolves nothing.
	c3 := &report.Report{Findings: []*finding.Finding{expiring(now.Add(time.Minute), "52.114.75.24:50004->192.0.2.10:5061", false)}}
	if err := st.SaveReport(ctx, "sbc1", "capture3.pcap", c3); err != nil {
		t.Fatal(err)
	}
	p = onlyProblem(t, st, store.ProblemQuery{State: store.StateOpen})
	if p.Count != 6 || p.Acknowledged || p.ResolvedAt != nil {
		t.Errorf("recurrence: %+v, want re-opened, count 6, not acknowledged", p)
	}
	un := finding.New(finding.SBCUnreachable, finding.Warning, now.Add(2*time.Minute), "unreachable")
	un.Evidence["target"] = auditTgt
	saveAudit(t, st, now.Add(2*time.Minute), un)
	if n, _ := store.ListProblems(ctx, db, store.ProblemQuery{State: store.StateOpen, Rule: finding.TLSCertExpiring}); len(n.Items) != 1 {
		t.Errorf("an audit that did not reach the target resolved the problem")
	}

	// Days without recurrence resolve it too, in the retention run.
	if _, err := db.Exec(ctx, `update problems set updated_at = now() - interval '15 days'`); err != nil {
		t.Fatal(err)
	}
	st.SetResolveAfter(-1)
	if _, err := st.DropOlderThan(ctx, 30); err != nil {
		t.Fatal(err)
	}
	if n, _ := store.ListProblems(ctx, db, store.ProblemQuery{State: store.StateOpen}); len(n.Items) != 2 {
		t.Errorf("resolve-after -1 resolved problems: %+v", n.Items)
	}
	st.SetResolveAfter(0) // the default, 14 days
	if _, err := st.DropOlderThan(ctx, 30); err != nil {
		t.Fatal(err)
	}
	if n, _ := store.ListProblems(ctx, db, store.ProblemQuery{State: store.StateOpen}); len(n.Items) != 0 {
		t.Errorf("open after 15 days without a sighting: %+v", n.Items)
	}
	p = onlyProblem(t, st, store.ProblemQuery{State: store.StateResolved, Rule: finding.TLSCertExpiring})
	if p.ResolvedBy != "no recurrence for 14 days" {
		t.Errorf("resolved by %q", p.ResolvedBy)
	}
	if _, err := store.ListProblems(ctx, db, store.ProblemQuery{State: "closed"}); err == nil {
		t.Error("state closed accepted")
	}
}

func TestAckFindingAcknowledgesItsProblem(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	now := time.Now().UTC()
	saveAudit(t, st, now.Add(-time.Hour), expiring(now.Add(-time.Hour), "", true))
	fs, err := store.ListFindings(ctx, st.Pool(), store.FindingQuery{})
	if err != nil || len(fs.Items) != 1 {
		t.Fatalf("findings %v %v", fs.Items, err)
	}
	if _, err := store.AckFinding(ctx, st.Pool(), fs.Items[0].ID, "bob"); err != nil {
		t.Fatal(err)
	}
	saveAudit(t, st, now, expiring(now, "", true))
	fs, err = store.ListFindings(ctx, st.Pool(), store.FindingQuery{Acknowledged: new(bool)})
	if err != nil || len(fs.Items) != 0 {
		t.Errorf("unacknowledged findings after ack: %+v %v", fs.Items, err)
	}
	p := onlyProblem(t, st, store.ProblemQuery{})
	if !p.Acknowledged || p.AcknowledgedBy != "bob" || p.Count != 2 {
		t.Errorf("problem %+v", p)
	}
}

func TestOldCaptureKeptFromWhenStored(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	old := time.Now().UTC().Add(-90 * 24 * time.Hour)
	r := storetest.FieldCase(old, "ninety-days-ago")
	r.Packets = []report.Packet{{Time: old, Frame: 1, LinkType: 1, Data: []byte("x"), CallID: "ninety-days-ago"}}
	if err := st.SaveReport(ctx, "sbc1", "old.pcap", r); err != nil {
		t.Fatal(err)
	}
	before, err := store.TableCounts(ctx, st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	dropped, err := st.DropOlderThan(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 0 {
		t.Errorf("dropped %v of a capture stored just now", dropped)
	}
	after, err := store.TableCounts(ctx, st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"calls", "sip_messages", "tls_connections", "findings", "packets", "problems"} {
		if after[k] != before[k] || after[k] == 0 {
			t.Errorf("%s: %d before retention, %d after", k, before[k], after[k])
		}
	}
	if _, err := store.GetCall(ctx, st.Pool(), "ninety-days-ago", ""); err != nil {
		t.Errorf("call gone: %v", err)
	}
	if got := store.KeptUntil(old, 30); !got.Equal(old.Add(30 * 24 * time.Hour)) {
		t.Errorf("KeptUntil = %s", got)
	}
}

func TestNumberSearchBySuffix(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-time.Hour)
	r := &report.Report{CallRecords: []*sip.Call{
		storetest.PlainCall(t0, "to-aa", "+4917012345601", "+496912345600"),
		storetest.PlainCall(t0.Add(time.Minute), "other", "+4917012345601", "+496912345699"),
	}}
	if err := st.SaveReport(ctx, "sbc1", "n", r); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"12345600", "069 12345600", "+49 69 12345600", "0049 69 123456-00", "496912345600"} {
		p, err := store.ListCalls(ctx, st.Pool(), store.CallQuery{Number: q})
		if err != nil {
			t.Fatalf("%q: %v", q, err)
		}
		if len(p.Items) != 1 || p.Items[0].CallID != "to-aa" {
			t.Errorf("number %q found %d calls, want to-aa", q, len(p.Items))
		}
	}
	p, err := store.ListCalls(ctx, st.Pool(), store.CallQuery{Number: "0170 12345601"})
	if err != nil || len(p.Items) != 2 {
		t.Errorf("caller by national form: %d, %v", len(p.Items), err)
	}
	if got := store.NumberSuffix("069 12345600"); got != "6912345600" {
		t.Errorf("NumberSuffix = %q", got)
	}
	// The suffix search can use the reversed-digits index.
	tx, err := st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `set local enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, `explain select 1 from calls where reverse(to_digits) like '00654321%'`)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "calls_to_digits_rev_idx") {
		t.Errorf("suffix search does not use the index:\n%s", strings.Join(lines, "\n"))
	}
}

// Stored references between findings use store ids: cites, caused_by /
// explains in a call's findings, and evidence explained_by.
func TestStoredReferencesUseStoreIDs(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	root := finding.New(finding.ReferDeliveryFailed, finding.Critical, at, "transfer never arrived")
	root.ID, root.CallID, root.Cites = "F1", "ref-call", []string{"F2"}
	miss := finding.New(finding.TransferMissing, finding.Warning, at, "no transfer. F1 (refer_delivery_failed) says why.")
	miss.ID, miss.CallID = "F2", "ref-call"
	miss.Evidence["explained_by"] = "F1"
	r := &report.Report{Findings: []*finding.Finding{root, miss},
		CallRecords: []*sip.Call{storetest.PlainCall(at.Add(-time.Minute), "ref-call", "+4930555", "+4969123456")}}
	if err := st.SaveReport(ctx, "sbc1", "refs", r); err != nil {
		t.Fatal(err)
	}
	fs, err := store.CallFindings(ctx, st.Pool(), "sbc1", "ref-call")
	if err != nil || len(fs) != 2 {
		t.Fatalf("call findings %+v %v", fs, err)
	}
	byRule := map[string]store.Finding{}
	for _, f := range fs {
		byRule[f.Rule] = f
	}
	rd, tm := byRule[finding.ReferDeliveryFailed], byRule[finding.TransferMissing]
	if rd.LocalID != "F1" || len(rd.ID) != 32 || len(rd.Cites) != 1 || rd.Cites[0] != tm.ID {
		t.Errorf("root %+v", rd)
	}
	if tm.CausedBy != rd.ID || len(rd.Explains) != 1 || rd.Explains[0] != tm.ID {
		t.Errorf("caused_by %q explains %v", tm.CausedBy, rd.Explains)
	}
	if !strings.Contains(string(tm.Evidence), `"explained_by": "`+rd.ID+`"`) && !strings.Contains(string(tm.Evidence), `"explained_by":"`+rd.ID+`"`) {
		t.Errorf("evidence %s does not name %s", tm.Evidence, rd.ID)
	}
	if miss.Evidence["explained_by"] != "F1" {
		t.Error("saving changed the report's finding")
	}
}
