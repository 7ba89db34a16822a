package correlate

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// fieldCase is the case of docs/field-evidence.md: an answered call to an
// Auto Attendant number, three failed inbound TLS connections from
// Microsoft within one second and a fourth 12 s later, the SBC serving
// its default self-signed certificate, BYE with cause 22 MediaError 3 s
// after the last attempt. The first attempt carries no SNI.
func fieldCase(t *testing.T) Input {
	cs := newCerts(t)
	call := msCall("field-1@192.0.2.10", aaNumber, 0, 25.5,
		withBye(`Q.850 ;cause=22 ;text="0c9e4a1e-7f2d-4d1b-9a55-3c2b1f0e9d8c;MediaError"`, 22,
			"0c9e4a1e-7f2d-4d1b-9a55-3c2b1f0e9d8c;MediaError"))
	ms := 16 * time.Millisecond
	attempts := []*tlsaudit.Conn{
		failed(cs, 8576, 10.0, "", cs.dflt, ms),
		failed(cs, 8590, 10.4, sbcFQDN, cs.dflt, ms-time.Millisecond),
		failed(cs, 8601, 10.9, sbcFQDN, cs.dflt, ms+time.Millisecond),
		failed(cs, 8702, 22.5, sbcFQDN, cs.dflt, 19*time.Millisecond),
	}
	attempts[1].Outcome, attempts[1].ClosedBy = tlsaudit.OutcomeReset, "client"
	// Noise: the SBC's own connection to Microsoft for the call, and a
	// working inbound connection (OPTIONS) with the public certificate.
	out := conn(cs, netip.MustParseAddrPort("192.0.2.10:40001"), msProxy, -3, "sip.pstnhub.microsoft.com", nil, time.Minute, true)
	options := conn(cs, netip.MustParseAddrPort("52.114.7.24:9001"), sbc, 5, sbcFQDN, cs.public, 2*time.Second, true)
	conns := append([]*tlsaudit.Conn{out, options}, attempts...)
	return Input{
		Calls:       []*sip.Call{call},
		Conns:       conns,
		TLSFindings: tlsFindings(attempts...),
		Config:      testConfig(),
	}
}

func TestFieldCase(t *testing.T) {
	in := fieldCase(t)
	if len(in.TLSFindings) != 8 {
		t.Fatalf("fixture: %d TLS findings", len(in.TLSFindings))
	}
	fs := Run(in)
	id := "field-1@192.0.2.10"
	want := []string{
		"refer_delivery_failed/critical/" + id,
		"media_error_bye/warning/" + id,
		"transfer_missing/warning/" + id,
	}
	if got := rules(fs); !slices.Equal(got, want) {
		t.Fatalf("rules in order:\n got  %q\n want %q", got, want)
	}
	for i, f := range fs {
		if want := []string{"F9", "F10", "F11"}[i]; f.ID != want {
			t.Errorf("finding %d has ID %s, want %s", i, f.ID, want)
		}
	}
	d := fs[0]
	if !d.Time.Equal(at(10)) {
		t.Errorf("time = %v, want the first attempt", d.Time)
	}
	wantCites := []string{"F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8", "F11"}
	if !slices.Equal(d.Cites, wantCites) {
		t.Errorf("cites = %v, want %v", d.Cites, wantCites)
	}
	ev := d.Evidence
	if ev["attempts"] != 4 || ev["seconds_last_attempt_to_end"] != 3.0 || ev["called_number"] != aaNumber || ev["expects_transfer"] != true {
		t.Errorf("evidence: attempts=%v delay=%v number=%v expects=%v", ev["attempts"], ev["seconds_last_attempt_to_end"], ev["called_number"], ev["expects_transfer"])
	}
	end := ev["dialog_end"].(map[string]any)
	if end["q850_cause"] != 22 || end["by"] != "the SBC" || end["by_addr"] != "192.0.2.10:5061" || !strings.Contains(end["reason"].(string), "MediaError") {
		t.Errorf("dialog_end = %v", end)
	}
	fc := ev["failed_connections"].([]map[string]any)
	if len(fc) != 4 {
		t.Fatalf("failed_connections: %d", len(fc))
	}
	if fc[0]["peer"] != "52.114.75.24:8576" || fc[0]["sni"] != "" || fc[0]["duration_ms"] != 16.0 ||
		fc[0]["closed_by"] != "client" || fc[0]["outcome"] != "closed" || fc[1]["outcome"] != "reset" {
		t.Errorf("failed_connections[0..1] = %v / %v", fc[0], fc[1])
	}
	if !strings.Contains(fc[3]["cert_subject"].(string), "CN=default.sbc.local") || len(fc[3]["cert_fingerprint_sha256"].(string)) != 64 ||
		fc[3]["cert_issuer"] != fc[3]["cert_subject"] {
		t.Errorf("certificate evidence = %v", fc[3])
	}
	for _, s := range []string{
		"Call field-1@192.0.2.10 to +4969987654: the transfer never arrived",
		"Microsoft (52.114.75.24) tried 4 new TLS connections to the SBC (192.0.2.10) during the call",
		"the SBC served CN=default.sbc.local (self-signed, not valid for sbc.contoso.example)",
		"Microsoft aborted each within 19 ms",
		"The SBC sent BYE (Q.850 cause 22, MediaError) 3 s after the last attempt.",
	} {
		if !strings.Contains(d.Summary, s) {
			t.Errorf("summary lacks %q:\n%s", s, d.Summary)
		}
	}
	tm := one(t, fs, finding.TransferMissing)
	if tm.Evidence["explained_by"] != "F9" || !strings.Contains(tm.Summary, "F9") {
		t.Errorf("transfer_missing not linked: %v / %s", tm.Evidence["explained_by"], tm.Summary)
	}
	me := one(t, fs, finding.MediaErrorBye)
	if me.Evidence["q850_cause"] != 22 || me.Evidence["media_error"] != true {
		t.Errorf("media_error_bye evidence = %v", me.Evidence)
	}
	if got := UnexplainedFailures(in); len(got) != 0 {
		t.Errorf("the field case leaves %d connections unexplained", len(got))
	}
	if h := Hints(in); len(h) != 0 {
		t.Errorf("hints: %q", h)
	}
}

