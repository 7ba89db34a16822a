package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/tern/v2/migrate"

	"github.com/sbcwatch/sbcwatch/migrations"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

// oldMessageID is how the store named a SIP message before schema version
// 9: the SHA-256 of sbc, time, source, destination and raw text, each
// followed by a NUL, in 64 hex digits.
func oldMessageID(sbc string, m *sip.Message) string {
	h := sha256.New()
	for _, p := range []string{sbc, m.Time.UTC().Format(time.RFC3339Nano), m.Src.String(), m.Dst.String()} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	h.Write(m.Raw)
	h.Write([]byte{0})
	return hex.EncodeToString(h.Sum(nil))
}

// Every column of a SIP message comes back as it was saved (the messages
// are written in COPY's binary format by hand), and its id is the first
// 32 hex digits of the id it had before schema version 9.
func TestMessageRoundTrip(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)
	c := storetest.PlainCall(t0, "rt@x", "+4930111", "+4930222")
	m := c.Messages[0]
	m.Src = netip.MustParseAddrPort("[2001:db8::1]:5061")
	m.Dst = netip.AddrPort{} // not known: stored as ""
	m.Frame, m.Transport, m.Origin = 4294967301, "tcp", "hep"
	m.RequestURI, m.FromTag, m.ToTag, m.Branch = "sip:+4930222@sbc", "ft", "tt", "z9hG4bK-1"
	m.Contact, m.UserAgent, m.ReferTo, m.ReasonHdr = "<sip:a@b>", "UA/1 ü", "sip:c@d", "Q.850;cause=16"
	m.Q850Cause, m.CSeq, m.FromUser, m.ToUser = 16, 4000000000, "+4930111", "+4930222"
	m.CallID = "" // the call's Call-ID stands in
	r1 := c.Messages[1]
	r1.StatusCode, r1.Reason = 603, "Decline"
	if err := st.SaveReport(ctx, "sbc1", "rt.pcap", &report.Report{CallRecords: []*sip.Call{c}}); err != nil {
		t.Fatal(err)
	}
	ms, err := store.CallMessages(ctx, st.Pool(), "sbc1", "rt@x")
	if err != nil || len(ms) != 2 {
		t.Fatalf("messages = %+v, %v", ms, err)
	}
	got := ms[0]
	want := store.Message{Time: t0.Truncate(time.Microsecond), ID: oldMessageID("sbc1", m)[:32], SBC: "sbc1",
		Frame: 4294967301, Src: "[2001:db8::1]:5061", Dst: "", Transport: "tcp", Origin: "hep", IsRequest: true,
		Method: "INVITE", RequestURI: "sip:+4930222@sbc", CallID: "rt@x", CSeq: 4000000000, CSeqMethod: "INVITE",
		FromUser: "+4930111", ToUser: "+4930222", FromTag: "ft", ToTag: "tt", Branch: "z9hG4bK-1",
		Contact: "<sip:a@b>", UserAgent: "UA/1 ü", ReferTo: "sip:c@d", ReasonHdr: "Q.850;cause=16", Q850Cause: 16,
		Raw: string(m.Raw)}
	got.Time = got.Time.UTC()
	if got != want {
		t.Errorf("message read back:\n got %+v\nwant %+v", got, want)
	}
	if ms[1].IsRequest || ms[1].Status != 603 || ms[1].Reason != "Decline" || ms[1].ID != oldMessageID("sbc1", r1)[:32] {
		t.Errorf("response read back: %+v", ms[1])
	}
}

