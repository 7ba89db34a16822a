package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

type bundle struct {
	st     *store.Store
	h      http.Handler
	read   string
	admin  string
	logs   *bytes.Buffer
	callID string
}

func setup(t *testing.T, opts Options) *bundle {
	t.Helper()
	st, _ := storetest.New(t)
	ctx := context.Background()
	read, err := store.CreateToken(ctx, st.Pool(), "reader", store.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := store.CreateToken(ctx, st.Pool(), "boss", store.ScopeAdmin)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := &bundle{st: st, read: read, admin: admin, logs: logs, h: NewServer(st, opts)}
	t.Cleanup(func() {
		for _, tok := range []string{read, admin} {
			if strings.Contains(logs.String(), tok) {
				t.Errorf("a token appears in the logs")
			}
		}
	})
	return b
}

// seedFieldCase stores the field case (plus one plain call) and returns
// its Call-ID.
func (b *bundle) seedFieldCase(t *testing.T, callID string) *report.Report {
	t.Helper()
	t0 := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Millisecond)
	r := storetest.FieldCase(t0, callID)
	r.CallRecords = append(r.CallRecords, storetest.PlainCall(t0.Add(-10*time.Minute), "plain@x", "+4930555", "+4930666"))
	if err := b.st.SaveReport(context.Background(), "sbc1", "field.pcap", r); err != nil {
		t.Fatal(err)
	}
	b.callID = callID
	return r
}