// The same story without the call expecting a transfer still blames the
// call (it is the only one that fits), without transfer_missing.
func TestFieldCaseUnconfiguredNumber(t *testing.T) {
	in := fieldCase(t)
	in.Config.ExpectTransfer = nil
	fs := Run(in)
	wantRules(t, fs, "refer_delivery_failed/critical/field-1@192.0.2.10", "media_error_bye/warning/field-1@192.0.2.10")
	d := one(t, fs, finding.ReferDeliveryFailed)
	if d.Evidence["why_this_call"] != "it is the only call that fits" || len(d.Cites) != 8 {
		t.Errorf("why=%v cites=%v", d.Evidence["why_this_call"], d.Cites)
	}
}

// A REFER that got through after the failed attempts (over a later,
// working connection) means the transfer was delivered.
func TestReferAfterAttemptsIsNoLoss(t *testing.T) {
	in := fieldCase(t)
	in.Calls[0].Refers = []*sip.Refer{refer(23, 202)}
	in.Calls[0].Refers[0].Notifies = []sip.Notify{notifyFromSBC(23.2)}
	in.Calls = append(in.Calls, newLeg("leg2", 23.3, "sip:sip.pstnhub.microsoft.com;x-m=8:orgid:0a1b2c;x-t=9f8e7d", msProxy))
	fs := Run(in)
	if got := byRule(fs, finding.ReferDeliveryFailed); len(got) != 0 {
		t.Fatalf("blamed a call whose REFER arrived: %v", rules(fs))
	}
	if got := UnexplainedFailures(in); len(got) != 4 {
		t.Errorf("unexplained = %d, want the 4 attempts", len(got))
	}
}

// An earlier REFER (before the attempts) does not excuse the call: only
// the attempts after it count.
func TestEarlierReferCutsTheAttempts(t *testing.T) {
	in := fieldCase(t)
	r := refer(10.2, 202)
	r.Notifies = []sip.Notify{notifyFromSBC(10.3)}
	in.Calls[0].Refers = []*sip.Refer{r}
	in.Calls = append(in.Calls, newLeg("leg2", 10.25, strings.Trim(strings.Split(referTo, "?")[0], "<"), msProxy))
	fs := Run(in)
	d := one(t, fs, finding.ReferDeliveryFailed)
	if d.Evidence["attempts"] != 3 || d.Evidence["had_earlier_refer"] != true {
		t.Errorf("attempts=%v had_earlier_refer=%v, want the 3 after the REFER", d.Evidence["attempts"], d.Evidence["had_earlier_refer"])
	}
}

