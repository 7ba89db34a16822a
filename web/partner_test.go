package web_test

import (
	"context"
	"html"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/store"
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
	if !strings.Contains(text, "+ 8 supporting findings and 1 more below.") {
		t.Errorf("root cause does not count its supporting findings")
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

// The same capture stored for another SBC does not link across SBCs,
// and a leg never links itself.
func TestPartnerLegsStayOnTheirSBC(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	saveLab(t, e)
	rep := labReport(t)
	if err := e.st.SaveReport(context.Background(), "other-sbc", "copy.pcap", rep); err != nil {
		t.Fatal(err)
	}
	c, err := store.GetCall(context.Background(), e.st.Pool(), labCallID, "lab-sbc")
	if err != nil {
		t.Fatal(err)
	}
	legs, err := store.PartnerLegs(context.Background(), e.st.Pool(), c, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(legs) != 1 || legs[0].CallID != labCarrierCallID || legs[0].SBC != "lab-sbc" {
		t.Fatalf("partner legs %+v", legs)
	}
	// Moved a minute later, the legs no longer overlap.
	c.Start = c.Start.Add(time.Minute)
	end := c.End.Add(time.Minute)
	c.End, c.Last = &end, &end
	if legs, err = store.PartnerLegs(context.Background(), e.st.Pool(), c, 5*time.Second); err != nil || len(legs) != 0 {
		t.Fatalf("a minute later: %d legs, %v", len(legs), err)
	}
}
