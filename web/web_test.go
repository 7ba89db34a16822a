package web_test

import (
	"bytes"
	"context"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/api"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
	"github.com/sbcwatch/sbcwatch/web"
)

// env is a migrated store in its own schema, a read token and the whole
// server as `sbcwatch serve` builds it (api.NewServer mounts the pages).
type env struct {
	st   *store.Store
	h    http.Handler
	tok  string
	logs *bytes.Buffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, _ := storetest.New(t)
	tok, err := store.CreateToken(context.Background(), st.Pool(), "pages", store.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := &env{st: st, tok: tok, logs: logs, h: api.NewServer(st, api.Options{Logger: log})}
	t.Cleanup(func() {
		if strings.Contains(logs.String(), tok) {
			t.Errorf("the token appears in the logs")
		}
	})
	return e
}

// save stores r as SBC sbc1.
func (e *env) save(t *testing.T, r *report.Report) {
	t.Helper()
	if err := e.st.SaveReport(context.Background(), "sbc1", "field.pcap", r); err != nil {
		t.Fatal(err)
	}
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (e *env) get(t *testing.T, path string, hdr ...string) resp {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return resp{w.Code, w.Header(), w.Body.String()}
}

func fieldCase(t *testing.T, e *env, callID string) *report.Report {
	t.Helper()
	t0 := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Millisecond)
	r := storetest.FieldCase(t0, callID)
	e.save(t, r)
	return r
}

// group is one <g> of the ladder: its class, data-y and texts.
type group struct {
	class string
	y     int
	body  string
}

var groupRE = regexp.MustCompile(`(?s)<g class="([^"]*)" data-y="(\d+)"[^>]*>(.*?)</g>`)

// ladderGroups returns the message and TLS groups of the page's SVG.
func ladderGroups(t *testing.T, body string) (msgs, tls []group) {
	t.Helper()
	i, j := strings.Index(body, "<svg"), strings.Index(body, "</svg>")
	if i < 0 || j < i {
		t.Fatalf("no <svg> in the page")
	}
	for _, m := range groupRE.FindAllStringSubmatch(body[i:j], -1) {
		y, _ := strconv.Atoi(m[2])
		g := group{class: m[1], y: y, body: m[3]}
		switch strings.Fields(g.class)[0] {
		case "msg":
			msgs = append(msgs, g)
		case "tls":
			tls = append(tls, g)
		}
	}
	return msgs, tls
}

func TestCallPageFieldCase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const id = "field-1/2@192.0.2.10"
	r := fieldCase(t, e, id)
	res := e.get(t, web.CallPath(id, ""), "Authorization", "Bearer "+e.tok)
	if res.status != http.StatusOK {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("Content-Type %q", ct)
	}
	if csp := res.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	text := html.UnescapeString(res.body)
	// The verdict: the API's, most severe first, the root cause with the
	// count of the TLS facts it rests on, which are folded under it.
	var rdf string
	for _, f := range r.Findings {
		if f.Rule == "refer_delivery_failed" {
			rdf = f.Summary
		}
	}
	iv := strings.Index(text, "[critical] refer_delivery_failed: "+rdf)
	it := strings.Index(text, " supporting findings)")
	if iv < 0 || it < 0 || iv > it || strings.Contains(text, "[critical] tls_handshake_failed: ") {
		t.Fatalf("verdict missing or out of order (%d, %d) in\n%s", iv, it, text)
	}
	for _, want := range []string{"Call " + id, "Q.850;cause=16", "Ended by", "caller", "TLS: served CN=ACL_1234567, alert unknown_ca (client) after 6 ms",
		`"verify_error": "x509: certificate signed by unknown authority"`, "52.114.75.24:50001->192.0.2.10:5061"} {
		if !strings.Contains(text, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	msgs, tls := ladderGroups(t, res.body)
	if n := len(r.CallRecords[0].Messages); len(msgs) != n {
		t.Fatalf("%d message arrows, want %d", len(msgs), n)
	}
	if len(tls) != 4 {
		t.Fatalf("%d TLS attempts drawn, want 4", len(tls))
	}
	var ack, bye int
	for _, m := range msgs {
		switch {
		case strings.Contains(m.body, ">ACK (CSeq 1)<"):
			ack = m.y
		case strings.Contains(m.body, ">BYE (CSeq 2)<"):
			bye = m.y
		}
	}
	if ack == 0 || bye == 0 {
		t.Fatalf("no ACK or BYE arrow: ack y=%d bye y=%d", ack, bye)
	}
	prev := ack
	for _, g := range tls {
		if !strings.Contains(g.class, "tls-failed") || !strings.Contains(g.body, `class="tls-arrow"`) {
			t.Errorf("TLS group %q is not drawn as a failed attempt", g.class)
		}
		if g.y <= prev || g.y >= bye {
			t.Errorf("TLS attempt at y=%d, want between ACK (%d) and BYE (%d) and after the previous (%d)", g.y, ack, bye, prev)
		}
		prev = g.y
	}
	// Arrows go down the page in time order.
	for i := 1; i < len(msgs); i++ {
		if msgs[i].y <= msgs[i-1].y {
			t.Errorf("message %d at y=%d is not below message %d (y=%d)", i, msgs[i].y, i-1, msgs[i-1].y)
		}
	}
}

func TestCallPageEscapesHostileInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const id = `<script>alert("cid")</script>'"&x@evil`
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	r := storetest.FieldCase(t0, id)
	c := r.CallRecords[0]
	c.ByeReason = `<script>alert("reason")</script>`
	c.From = `<img src=x onerror=alert(1)>`
	c.UserAgents = []string{`</svg><script>alert("ua")</script>`}
	bye := c.Messages[4]
	bye.Raw = append(bye.Raw[:len(bye.Raw)-2:len(bye.Raw)-2], []byte("Reason: <script>alert(\"hdr\")</script>\r\n\r\n")...)
	r.Findings[len(r.Findings)-1].Summary = `<script>alert("summary")</script>`
	e.save(t, r)

	res := e.get(t, web.CallPath(id, "sbc1"), "Authorization", "Bearer "+e.tok)
	if res.status != http.StatusOK {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	low := strings.ToLower(res.body)
	if strings.Contains(low, "<script") || strings.Contains(low, "<img") {
		t.Fatalf("unescaped markup in the page:\n%s", res.body)
	}
	for _, want := range []string{"&lt;script&gt;alert(&#34;cid&#34;)", "&lt;script&gt;alert(&#34;reason&#34;)",
		"&lt;script&gt;alert(&#34;hdr&#34;)", "&lt;script&gt;alert(&#34;summary&#34;)", "&lt;img src=x"} {
		if !strings.Contains(res.body, want) {
			t.Errorf("page lacks the escaped %q", want)
		}
	}
	// The hostile Call-ID still draws its ladder.
	if msgs, tls := ladderGroups(t, res.body); len(msgs) != 6 || len(tls) != 4 {
		t.Errorf("%d messages, %d TLS attempts drawn", len(msgs), len(tls))
	}
}

func TestPagesNeedAToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const id = "auth-1@x"
	fieldCase(t, e, id)
	path := web.CallPath(id, "")

	// No token: to the sign-in form, coming back here afterwards.
	res := e.get(t, path)
	if res.status != http.StatusSeeOther || res.header.Get("Location") != "/login?next="+url.QueryEscape(path) {
		t.Fatalf("no token: %d Location %q", res.status, res.header.Get("Location"))
	}
	if strings.Contains(res.body, "refer_delivery_failed") {
		t.Fatal("the redirect leaks the page")
	}
	if res := e.get(t, "/"); res.status != http.StatusSeeOther {
		t.Fatalf("index without token: %d", res.status)
	}
	// A wrong bearer token: 401.
	res = e.get(t, path, "Authorization", "Bearer sbcw_nope")
	if res.status != http.StatusUnauthorized || strings.Contains(res.body, "refer_delivery_failed") {
		t.Fatalf("bad bearer: %d", res.status)
	}
	// A wrong cookie: cleared, to the sign-in form.
	res = e.get(t, path, "Cookie", web.CookieName+"=sbcw_nope")
	if res.status != http.StatusSeeOther || !strings.Contains(res.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("bad cookie: %d %q", res.status, res.header.Get("Set-Cookie"))
	}

	// The sign-in form.
	res = e.get(t, "/login?next="+url.QueryEscape(path))
	if res.status != http.StatusOK || !strings.Contains(res.body, `name="token"`) || !strings.Contains(html.UnescapeString(res.body), path) {
		t.Fatalf("login form: %d %s", res.status, res.body)
	}

	post := func(form url.Values) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		return w
	}
	// A wrong token is refused without a cookie.
	w := post(url.Values{"token": {"sbcw_wrong"}, "next": {path}})
	if w.Code != http.StatusUnauthorized || w.Header().Get("Set-Cookie") != "" {
		t.Fatalf("wrong token: %d %q", w.Code, w.Header().Get("Set-Cookie"))
	}
	// The right one sets an HttpOnly, SameSite=Strict cookie and goes back.
	w = post(url.Values{"token": {e.tok}, "next": {path}})
	sc := w.Header().Get("Set-Cookie")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != path ||
		!strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Strict") || !strings.HasPrefix(sc, web.CookieName+"=") {
		t.Fatalf("login: %d Location %q Set-Cookie %q", w.Code, w.Header().Get("Location"), sc)
	}
	cookie := strings.SplitN(sc, ";", 2)[0]
	res = e.get(t, path, "Cookie", cookie)
	if res.status != http.StatusOK || !strings.Contains(res.body, "refer_delivery_failed") {
		t.Fatalf("with the cookie: %d", res.status)
	}
	// The index lists the call, linked.
	res = e.get(t, "/", "Cookie", cookie)
	if res.status != http.StatusOK || !strings.Contains(res.body, `href="`+path+`?sbc=sbc1"`) {
		t.Fatalf("index: %d\n%s", res.status, res.body)
	}
	// Login CSRF: a form posted from another site sets nothing.
	for _, h := range [][2]string{{"Origin", "https://evil.example"}, {"Sec-Fetch-Site", "cross-site"}} {
		req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(url.Values{"token": {e.tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set(h[0], h[1])
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		if w.Code != http.StatusForbidden || w.Header().Get("Set-Cookie") != "" {
			t.Errorf("cross-site login (%s: %s): %d %q", h[0], h[1], w.Code, w.Header().Get("Set-Cookie"))
		}
	}
	// No open redirect after login.
	for _, next := range []string{"//evil.example/x", "https://evil.example/", `/\evil.example`} {
		if w := post(url.Values{"token": {e.tok}, "next": {next}}); w.Header().Get("Location") != "/" {
			t.Errorf("next=%q redirects to %q", next, w.Header().Get("Location"))
		}
	}
	// Unknown call: a 404 page, escaped.
	res = e.get(t, web.CallPath("<b>nope</b>", ""), "Authorization", "Bearer "+e.tok)
	if res.status != http.StatusNotFound || strings.Contains(res.body, "<b>nope") || !strings.Contains(res.body, "&lt;b&gt;nope") {
		t.Fatalf("unknown call: %d %s", res.status, res.body)
	}
	// The API keeps its JSON 404 for other paths.
	if res := e.get(t, "/nope"); res.status != http.StatusNotFound || !strings.Contains(res.body, `"not_found"`) {
		t.Fatalf("/nope: %d %s", res.status, res.body)
	}
}

// The page reads the API in a request of its own: the API's metrics count
// one evidence request per page, and the pages are counted under their
// own route patterns, one series per pattern whatever the Call-ID.
func TestPageReadsTheAPIOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fieldCase(t, e, "metrics-1@x")
	fieldCase(t, e, "metrics-2@x")
	bearer := []string{"Authorization", "Bearer " + e.tok}
	for _, c := range []struct {
		path   string
		status int
		hdr    []string
	}{
		{web.CallPath("metrics-1@x", ""), http.StatusOK, bearer},
		{web.CallPath("metrics-2@x", "sbc1"), http.StatusOK, bearer},
		{web.CallPath("metrics-3@x", ""), http.StatusNotFound, bearer},
		{web.CallPath("metrics-1@x", ""), http.StatusSeeOther, nil},
		{web.EvidencePath("metrics-1@x", "", "txt"), http.StatusOK, bearer},
		{"/", http.StatusOK, bearer},
		{"/login", http.StatusOK, nil},
		{"/calls/metrics-1@x/no/such/page", http.StatusNotFound, bearer},
	} {
		if res := e.get(t, c.path, c.hdr...); res.status != c.status {
			t.Fatalf("%s: status %d, want %d", c.path, res.status, c.status)
		}
	}
	m := e.get(t, "/metrics").body
	for _, want := range []string{
		`{code="200",method="GET",route="/api/v1/calls/{call_id}/evidence"} 3`,
		`{code="404",method="GET",route="/api/v1/calls/{call_id}/evidence"} 1`,
		`{code="200",method="GET",route="/calls/{call_id}"} 2`,
		`{code="404",method="GET",route="/calls/{call_id}"} 1`,
		`{code="303",method="GET",route="/calls/{call_id}"} 1`,
		`{code="200",method="GET",route="/calls/{call_id}/evidence.txt"} 1`,
		`{code="200",method="GET",route="/"} 1`,
		`{code="200",method="GET",route="/login"} 1`,
		`{code="404",method="GET",route="unmatched"} 1`,
	} {
		if !strings.Contains(m, "sbcwatch_http_request_duration_seconds_count"+want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, m)
		}
	}
	if strings.Contains(m, `code="200",method="GET",route="unmatched"`) || strings.Contains(m, "metrics-") {
		t.Errorf("a page is counted as unmatched or by its Call-ID:\n%s", m)
	}
}