// busy SBC: five Microsoft calls are up during the failed burst. One is to
// the Auto Attendant and ends 2 s after the burst; two others happen to
// end within the give-up window too; two stay up. Only the first is
// blamed, and failed connections for OPTIONS earlier in the day are not
// pinned on anything.
func TestBusySBC(t *testing.T) {
	cs := newCerts(t)
	calls := []*sip.Call{
		msCall("c1", "+4930555001", 0, 300),
		msCall("c2", "+4930555002", 5, 44),  // ends 20 s after the burst
		msCall("c3", aaNumber, 12, 26),      // the AA call: 2 s after
		msCall("c4", "+4930555004", 15, 27), // ends 3 s after, not an AA
		msCall("c5", "+4930555005", 18, 0),  // still up at the end
		msCall("c6", "+4930555006", 200, 230),
	}
	ms := 12 * time.Millisecond
	conns := []*tlsaudit.Conn{
		failed(cs, 7001, -400, sbcFQDN, cs.dflt, ms), // before every call
		failed(cs, 7100, 23.0, sbcFQDN, cs.dflt, ms),
		failed(cs, 7101, 23.4, sbcFQDN, cs.dflt, ms),
		failed(cs, 7102, 23.9, sbcFQDN, cs.dflt, ms),
		conn(cs, netip.MustParseAddrPort("52.113.9.9:7200"), sbc, 100, sbcFQDN, cs.public, time.Second, true),
	}
	in := Input{Calls: calls, Conns: conns, TLSFindings: tlsFindings(conns...), Config: testConfig()}
	fs := Run(in)
	d := byRule(fs, finding.ReferDeliveryFailed)
	if len(d) != 1 || d[0].CallID != "c3" || d[0].Severity != finding.Critical {
		t.Fatalf("want c3 blamed once, got %v", rules(fs))
	}
	ev := d[0].Evidence
	if got := ev["other_candidates"].([]string); !slices.Equal(got, []string{"c4", "c2"}) {
		t.Errorf("other_candidates = %v, want c4 (ended soon) then c2", got)
	}
	if ev["why_this_call"] != "it is the only one to a number that expects a transfer" || ev["attempts"] != 3 || ev["calls_up"] != 5 {
		t.Errorf("why=%v attempts=%v calls_up=%v", ev["why_this_call"], ev["attempts"], ev["calls_up"])
	}
	// F1..F6 are the TLS findings of the 3 burst connections and the
	// early one; the blamed finding cites only the burst's.
	if want := []string{"F3", "F4", "F5", "F6", "F7", "F8"}; !slices.Equal(d[0].Cites[:6], want) || len(d[0].Cites) != 7 {
		t.Errorf("cites = %v, want %v + transfer_missing", d[0].Cites, want)
	}
	un := UnexplainedFailures(in)
	if len(un) != 1 || un[0].FirstSeen != at(-400) {
		t.Errorf("unexplained = %v, want the early one", un)
	}
	h := Hints(in)
	if len(h) != 1 || !strings.Contains(h[0], "1 inbound TLS connection from Microsoft (52.114.75.24) to 192.0.2.10") {
		t.Errorf("hints = %q", h)
	}
}

// Without the Auto Attendant call, c4 (3 s after) beats c2 (20 s after):
// only c4 ended within a quarter of the give-up window.
func TestBusySBCTiming(t *testing.T) {
	cs := newCerts(t)
	calls := []*sip.Call{
		msCall("c2", "+4930555002", 5, 44),
		msCall("c4", "+4930555004", 15, 27),
	}
	conns := []*tlsaudit.Conn{failed(cs, 7100, 23.0, sbcFQDN, cs.dflt, time.Millisecond), failed(cs, 7101, 23.4, sbcFQDN, cs.dflt, time.Millisecond)}
	fs := Run(Input{Calls: calls, Conns: conns, Config: testConfig()})
	d := one(t, fs, finding.ReferDeliveryFailed)
	if d.CallID != "c4" || !strings.Contains(d.Evidence["why_this_call"].(string), "alone ended within 15 s") {
		t.Errorf("blamed %q because %v", d.CallID, d.Evidence["why_this_call"])
	}
}

