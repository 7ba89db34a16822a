package correlate

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/audiocodes/syslog"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// fieldLog is the AudioCodes log of docs/field-evidence.md §1 verbatim,
// then the same pattern three more times (0.3 s, 0.7 s and 12.7 s later)
// with the next ports, socket ids and handles.
func fieldLog(t *testing.T, extra string) []*syslog.Socket {
	t.Helper()
	b, err := os.ReadFile("../audiocodes/syslog/testdata/field-evidence.log")
	if err != nil {
		t.Fatal(err)
	}
	block := string(b)
	var log strings.Builder
	for i, ms := range []int{716, 1016, 1416, 13416} {
		x := strings.NewReplacer("8576", fmt.Sprint(8576+i), "7535", fmt.Sprint(7535+i),
			"(#1528)", fmt.Sprintf("(#%d)", 1528+i)).Replace(block)
		for _, old := range []int{716, 717, 732} {
			n := old - 716 + ms
			x = strings.ReplaceAll(x, fmt.Sprintf("09:55:04.%03d]", old), fmt.Sprintf("09:55:%02d.%03d]", 4+n/1000, n%1000))
		}
		log.WriteString(x)
	}
	log.WriteString(extra)
	res, err := syslog.Parse(strings.NewReader(log.String()), syslog.Options{Year: 2026})
	if err != nil {
		t.Fatal(err)
	}
	return res.Sockets
}

// A Microsoft socket that matched the Teams proxy set (1) with context 2.
const teamsAccept = `09:56:00.000 New SIPSocketReliable created - (#1700) - SocketID=7700 [Time:04-01@09:56:00.000]
09:56:00.000 AllowlistManager: Adding TCPTLSSocket Remote IP: 52.112.5.5, Port: 3000, Interface ID: 0, Local Port: 5061, Protocol: 6 succeeded [Time:04-01@09:56:00.000]
09:56:00.000 SIPAppMngr::GetTlsContextIdForIpAddress: ProxySetId = 1, SIPInterface = 0, ContextID = 2 [Time:04-01@09:56:00.000]
09:56:00.000 SIPListeningSocketTLS(#0)::AcceptNewConnection - Incoming connection from 52.112.5.5:3000 accepted. SocketID=7700 [Time:04-01@09:56:00.001]
`

// A carrier socket with ProxySetId -1: not Microsoft, never judged.
const carrierAccept = `09:57:00.000 SIPAppMngr::GetTlsContextIdForIpAddress: ProxySetId = -1, SIPInterface = 0, ContextID = 0 [Time:04-01@09:57:00.000]
09:57:00.000 SIPListeningSocketTLS(#0)::AcceptNewConnection - Incoming connection from 203.0.113.5:4000 accepted. SocketID=7800 [Time:04-01@09:57:00.001]
`

func TestTLSContextWrongFieldLog(t *testing.T) {
	sockets := fieldLog(t, carrierAccept)
	if len(sockets) != 5 {
		t.Fatalf("fixture: %d sockets", len(sockets))
	}
	fs := Run(Input{SBCSockets: sockets, Config: testConfig()})
	wantRules(t, fs, "tls_context_wrong/critical/")
	f := fs[0]
	ev := f.Evidence
	if f.ID != "F1" || ev["peer"] != "52.114.75.24:8576" || ev["socket_id"] != 7535 || ev["proxy_set_id"] != -1 || ev["context_id"] != 0 ||
		ev["connections"] != 4 || ev["teams_context_id"] != nil {
		t.Errorf("evidence %v", ev)
	}
	if ids := ev["socket_ids"].([]int); !slices.Equal(ids, []int{7535, 7536, 7537, 7538}) {
		t.Errorf("socket_ids %v", ids)
	}
	lines := ev["log_lines"].([]string)
	if len(lines) != 19 || !slices.ContainsFunc(lines, func(s string) bool {
		return strings.Contains(s, "GetTlsContextIdForIpAddress: ProxySetId = -1, SIPInterface = 0, ContextID = 0")
	}) {
		t.Errorf("log_lines %q", lines)
	}
	for _, s := range []string{
		"chose TLS context 0 for 4 inbound connections from Microsoft (52.114.75.24, sockets 7535, 7536, 7537, 7538)",
		"matched no proxy set (ProxySetId = -1)",
		"Microsoft closed each within 15 ms without sending any SIP",
	} {
		if !strings.Contains(f.Summary, s) {
			t.Errorf("summary lacks %q:\n%s", s, f.Summary)
		}
	}
	if want := time.Date(2026, 1, 4, 9, 55, 4, 717e6, time.UTC); !f.Time.Equal(want) {
		t.Errorf("time %v", f.Time)
	}
}

