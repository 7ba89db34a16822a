package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/alert"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/lab/acdrenc"
	"github.com/sbcwatch/sbcwatch/live"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/spool"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
	"github.com/sbcwatch/sbcwatch/tap"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

type collect struct {
	mu    sync.Mutex
	calls []*sip.Call
	conns []*tlsaudit.Conn
	finds []*finding.Finding
}

func (c *collect) Call(x *sip.Call)         { c.mu.Lock(); c.calls = append(c.calls, x); c.mu.Unlock() }
func (c *collect) TLSConn(x *tlsaudit.Conn) { c.mu.Lock(); c.conns = append(c.conns, x); c.mu.Unlock() }
func (c *collect) Finding(x *finding.Finding) {
	c.mu.Lock()
	c.finds = append(c.finds, x)
	c.mu.Unlock()
}

func (c *collect) rules() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, f := range c.finds {
		out[f.Rule]++
	}
	return out
}

// TestSyslogFieldCase: the field case's log lines, received as syslog
// messages (RFC 5424 framing taken off by the source), give
// tls_context_wrong for Microsoft's address once the watermark passes.
func TestSyslogFieldCase(t *testing.T) {
	cfg := config.Default()
	sink := &collect{}
	e, err := newLiveEngine(cfg, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("../audiocodes/syslog/testdata/field-evidence.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	from := netip.MustParseAddrPort("192.0.2.10:514")
	now := time.Date(2026, 4, 1, 9, 55, 5, 0, time.UTC)
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		raw := fmt.Sprintf(`<134>1 2026-04-01T09:55:05Z sbc sbc - - [timeQuality tzKnown="1"] %s`, sc.Text())
		for _, b := range live.SyslogBodies([]byte(raw)) {
			e.Feed(live.Item{Kind: live.KindSyslog, Time: now, From: from, Data: b})
			n++
		}
	}
	if n != 19 {
		t.Fatalf("%d lines", n)
	}
	e.Advance(now.Add(10 * time.Minute))
	got := sink.rules()
	if got[finding.TLSContextWrong] != 1 {
		e.Close()
		t.Fatalf("before Close: findings %v, want one tls_context_wrong", sink.rules())
	}
	e.Close()
	if c := e.Counters(); c["log_lines"] != 19 || c["log_sockets"] != 1 {
		t.Fatalf("counters %v", c)
	}
	for _, f := range sink.finds {
		if f.Rule == finding.TLSContextWrong && f.Evidence["peer"] == nil && f.Summary == "" {
			t.Errorf("finding without evidence: %+v", f)
		}
	}
}

// TestOptionsMissingOnAControlledClock: OPTIONS every minute keep the
// pair quiet; 3 minutes of silence raise options_missing once; pings
// back clear it; a new silence raises a new finding.
func TestOptionsMissingOnAControlledClock(t *testing.T) {
	cfg := config.Default()
	cfg.SBCs = []config.SBC{{Name: "fra", Addresses: []string{"192.0.2.10"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w := newOptionsWatch(cfg, 3*time.Minute)
	sbc := netip.MustParseAddrPort("192.0.2.10:5061")
	ms := netip.MustParseAddrPort("52.114.75.24:5061")
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	ping := func(at time.Time) {
		w.observeCall(&sip.Call{Kind: "options", Caller: ms, Callee: sbc, Start: at, Last: at.Add(20 * time.Millisecond)})
	}
	// An INVITE between them is not a ping.
	w.observeCall(&sip.Call{Kind: "invite", Caller: ms, Callee: sbc, Start: t0, Last: t0})
	if fs := w.check(t0.Add(time.Hour)); len(fs) != 0 {
		t.Fatalf("a pair never pinged raised %v", fs)
	}
	for i := range 5 {
		ping(t0.Add(time.Duration(i) * time.Minute))
		if fs := w.check(t0.Add(time.Duration(i)*time.Minute + 30*time.Second)); len(fs) != 0 {
			t.Fatalf("raised while pinging: %v", fs[0].Summary)
		}
	}
	last := t0.Add(4*time.Minute + 20*time.Millisecond)
	if fs := w.check(last.Add(3 * time.Minute)); len(fs) != 0 {
		t.Fatal("raised at exactly the threshold")
	}
	fs := w.check(last.Add(3*time.Minute + time.Second))
	if len(fs) != 1 || fs[0].Rule != finding.OptionsMissing || fs[0].Severity != finding.Warning || fs[0].SBC != "fra" ||
		!fs[0].Time.Equal(last.Add(3*time.Minute)) || fs[0].Evidence["microsoft_address"] != "52.114.75.24" {
		t.Fatalf("raised %+v", fs)
	}
	if fs := w.check(last.Add(10 * time.Minute)); len(fs) != 0 {
		t.Fatal("raised twice for one silence")
	}
	if r := w.Raised(); len(r) != 1 {
		t.Fatalf("raised pairs %v", r)
	}
	// A ping handed over late (older than the last) changes nothing.
	ping(t0)
	if len(w.Raised()) != 1 {
		t.Fatal("an old ping cleared the finding")
	}
	ping(last.Add(11 * time.Minute))
	if r := w.Raised(); len(r) != 0 {
		t.Fatalf("not cleared by the pings returning: %v", r)
	}
	if fs := w.check(last.Add(11*time.Minute + 4*time.Minute)); len(fs) != 1 {
		t.Fatal("a second silence did not raise a new finding")
	}
}

// TestWriterSpoolsAndReplaysInOrder: while the database refuses writes
// the batches go to the spool; when it takes them again they are written
// in order and nothing is written twice (the database's keys make a
// replayed batch a no-op).
func TestWriterSpoolsAndReplaysInOrder(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	down := true
	var order []string
	stored := map[string]int{}
	save := func(ctx context.Context, b *batch) error {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return errors.New("connection refused")
		}
		for _, c := range b.Calls {
			if stored[c.CallID] == 0 {
				order = append(order, c.CallID)
			}
			stored[c.CallID]++
		}
		return nil
	}
	w := newWriter("fra", save, sp, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	for i := range 5 {
		w.Call(&sip.Call{CallID: fmt.Sprintf("c%d", i)})
		w.cycle(ctx)
	}
	if st := sp.Stats(); st.Segments == 0 || w.Counters()["spooled"] != 5 {
		t.Fatalf("not spooled: %+v %v", st, w.Counters())
	}
	// Still down: a new record goes behind the spooled ones.
	w.Call(&sip.Call{CallID: "c5"})
	w.cycle(ctx)
	if err := w.replay(ctx); err == nil {
		t.Fatal("replay succeeded while down")
	}
	mu.Lock()
	down = false
	mu.Unlock()
	w.Call(&sip.Call{CallID: "c6"})
	w.cycle(ctx) // the spool is not empty: c6 goes behind
	if err := w.replay(ctx); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(order) != "[c0 c1 c2 c3 c4 c5 c6]" {
		t.Fatalf("order %v", order)
	}
	for id, n := range stored {
		if n != 1 {
			t.Errorf("%s written %d times", id, n)
		}
	}
	if !sp.Empty() || w.Counters()["replayed"] != 7 {
		t.Fatalf("after replay: %+v %v", sp.Stats(), w.Counters())
	}
	// A full spool drops and counts, never blocks.
	small, _ := spool.Open(t.TempDir(), 64)
	w2 := newWriter("fra", func(context.Context, *batch) error { return errors.New("down") }, small, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := range 20 {
		w2.Call(&sip.Call{CallID: fmt.Sprintf("x%d", i)})
		w2.cycle(ctx)
	}
	if c := w2.Counters(); c["dropped_spool_full"] == 0 {
		t.Fatalf("no drop counted: %v", c)
	}
}

// TestSpoolConnRoundTrip: a TLS connection keeps its addresses, chain
// and duration through the spool's JSON.
func TestSpoolConnRoundTrip(t *testing.T) {
	c := &tlsaudit.Conn{ID: "a->b", Client: netip.MustParseAddrPort("52.114.75.24:8576"),
		Server: netip.MustParseAddrPort("192.0.2.10:5061"), Duration: 15 * time.Millisecond, Outcome: "reset"}
	raw, err := json.Marshal(batch{Conns: []spoolConn{toSpoolConn(c)}})
	if err != nil {
		t.Fatal(err)
	}
	var b batch
	if err := json.Unmarshal(raw, &b); err != nil || len(b.Conns) != 1 {
		t.Fatal(err)
	}
	back := b.Conns[0].conn()
	if back.Client != c.Client || back.Server != c.Server || back.Duration != c.Duration || back.Outcome != "reset" {
		t.Fatalf("round trip %+v", back)
	}
}

// TestInstanceNamesEveryRow: a store opened with InstanceDSN stores rows
// that name the instance; migrations run concurrently from two
// instances apply once (tern's advisory lock).
func TestInstanceNamesEveryRow(t *testing.T) {
	dsn := storetest.Schema(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	stores := make([]*store.Store, 2)
	for i, name := range []string{"fra-1", "ams-1"} {
		idsn, err := InstanceDSN(dsn, name)
		if err != nil {
			t.Fatal(err)
		}
		st, err := store.Open(ctx, idsn)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		stores[i] = st
		wg.Go(func() { errs[i] = st.Migrate(ctx) })
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("concurrent migrations: %v / %v", errs[0], errs[1])
	}
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	for i, st := range stores {
		if err := store.UpsertSBC(ctx, st.Pool(), store.SBC{Name: "fra"}); err != nil {
			t.Fatal(err)
		}
		w := newWriter("fra", storeSave(st), nil, slog.New(slog.DiscardHandler))
		b := &batch{SBC: "fra", Calls: []*sip.Call{storetest.PlainCall(t0, fmt.Sprintf("call-%d", i), "+4930123", "+4969456")}}
		if err := w.save(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := stores[0].Pool().Query(ctx, "select call_id, instance from calls order by call_id")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var id, inst string
		if err := rows.Scan(&id, &inst); err != nil {
			t.Fatal(err)
		}
		got = append(got, id+"="+inst)
	}
	if fmt.Sprint(got) != "[call-0=fra-1 call-1=ams-1]" {
		t.Fatalf("rows %v", got)
	}
	if kv, _ := InstanceDSN("host=db user=x", "o'brien"); kv != `host=db user=x sbcwatch.instance='o\'brien'` {
		t.Fatalf("keyword/value DSN %q", kv)
	}
}

// TestSyslogSplitMessageAndGap: a SIP message split over consecutive
// datagrams of one session ([SID=], [S=n], [S=n+1]) is reassembled and
// reaches the engine; a missing [S=] number is counted as lost.
func TestSyslogSplitMessageAndGap(t *testing.T) {
	cfg := config.Default()
	sink := &collect{}
	e, err := newLiveEngine(cfg, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	from := netip.MustParseAddrPort("192.0.2.10:514")
	now := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	feed := func(s string) {
		for _, b := range live.SyslogBodies([]byte(s)) {
			e.Feed(live.Item{Kind: live.KindSyslog, Time: now, From: from, Data: b})
		}
	}
	const sid = "[SID=11:22:33]"
	feed(`<134>[S=100] ` + sid + ` (N 5001) ---- Incoming SIP Message from 52.114.75.24:5061 to SIPInterface #0 (Teams) TLS TO(#12) SocketID(7535) ---- #012OPTIONS sip:sbc.contoso.example:5061 SIP/2.0#015#012Via: SIP/2.0/TLS 52.114.75.24:5061;branch=z9hG4bK1#015#012From: <sip:sip.pstnhub.microsoft.com>;tag=a#015#012 [Time:06-12@03:00:00.000]`)
	feed(`<134>[S=101] ` + sid + ` To: <sip:sbc.contoso.example>#015#012Call-ID: split-1#015#012CSeq: 1 OPTIONS#015#012Content-Length: 0#015#012#015#012 [Time:06-12@03:00:00.001]`)
	if c := e.Counters(); c["sip_messages"] != 1 || c["log_lost_datagrams"] != 0 {
		t.Fatalf("after the two halves: %v", c)
	}
	feed(`<134>[S=104] [BID=1] (N 5002) something else [Time:06-12@03:00:00.002]`)
	if c := e.Counters(); c["log_lost_datagrams"] != 2 {
		t.Fatalf("gap S=102,103: %v", c)
	}
	e.Close()
	found := false
	for _, c := range sink.calls {
		if c.CallID == "split-1" && c.Kind == "options" && c.MessageCount == 1 {
			found = true
		}
	}
	if !found {
		t.Fatalf("the reassembled OPTIONS is not a call: %d calls", len(sink.calls))
	}
}

// TestReadyzNamesSourcesNotRunning: /readyz passes to the API while
// every source runs and answers 503 naming a source that stopped.
func TestReadyzNamesSourcesNotRunning(t *testing.T) {
	d := &Daemon{}
	ok := &sourceRun{src: live.NewUDP(live.KindACDR, "127.0.0.1:0")}
	ok.state.Store("running")
	bad := &sourceRun{src: live.NewTCP(live.KindHEP, "127.0.0.1:0")}
	bad.state.Store("running")
	d.srcs = []*sourceRun{ok, bad}
	h := d.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := get(); code != 200 {
		t.Fatalf("all running: %d", code)
	}
	bad.state.Store("failed: live: hep-tcp: accept: too many open files")
	code, body := get()
	if code != 503 || !strings.Contains(body, "hep-tcp") || strings.Contains(body, "acdr-udp") {
		t.Fatalf("one failed: %d %s", code, body)
	}
}

// TestReloadAppliesAndRefuses: a reload applies the new webhooks, the
// options_missing threshold and the engine's thresholds (a short_call
// threshold raised makes the next call short); an invalid configuration
// keeps the running one and the metric says so; what needs a restart is
// named and keeps its running value.
func TestReloadAppliesAndRefuses(t *testing.T) {
	old := config.Default()
	old.SBCs = []config.SBC{{Name: "fra", Addresses: []string{"192.0.2.10"}}}
	old.ShortCall = config.Duration(time.Second)
	if err := old.Validate(); err != nil {
		t.Fatal(err)
	}
	next := *old
	next.Serve.Alerts.Webhooks = []config.Webhook{{Name: "new", Kind: "teams", URL: "https://t.example/h"}}
	next.Serve.OptionsMissingAfter = config.Duration(5 * time.Minute)
	next.Serve.Listen = "127.0.0.1:9999"
	next.ShortCall = config.Duration(time.Minute)
	var bad bool
	sink := &collect{}
	d := &Daemon{log: slog.New(slog.DiscardHandler), reload: make(chan struct{}, 1), opts: newOptionsWatch(old, 0), reconf: newBroadcast()}
	eng, err := newLiveEngine(old, sink, d.opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.engine = eng
	d.writer = newWriter("fra", func(context.Context, *batch) error { return nil }, nil, slog.New(slog.DiscardHandler))
	d.o.Reload = func() (*config.Config, error) {
		if bad {
			return nil, errors.New("broken")
		}
		return &next, nil
	}
	d.cfg.Store(old)
	d.reloadOK.Store(true)
	n := alert.New(nil, alert.Options{})
	d.alerts.Store(n)
	ctx := context.Background()
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	call := func(id string, at time.Time) {
		for _, m := range liveDialogAt(id, at, 5*time.Second) {
			eng.eng.Message(m)
		}
		eng.Advance(at.Add(10 * time.Minute))
	}
	call("before", t0)
	if got := sink.rules()[finding.ShortCall]; got != 0 {
		t.Fatalf("a 5 s call is short under a 1 s threshold: %v", sink.rules())
	}
	d.applyReload(ctx)
	if _, ok := n.Stats()["new"]; !ok || !d.reloadOK.Load() {
		t.Fatalf("not applied: %v ok=%v", n.Stats(), d.reloadOK.Load())
	}
	if d.opts.after != 5*time.Minute {
		t.Fatalf("options threshold %v", d.opts.after)
	}
	if got := d.cfg.Load(); got.Serve.Listen != old.Serve.Listen || got.ShortCall.D() != time.Minute {
		t.Fatalf("effective configuration: listen %s short_call %s", got.Serve.Listen, got.ShortCall.D())
	}
	call("after", t0.Add(time.Hour))
	if got := sink.rules()[finding.ShortCall]; got != 1 {
		t.Fatalf("the new threshold does not apply: %v", sink.rules())
	}
	running := d.cfg.Load()
	bad = true
	d.applyReload(ctx)
	if d.cfg.Load() != running || d.reloadOK.Load() {
		t.Fatal("an invalid configuration replaced the running one, or the metric says it was applied")
	}
	if r := restartOnly(old, &next); fmt.Sprint(r) != "[serve.listen]" {
		t.Fatalf("restart needed for %v", r)
	}
}

// liveDialogAt is an answered inbound call from Microsoft lasting dur.
func liveDialogAt(id string, at time.Time, dur time.Duration) []*sip.Message {
	ms := netip.MustParseAddrPort("52.114.75.24:5061")
	sbc := netip.MustParseAddrPort("192.0.2.10:5061")
	p := sip.NewParser(0)
	var out []*sip.Message
	add := func(src, dst netip.AddrPort, t time.Time, first string, cseq string) {
		raw := first + "\r\nVia: SIP/2.0/TLS " + src.String() + ";branch=z9hG4bK" + id + cseq[:1] +
			"\r\nFrom: <sip:+4930123@sip.pstnhub.microsoft.com>;tag=a\r\nTo: <sip:+4969456@sbc.example>" +
			map[bool]string{true: "", false: ";tag=b"}[strings.HasPrefix(first, "INVITE")] +
			"\r\nCall-ID: " + id + "\r\nCSeq: " + cseq + "\r\nContent-Length: 0\r\n\r\n"
		m, err := p.ParseDatagram(sip.MessageMeta{Src: src, Dst: dst, Time: t, Transport: "tls", Origin: "syslog"}, []byte(raw))
		if err == nil {
			out = append(out, m)
		}
	}
	add(ms, sbc, at, "INVITE sip:+4969456@sbc.example SIP/2.0", "1 INVITE")
	add(sbc, ms, at.Add(time.Second), "SIP/2.0 200 OK", "1 INVITE")
	add(ms, sbc, at.Add(time.Second+50*time.Millisecond), "ACK sip:+4969456@sbc.example SIP/2.0", "1 ACK")
	add(ms, sbc, at.Add(time.Second+dur), "BYE sip:+4969456@sbc.example SIP/2.0", "2 BYE")
	add(sbc, ms, at.Add(time.Second+dur+20*time.Millisecond), "SIP/2.0 200 OK", "2 BYE")
	return out
}

// TestReferDeliveryFailedDecidedLive feeds the field-case lab capture to
// the live engine frame by frame at its own pace, then moves the clock on
// in one-second steps as serve does: refer_delivery_failed is reported
// provisional 60-62 s after the call ended (serve.provisional_after) and
// confirmed, same ID and key, at the engine's correlation lag. The
// figures are logged.
func TestReferDeliveryFailedDecidedLive(t *testing.T) {
	cfg, err := config.Load("../testdata/lab/sbcwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sink := &collect{}
	e, err := newLiveEngine(cfg, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	src, err := tap.Open(labPcap)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var last time.Time
	for {
		p, err := src.Next()
		if err != nil {
			break
		}
		if !last.IsZero() && p.Info.Timestamp.Sub(last) >= time.Second {
			e.Advance(p.Info.Timestamp)
		}
		last = p.Info.Timestamp
		e.Feed(live.Item{Kind: live.KindFrame, Time: p.Info.Timestamp, Data: p.Data, LinkType: p.LinkType})
	}
	var early, end time.Time
	var prov, final *finding.Finding
	for now := last; now.Before(last.Add(10 * time.Minute)); now = now.Add(time.Second) {
		e.Advance(now)
		for _, f := range sink.finds {
			switch {
			case f.Rule != finding.ReferDeliveryFailed:
			case f.Provisional && prov == nil:
				prov, early = f, now
			case !f.Provisional && final == nil:
				final, end = f, now
			}
		}
		if final != nil {
			break
		}
	}
	if prov == nil || end.IsZero() {
		t.Fatal("refer_delivery_failed not reported provisional then decided within 10 minutes of live clock")
	}
	if final.ID != prov.ID || final.Key != prov.Key || final.Retracted || final.CallID != prov.CallID {
		t.Fatalf("provisional %s/%s %s, then %s/%s %s retracted=%v", prov.ID, prov.Key, prov.CallID, final.ID, final.Key, final.CallID, final.Retracted)
	}
	var callEnd time.Time
	for _, c := range sink.calls {
		if c.CallID == "752b01c65f7d53cc77ff@192.0.2.10" {
			callEnd = c.End
		}
	}
	if callEnd.IsZero() {
		t.Fatal("the field-case call was not handed over")
	}
	t.Logf("refer_delivery_failed provisional %s after the call ended (settles by %s), confirmed %s after",
		early.Sub(callEnd).Round(time.Second), prov.SettlesAt.Sub(callEnd).Round(time.Second), end.Sub(callEnd).Round(time.Second))
	if d := early.Sub(callEnd); d < 60*time.Second || d > 62*time.Second {
		t.Errorf("provisional %s after the call ended, want 60-62 s", d)
	}
	if d := end.Sub(callEnd); d > 5*time.Minute || end.After(prov.SettlesAt) {
		t.Fatalf("confirmed %s after the call ended, settles_at %s", d, prov.SettlesAt.Sub(callEnd))
	}
}

// TestWriterKeepsTheLatestVersionOfAFinding: an update of a pending
// finding (same key, new summary) replaces it in the batch.
func TestWriterKeepsTheLatestVersionOfAFinding(t *testing.T) {
	var got []*finding.Finding
	sp, err := spool.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	w := newWriter("fra", func(_ context.Context, b *batch) error { got = append(got, b.Findings...); return nil }, sp, slog.New(slog.DiscardHandler))
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	a := finding.New(finding.TLSCertInconsistent, finding.Critical, t0, "2 certificates")
	a.Key = "k1"
	b := finding.New(finding.TLSCertInconsistent, finding.Critical, t0, "3 certificates")
	b.Key = "k1"
	c := finding.New(finding.TLSHandshakeFailed, finding.Warning, t0, "failed")
	w.Finding(a)
	w.Finding(c)
	w.Finding(b)
	w.cycle(context.Background())
	if len(got) != 2 || got[0].Summary != "3 certificates" || got[1].Rule != c.Rule || got[1].Summary != c.Summary {
		t.Fatalf("written %d findings: %+v", len(got), got)
	}
}

// TestOptionsMissingFromTraffic: OPTIONS pings exported as ACDR reach
// the rule through the engine; on the receive clock, stopping them
// raises options_missing once and resuming clears it.
func TestOptionsMissingFromTraffic(t *testing.T) {
	cfg := config.Default()
	cfg.SBCs = []config.SBC{{Name: "fra", Addresses: []string{"192.0.2.10"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	sink := &collect{}
	ow := newOptionsWatch(cfg, 3*time.Minute)
	e, err := newLiveEngine(cfg, sink, ow, nil)
	if err != nil {
		t.Fatal(err)
	}
	ms := netip.MustParseAddrPort("52.114.75.24:5061")
	sbc := netip.MustParseAddrPort("192.0.2.10:5061")
	exporter := netip.MustParseAddrPort("192.0.2.10:40000")
	seq := uint16(0)
	ping := func(at time.Time, n int) {
		callID := fmt.Sprintf("ping-%d@ms", n)
		hdr := "Via: SIP/2.0/TLS 52.114.75.24:5061;branch=z9hG4bK-" + callID + "\r\nFrom: <sip:sip.pstnhub.microsoft.com>;tag=p" +
			"\r\nTo: <sip:sbc.contoso.example>\r\nCall-ID: " + callID + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
		for i, m := range []struct {
			src, dst netip.AddrPort
			text     string
		}{
			{ms, sbc, "OPTIONS sip:sbc.contoso.example:5061 SIP/2.0\r\nMax-Forwards: 70\r\n" + hdr},
			{sbc, ms, "SIP/2.0 200 OK\r\n" + hdr},
		} {
			seq++
			b, err := acdrenc.Packet{Time: at, Seq: seq, BoardID: 1, ResetCounter: 1, Session: uint32(n),
				Src: m.src, Dst: m.dst, Proto: acdrenc.ProtoTCP, Outgoing: m.src == sbc, Payload: []byte(m.text)}.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			e.Feed(live.Item{Kind: live.KindACDR, Time: at.Add(time.Duration(i) * 10 * time.Millisecond), From: exporter, Data: b})
		}
	}
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	run := func(from, to time.Time) {
		for now := from; now.Before(to); now = now.Add(time.Second) {
			e.Advance(now)
		}
	}
	for i := range 5 {
		at := t0.Add(time.Duration(i) * time.Minute)
		ping(at, i)
		run(at, at.Add(time.Minute))
	}
	if n := sink.rules()[finding.OptionsMissing]; n != 0 {
		t.Fatalf("raised while pinging: %d", n)
	}
	// Pings stop after 03:04; the threshold passes at 03:07.
	run(t0.Add(5*time.Minute), t0.Add(12*time.Minute))
	if n := sink.rules()[finding.OptionsMissing]; n != 1 {
		t.Fatalf("options_missing raised %d times after the pings stopped", n)
	}
	if r := ow.Raised(); len(r) != 1 || r[0] != "192.0.2.10<->52.114.75.24" {
		t.Fatalf("raised %v", r)
	}
	ping(t0.Add(12*time.Minute), 99)
	run(t0.Add(12*time.Minute), t0.Add(13*time.Minute))
	if r := ow.Raised(); len(r) != 0 {
		t.Fatalf("not cleared when the pings resumed: %v", r)
	}
	e.Close()
}

// failing is a source whose input breaks after a while.
type failing struct{ after time.Duration }

func (f failing) Name() string                { return "acdr-tcp" }
func (f failing) Start(context.Context) error { return nil }
func (f failing) Run(ctx context.Context, q *live.Queue) error {
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(f.after):
		return errors.New("live: acdr-tcp: accept: too many open files")
	}
}
func (f failing) Counters() map[string]uint64 { return nil }

// TestSourceFailureStopsTheOthers: a source that breaks while running
// stops the live part with its error; the other sources stop too and
// what they queued is still decoded.
func TestSourceFailureStopsTheOthers(t *testing.T) {
	cfg := config.Default()
	sp, err := spool.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{o: Options{Now: time.Now, Tick: 50 * time.Millisecond}, log: slog.New(slog.DiscardHandler)}
	d.cfg.Store(cfg)
	d.writer = newWriter("x", func(context.Context, *batch) error { return nil }, sp, d.log)
	eng, err := newLiveEngine(cfg, &collect{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.engine = eng
	udp := live.NewUDP(live.KindHEP, "127.0.0.1:0")
	if err := udp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, s := range []live.Source{udp, failing{after: 300 * time.Millisecond}} {
		r := &sourceRun{src: s, q: live.NewQueue(16, 0)}
		r.state.Store("running")
		d.srcs = append(d.srcs, r)
	}
	done := make(chan error, 1)
	go func() { done <- d.runLive(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "too many open files") {
			t.Fatalf("runLive = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a failed source did not stop the live part")
	}
	states, ok := d.Ready()
	if ok || states["hep-udp"] != "stopped" || !strings.HasPrefix(states["acdr-tcp"], "failed: ") {
		t.Fatalf("states %v", states)
	}
}

// TestSpoolSurvivesARestart: at shutdown with the database away, Flush
// gives up within its bound and leaves the records in the spool; the
// next start replays them.
func TestSpoolSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	w := newWriter("fra", func(ctx context.Context, b *batch) error { return errors.New("connection refused") }, sp, slog.New(slog.DiscardHandler))
	w.Call(&sip.Call{CallID: "kept-1"})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := w.Flush(ctx); err == nil || !strings.Contains(err.Error(), "wait for the database") {
		t.Fatalf("Flush = %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("Flush did not keep to its bound")
	}
	sp.Close()

	sp2, err := spool.Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	w2 := newWriter("fra", func(ctx context.Context, b *batch) error {
		for _, c := range b.Calls {
			got = append(got, c.CallID)
		}
		return nil
	}, sp2, slog.New(slog.DiscardHandler))
	if err := w2.replay(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[kept-1]" || !sp2.Empty() {
		t.Fatalf("replayed %v, spool %+v", got, sp2.Stats())
	}
}

// TestRecordsGoUnderTheirSBC: with an SBC pair configured, calls,
// connections and findings are stored under the SBC whose address they
// carry; what names neither goes under "live".
func TestRecordsGoUnderTheirSBC(t *testing.T) {
	cfg := config.Default()
	cfg.SBCs = []config.SBC{{Name: "fra-a", Addresses: []string{"192.0.2.10"}}, {Name: "fra-b", Addresses: []string{"192.0.2.11"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	w := newWriter(LiveSBCName(cfg), func(_ context.Context, b *batch) error {
		for _, c := range b.Calls {
			got[b.SBC] = append(got[b.SBC], "call "+c.CallID)
		}
		for _, c := range b.Conns {
			got[b.SBC] = append(got[b.SBC], "conn "+c.ID)
		}
		for _, f := range b.Findings {
			got[b.SBC] = append(got[b.SBC], "finding "+f.Rule+" "+f.SBC)
		}
		return nil
	}, sp, slog.New(slog.DiscardHandler))
	w.route = newSBCRoute(cfg)
	ms := netip.MustParseAddrPort("52.114.75.24:5061")
	w.Call(&sip.Call{CallID: "a1", Caller: ms, Callee: netip.MustParseAddrPort("192.0.2.10:5061"), SBCSide: netip.MustParseAddrPort("192.0.2.10:5061")})
	w.Call(&sip.Call{CallID: "b1", Caller: netip.MustParseAddrPort("192.0.2.11:5061"), Callee: ms})
	w.Call(&sip.Call{CallID: "x1", Caller: netip.MustParseAddrPort("198.51.100.7:5060"), Callee: ms})
	w.TLSConn(&tlsaudit.Conn{ID: "52.114.75.24:1->192.0.2.11:5061", Client: netip.MustParseAddrPort("52.114.75.24:1"), Server: netip.MustParseAddrPort("192.0.2.11:5061")})
	f := finding.New(finding.ReferDeliveryFailed, finding.Critical, time.Now(), "x")
	f.CallID = "a1"
	w.Finding(f)
	g := finding.New(finding.TLSHandshakeFailed, finding.Warning, time.Now(), "y")
	g.Connection = "52.114.75.24:1->192.0.2.11:5061"
	w.Finding(g)
	w.cycle(context.Background())
	want := map[string][]string{
		"fra-a": {"call a1", "finding refer_delivery_failed fra-a"},
		"fra-b": {"call b1", "conn 52.114.75.24:1->192.0.2.11:5061", "finding tls_handshake_failed fra-b"},
		"live":  {"call x1"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stored\n %v\nwant\n %v", got, want)
	}
}

// TestWriterCitesAcrossBatches: refer_delivery_failed is decided minutes
// after the handshake failures it cites, so they are written in earlier
// batches. The writer rewrites such references (Cites, explained_by) to
// the store ids of the findings it already wrote, and leaves references
// within one batch to the store, without changing the findings other
// sinks share.
func TestWriterCitesAcrossBatches(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var saved []*batch
	save := func(ctx context.Context, b *batch) error { saved = append(saved, b); return nil }
	w := newWriter("fra", save, sp, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	at := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	hs := finding.New(finding.TLSHandshakeFailed, finding.Critical, at, "handshake failed")
	hs.ID, hs.Connection = "F1", "52.114.75.24:47543->192.0.2.10:5061"
	hs.Key = finding.KeyOf(hs)
	w.Finding(hs)
	w.cycle(ctx)

	rdf := finding.New(finding.ReferDeliveryFailed, finding.Critical, at, "the transfer never arrived")
	rdf.ID, rdf.CallID, rdf.Cites = "F3", "call-1", []string{"F1", "F2"}
	rdf.Key = finding.KeyOf(rdf)
	tm := finding.New(finding.TransferMissing, finding.Warning, at.Add(time.Minute), "no transfer")
	tm.ID, tm.CallID = "F2", "call-1"
	tm.Evidence["explained_by"] = "F1"
	w.Finding(rdf)
	w.Finding(tm)
	w.cycle(ctx)

	if len(saved) != 2 || len(saved[1].Findings) != 2 {
		t.Fatalf("saved %d batches", len(saved))
	}
	want := store.StoredFindingID("fra", hs)
	got := saved[1].Findings[0]
	if !slices.Equal(got.Cites, []string{want, "F2"}) {
		t.Errorf("cites %v, want [%s F2]: the earlier batch's finding by its store id, this batch's left to the store", got.Cites, want)
	}
	if ev := saved[1].Findings[1].Evidence["explained_by"]; ev != want {
		t.Errorf("explained_by %v, want %s", ev, want)
	}
	if !slices.Equal(rdf.Cites, []string{"F1", "F2"}) || tm.Evidence["explained_by"] != "F1" {
		t.Errorf("the shared findings were changed: %v %v", rdf.Cites, tm.Evidence["explained_by"])
	}
}