// Two calls that fit the same failed burst equally: one warning without a
// call id, both listed.
func TestAmbiguous(t *testing.T) {
	cs := newCerts(t)
	calls := []*sip.Call{
		msCall("a1", "+4930555001", 0, 33),
		msCall("a2", "+4930555002", 1, 33),
	}
	conns := []*tlsaudit.Conn{
		failed(cs, 7100, 30.0, sbcFQDN, cs.dflt, 10*time.Millisecond),
		failed(cs, 7101, 30.5, sbcFQDN, cs.dflt, 10*time.Millisecond),
	}
	in := Input{Calls: calls, Conns: conns, TLSFindings: tlsFindings(conns...), Config: testConfig()}
	fs := Run(in)
	wantRules(t, fs, "refer_delivery_failed/warning/")
	d := fs[0]
	if d.CallID != "" || d.ID != "F5" {
		t.Errorf("call id %q, id %s", d.CallID, d.ID)
	}
	if got := d.Evidence["candidate_call_ids"].([]string); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Errorf("candidates = %v", got)
	}
	if !slices.Equal(d.Cites, []string{"F1", "F2", "F3", "F4"}) || d.Evidence["attempts"] != 2 {
		t.Errorf("cites = %v attempts = %v", d.Cites, d.Evidence["attempts"])
	}
	if !strings.Contains(d.Summary, "2 calls that ended soon after fit equally and none can be singled out: a1, a2") ||
		!strings.Contains(d.Summary, "to the SBC (192.0.2.10) at 09:55:10 UTC;") {
		t.Errorf("summary: %s", d.Summary)
	}
	// Both to the Auto Attendant: still ambiguous, and both
	// transfer_missing findings say so.
	in.Config.ExpectTransfer = []string{"+4930555001", "+4930555002"}
	fs = Run(in)
	wantRules(t, fs, "refer_delivery_failed/warning/", "transfer_missing/warning/a1", "transfer_missing/warning/a2")
	for _, f := range byRule(fs, finding.TransferMissing) {
		if f.Evidence["possibly_explained_by"] != fs[0].ID || !slices.Contains(fs[0].Cites, f.ID) {
			t.Errorf("%s not linked with %s: %v", f.ID, fs[0].ID, fs[0].Cites)
		}
	}
}

// Failed connections outside every call's answered window explain
// nothing; a call still up at the end neither; the hint says so.
func TestFailuresOutsideCalls(t *testing.T) {
	cs := newCerts(t)
	calls := []*sip.Call{
		msCall("b1", aaNumber, 10, 40), // attempts before answer and after end
		msCall("b2", aaNumber, 50, 0),  // attempt during, but never ended
	}
	conns := []*tlsaudit.Conn{
		failed(cs, 7100, 5, sbcFQDN, cs.dflt, time.Millisecond),
		failed(cs, 7101, 45, sbcFQDN, cs.dflt, time.Millisecond),
		failed(cs, 7102, 60, sbcFQDN, cs.dflt, time.Millisecond),
	}
	in := Input{Calls: calls, Conns: conns, Config: testConfig()}
	fs := Run(in)
	wantRules(t, fs, "transfer_missing/warning/b1")
	if got := UnexplainedFailures(in); len(got) != 3 {
		t.Errorf("unexplained = %d", len(got))
	}
	h := Hints(in)
	if len(h) != 1 || !strings.Contains(h[0], "none of the 2 calls with Microsoft") {
		t.Errorf("hints = %q", h)
	}
	// A TLS-only input: nothing to blame, the hint says there are no calls.
	in.Calls = nil
	if fs := Run(in); len(fs) != 0 {
		t.Errorf("TLS only: %v", rules(fs))
	}
	if h := Hints(in); len(h) != 1 || !strings.Contains(h[0], "no call with Microsoft") {
		t.Errorf("hints = %q", h)
	}
}

// A call that ended long after the burst is not blamed.
func TestEndedTooLate(t *testing.T) {
	cs := newCerts(t)
	in := Input{
		Calls:  []*sip.Call{msCall("late", aaNumber, 0, 100)},
		Conns:  []*tlsaudit.Conn{failed(cs, 7100, 30, sbcFQDN, cs.dflt, time.Millisecond)},
		Config: testConfig(),
	}
	if got := byRule(Run(in), finding.ReferDeliveryFailed); len(got) != 0 {
		t.Errorf("blamed a call that ended 70 s later")
	}
}

