package web_test

import (
	"fmt"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/web"
)

// TestPagesInChromium uses the pages as an admin would, in headless
// chromium at 1280 and 800 px wide: find the lab call by part of its
// number with the search form, go from its Teams leg to its carrier
// leg, read the default certificate's verdict; no page is wider than
// the window. The screenshots are kept (see artifacts).
func TestPagesInChromium(t *testing.T) {
	t.Parallel()
	bin := chromium(t)
	e := newEnv(t)
	saveLab(t, e)
	seedOps(t, e)
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	dir := artifacts(t)
	b := newCDP(t, bin)
	// Sign in through the real form, as a person does.
	b.open(srv.URL + "/login?next=%2Fcalls")
	b.eval(`document.getElementById('token').value = `+strconv.Quote(e.tok)+`; document.querySelector('form[action="/login"]').submit(); true`, new(bool))
	b.wait(srv.URL + "/calls")

	teams := web.CallPath(labCallID, "lab-sbc")
	carrier := web.CallPath(labCarrierCallID, "lab-sbc")
	for _, width := range []int{1280, 800} {
		t.Run(fmt.Sprint(width), func(t *testing.T) {
			b.t = t
			b.size(width, 900)
			fits := func(name string) {
				t.Helper()
				var w struct{ Scroll, Inner int }
				b.eval(`({Scroll: document.documentElement.scrollWidth, Inner: window.innerWidth})`, &w)
				if w.Scroll != w.Inner || w.Inner != width {
					t.Errorf("%s at %d px: page scroll width %d, window %d", name, width, w.Scroll, w.Inner)
				}
				t.Logf("screenshot %s", b.screenshot(dir, fmt.Sprintf("%s-%d.png", name, width)))
			}

			// Search: type part of the number into the form and submit.
			b.open(srv.URL + "/calls")
			b.eval(`document.querySelector('input[name=number]').value = '12345600'; document.querySelector('form.search').submit(); true`, new(bool))
			b.wait(srv.URL + "/calls?number=12345600&from=&to=&sbc=&kind=invite&rule=&severity=&answered=&min=&max=&status=&limit=")
			var links []string
			b.eval(`[...document.querySelectorAll('table.calls td.callid a')].map(a => a.getAttribute('href'))`, &links)
			if got := strings.Join(links, " "); !strings.Contains(got, teams) || !strings.Contains(got, carrier) {
				t.Errorf("search by part of the number found %q, want %s and %s", got, teams, carrier)
			}
			fits("search")

			// The Teams leg links its carrier leg; follow the link.
			b.open(srv.URL + teams)
			var partner string
			b.eval(`(document.querySelector('.partners a.partner-link') || {}).href || ''`, &partner)
			if partner != srv.URL+carrier {
				t.Fatalf("Teams leg's partner link is %q, want %s", partner, srv.URL+carrier)
			}
			var root string
			b.eval(`document.querySelector('.root-cause').innerText`, &root)
			if !strings.Contains(root, "refer_delivery_failed") {
				t.Errorf("Teams leg's root cause reads %q", root)
			}
			fits("teams-leg")
			b.open(partner)
			b.eval(`document.querySelector('.root-cause').innerText`, &root)
			if !strings.Contains(root, "partner Teams leg") || !strings.Contains(root, "default.sbc.local") {
				t.Errorf("carrier leg's root cause reads %q", root)
			}
			// Its ladder has four lanes (carrier, SBC, two Microsoft
			// addresses): all of them inside the window, none scrolled off.
			var lanes struct{ N, Visible int }
			b.eval(`(() => { const fig = document.querySelector('figure.ladder').getBoundingClientRect();
				const heads = [...document.querySelectorAll('svg.ladder g.lane rect.lane-head')];
				return {N: heads.length, Visible: heads.filter(h => { const r = h.getBoundingClientRect();
					return r.left >= fig.left - 1 && r.right <= fig.right + 1 && r.right <= window.innerWidth; }).length}; })()`, &lanes)
			if lanes.N != 4 || lanes.Visible != 4 {
				t.Errorf("carrier leg ladder: %d of %d lanes visible, want 4 of 4", lanes.Visible, lanes.N)
			}
			fits("carrier-leg")

			// Certificates: the default certificate with its verdict.
			b.open(srv.URL + "/certificates?window=" + url.QueryEscape("all"))
			var row string
			b.eval(`[...document.querySelectorAll('tr.cert')].map(r => r.innerText).find(t => t.includes('default.sbc.local')) || ''`, &row)
			if !strings.Contains(row, "untrusted (self-signed)") || !strings.Contains(row, "does not cover sbc.contoso.example") {
				t.Errorf("default certificate row reads %q", row)
			}
			fits("certificates")

			// The list of calls with findings fits too.
			b.open(srv.URL + "/")
			fits("index")

			// Audits and SBCs: charts drawn without JavaScript.
			for _, pg := range []string{"audits", "sbcs"} {
				b.open(srv.URL + "/" + pg)
				var charts int
				b.eval(`document.querySelectorAll('figure.chart svg polyline').length`, &charts)
				if charts == 0 {
					t.Errorf("/%s draws no chart line", pg)
				}
				fits(pg)
			}

			// An unknown page is an HTML page too.
			b.open(srv.URL + "/calls/nope@x")
			var h1 string
			b.eval(`document.querySelector('h1').innerText`, &h1)
			if !strings.HasPrefix(h1, "404") {
				t.Errorf("unknown call: h1 %q", h1)
			}
		})
	}
}
