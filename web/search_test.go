package web_test

import (
	"encoding/csv"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/web"
)

// labCarrierCallID is the carrier leg of the lab's failed transfer (the
// SBC's other side of labCallID).
const labCarrierCallID = "bdada201489b9823e6f91c99@198.51.100.7"

var nextRE = regexp.MustCompile(`href="(/calls\?[^"]*after=[^"]*)" rel="next"`)

func TestCallSearch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	saveLab(t, e)
	auth := []string{"Authorization", "Bearer " + e.tok}
	teams := html.EscapeString(web.CallPath(labCallID, "lab-sbc"))
	carrier := html.EscapeString(web.CallPath(labCarrierCallID, "lab-sbc"))
	for _, tc := range []struct {
		query      string
		status     int
		want, deny []string
	}{
		// Part of the number, the national form, and the E.164 form.
		{"number=12345600", 200, []string{teams, carrier, "2 calls"}, nil},
		{"number=069+12345600", 200, []string{teams, carrier}, nil},
		{"number=%2B4917012345601&sbc=lab-sbc", 200, []string{teams, carrier}, nil},
		{"number=55555", 200, []string{"No call matches this search"}, []string{teams}},
		{"severity=critical", 200, []string{teams}, []string{carrier}},
		{"rule=refer_delivery_failed", 200, []string{teams}, []string{carrier}},
		{"answered=yes&min=20s&max=30s&status=2xx", 200, []string{teams, carrier}, nil},
		{"min=29s", 200, []string{"No call matches"}, []string{teams}},
		{"answered=no", 200, []string{"No call matches"}, []string{teams}},
		{"kind=options", 200, []string{"(options)"}, []string{teams}},
		{"from=2026-11-21+20:52&to=2026-11-21T20:53", 200, []string{teams, carrier}, nil},
		{"to=2026-11-21", 200, []string{"No call matches"}, []string{teams}},
		// Bad input: the form again with one sentence.
		{"min=ten", 400, []string{"use a duration such as 10s"}, nil},
		{"status=999", 400, []string{"use a SIP status such as 486"}, nil},
		{"from=yesterday", 400, []string{"use a time such as"}, nil},
		{"bogus=1", 400, []string{"unknown query parameter"}, nil},
		{"number=%2B", 400, []string{"type some digits"}, nil},
	} {
		res := e.get(t, "/calls?"+tc.query, auth...)
		if res.status != tc.status {
			t.Errorf("%s: status %d, want %d", tc.query, res.status, tc.status)
		}
		if !strings.HasPrefix(res.header.Get("Content-Type"), "text/html") {
			t.Errorf("%s: Content-Type %q", tc.query, res.header.Get("Content-Type"))
		}
		text := html.UnescapeString(res.body)
		for _, w := range tc.want {
			if !strings.Contains(res.body, w) && !strings.Contains(text, w) {
				t.Errorf("%s: page lacks %q", tc.query, w)
			}
		}
		for _, d := range tc.deny {
			if strings.Contains(res.body, d) {
				t.Errorf("%s: page has %q", tc.query, d)
			}
		}
	}

	// The form shows the query again, so the URL is the ticket link.
	res := e.get(t, "/calls?number=12345600&severity=critical", auth...)
	if !strings.Contains(res.body, `name="number" value="12345600"`) || !strings.Contains(res.body, `<option value="critical" selected>`) {
		t.Error("the form does not show the search again")
	}

	// Paging: one call per page, the next page has the other leg.
	res = e.get(t, "/calls?number=12345600&limit=1", auth...)
	m := nextRE.FindStringSubmatch(res.body)
	if m == nil {
		t.Fatalf("no next page link:\n%s", res.body)
	}
	res2 := e.get(t, html.UnescapeString(m[1]), auth...)
	if res2.status != 200 || nextRE.MatchString(res2.body) {
		t.Fatalf("second page: status %d, next link %v", res2.status, nextRE.MatchString(res2.body))
	}
	one, two := strings.Contains(res.body, teams), strings.Contains(res2.body, teams)
	if one == two || strings.Contains(res.body, carrier) == strings.Contains(res2.body, carrier) {
		t.Errorf("the two pages do not split the two legs (teams on page 1: %v, page 2: %v)", one, two)
	}

	// The CSV export has every match, not one page.
	res = e.get(t, "/calls.csv?number=12345600", auth...)
	if res.status != 200 || !strings.HasPrefix(res.header.Get("Content-Type"), "text/csv") ||
		!strings.Contains(res.header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("csv: status %d, headers %v", res.status, res.header)
	}
	recs, err := csv.NewReader(strings.NewReader(res.body)).ReadAll()
	if err != nil {
		t.Fatalf("csv: %v", err)
	}
	if len(recs) != 3 || recs[0][0] != "start_utc" {
		t.Fatalf("csv has %d records: %q", len(recs), recs)
	}
	var ids []string
	for _, r := range recs[1:] {
		ids = append(ids, r[14])
		if r[3] != "'+4917012345601" {
			t.Errorf("csv from = %q, want the number guarded against formula reading", r[3])
		}
	}
	if got := strings.Join(ids, " "); !strings.Contains(got, labCallID) || !strings.Contains(got, labCarrierCallID) {
		t.Errorf("csv call ids %s", got)
	}

	// Without a token, a browser goes to the sign-in page.
	if res := e.get(t, "/calls?number=1"); res.status != http.StatusSeeOther {
		t.Errorf("no token: status %d", res.status)
	}
}

func TestCertificatesPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	saveLab(t, e)
	auth := []string{"Authorization", "Bearer " + e.tok}
	res := e.get(t, "/certificates?window=all", auth...)
	if res.status != 200 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	text := html.UnescapeString(res.body)
	def := strings.Index(text, ">default.sbc.local<")
	good := strings.Index(text, ">sbc.contoso.example<")
	ms := strings.Index(text, ">sip.pstnhub.microsoft.com<")
	if def < 0 || good < 0 || ms < 0 {
		t.Fatalf("certificates missing (default %d, contoso %d, microsoft %d):\n%s", def, good, ms, text)
	}
	// The inconsistent listener (two certificates for one SNI) first.
	if def > ms || good > ms {
		t.Errorf("inconsistent listener not first: default %d, contoso %d, microsoft %d", def, good, ms)
	}
	row := text[def:]
	row = row[:strings.Index(row, "</tr>")]
	for _, w := range []string{"untrusted (self-signed)", "does not cover sbc.contoso.example", `4<br><span class="rel failed-count">4 failed</span>`} {
		if !strings.Contains(row, w) {
			t.Errorf("default certificate row lacks %q:\n%s", w, row)
		}
	}
	if !strings.Contains(text, "2 different certificates") {
		t.Error("no inconsistency badge")
	}
	if res := e.get(t, "/certificates?window=2y", auth...); res.status != 400 || !strings.Contains(res.body, "use 1d, 7d, 30d or all") {
		t.Errorf("bad window: %d", res.status)
	}
	if res := e.get(t, "/tls", auth...); res.status != http.StatusMovedPermanently || res.header.Get("Location") != "/certificates" {
		t.Errorf("/tls: %d %s", res.status, res.header.Get("Location"))
	}
}

// A browser that asks for a page that does not exist gets an HTML page;
// an API client gets the API's JSON error.
func TestUnknownPathForBrowserIsHTML(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res := e.get(t, "/nope", "Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	if res.status != http.StatusNotFound || !strings.HasPrefix(res.header.Get("Content-Type"), "text/html") || !strings.Contains(res.body, "No such page: /nope") {
		t.Errorf("browser: %d %s %q", res.status, res.header.Get("Content-Type"), res.body)
	}
	res = e.get(t, "/nope", "Accept", "application/json")
	if res.status != http.StatusNotFound || strings.HasPrefix(res.header.Get("Content-Type"), "text/html") {
		t.Errorf("API client: %d %s", res.status, res.header.Get("Content-Type"))
	}
	res = e.get(t, "/api/v1/nope", "Accept", "text/html")
	if strings.HasPrefix(res.header.Get("Content-Type"), "text/html") {
		t.Errorf("/api/ answered with HTML")
	}
}
