package web_test

import (
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/web"
)

// signIn posts the token to /login and returns the session cookie
// ("name=value").
func (e *env) signIn(t *testing.T) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(url.Values{"token": {e.tok}, "next": {"/"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	sc := w.Header().Get("Set-Cookie")
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(sc, web.CookieName+"=") {
		t.Fatalf("sign-in: %d %q", w.Code, sc)
	}
	return strings.SplitN(sc, ";", 2)[0]
}

// withoutGenerated drops the bundle's generation time and an error's
// request id, which differ between two reads.
var generatedRE = regexp.MustCompile(`(?m)^generated .*$|"(generated_at|request_id)":\s*"[^"]*"`)

func withoutGenerated(s string) string { return generatedRE.ReplaceAllString(s, "") }

// The call page links the evidence bundle under its own routes, where the
// session cookie works; they answer exactly what the API answers for the
// bearer token, and without a session they behave like the page.
func TestEvidenceRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const id = "evidence-1/2+3@192.0.2.10"
	r := fieldCase(t, e, id)
	cookie := e.signIn(t)
	apiPath := "/api/v1/calls/" + strings.ReplaceAll(url.PathEscape(id), "+", "%2B") + "/evidence"
	bearer := []string{"Authorization", "Bearer " + e.tok}

	// The page links the three routes, not the API.
	page := e.get(t, web.CallPath(id, ""), "Cookie", cookie)
	if page.status != http.StatusOK {
		t.Fatalf("call page: %d", page.status)
	}
	if strings.Contains(page.body, `href="/api/`) {
		t.Error("the call page still links the bearer-only API")
	}
	hrefs := map[string]string{}
	for ext, class := range map[string]string{"txt": "evidence-text", "json": "evidence-json", "pcap": "evidence-pcap"} {
		want := web.EvidencePath(id, "sbc1", ext)
		m := regexp.MustCompile(`<a href="([^"]*)" class="` + class + `"`).FindStringSubmatch(page.body)
		if m == nil || html.UnescapeString(m[1]) != want {
			t.Fatalf("no %s link to %s in the call page (%v)", ext, want, m)
		}
		hrefs[ext] = html.UnescapeString(m[1])
	}

	// Text: the API's ?format=text, through the cookie.
	txt := e.get(t, hrefs["txt"], "Cookie", cookie)
	api := e.get(t, apiPath+"?sbc=sbc1&format=text", bearer...)
	if txt.status != http.StatusOK || txt.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("evidence.txt: %d %q: %.500s", txt.status, txt.header.Get("Content-Type"), txt.body)
	}
	if !strings.HasPrefix(txt.body, "sbcwatch evidence for call "+id+" (SBC sbc1)\n") || !strings.Contains(txt.body, "refer_delivery_failed") {
		t.Fatalf("evidence.txt is not the bundle:\n%.500s", txt.body)
	}
	if withoutGenerated(txt.body) != withoutGenerated(api.body) {
		t.Errorf("evidence.txt differs from the API's text:\n%s\n---\n%s", txt.body, api.body)
	}
	if txt.header.Get("X-Content-Type-Options") != "nosniff" || txt.header.Get("Cache-Control") != "no-store" {
		t.Errorf("evidence.txt lacks the pages' headers: %v", txt.header)
	}

	// JSON: the API's JSON, without the ?sbc= too.
	js := e.get(t, web.EvidencePath(id, "", "json"), "Cookie", cookie)
	api = e.get(t, apiPath, bearer...)
	if js.status != http.StatusOK || !strings.HasPrefix(js.header.Get("Content-Type"), "application/json") {
		t.Fatalf("evidence.json: %d %q: %.500s", js.status, js.header.Get("Content-Type"), js.body)
	}
	var ev struct {
		Call struct {
			CallID string `json:"call_id"`
		} `json:"call"`
		Findings []json.RawMessage `json:"findings"`
	}
	if err := json.Unmarshal([]byte(js.body), &ev); err != nil || ev.Call.CallID != id || len(ev.Findings) != 6 {
		t.Fatalf("evidence.json: %v, call %q, %d findings", err, ev.Call.CallID, len(ev.Findings))
	}
	if withoutGenerated(js.body) != withoutGenerated(api.body) {
		t.Errorf("evidence.json differs from the API's JSON")
	}

	// The API's errors pass through: an unknown call, an unknown query
	// parameter.
	res := e.get(t, web.EvidencePath("nope@x", "", "json"), "Cookie", cookie)
	if res.status != http.StatusNotFound || !strings.Contains(res.body, `"not_found"`) {
		t.Errorf("unknown call: %d %s", res.status, res.body)
	}
	res = e.get(t, web.EvidencePath(id, "", "txt")+"?limit=3", "Cookie", cookie)
	if res.status != http.StatusBadRequest || !strings.Contains(res.body, `unknown query parameter \"limit\"`) {
		t.Errorf("unknown parameter: %d %s", res.status, res.body)
	}

	// pcap: whatever the API answers for ?format=pcap, passed through;
	// first its error (no frames kept), then the capture.
	pcapSame := func(wantStatus int) {
		t.Helper()
		pc := e.get(t, hrefs["pcap"], "Cookie", cookie)
		api := e.get(t, apiPath+"?sbc=sbc1&format=pcap", bearer...)
		for _, h := range []string{"Content-Type", "Content-Disposition"} {
			if pc.header.Get(h) != api.header.Get(h) {
				t.Errorf("evidence.pcap %s %q, the API's %q", h, pc.header.Get(h), api.header.Get(h))
			}
		}
		if pc.status != wantStatus || pc.status != api.status || withoutGenerated(pc.body) != withoutGenerated(api.body) {
			t.Errorf("evidence.pcap: %d %.300q; the API: %d %.300q", pc.status, pc.body, api.status, api.body)
		}
	}
	pcapSame(http.StatusNotFound)
	if !strings.Contains(html.UnescapeString(page.body), "(pcap not available: ") {
		t.Error("the call page does not say that no packets were kept")
	}
	conn := r.Conns[0]
	r.Packets = []report.Packet{
		{Time: conn.FirstSeen, Frame: 7, LinkType: 1, Data: []byte("tls frame"), ConnID: conn.ID, ConnStart: conn.FirstSeen},
		{Time: r.CallRecords[0].Start, Frame: 3, LinkType: 1, Data: []byte("sip frame"), CallID: id},
	}
	e.save(t, r)
	pcapSame(http.StatusOK)
	if pc := e.get(t, hrefs["pcap"], "Cookie", cookie); pc.header.Get("Content-Type") != "application/vnd.tcpdump.pcap" ||
		!strings.HasPrefix(pc.header.Get("Content-Disposition"), "attachment") || !strings.Contains(pc.body, "sip frame") {
		t.Errorf("evidence.pcap once frames are kept: %d %v", pc.status, pc.header)
	}
	if page := e.get(t, web.CallPath(id, ""), "Cookie", cookie); strings.Contains(page.body, "(pcap not available") {
		t.Error("the call page says no packets were kept once they are")
	}

	// Without a session: like the page.
	for _, ext := range []string{"txt", "json", "pcap"} {
		path := web.EvidencePath(id, "", ext)
		res := e.get(t, path)
		if res.status != http.StatusSeeOther || res.header.Get("Location") != "/login?next="+url.QueryEscape(path) {
			t.Errorf("%s without a session: %d Location %q", ext, res.status, res.header.Get("Location"))
		}
		res = e.get(t, path, "Cookie", web.CookieName+"=sbcw_nope")
		if res.status != http.StatusSeeOther || !strings.Contains(res.header.Get("Set-Cookie"), "Max-Age=0") {
			t.Errorf("%s with a wrong cookie: %d %q", ext, res.status, res.header.Get("Set-Cookie"))
		}
		res = e.get(t, path, "Authorization", "Bearer sbcw_nope")
		if res.status != http.StatusUnauthorized || strings.Contains(res.body, "refer_delivery_failed") {
			t.Errorf("%s with a wrong bearer token: %d", ext, res.status)
		}
	}
	// A bearer token works as on the page.
	if res := e.get(t, web.EvidencePath(id, "", "txt"), bearer...); res.status != http.StatusOK {
		t.Errorf("evidence.txt with the bearer token: %d", res.status)
	}
}
