package web_test

import (
	"html"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/store/storetest"
	"github.com/sbcwatch/sbcwatch/web"
)

// The field case as serve stores it a minute after the call: the call
// page and the list of calls with findings mark the refer_delivery_failed
// "provisional — settles by HH:MM:SS UTC"; once confirmed, the mark goes.
func TestProvisionalMarkOnPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const id = "prov-1@192.0.2.10"
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	r := storetest.FieldCase(t0, id)
	settles := time.Now().UTC().Add(3 * time.Minute).Truncate(time.Second)
	var n int
	for _, f := range r.Findings {
		if f.Rule == "refer_delivery_failed" {
			f.Provisional, f.SettlesAt = true, settles
			n++
		}
	}
	if n != 1 {
		t.Fatalf("fixture: %d refer_delivery_failed", n)
	}
	e.save(t, r)
	mark := "provisional — settles by " + settles.Format("15:04:05") + " UTC"
	auth := []string{"Authorization", "Bearer " + e.tok}
	page := func(path string) string {
		t.Helper()
		res := e.get(t, path, auth...)
		if res.status != http.StatusOK {
			t.Fatalf("%s: status %d", path, res.status)
		}
		return html.UnescapeString(res.body)
	}
	text := page(web.CallPath(id, ""))
	if !strings.Contains(text, `Root cause: <span class="mono">refer_delivery_failed</span> (critical) <span class="provisional">`+mark+`</span>`) {
		t.Errorf("root cause lacks the mark %q", mark)
	}
	if !strings.Contains(text, `<span class="mono rule">refer_delivery_failed</span><br><span class="provisional">`+mark+`</span>`) {
		t.Errorf("findings table lacks the mark")
	}
	if !strings.Contains(text, "[critical] refer_delivery_failed (provisional, settles by "+settles.Format("15:04:05")+" UTC): ") {
		t.Errorf("verdict lacks the mark")
	}
	if idx := page("/"); !strings.Contains(idx, `<span class="rule">refer_delivery_failed</span> <span class="provisional">provisional</span>`) {
		t.Errorf("calls with findings lack the mark")
	}
	// Still provisional well past settles_at: serve stopped before the
	// full verdict, and the page says so.
	stale := time.Now().UTC().Add(-5 * time.Minute).Truncate(time.Second)
	for _, f := range r.Findings {
		if f.Provisional {
			f.SettlesAt = stale
		}
	}
	e.save(t, &report.Report{Findings: r.Findings})
	if text := page(web.CallPath(id, "")); !strings.Contains(text, "provisional — never settled (due "+stale.Format("15:04:05")+" UTC") {
		t.Errorf("a provisional finding past its time is not marked as never settled")
	}

	// Confirmed: the same finding, final.
	for _, f := range r.Findings {
		f.Provisional, f.SettlesAt = false, time.Time{}
	}
	e.save(t, &report.Report{Findings: r.Findings})
	text = page(web.CallPath(id, ""))
	if strings.Contains(text, `class="provisional"`) || strings.Contains(text, "(provisional") {
		t.Errorf("a confirmed finding is still marked provisional")
	}
	if !strings.Contains(text, "[critical] refer_delivery_failed: ") {
		t.Errorf("confirmed verdict missing")
	}
	if idx := page("/"); strings.Contains(idx, `class="provisional"`) {
		t.Errorf("calls with findings still mark it")
	}
}