// A save whose calls and messages are partly stored already (a capture
// that overlaps one stored before) stores only what is new and updates
// the call seen later, whichever way each table is written.
func TestSaveOverlappingCapture(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
	a := storetest.PlainCall(t0, "a@x", "+4930111", "+4930222")
	b := storetest.PlainCall(t0.Add(time.Minute), "b@x", "+4930111", "+4930333")
	res, err := st.SaveReportResult(ctx, "sbc1", "one.pcap", &report.Report{CallRecords: []*sip.Call{a, b}})
	if err != nil || res.Calls != 2 || res.Messages != 4 {
		t.Fatalf("first save = %+v, %v", res, err)
	}
	// The second capture holds b again, now with a BYE, and a new call.
	b2 := *b
	bye := *b.Messages[1]
	bye.Time, bye.IsRequest, bye.Method, bye.StatusCode, bye.Reason = b.End.Add(time.Second), true, "BYE", 0, ""
	bye.Raw = []byte("BYE sip:x SIP/2.0\r\nCall-ID: b@x\r\n\r\n")
	b2.Messages = append(append([]*sip.Message{}, b.Messages...), &bye)
	b2.Last, b2.MessageCount = bye.Time, 3
	c := storetest.PlainCall(t0.Add(2*time.Minute), "c@x", "+4930444", "+4930222")
	res, err = st.SaveReportResult(ctx, "sbc1", "two.pcap", &report.Report{CallRecords: []*sip.Call{&b2, c}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Calls != 2 || res.Messages != 3 {
		t.Errorf("overlapping save = %+v, want 2 calls (one updated, one new) and 3 messages", res)
	}
	counts, err := store.TableCounts(ctx, st.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if counts["calls"] != 3 || counts["sip_messages"] != 7 || counts["ingests"] != 2 {
		t.Errorf("counts = %v", counts)
	}
	got, err := store.GetCall(ctx, st.Pool(), "b@x", "sbc1")
	if err != nil || got.Messages != 3 {
		t.Errorf("b after the second save: %+v, %v", got, err)
	}
	// The same capture again: nothing.
	res, err = st.SaveReportResult(ctx, "sbc1", "two.pcap", &report.Report{CallRecords: []*sip.Call{&b2, c}})
	if err != nil || res.Calls != 0 || res.Messages != 0 {
		t.Errorf("saving it again = %+v, %v", res, err)
	}
}

// migrateTo moves the schema of dsn to version v with the embedded
// migrations.
func migrateTo(t *testing.T, st *store.Store, v int32) {
	t.Helper()
	ctx := context.Background()
	conn, err := st.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	m, err := migrate.NewMigrator(ctx, conn.Conn(), store.VersionTable)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.LoadMigrations(migrations.FS); err != nil {
		t.Fatal(err)
	}
	if err := m.MigrateTo(ctx, v); err != nil {
		t.Fatalf("migrate to %d: %v", v, err)
	}
}

// Migration 009 turns the 64-hex-digit message ids stored before it into
// 16-byte ones: the messages keep their identity, so storing the same
// capture again after the upgrade adds nothing, and the API shows the
// first 32 digits of the old id.
func TestMigration009KeepsMessageIdentity(t *testing.T) {
	t.Parallel()
	dsn := storetest.Schema(t)
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	migrateTo(t, st, 8)
	t0 := time.Now().UTC().Add(-5 * time.Hour).Truncate(time.Millisecond)
	c := storetest.PlainCall(t0, "old@x", "+4930111", "+4930222")
	if err := store.EnsurePartitions(ctx, st.Pool(), "sip_messages", []time.Time{t0}); err != nil {
		t.Fatal(err)
	}
	// The rows as sbcwatch stored them before: text ids.
	for _, m := range c.Messages {
		if _, err := st.Pool().Exec(ctx, `insert into sip_messages (time, id, sbc, src, dst, is_request, call_id, raw)
values ($1, $2, 'sbc1', $3, $4, $5, $6, $7)`, m.Time, oldMessageID("sbc1", m), m.Src.String(), m.Dst.String(),
			m.IsRequest, c.CallID, string(m.Raw)); err != nil {
			t.Fatal(err)
		}
	}
	// Its ingest, named as before: the digest of the sorted content
	// keys ("c" call, "m" message id).
	keys := []string{"c" + c.CallID + "\x00" + c.Start.UTC().Format(time.RFC3339Nano)}
	for _, m := range c.Messages {
		keys = append(keys, "m"+oldMessageID("sbc1", m))
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	var ingest int64
	if _, err := st.Pool().Exec(ctx, `insert into sbcs (name) values ('sbc1')`); err != nil {
		t.Fatal(err)
	}
	if err := st.Pool().QueryRow(ctx, `insert into ingests (sbc, source, content_sha256) values ('sbc1', 'old.pcap', $1) returning id`,
		hex.EncodeToString(h.Sum(nil))).Scan(&ingest); err != nil {
		t.Fatal(err)
	}
	migrateTo(t, st, store.LatestVersion())
	res, err := st.SaveReportResult(ctx, "sbc1", "old.pcap", &report.Report{CallRecords: []*sip.Call{c}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Calls != 1 || res.Messages != 0 || res.IngestID != ingest {
		t.Errorf("save after the upgrade = %+v, want the call, no message (both were stored) and ingest %d", res, ingest)
	}
	ms, err := store.CallMessages(ctx, st.Pool(), "sbc1", "old@x")
	if err != nil || len(ms) != 2 {
		t.Fatalf("messages = %+v, %v", ms, err)
	}
	for i, m := range ms {
		if want := oldMessageID("sbc1", c.Messages[i])[:32]; m.ID != want {
			t.Errorf("message %d id = %q, want %q", i, m.ID, want)
		}
	}
	// Down and up again.
	migrateTo(t, st, 8)
	var id string
	if err := st.Pool().QueryRow(ctx, `select id from sip_messages order by time limit 1`).Scan(&id); err != nil ||
		id != ms[0].ID || strings.Contains(id, "-") {
		t.Errorf("after migrating down, id = %q, %v; want %q", id, err, ms[0].ID)
	}
	migrateTo(t, st, store.LatestVersion())
}

// Every column of a call comes back as it was saved (calls are written
// in COPY's binary format by hand): text, digits, times (NULL when
// zero), numbers, flags, the user agents (text[]) and REFERs (jsonb), and
// the ingest it came with.
func TestCallRoundTrip(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 987654321, time.UTC)
	full := storetest.PlainCall(t0, "full@x", "+49 (30) 111-22", "sip:+4930222@x")
	full.FromURI, full.ToURI, full.RequestURI, full.PAI = "sip:a@b", "sip:c@d", "sip:+4930222@sbc", "<tel:+4930111>"
	full.Caller, full.Callee = netip.MustParseAddrPort("[2001:db8::7]:5061"), storetest.SBCAddr
	full.FinalStatus, full.EndedBy, full.EndReason, full.ByeReason = 486, "caller", "BYE", "SIP;cause=200"
	full.Q850Cause, full.ReasonText, full.Invites, full.MessageCount = 17, "busy \x00 ü", 2, 5
	full.Microsoft, full.MicrosoftAddr, full.SBCSide = true, netip.MustParseAddr("52.112.1.10"), storetest.SBCAddr
	full.SBCContact, full.SBCAllow, full.Truncated = "<sip:sbc.example.com:5061>", "INVITE, ACK, BYE", true
	full.UserAgents = []string{"Microsoft.PSTNHub.SIPProxy v.2024.1.1.1 i.EUWE.7", "Mediant SW/v.7.40A.500.775", "bad \xff"}
	full.Refers = []*sip.Refer{{Time: t0.Add(time.Second), Src: storetest.MSProxy, Dst: storetest.SBCAddr, CSeq: 3,
		ReferTo: "sip:+4969999@x", Response: 202}}
	bare := &sip.Call{CallID: "bare@x", Kind: "options", Start: t0.Add(time.Minute)}
	res, err := st.SaveReportResult(ctx, "sbc1", "rt.pcap", &report.Report{CallRecords: []*sip.Call{full, bare}})
	if err != nil || res.Calls != 2 {
		t.Fatalf("save = %+v, %v", res, err)
	}
	got, err := store.GetCall(ctx, st.Pool(), "full@x", "sbc1")
	if err != nil {
		t.Fatal(err)
	}
	us := func(tm time.Time) time.Time { return tm.Truncate(time.Microsecond) }
	if got.From != "+49 (30) 111-22" || got.To != "sip:+4930222@x" || got.FromURI != "sip:a@b" || got.ToURI != "sip:c@d" ||
		got.RequestURI != "sip:+4930222@sbc" || got.PAI != "<tel:+4930111>" || got.Caller != "[2001:db8::7]:5061" ||
		got.Callee != storetest.SBCAddr.String() || !got.Start.Equal(us(t0)) || got.Answer == nil || !got.Answer.Equal(us(full.Answer)) ||
		got.End == nil || !got.End.Equal(us(full.End)) || got.Last == nil || !got.Last.Equal(us(full.Last)) ||
		!got.Answered || got.FinalStatus != 486 || got.EndedBy != "caller" || got.EndReason != "BYE" ||
		got.ByeReason != "SIP;cause=200" || got.Q850Cause != 17 || got.ReasonText != "busy \uFFFD ü" ||
		got.ReferCount != 1 || got.Invites != 2 || got.Messages != 5 || !got.Microsoft || got.MicrosoftIP != "52.112.1.10" ||
		got.SBCSide != storetest.SBCAddr.String() || got.SBCContact != "<sip:sbc.example.com:5061>" ||
		got.SBCAllow != "INVITE, ACK, BYE" || !got.Truncated || got.Kind != "invite" ||
		strings.Join(got.UserAgents, "|") != "Microsoft.PSTNHub.SIPProxy v.2024.1.1.1 i.EUWE.7|Mediant SW/v.7.40A.500.775|bad \uFFFD" ||
		!strings.Contains(string(got.Refers), `"refer_to": "sip:+4969999@x"`) {
		t.Errorf("call read back: %+v", got)
	}
	b, err := store.GetCall(ctx, st.Pool(), "bare@x", "sbc1")
	if err != nil || b.Answer != nil || b.End != nil || b.Last != nil || b.Caller != "" || b.MicrosoftIP != "" ||
		b.UserAgents == nil || len(b.UserAgents) != 0 || string(b.Refers) != "[]" || b.Kind != "options" {
		t.Errorf("bare call read back: %+v, %v", b, err)
	}
	var fromDigits, toDigits string
	var ingest *int64
	if err := st.Pool().QueryRow(ctx, `select from_digits, to_digits, ingest_id from calls where call_id = 'full@x'`).
		Scan(&fromDigits, &toDigits, &ingest); err != nil || fromDigits != "493011122" || toDigits != "4930222" ||
		ingest == nil || *ingest != res.IngestID {
		t.Errorf("digits %q %q, ingest %v (want %d), %v", fromDigits, toDigits, ingest, res.IngestID, err)
	}
}
