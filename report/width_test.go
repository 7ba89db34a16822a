package report

import (
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/finding"
)

func TestSpan(t *testing.T) {
	for _, tc := range []struct {
		s    float64
		want string
	}{
		{0.0034, "3 ms"}, {28, "28.0 s"}, {59.94, "59.9 s"}, {245, "4 min 5 s"}, {300, "5 min"},
		{3 * 3600, "3 h"}, {3*3600 + 12*60 + 20, "3 h 12 min"}, {86400, "1 d"},
		{527457049.8, "6104 d 19 h"}, {6*86400 + 3*3600 + 59, "6 d 3 h"}, {-90, "-1 min 30 s"},
	} {
		if got := Span(tc.s); got != tc.want {
			t.Errorf("Span(%v) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestWrap(t *testing.T) {
	var b strings.Builder
	ew := &errWriter{w: &b}
	wrap(ew, "a verdict with a https://very-long-address.example/that/does/not/fit/on/one/line and more words", "  ", "    ", 30)
	for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if runeLen(l) > 30 {
			t.Errorf("line %q is %d wide", l, runeLen(l))
		}
		if !strings.HasPrefix(l, "  ") {
			t.Errorf("line %q lost its indent", l)
		}
	}
	if got := strings.Join(strings.Fields(b.String()), ""); got != strings.Join(strings.Fields("a verdict with a https://very-long-address.example/that/does/not/fit/on/one/line and more words"), "") {
		t.Errorf("wrapping lost or added text: %q", b.String())
	}
}

func TestFilterByNumberKeepsCitedFindings(t *testing.T) {
	r := &Report{
		Calls: []CallJSON{{CallID: "a", Kind: "invite", From: "+4917012345601", To: "+496912345600"},
			{CallID: "b", Kind: "invite", From: "+4930111", To: "+4930222"}},
		TLS: []TLSJSON{{Client: "52.114.75.24:1", Server: "192.0.2.10:5061"}, {Client: "52.114.75.24:2", Server: "192.0.2.10:5061"}},
		Findings: []*finding.Finding{
			{ID: "F1", Rule: "tls_handshake_failed", Connection: "52.114.75.24:1->192.0.2.10:5061"},
			{ID: "F2", Rule: "refer_delivery_failed", CallID: "a", Cites: []string{"F1"}},
			{ID: "F3", Rule: "media_error_bye", CallID: "b"},
			{ID: "F4", Rule: "tls_cert_expiring"},
		},
	}
	got := r.Filter(View{Number: "069 1234 5600"})
	if len(got.Calls) != 1 || got.Calls[0].CallID != "a" {
		t.Fatalf("calls %+v", got.Calls)
	}
	var ids []string
	for _, f := range got.Findings {
		ids = append(ids, f.ID)
	}
	if strings.Join(ids, " ") != "F1 F2" {
		t.Errorf("findings %v, want F1 F2", ids)
	}
	if len(got.TLS) != 1 || got.TLS[0].Client != "52.114.75.24:1" {
		t.Errorf("tls %+v", got.TLS)
	}
	if len(r.Calls) != 2 || len(r.Findings) != 4 {
		t.Error("Filter changed the report")
	}
	if all := r.Filter(View{OnlyFindings: true}); len(all.Calls) != 2 || len(all.Findings) != 4 {
		t.Errorf("--only-findings: %d calls, %d findings", len(all.Calls), len(all.Findings))
	}
}