func TestTLSContextWrongTeamsContext(t *testing.T) {
	// The fallback context is the Teams one: nothing wrong was chosen.
	zero := 0
	if fs := Run(Input{SBCSockets: fieldLog(t, ""), TeamsContextID: &zero, Config: testConfig()}); len(fs) != 0 {
		t.Errorf("context 0 is Teams': %v", rules(fs))
	}
	// Inferred from a Microsoft socket that matched proxy set 1 → 2.
	fs := Run(Input{SBCSockets: fieldLog(t, teamsAccept), Config: testConfig()})
	f := one(t, fs, finding.TLSContextWrong)
	if f.Evidence["teams_context_id"] != 2 || f.Evidence["teams_context_inferred"] != true || !strings.Contains(f.Summary, "instead of the Teams context 2") {
		t.Errorf("%v\n%s", f.Evidence, f.Summary)
	}
	// Told the Teams context is 3: the proxy-set socket with context 2 is
	// wrong too, as its own finding.
	three := 3
	fs = Run(Input{SBCSockets: fieldLog(t, teamsAccept), TeamsContextID: &three, Config: testConfig()})
	got := byRule(fs, finding.TLSContextWrong)
	if len(got) != 2 || got[1].Evidence["proxy_set_id"] != 1 || !strings.Contains(got[1].Summary, "through proxy set 1, but the Teams context is 3") {
		t.Errorf("%v", rules(fs))
	}
}

// Log, capture and calls together: refer_delivery_failed cites the
// tls_context_wrong finding about the same connections.
func TestTLSContextWrongWithCapture(t *testing.T) {
	sockets := fieldLog(t, "")
	cs := newCerts(t)
	var conns []*tlsaudit.Conn
	for i, s := range sockets {
		c := failed(cs, uint16(8576+i), 0, sbcFQDN, cs.dflt, 16*time.Millisecond)
		c.FirstSeen, c.LastSeen = s.Accepted, s.Closed
		conns = append(conns, c)
	}
	call := msCall("log-1", aaNumber, 0, 0)
	call.Answer = sockets[0].Accepted.Add(-10 * time.Second)
	call.Start = call.Answer.Add(-2 * time.Second)
	call.End = sockets[3].Accepted.Add(3 * time.Second)
	call.Last = call.End
	call.EndedBy, call.EndedByAddr, call.EndReason = "caller", sbc, "BYE"
	in := Input{Calls: []*sip.Call{call}, Conns: conns, SBCSockets: sockets, TLSFindings: tlsFindings(conns...), Config: testConfig()}
	fs := Run(in)
	wantRules(t, fs, "refer_delivery_failed/critical/log-1", "tls_context_wrong/critical/", "transfer_missing/warning/log-1")
	cw := one(t, fs, finding.TLSContextWrong)
	d := one(t, fs, finding.ReferDeliveryFailed)
	if d.Evidence["attempts"] != 4 {
		t.Errorf("captured connections counted twice: %v attempts", d.Evidence["attempts"])
	}
	if !slices.Contains(d.Cites, cw.ID) || len(cw.Evidence["connection_ids"].([]string)) != 4 || cw.Connection != conns[0].ID {
		t.Errorf("cites %v, context finding %s: %v", d.Cites, cw.ID, cw.Evidence["connection_ids"])
	}
	// Sorted by severity then time: the delivery finding (first attempt)
	// and the context finding (same instant) come before the warning.
	if fs[2].Rule != finding.TransferMissing {
		t.Errorf("order %v", rules(fs))
	}
}

// The SBC's log alone (no capture): its sockets stand in for the failed
// connections, so the field case is found from the log and the calls.
func TestDeliveryFromLogOnly(t *testing.T) {
	sockets := fieldLog(t, teamsAccept)
	call := msCall("log-2", aaNumber, 0, 0)
	call.Answer = sockets[0].Accepted.Add(-10 * time.Second)
	call.Start = call.Answer.Add(-2 * time.Second)
	call.End = sockets[3].Accepted.Add(3 * time.Second)
	call.Last = call.End
	call.EndedBy, call.EndedByAddr, call.EndReason = "caller", sbc, "BYE"
	in := Input{Calls: []*sip.Call{call}, SBCSockets: sockets, Config: testConfig()}
	fs := Run(in)
	wantRules(t, fs, "refer_delivery_failed/critical/log-2", "tls_context_wrong/critical/", "transfer_missing/warning/log-2")
	d := one(t, fs, finding.ReferDeliveryFailed)
	cw := one(t, fs, finding.TLSContextWrong)
	fc := d.Evidence["failed_connections"].([]map[string]any)
	if d.Evidence["attempts"] != 4 || fc[0]["source"] != "sbc_log" || fc[0]["connection"] != "52.114.75.24:8576->192.0.2.10:5061" || !slices.Contains(d.Cites, cw.ID) {
		t.Errorf("attempts %v, %v, cites %v", d.Evidence["attempts"], fc[0], d.Cites)
	}
	if !strings.Contains(d.Summary, "during the call (as the SBC's log shows); Microsoft aborted each within 15 ms") {
		t.Errorf("summary %s", d.Summary)
	}
	// The socket that matched the Teams proxy set is not a failure.
	if un := UnexplainedFailures(in); len(un) != 0 {
		t.Errorf("unexplained %v", un)
	}
}
