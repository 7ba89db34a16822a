package correlate

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// wire is one SIP message as the tap would hand it over.
type wire struct {
	sec      float64
	src, dst netip.AddrPort
	text     string
}

// track runs messages through the real parser and tracker, the way
// analyze does, and returns the calls.
func track(t *testing.T, msgs []wire) []*sip.Call {
	t.Helper()
	cfg := testConfig()
	tr := sip.NewTracker(sip.TrackerOptions{IsMicrosoft: cfg.IsMicrosoft, IsMicrosoftHost: cfg.IsMicrosoftHost, IsSBC: cfg.IsSBCAddr})
	p := sip.NewParser(0)
	for _, w := range msgs {
		raw := strings.ReplaceAll(strings.TrimLeft(w.text, "\n"), "\n", "\r\n")
		if !strings.Contains(raw, "\r\n\r\n") {
			raw += "\r\n"
		}
		m, err := p.ParseDatagram(sip.MessageMeta{Time: at(w.sec), Src: w.src, Dst: w.dst, Transport: "tls", Origin: "wire"}, []byte(raw))
		if err != nil {
			t.Fatalf("%v:\n%s", err, raw)
		}
		tr.Observe(m)
	}
	return tr.Close()
}

func sipReq(method, ruri, callID string, cseq int, fromTag, toTag, extra string, body string) string {
	to := "<sip:+4969987654@sip.pstnhub.microsoft.com>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	return fmt.Sprintf(`
%s %s SIP/2.0
Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK%s%d%s
Max-Forwards: 70
From: <sip:+4930111222@sbc.contoso.example>;tag=%s
To: %s
Call-ID: %s
CSeq: %d %s
%sContent-Length: %d

%s`, method, ruri, callID, cseq, method, fromTag, to, callID, cseq, method, extra, len(body), body)
}

func sipResp(code int, reason, method, callID string, cseq int, fromTag, toTag, extra string) string {
	return fmt.Sprintf(`
SIP/2.0 %d %s
Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK%s%d%s
From: <sip:+4930111222@sbc.contoso.example>;tag=%s
To: <sip:+4969987654@sip.pstnhub.microsoft.com>;tag=%s
Call-ID: %s
CSeq: %d %s
%sContent-Length: 0
`, code, reason, callID, cseq, method, fromTag, toTag, callID, cseq, method, extra)
}

const sbcHeaders = "Contact: <sip:sbc.contoso.example:5061;transport=tls>\nAllow: INVITE, ACK, CANCEL, BYE, REFER, NOTIFY, OPTIONS\n"

// msReq is a request from Microsoft within an SBC-initiated dialog.
func msReq(method, callID string, cseq int, extra, body string) string {
	return fmt.Sprintf(`
%s sip:sbc.contoso.example:5061;transport=tls SIP/2.0
Via: SIP/2.0/TLS 52.114.14.70:5061;branch=z9hG4bKms%s%d
Max-Forwards: 70
From: <sip:+4969987654@sip.pstnhub.microsoft.com>;tag=ms-%s
To: <sip:+4930111222@sbc.contoso.example>;tag=sbc-%s
Call-ID: %s
CSeq: %d %s
%sContent-Length: %d

%s`, method, callID, cseq, callID, callID, callID, cseq, method, extra, len(body), body)
}

func msResp(code int, reason, method, callID string, cseq int) string {
	return fmt.Sprintf(`
SIP/2.0 %d %s
Via: SIP/2.0/TLS 52.114.14.70:5061;branch=z9hG4bKms%s%d
From: <sip:+4969987654@sip.pstnhub.microsoft.com>;tag=ms-%s
To: <sip:+4930111222@sbc.contoso.example>;tag=sbc-%s
Call-ID: %s
CSeq: %d %s
Content-Length: 0
`, code, reason, callID, cseq, callID, callID, callID, cseq, method)
}

// The field case and a working transfer, from SIP text through the real
// parser and tracker: only the field call gets findings.
func TestEndToEndWithTracker(t *testing.T) {
	out := netip.MustParseAddrPort("192.0.2.10:40001")
	up := func(sec float64, text string) wire { return wire{sec, out, msProxy, text} }
	down := func(sec float64, text string) wire { return wire{sec, msProxy, out, text} }
	aa := "sip:+4969987654@sip.pstnhub.microsoft.com:5061;user=phone"
	target := "sip:sip.pstnhub.microsoft.com;x-m=8:orgid:abc;x-t=tenant1"
	msgs := []wire{
		// e2e-1: the field case.
		up(0, sipReq("INVITE", aa, "e2e-1", 1, "sbc-e2e-1", "", sbcHeaders, "")),
		down(1.5, sipResp(200, "OK", "INVITE", "e2e-1", 1, "sbc-e2e-1", "ms-e2e-1", "Contact: <sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls>\n")),
		up(1.6, sipReq("ACK", "sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls", "e2e-1", 1, "sbc-e2e-1", "ms-e2e-1", "", "")),
		up(27, sipReq("BYE", "sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls", "e2e-1", 2, "sbc-e2e-1", "ms-e2e-1",
			"Reason: Q.850 ;cause=22 ;text=\"0c9e4a1e;MediaError\"\n", "")),
		down(27.1, sipResp(200, "OK", "BYE", "e2e-1", 2, "sbc-e2e-1", "ms-e2e-1", "")),

		// e2e-2: REFER 202, new INVITE to the Refer-To, NOTIFY, BYE.
		up(100, sipReq("INVITE", aa, "e2e-2", 1, "sbc-e2e-2", "", sbcHeaders, "")),
		down(101, sipResp(200, "OK", "INVITE", "e2e-2", 1, "sbc-e2e-2", "ms-e2e-2", "Contact: <sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls>\n")),
		up(101.1, sipReq("ACK", "sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls", "e2e-2", 1, "sbc-e2e-2", "ms-e2e-2", "", "")),
		down(110, msReq("REFER", "e2e-2", 1, "Refer-To: <"+target+">\nReferred-By: <sip:sip.pstnhub.microsoft.com;x-m=8:orgid:aa1>\n", "")),
		up(110.05, msResp(202, "Accepted", "REFER", "e2e-2", 1)),
		up(110.1, sipReq("INVITE", target, "e2e-3", 1, "sbc-e2e-3", "", sbcHeaders+"Referred-By: <sip:sip.pstnhub.microsoft.com;x-m=8:orgid:aa1>\n", "")),
		up(110.2, sipReq("NOTIFY", "sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls", "e2e-2", 2, "sbc-e2e-2", "ms-e2e-2",
			"Event: refer;id=1\nSubscription-State: terminated;reason=noresource\nContent-Type: message/sipfrag\n", "SIP/2.0 200 OK")),
		down(111, sipResp(200, "OK", "NOTIFY", "e2e-2", 2, "sbc-e2e-2", "ms-e2e-2", "")),
		down(112, msReq("BYE", "e2e-2", 2, "", "")),
		up(112.1, msResp(200, "OK", "BYE", "e2e-2", 2)),
		down(113, sipResp(200, "OK", "INVITE", "e2e-3", 1, "sbc-e2e-3", "ms-e2e-3", "Contact: <sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls>\n")),
		up(113.1, sipReq("ACK", "sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls", "e2e-3", 1, "sbc-e2e-3", "ms-e2e-3", "", "")),
		up(200, sipReq("BYE", "sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls", "e2e-3", 2, "sbc-e2e-3", "ms-e2e-3", "Reason: Q.850;cause=16\n", "")),
	}
	calls := track(t, msgs)
	if len(calls) != 3 {
		t.Fatalf("tracker gave %d calls", len(calls))
	}
	cs := newCerts(t)
	var conns []*tlsaudit.Conn
	for i, sec := range []float64{11.5, 11.9, 12.4, 24} {
		conns = append(conns, failed(cs, uint16(8576+i), sec, sbcFQDN, cs.dflt, 16*time.Millisecond))
	}
	fs := Run(Input{Calls: calls, Conns: conns, TLSFindings: tlsFindings(conns...), Config: testConfig()})
	wantRules(t, fs, "refer_delivery_failed/critical/e2e-1", "media_error_bye/warning/e2e-1", "transfer_missing/warning/e2e-1")
	d := one(t, fs, finding.ReferDeliveryFailed)
	if d.Evidence["attempts"] != 4 || d.Evidence["seconds_last_attempt_to_end"] != 3.0 ||
		d.Evidence["dialog_end"].(map[string]any)["by"] != "the SBC" {
		t.Errorf("evidence %v", d.Evidence)
	}
	// What the tracker told us, which the rules rely on.
	if calls[2].CallID != "e2e-3" || calls[2].ReferredFrom != "e2e-2" || calls[1].Refers[0].NewCallID != "e2e-3" {
		t.Errorf("referred leg not linked: %+v", calls[2])
	}
	for _, c := range calls {
		if !c.Microsoft || c.SBCSide.Addr() != sbc.Addr() || !c.SBCAllowSeen {
			t.Errorf("%s: microsoft=%v sbcside=%v allowseen=%v", c.CallID, c.Microsoft, c.SBCSide, c.SBCAllowSeen)
		}
	}
}