// Failed connections to another SBC are not pinned on this SBC's call.
func TestOtherSBC(t *testing.T) {
	cs := newCerts(t)
	c := conn(cs, netip.AddrPortFrom(msRefer, 7100), sbcB, 20, "other.example", cs.dflt, time.Millisecond, false)
	in := Input{Calls: []*sip.Call{msCall("x", "+4930555001", 0, 23)}, Conns: []*tlsaudit.Conn{c}, Config: testConfig()}
	if fs := Run(in); len(fs) != 0 {
		t.Errorf("findings: %v", rules(fs))
	}
	// With the same addresses as one configured SBC (outside and inside
	// of NAT) it is the same SBC.
	in.Config.SBCs[0].Addresses = append(in.Config.SBCs[0].Addresses, sbcB.Addr().String())
	if fs := Run(in); len(byRule(fs, finding.ReferDeliveryFailed)) != 1 {
		t.Errorf("same SBC by config: %v", rules(fs))
	}
}

// Same input in any order gives the same findings, byte for byte.
func TestDeterministic(t *testing.T) {
	in := fieldCase(t)
	cs := newCerts(t)
	in.Calls = append(in.Calls,
		msCall("s1", "+4930555001", 1, 5),
		msCall("s2", "+4930555002", 1, 5, withBye("Q.850;cause=31", 31, "")),
		msCall("s3", aaNumber, 40, 44),
	)
	in.Conns = append(in.Conns, failed(cs, 7300, 41, sbcFQDN, cs.dflt, time.Millisecond))
	want, _ := json.Marshal(Run(in))
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		r.Shuffle(len(in.Calls), func(i, j int) { in.Calls[i], in.Calls[j] = in.Calls[j], in.Calls[i] })
		r.Shuffle(len(in.Conns), func(i, j int) { in.Conns[i], in.Conns[j] = in.Conns[j], in.Conns[i] })
		got, _ := json.Marshal(Run(in))
		if string(got) != string(want) {
			t.Fatalf("order changed the output:\n%s\n%s", got, want)
		}
	}
	if !strings.Contains(string(want), `"time":"2026-04-01T09:54:50Z"`) {
		t.Errorf("times must be UTC RFC 3339: %s", want)
	}
}

func TestIDsContinue(t *testing.T) {
	in := fieldCase(t)
	in.TLSFindings[0].ID = "F41"
	in.TLSFindings[1].ID = "X7"
	fs := Run(in)
	if fs[0].ID != "F42" || fs[2].ID != "F44" {
		t.Errorf("IDs %s..%s, want F42..F44", fs[0].ID, fs[2].ID)
	}
}

// tlsaudit groups certificate findings per listener and certificate;
// refer_delivery_failed must cite those too, and not the ones about
// another listener, another name or a reused connection ID.
func TestCitesGroupedTLSFindings(t *testing.T) {
	in := fieldCase(t)
	attempts := in.Conns[2:]
	dfp := attempts[0].Check.Fingerprint
	pfp := in.Conns[1].Check.Fingerprint
	var tf []*finding.Finding
	add := func(rule string, c time.Time, conn string, ev map[string]any) {
		f := finding.New(rule, finding.Critical, c, "x")
		f.ID = "F" + strconv.Itoa(len(tf)+1)
		f.Connection = conn
		for k, v := range ev {
			f.Evidence[k] = v
		}
		tf = append(tf, f)
	}
	for _, c := range attempts { // F1..F4
		add(finding.TLSHandshakeFailed, c.FirstSeen, c.ID, nil)
	}
	early := "52.114.75.24:7001->192.0.2.10:5061"
	add(finding.TLSCertUntrusted, at(-400), early, map[string]any{ // F5
		"listener": "192.0.2.10:5061", "fingerprint_sha256": dfp, "connection_ids": []string{early}})
	add(finding.TLSCertNameMismatch, at(-400), early, map[string]any{ // F6
		"listener": "192.0.2.10:5061", "fingerprint_sha256": dfp, "name": sbcFQDN, "connection_ids": []string{early}})
	add(finding.TLSCertNameMismatch, at(-300), "z", map[string]any{ // F7
		"listener": "192.0.2.10:5061", "fingerprint_sha256": dfp, "name": "other.example", "connection_ids": []string{"z"}})
	add(finding.TLSCertInconsistent, at(-400), early, map[string]any{ // F8
		"listener": "192.0.2.10:5061", "sni": sbcFQDN, "fingerprints": []map[string]any{
			{"fingerprint_sha256": pfp, "count": 9}, {"fingerprint_sha256": dfp, "count": 4}}})
	add(finding.TLSCertUntrusted, at(-400), "y", map[string]any{ // F9
		"listener": "198.51.100.20:5061", "fingerprint_sha256": dfp, "connection_ids": []string{"y"}})
	add(finding.TLSHandshakeFailed, at(3600), attempts[0].ID, nil) // F10: port reused an hour later
	in.TLSFindings = tf
	fs := Run(in)
	d := one(t, fs, finding.ReferDeliveryFailed)
	tm := one(t, fs, finding.TransferMissing)
	want := []string{"F1", "F2", "F3", "F4", "F5", "F6", "F8", tm.ID}
	if d.ID != "F11" || !slices.Equal(d.Cites, want) {
		t.Errorf("%s cites %v, want %v", d.ID, d.Cites, want)
	}
}