// seedProvisional stores a call with a provisional refer_delivery_failed
// (prov@x) and one whose provisional finding was retracted (gone@x), as
// serve does a minute after each call.
func (b *bundle) seedProvisional(t *testing.T, now time.Time) {
	t.Helper()
	var calls []*sip.Call
	var fs []*finding.Finding
	for i, id := range []string{"prov@x", "gone@x"} {
		start := now.Add(-time.Duration(5+i) * time.Minute)
		calls = append(calls, &sip.Call{CallID: id, Kind: "invite", From: "+4930111222", To: "+4969987654", Start: start,
			Answer: start.Add(2 * time.Second), Answered: true, End: start.Add(30 * time.Second), Last: start.Add(30 * time.Second)})
		f := finding.New(finding.ReferDeliveryFailed, finding.Critical, start.Add(20*time.Second), "the transfer never arrived (%s)", id)
		f.CallID, f.ID = id, fmt.Sprintf("F%d", i+1)
		f.Key = finding.KeyOf(f)
		f.Provisional, f.SettlesAt = true, now.Add(time.Minute)
		fs = append(fs, f)
	}
	if err := b.st.SaveReport(context.Background(), "sbc1", "live", report.Build(calls, nil, fs)); err != nil {
		t.Fatal(err)
	}
	r := *fs[1]
	r.Provisional, r.Retracted = false, true
	if err := b.st.SaveReport(context.Background(), "sbc1", "live", report.Build(nil, nil, []*finding.Finding{&r})); err != nil {
		t.Fatal(err)
	}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (b *bundle) do(t *testing.T, method, path, token string, body io.Reader, hdr ...string) resp {
	t.Helper()
	req := httptest.NewRequest(method, path, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	b.h.ServeHTTP(w, req)
	return resp{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

// checkError asserts the one error shape.
func checkError(t *testing.T, r resp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	var e struct {
		Error struct {
			Code, Message string
			RequestID     string `json:"request_id"`
		} `json:"error"`
	}
	r.json(t, &e)
	if e.Error.Code != code || e.Error.Message == "" || e.Error.RequestID == "" {
		t.Fatalf("error body %s, want code %s with message and request_id", r.body, code)
	}
}

type route struct{ method, path string }

func walkRoutes(t *testing.T, h http.Handler) []route {
	t.Helper()
	var out []route
	err := chi.Walk(h.(chi.Routes), func(method, path string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		out = append(out, route{method, strings.TrimSuffix(strings.ReplaceAll(path, "/*/", "/"), "/")})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var public = []string{"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	h := NewServer(nil, Options{})
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	var inDoc, inRouter []string
	for p, ops := range doc.Paths {
		for m := range ops {
			inDoc = append(inDoc, strings.ToUpper(m)+" "+p)
		}
	}
	for _, r := range walkRoutes(t, h) {
		inRouter = append(inRouter, r.method+" "+r.path)
	}
	sort.Strings(inDoc)
	sort.Strings(inRouter)
	for _, r := range inRouter {
		if !slices.Contains(inDoc, r) {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for _, d := range inDoc {
		if !slices.Contains(inRouter, d) {
			t.Errorf("openapi.json documents %s, which is not routed", d)
		}
	}
	// Every {param} of a path is declared as a path parameter.
	var full struct {
		Paths map[string]map[string]struct {
			Parameters []struct{ Name, In string } `json:"parameters"`
			Responses  map[string]json.RawMessage  `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &full); err != nil {
		t.Fatal(err)
	}
	for p, ops := range full.Paths {
		for m, op := range ops {
			if len(op.Responses) == 0 {
				t.Errorf("%s %s has no responses", m, p)
			}
			for _, seg := range strings.Split(p, "/") {
				name, ok := strings.CutPrefix(seg, "{")
				if !ok {
					continue
				}
				name = strings.TrimSuffix(name, "}")
				if !slices.ContainsFunc(op.Parameters, func(x struct{ Name, In string }) bool { return x.Name == name && x.In == "path" }) {
					t.Errorf("%s %s does not declare path parameter %s", m, p, name)
				}
			}
		}
	}
	if len(inRouter) != 18 {
		t.Errorf("only %d routes walked: %v", len(inRouter), inRouter)
	}
}

func TestAuthOnEveryRoute(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	b.seedFieldCase(t, "auth-call@x")
	f, err := store.ListFindings(context.Background(), b.st.Pool(), store.FindingQuery{Limit: 1})
	if err != nil || len(f.Items) != 1 {
		t.Fatal(err)
	}
	fill := strings.NewReplacer("{call_id}", url.PathEscape(b.callID), "{id}", "1")
	for _, r := range walkRoutes(t, b.h) {
		path := fill.Replace(r.path)
		if r.path == "/api/v1/findings/{id}/ack" {
			path = "/api/v1/findings/" + f.Items[0].ID + "/ack"
		}
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			if slices.Contains(public, r.path) {
				if got := b.do(t, r.method, path, "", nil); got.status == 401 || got.status == 403 {
					t.Fatalf("public route answered %d", got.status)
				}
				return
			}
			checkError(t, b.do(t, r.method, path, "", nil), 401, "unauthorized")
			checkError(t, b.do(t, r.method, path, "sbcw_not-a-token", nil), 401, "unauthorized")
			got := b.do(t, r.method, path, b.read, nil)
			if r.method == http.MethodGet {
				if got.status != 200 && got.status != 404 {
					t.Fatalf("read GET: %d %s", got.status, got.body)
				}
			} else {
				checkError(t, got, 403, "forbidden")
				got = b.do(t, r.method, path, b.admin, nil)
				if got.status == 401 || got.status == 403 {
					t.Fatalf("admin %s: %d %s", r.method, got.status, got.body)
				}
			}
		})
	}
	if err := store.RevokeToken(context.Background(), b.st.Pool(), "reader"); err != nil {
		t.Fatal(err)
	}
	checkError(t, b.do(t, "GET", "/api/v1/calls", b.read, nil), 401, "unauthorized")
}

func TestCallsPaginationOverHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	t0 := time.Now().UTC().Add(-5 * time.Hour).Truncate(time.Second)
	r := &report.Report{}
	for i := range 250 {
		r.CallRecords = append(r.CallRecords, storetest.PlainCall(t0.Add(time.Duration(i/3)*time.Second),
			fmt.Sprintf("c%03d@host", i), fmt.Sprintf("+4989%07d", i%5), "+4969123456"))
	}
	if err := b.st.SaveReport(context.Background(), "sbc1", "many", r); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	cur := ""
	pages := 0
	for {
		path := "/api/v1/calls?limit=7"
		if cur != "" {
			path += "&cursor=" + url.QueryEscape(cur)
		}
		got := b.do(t, "GET", path, b.read, nil)
		if got.status != 200 {
			t.Fatalf("%s: %d %s", path, got.status, got.body)
		}
		var page struct {
			Items      []store.Call `json:"items"`
			NextCursor string       `json:"next_cursor"`
		}
		got.json(t, &page)
		if len(page.Items) > 7 {
			t.Fatalf("page of %d", len(page.Items))
		}
		pages++
		for _, c := range page.Items {
			seen[c.CallID]++
		}
		if page.NextCursor == "" {
			break
		}
		cur = page.NextCursor
	}
	if len(seen) != 250 || pages != 36 {
		t.Fatalf("%d distinct calls over %d pages", len(seen), pages)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s seen %d times", id, n)
		}
	}
	for _, q := range []string{"number=%2B49890000003", "number=49890000003", "number=+49890000003"} {
		got := b.do(t, "GET", "/api/v1/calls?limit=1000&"+q, b.read, nil)
		var page struct{ Items []store.Call }
		got.json(t, &page)
		if got.status != 200 || len(page.Items) != 50 {
			t.Errorf("%s: %d, %d calls, want 50", q, got.status, len(page.Items))
		}
	}
	from := t0.Add(10 * time.Second).Format(time.RFC3339)
	to := t0.Add(20 * time.Second).Format(time.RFC3339)
	got := b.do(t, "GET", "/api/v1/calls?from="+from+"&to="+to, b.read, nil)
	var page struct{ Items []store.Call }
	got.json(t, &page)
	// Calls start every third of a second and last 62 s: the ones up
	// during [10 s, 20 s) started in [0 s, 20 s), 3 per second.
	if len(page.Items) != 60 {
		t.Errorf("time window: %d calls, want 60", len(page.Items))
	}
	for _, bad := range []string{"limit=0", "limit=1001", "limit=abc", "cursor=zzz", "from=yesterday", "numbr=1", "has_findings=maybe"} {
		checkError(t, b.do(t, "GET", "/api/v1/calls?"+bad, b.read, nil), 400, "bad_request")
	}
}

func TestCallDetailAndEvidenceFieldCase(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Now: func() time.Time { return time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC) }})
	callID := "a84b4c76e66710/odd%id@192.0.2.10"
	r := b.seedFieldCase(t, callID)
	esc := url.PathEscape(callID)

	got := b.do(t, "GET", "/api/v1/calls/"+esc, b.read, nil)
	if got.status != 200 {
		t.Fatalf("detail: %d %s", got.status, got.body)
	}
	var d CallDetail
	got.json(t, &d)
	if d.Call.CallID != callID || len(d.Messages) != 6 || len(d.Ladder) != 6 || len(d.TLS) != 4 || len(d.Findings) != 6 {
		t.Fatalf("detail: call %q, %d messages, %d ladder, %d tls, %d findings", d.Call.CallID, len(d.Messages), len(d.Ladder), len(d.TLS), len(d.Findings))
	}
	if d.Ladder[0].Label != "INVITE" || d.Ladder[2].Label != "200 OK (INVITE)" || d.Ladder[0].From != storetest.SBCAddr.String() {
		t.Errorf("ladder = %+v", d.Ladder[:3])
	}

	got = b.do(t, "GET", "/api/v1/calls/"+esc+"/evidence", b.read, nil)
	if got.status != 200 || !strings.HasPrefix(got.header.Get("Content-Type"), "application/json") {
		t.Fatalf("evidence: %d %s", got.status, got.header)
	}
	var ev Evidence
	got.json(t, &ev)
	var wantFailed []string
	for _, c := range r.Conns {
		wantFailed = append(wantFailed, c.ID)
	}
	if !slices.Equal(ev.FailedTLS, wantFailed) {
		t.Errorf("failed_tls = %v, want %v", ev.FailedTLS, wantFailed)
	}
	for _, c := range ev.FailedTLS {
		if !strings.HasPrefix(c, "52.114.75.24:") {
			t.Errorf("failed connection %s is not from 52.114.75.24", c)
		}
	}
	if !strings.HasPrefix(ev.Verdict, "[critical] refer_delivery_failed: ") {
		t.Errorf("verdict does not lead with refer_delivery_failed: %q", ev.Verdict)
	}
	if ev.Findings[0].Rule != finding.ReferDeliveryFailed || len(ev.Findings[0].Cites) != 5 {
		t.Errorf("first finding = %+v", ev.Findings[0])
	}
	if len(ev.Certificates) != 1 || !ev.Certificates[0].SelfSigned || !strings.Contains(ev.Certificates[0].PEM, "BEGIN CERTIFICATE") {
		t.Errorf("certificates = %+v", ev.Certificates)
	}
	if ev.Pcap.Available || !strings.Contains(ev.Pcap.Note, "not available") {
		t.Errorf("pcap = %+v", ev.Pcap)
	}

	for _, hdr := range [][]string{nil, {"Accept", "text/plain"}} {
		path := "/api/v1/calls/" + esc + "/evidence"
		if hdr == nil {
			path += "?format=text"
		}
		got = b.do(t, "GET", path, b.read, nil, hdr...)
		text := string(got.body)
		if got.status != 200 || !strings.HasPrefix(got.header.Get("Content-Type"), "text/plain") {
			t.Fatalf("text evidence: %d %s", got.status, got.header)
		}
		for _, want := range append(wantFailed, "VERDICT\n  [critical] refer_delivery_failed", "unknown_ca",
			"BEGIN CERTIFICATE", "PCAP\n  not available", "BYE", callID) {
			if !strings.Contains(text, want) {
				t.Errorf("text evidence lacks %q", want)
			}
		}
	}
	checkError(t, b.do(t, "GET", "/api/v1/calls/"+esc+"/evidence?format=xml", b.read, nil), 400, "bad_request")
	checkError(t, b.do(t, "GET", "/api/v1/calls/"+esc+"/evidence?format=pcap", b.read, nil), 404, "not_found")

	// Once frames are kept, the bundle counts them and serves them as a
	// pcap: the call's SIP frame and its TLS connection's, not the plain
	// call's.
	conn := r.Conns[0]
	r.Packets = []report.Packet{
		{Time: conn.FirstSeen, Frame: 7, LinkType: 1, Data: []byte("tls frame"), ConnID: conn.ID, ConnStart: conn.FirstSeen},
		{Time: r.CallRecords[0].Start, Frame: 3, LinkType: 1, Data: []byte("sip frame"), CallID: callID},
		{Time: r.CallRecords[0].Start, Frame: 4, LinkType: 1, Data: []byte("plain call"), CallID: "plain@x"},
	}
	if err := b.st.SaveReport(context.Background(), "sbc1", "field.pcap", r); err != nil {
		t.Fatal(err)
	}
	got = b.do(t, "GET", "/api/v1/calls/"+esc+"/evidence", b.read, nil)
	got.json(t, &ev)
	if !ev.Pcap.Available || ev.Pcap.Packets != 2 || ev.Links["evidence_pcap"] != ev.Pcap.Link {
		t.Fatalf("pcap = %+v, links %v", ev.Pcap, ev.Links)
	}
	for _, hdr := range [][]string{nil, {"Accept", "application/vnd.tcpdump.pcap"}} {
		path := ev.Pcap.Link
		if hdr != nil {
			path = "/api/v1/calls/" + esc + "/evidence"
		}
		got = b.do(t, "GET", path, b.read, nil, hdr...)
		if got.status != 200 || got.header.Get("Content-Type") != "application/vnd.tcpdump.pcap" ||
			!strings.Contains(got.header.Get("Content-Disposition"), `filename=sbcwatch-a84b4c76e66710_odd_id_192.0.2.10.pcap`) {
			t.Fatalf("pcap: %d %v", got.status, got.header)
		}
		pr, err := pcapgo.NewReader(bytes.NewReader(got.body))
		if err != nil {
			t.Fatal(err)
		}
		var datas []string
		for {
			data, ci, err := pr.ReadPacketData()
			if err != nil {
				break
			}
			datas = append(datas, string(data))
			if string(data) == "sip frame" && !ci.Timestamp.Equal(r.CallRecords[0].Start) {
				t.Errorf("sip frame at %v", ci.Timestamp)
			}
		}
		if strings.Join(datas, ",") != "sip frame,tls frame" {
			t.Fatalf("pcap holds %q", datas)
		}
	}
	checkError(t, b.do(t, "GET", "/api/v1/calls/nope", b.read, nil), 404, "not_found")

	// The plain call's bundle says there is nothing wrong.
	got = b.do(t, "GET", "/api/v1/calls/plain@x/evidence", b.read, nil)
	got.json(t, &ev)
	if !strings.HasPrefix(ev.Verdict, "No findings") || len(ev.FailedTLS) != 0 {
		t.Errorf("plain call evidence: %q %v", ev.Verdict, ev.FailedTLS)
	}

	// Filters that join findings.
	got = b.do(t, "GET", "/api/v1/calls?rule=refer_delivery_failed", b.read, nil)
	var page struct{ Items []store.Call }
	got.json(t, &page)
	if len(page.Items) != 1 || page.Items[0].CallID != callID || page.Items[0].FindingCount != 1 {
		t.Errorf("rule filter: %+v", page.Items)
	}
	got = b.do(t, "GET", "/api/v1/calls?has_findings=false", b.read, nil)
	got.json(t, &page)
	if len(page.Items) != 1 || page.Items[0].CallID != "plain@x" {
		t.Errorf("has_findings=false: %+v", page.Items)
	}
	got = b.do(t, "GET", "/api/v1/tls?failed=true&from_microsoft=true", b.read, nil)
	var tls struct{ Items []store.TLSConn }
	got.json(t, &tls)
	if len(tls.Items) != 4 {
		t.Errorf("failed tls = %d", len(tls.Items))
	}
}

func TestFindingsAckAndAudits(t *testing.T) {
	t.Parallel()
	ran := 0
	b := setup(t, Options{})
	b.seedFieldCase(t, "ack@x")
	got := b.do(t, "GET", "/api/v1/findings?rule=refer_delivery_failed&acknowledged=false", b.read, nil)
	var page struct{ Items []store.Finding }
	got.json(t, &page)
	if len(page.Items) != 1 {
		t.Fatalf("findings: %s", got.body)
	}
	id := page.Items[0].ID
	checkError(t, b.do(t, "POST", "/api/v1/findings/"+id+"/ack", b.read, nil), 403, "forbidden")
	got = b.do(t, "POST", "/api/v1/findings/"+id+"/ack", b.admin, strings.NewReader(`{"by":"alice"}`), "Content-Type", "application/json")
	var f store.Finding
	got.json(t, &f)
	if got.status != 200 || !f.Acknowledged || f.AcknowledgedBy != "alice" {
		t.Fatalf("ack: %d %s", got.status, got.body)
	}
	got = b.do(t, "GET", "/api/v1/findings?acknowledged=true", b.read, nil)
	got.json(t, &page)
	if len(page.Items) != 1 || page.Items[0].ID != id {
		t.Errorf("acknowledged findings: %s", got.body)
	}
	checkError(t, b.do(t, "POST", "/api/v1/findings/nope/ack", b.admin, nil), 404, "not_found")
	checkError(t, b.do(t, "POST", "/api/v1/findings/"+id+"/ack", b.admin, strings.NewReader(`{"who":1}`), "Content-Type", "application/json"), 400, "bad_request")
	checkError(t, b.do(t, "POST", "/api/v1/findings/"+id+"/ack", b.admin, strings.NewReader(`{"by":"`+strings.Repeat("x", 2<<20)+`"}`)), 413, "payload_too_large")
	checkError(t, b.do(t, "GET", "/api/v1/findings?severity=bad", b.read, nil), 400, "bad_request")
	checkError(t, b.do(t, "GET", "/api/v1/findings?state=closed", b.read, nil), 400, "bad_request")

	// The problem behind the finding is acknowledged with it; problems
	// list by state and can be acknowledged themselves.
	got = b.do(t, "GET", "/api/v1/problems?state=open&rule=refer_delivery_failed", b.read, nil)
	var probs struct{ Items []store.Problem }
	got.json(t, &probs)
	if got.status != 200 || len(probs.Items) != 1 || !probs.Items[0].Acknowledged || probs.Items[0].Count != 1 ||
		probs.Items[0].Advice == "" || probs.Items[0].State != "open" {
		t.Fatalf("problems: %d %s", got.status, got.body)
	}
	got = b.do(t, "GET", "/api/v1/problems?state=open&acknowledged=false", b.read, nil)
	got.json(t, &probs)
	if len(probs.Items) == 0 {
		t.Fatalf("no unacknowledged open problems: %s", got.body)
	}
	pid := strconv.FormatInt(probs.Items[0].ID, 10)
	checkError(t, b.do(t, "POST", "/api/v1/problems/"+pid+"/ack", b.read, nil), 403, "forbidden")
	got = b.do(t, "POST", "/api/v1/problems/"+pid+"/ack", b.admin, nil)
	var p store.Problem
	got.json(t, &p)
	if got.status != 200 || !p.Acknowledged || p.AcknowledgedBy != "boss" {
		t.Fatalf("ack problem: %d %s", got.status, got.body)
	}
	checkError(t, b.do(t, "POST", "/api/v1/problems/x/ack", b.admin, nil), 400, "bad_request")
	checkError(t, b.do(t, "POST", "/api/v1/problems/99999/ack", b.admin, nil), 404, "not_found")
	checkError(t, b.do(t, "GET", "/api/v1/problems?state=closed", b.read, nil), 400, "bad_request")
	got = b.do(t, "GET", "/api/v1/findings?state=resolved", b.read, nil)
	got.json(t, &page)
	if got.status != 200 || len(page.Items) != 0 {
		t.Errorf("resolved findings: %s", got.body)
	}

	checkError(t, b.do(t, "POST", "/api/v1/audits/run", b.admin, nil), 501, "not_implemented")

	b2 := setup(t, Options{RunAudit: func(ctx context.Context, req AuditRunRequest) (any, error) {
		ran++
		return map[string]string{"sbc": req.SBC, "status": "done"}, nil
	}})
	got = b2.do(t, "POST", "/api/v1/audits/run", b2.admin, strings.NewReader(`{"sbc":"sbc1"}`), "Content-Type", "application/json")
	if got.status != 200 || ran != 1 || !strings.Contains(string(got.body), `"sbc1"`) {
		t.Fatalf("run audit: %d %s", got.status, got.body)
	}
	now := time.Now().UTC()
	aid, err := b.st.SaveAudit(context.Background(), store.AuditRecord{SBC: "sbc1", Kind: "tls", StartedAt: now, OK: true,
		Results: []store.AuditResult{{Target: "192.0.2.10:5061", OK: true}}})
	if err != nil {
		t.Fatal(err)
	}
	got = b.do(t, "GET", fmt.Sprintf("/api/v1/audits/%d", aid), b.read, nil)
	var a store.AuditRecord
	got.json(t, &a)
	if got.status != 200 || a.ID != aid || len(a.Results) != 1 {
		t.Errorf("audit: %d %s", got.status, got.body)
	}
	checkError(t, b.do(t, "GET", "/api/v1/audits/x", b.read, nil), 400, "bad_request")
	checkError(t, b.do(t, "GET", "/api/v1/audits/999999", b.read, nil), 404, "not_found")

	if err := b.st.SaveCounterSamples(context.Background(), []store.CounterSample{
		{SBC: "sbc1", Counter: "short_calls", Time: now.Add(-time.Minute), Value: 1},
		{SBC: "sbc1", Counter: "short_calls", Time: now, Value: 4}}); err != nil {
		t.Fatal(err)
	}
	got = b.do(t, "GET", "/api/v1/counters?sbc=sbc1&counter=short_calls", b.read, nil)
	var cs struct{ Items []store.CounterSample }
	got.json(t, &cs)
	if len(cs.Items) != 2 || cs.Items[1].Value != 4 {
		t.Errorf("counters: %s", got.body)
	}
	got = b.do(t, "GET", "/api/v1/sbcs", b.read, nil)
	if !strings.Contains(string(got.body), `"name": "sbc1"`) {
		t.Errorf("sbcs: %s", got.body)
	}
	got = b.do(t, "GET", "/api/v1/certificates", b.read, nil)
	if !strings.Contains(string(got.body), storetest.SelfSigned().Subject.String()) {
		t.Errorf("certificates: %s", got.body)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Version: "1.2.3"})
	if got := b.do(t, "GET", "/healthz", "", nil); got.status != 200 {
		t.Fatalf("healthz %d", got.status)
	}
	if got := b.do(t, "GET", "/readyz", "", nil); got.status != 200 {
		t.Fatalf("readyz %d %s", got.status, got.body)
	}
	b.do(t, "GET", "/api/v1/calls", b.read, nil)
	b.do(t, "GET", "/api/v1/calls", "", nil)
	checkError(t, b.do(t, "GET", "/nope", "", nil), 404, "not_found")
	checkError(t, b.do(t, "DELETE", "/healthz", "", nil), 405, "method_not_allowed")
	got := b.do(t, "GET", "/metrics", "", nil)
	if got.header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id header")
	}
	m := string(got.body)
	for _, want := range []string{
		`sbcwatch_http_request_duration_seconds_count{code="200",method="GET",route="/api/v1/calls"} 1`,
		`sbcwatch_http_request_duration_seconds_count{code="401",method="GET",route="/api/v1/calls"} 1`,
		`sbcwatch_http_request_duration_seconds_count{code="404",method="GET",route="unmatched"} 1`,
		`sbcwatch_http_request_duration_seconds_bucket{code="200",method="GET",route="/api/v1/calls",le="+Inf"} 1`,
		`sbcwatch_build_info{build_date="",goversion="go`,
		`version="1.2.3"} 1`,
		"# TYPE sbcwatch_db_pool_total_conns gauge",
		"# TYPE go_goroutines gauge",
		"# TYPE process_cpu_seconds_total counter",
		"sbcwatch_store_up 1",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
	got = b.do(t, "GET", "/api/v1/openapi.json", "", nil)
	if got.status != 200 || !json.Valid(got.body) {
		t.Errorf("openapi.json: %d", got.status)
	}

	b.st.Close()
	checkError(t, b.do(t, "GET", "/readyz", "", nil), 503, "unavailable")
	if got := b.do(t, "GET", "/healthz", "", nil); got.status != 200 {
		t.Errorf("healthz with the pool closed: %d", got.status)
	}
}

func TestListenAndServeShutsDown(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- ListenAndServe(ctx, "127.0.0.1:0", NewServer(st, Options{}), nil, func(a net.Addr) { addrc <- a.String() })
	}()
	addr := <-addrc
	res, err := http.Get("http://" + addr + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz over TCP: %v %v", res, err)
	}
	res.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not stop")
	}
}

func TestPanicBecomesJSONError(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil))}
	h := chi.NewRouter()
	h.Use(middleware.RequestID, s.recoverJSON)
	h.Get("/boom", func(http.ResponseWriter, *http.Request) { panic("kaboom") })
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/boom", nil))
	checkError(t, resp{status: w.Code, header: w.Header(), body: w.Body.Bytes()}, 500, "internal")
	if strings.Contains(w.Body.String(), "kaboom") || !strings.Contains(logs.String(), "kaboom") {
		t.Errorf("panic detail must be logged, not sent: body %s", w.Body.String())
	}
}

// A provisional finding is listed and shown marked with when it settles;
// a retracted one is left out of the lists, the call list and the
// evidence unless asked for.
func TestProvisionalFindingsOverHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	now := time.Now().UTC().Truncate(time.Second)
	b.seedProvisional(t, now)
	var page struct {
		Items []store.Finding `json:"items"`
	}
	b.do(t, "GET", "/api/v1/findings?rule=refer_delivery_failed", b.read, nil).json(t, &page)
	if len(page.Items) != 1 || page.Items[0].CallID != "prov@x" || !page.Items[0].Provisional || page.Items[0].SettlesAt == nil {
		t.Fatalf("findings: %+v", page.Items)
	}
	b.do(t, "GET", "/api/v1/findings?rule=refer_delivery_failed&retracted=true", b.read, nil).json(t, &page)
	if len(page.Items) != 2 || !slices.ContainsFunc(page.Items, func(f store.Finding) bool { return f.CallID == "gone@x" && f.Retracted }) {
		t.Fatalf("findings with retracted: %+v", page.Items)
	}
	var calls struct {
		Items []store.Call `json:"items"`
	}
	b.do(t, "GET", "/api/v1/calls?has_findings=true", b.read, nil).json(t, &calls)
	if len(calls.Items) != 1 || calls.Items[0].CallID != "prov@x" || !slices.Equal(calls.Items[0].ProvisionalRules, []string{"refer_delivery_failed"}) {
		t.Fatalf("calls with findings: %+v", calls.Items)
	}
	mark := "(provisional, settles by " + now.Add(time.Minute).Format("15:04:05") + " UTC)"
	text := string(b.do(t, "GET", "/api/v1/calls/prov@x/evidence?format=text", b.read, nil).body)
	if !strings.Contains(text, "[critical] refer_delivery_failed "+mark+": the transfer never arrived") {
		t.Errorf("evidence text lacks the mark %q:\n%.1500s", mark, text)
	}
	var ev Evidence
	b.do(t, "GET", "/api/v1/calls/gone@x/evidence", b.read, nil).json(t, &ev)
	if len(ev.Findings) != 0 || strings.Contains(ev.Verdict, "refer_delivery_failed") {
		t.Errorf("retracted finding in the evidence: %q %+v", ev.Verdict, ev.Findings)
	}
}
