package web_test

import (
	"context"
	"html"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/analyze"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/web"
)

// labCallID is the Teams leg that the field-case lab capture blames
// (testdata/lab/transfer_fails_default_cert.expect.json).
const labCallID = "752b01c65f7d53cc77ff@192.0.2.10"

// saveLab analyses the lab's field-case capture as `sbcwatch analyze
// --config testdata/lab/sbcwatch.yaml --store` does and stores it.
func saveLab(t *testing.T, e *env) {
	t.Helper()
	if err := e.st.SaveReport(context.Background(), "lab-sbc", labPcap, labReport(t)); err != nil {
		t.Fatal(err)
	}
}

// labPcap is the lab's field-case capture.
var labPcap = filepath.Join("..", "testdata", "lab", "transfer_fails_default_cert.pcap")

// labReport analyses labPcap with the lab's configuration.
func labReport(t *testing.T) *report.Report {
	t.Helper()
	cfg, err := config.Load(filepath.Join("..", "testdata", "lab", "sbcwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := analyze.Files(context.Background(), []string{labPcap}, analyze.Options{Config: cfg})
	if err != nil {
		t.Fatalf("analyze: %v", err)
	}
	return rep
}

func TestCallPageLabCapture(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	saveLab(t, e)
	res := e.get(t, web.CallPath(labCallID, "lab-sbc"), "Authorization", "Bearer "+e.tok)
	if res.status != http.StatusOK {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	text := html.UnescapeString(res.body)
	i := strings.Index(text, "[critical] refer_delivery_failed: ")
	if i < 0 || !strings.Contains(text, "default.sbc.local") {
		t.Fatalf("verdict missing:\n%s", text)
	}
	msgs, err := store.CallMessages(context.Background(), e.st.Pool(), "lab-sbc", labCallID)
	if err != nil {
		t.Fatal(err)
	}
	drawn, tls := ladderGroups(t, res.body)
	if len(drawn) != len(msgs) || len(msgs) == 0 {
		t.Fatalf("%d message arrows for %d stored messages", len(drawn), len(msgs))
	}
	var ack, bye int
	for _, m := range drawn {
		switch {
		case strings.Contains(m.body, ">ACK (CSeq") && ack == 0:
			ack = m.y
		case strings.Contains(m.body, ">BYE (CSeq"):
			bye = m.y
		}
	}
	var failed []group
	for _, g := range tls {
		if strings.Contains(g.class, "tls-failed") {
			failed = append(failed, g)
		}
	}
	if len(failed) != 4 {
		t.Fatalf("%d failed TLS attempts drawn (of %d TLS), want 4", len(failed), len(tls))
	}
	for _, g := range failed {
		if g.y <= ack || g.y >= bye {
			t.Errorf("failed TLS attempt at y=%d, not between ACK (%d) and BYE (%d)", g.y, ack, bye)
		}
		if !strings.Contains(html.UnescapeString(g.body), "TLS: served CN=default.sbc.local, alert bad_certificate") {
			t.Errorf("failed attempt labelled %s", g.body)
		}
	}
}