// A busy day: many calls and failed connections stay fast (the rules
// index by time rather than comparing every call with every connection).
func BenchmarkBusyDay(b *testing.B) {
	cs := newCerts(&testing.T{})
	var in Input
	in.Config = testConfig()
	for i := range 20000 {
		s := float64(i)
		in.Calls = append(in.Calls, msCall("c"+strconv.Itoa(i), "+4930555"+strconv.Itoa(i), s, s+120))
		in.Conns = append(in.Conns, failed(cs, uint16(1024+i%60000), s+0.5, sbcFQDN, nil, time.Millisecond))
	}
	for b.Loop() {
		Run(in)
	}
}

// Many equal candidates: the summary names five and counts the rest.
func TestAmbiguousMany(t *testing.T) {
	cs := newCerts(t)
	var calls []*sip.Call
	for i := range 8 {
		calls = append(calls, msCall("m"+strconv.Itoa(i), "+4930555001", float64(i), 33))
	}
	conns := []*tlsaudit.Conn{failed(cs, 7100, 30.0, sbcFQDN, cs.dflt, time.Millisecond)}
	fs := Run(Input{Calls: calls, Conns: conns, Config: testConfig()})
	d := one(t, fs, finding.ReferDeliveryFailed)
	if d.CallID != "" || d.Evidence["candidates_total"] != 8 || len(d.Evidence["candidate_call_ids"].([]string)) != 8 ||
		!strings.Contains(d.Summary, "8 calls that ended soon after fit equally and none can be singled out: m0, m1, m2, m3, m4 and 3 more.") {
		t.Errorf("%v\n%s", d.Evidence["candidates_total"], d.Summary)
	}
}

// A failed attempt whose retry got through (a REFER reached the SBC
// within the retry gap) is one recovered delivery: no call is blamed,
// not even another call that was up and ended soon after.
func TestRecoveredRetryBlamesNoCall(t *testing.T) {
	cs := newCerts(t)
	transferred := msCall("c1", aaNumber, 0, 30, withRefer(refer(20.4, 202)))
	bystander := msCall("c2", "+4930555002", 5, 25)
	conns := []*tlsaudit.Conn{failed(cs, 7100, 20.0, sbcFQDN, cs.dflt, time.Millisecond)}
	fs := Run(Input{Calls: []*sip.Call{transferred, bystander}, Conns: conns, TLSFindings: tlsFindings(conns...), Config: testConfig()})
	if d := byRule(fs, finding.ReferDeliveryFailed); len(d) != 0 {
		t.Fatalf("recovered delivery blamed: %v", d[0].Summary)
	}
	// Without the REFER, the bystander fits and is blamed.
	transferred.Refers = nil
	fs = Run(Input{Calls: []*sip.Call{transferred, bystander}, Conns: conns, TLSFindings: tlsFindings(conns...), Config: testConfig()})
	if d := byRule(fs, finding.ReferDeliveryFailed); len(d) != 1 {
		t.Fatalf("lost delivery not reported: %v", rules(fs))
	}
}
