package web_test

import (
	"html"
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/web"
)

// The carrier leg of the failed transfer links its Teams leg and shows
// the Teams leg's verdict as its root cause; the Teams leg links back.
func TestPartnerLegs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	saveLab(t, e)
	auth := []string{"Authorization", "Bearer " + e.tok}

	res := e.get(t, web.CallPath(labCarrierCallID, "lab-sbc"), auth...)
	if res.status != 200 {
		t.Fatalf("carrier leg: status %d", res.status)
	}
	text := html.UnescapeString(res.body)
	teams := html.EscapeString(web.CallPath(labCallID, "lab-sbc"))
	if !strings.Contains(res.body, `href="`+teams+`" class="partner-link mono"`) {
		t.Errorf("carrier leg does not link the Teams leg %s", teams)
	}
	root := text[strings.Index(text, `class="root"`):]
	root = root[:strings.Index(root, "</section>")]
	for _, w := range []string{"Root cause on the partner Teams leg", "[critical] refer_delivery_failed:", "default.sbc.local"} {
		if !strings.Contains(root, w) {
			t.Errorf("carrier leg's root cause lacks %q:\n%s", w, root)
		}
	}
	if strings.Contains(text, "No finding on this call") {
		t.Error("carrier leg says it has no finding")
	}

	res = e.get(t, web.CallPath(labCallID, "lab-sbc"), auth...)
	text = html.UnescapeString(res.body)
	carrier := html.EscapeString(web.CallPath(labCarrierCallID, "lab-sbc"))
	if !strings.Contains(res.body, `href="`+carrier+`" class="partner-link mono"`) {
		t.Errorf("Teams leg does not link the carrier leg %s", carrier)
	}
	if !strings.Contains(text, `Root cause: <span class="mono">refer_delivery_failed</span> (critical)`) {
		t.Errorf("Teams leg's root cause is not refer_delivery_failed:\n%s", text[strings.Index(text, `class="root"`):][:600])
	}
	if !strings.Contains(text, "No finding: answered, 28.0 s talk, ended by the caller") {
		t.Errorf("Teams leg does not say how the carrier leg ended")
	}
	// The top links come before the root cause, evidence JSON is folded.
	if i, j := strings.Index(res.body, `class="evidence-text"`), strings.Index(res.body, `class="root"`); i < 0 || i > j {
		t.Errorf("evidence links not above the root cause (%d, %d)", i, j)
	}
	if !strings.Contains(res.body, `<details class="evidence-json"><summary>evidence (JSON)</summary><pre class="evidence">`) {
		t.Error("evidence JSON not folded in <details>")
	}
}
