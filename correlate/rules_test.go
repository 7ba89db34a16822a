package correlate

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// referTarget is referTo without brackets and escaped headers: what the
// SBC must put in the Request-URI.
const referTarget = "sip:sip.pstnhub.microsoft.com;x-m=8:orgid:0a1b2c;x-t=9f8e7d"

// A working transfer: REFER 202, NOTIFY from the SBC, new INVITE to the
// Refer-To at a Microsoft proxy (host case and parameter order changed),
// original call ends after 9 s. No finding at all, not even short_call.
func TestWorkingTransfer(t *testing.T) {
	cs := newCerts(t)
	r := refer(7, 202)
	r.Notifies = []sip.Notify{
		{Time: at(7.1), Src: msProxy, Dst: sbc}, // not the SBC's: ignored
		notifyFromSBC(7.2),
	}
	orig := msCall("orig", aaNumber, 0, 9, withRefer(r))
	orig.EndedBy, orig.EndedByAddr = "callee", msProxy
	leg := newLeg("leg", 7.15, "sip:SIP.PSTNHUB.Microsoft.COM;x-t=9F8E7D;x-m=8:orgid:0a1b2c", msProxy)
	leg.Last = at(60)
	ok := conn(cs, netip.MustParseAddrPort("52.114.75.24:9000"), sbc, 6.9, sbcFQDN, cs.public, time.Minute, true)
	in := Input{Calls: []*sip.Call{orig, leg}, Conns: []*tlsaudit.Conn{ok}, Config: testConfig()}
	if fs := Run(in); len(fs) != 0 {
		t.Fatalf("working transfer gave %v: %s", rules(fs), fs[0].Summary)
	}
	// The same with an escaped header and angle brackets in the R-URI.
	leg.RequestURI = "<" + referTarget + "?Replaces=abc>"
	if fs := Run(in); len(fs) != 0 {
		t.Fatalf("brackets/headers: %v", rules(fs))
	}
	// Without the Allow header's REFER the call would not have had one;
	// here Allow is fine, so dropping REFER from it is the only finding.
	orig.SBCAllow = "INVITE, ACK, BYE"
	fs := Run(in)
	wantRules(t, fs, "refer_not_allowed/info/orig")
}

func TestReferRules(t *testing.T) {
	const userReferTo = "<sip:+4930999@sip.pstnhub.microsoft.com;user=phone>"
	type tc struct {
		name  string
		refer func() *sip.Refer
		legs  []*sip.Call
		end   float64 // of the original call; the capture runs to 60 s
		want  []string
		check func(t *testing.T, fs []*finding.Finding)
	}
	cases := []tc{{
		name:  "rejected 403",
		refer: func() *sip.Refer { return refer(7, 403) },
		end:   30,
		want:  []string{"refer_rejected/critical/o"},
		check: func(t *testing.T, fs []*finding.Finding) {
			f := fs[0]
			if f.Evidence["response_code"] != 403 || f.Evidence["response_reason"] != "Forbidden" || f.Evidence["refer_to"] != referTo {
				t.Errorf("evidence %v", f.Evidence)
			}
			if !strings.Contains(f.Summary, "(REFER to "+referTarget+") with 403 Forbidden") || !f.Time.Equal(at(7.05)) {
				t.Errorf("summary %q time %v", f.Summary, f.Time)
			}
		},
	}, {
		name: "accepted, never followed",
		refer: func() *sip.Refer {
			r := refer(7, 202)
			r.Notifies = []sip.Notify{notifyFromSBC(7.2)}
			return r
		},
		legs: []*sip.Call{newLeg("other", 8, "sip:+4930777@sip.pstnhub.microsoft.com", msProxy)},
		end:  30,
		want: []string{"refer_not_followed/critical/o"},
		check: func(t *testing.T, fs []*finding.Finding) {
			f := fs[0]
			if f.Evidence["what_followed"] != "nothing" || len(f.Evidence["followed_by"].([]map[string]any)) != 0 {
				t.Errorf("evidence %v", f.Evidence)
			}
			if !strings.Contains(f.Summary, "no new INVITE to that target within 10 s") || !f.Time.Equal(at(17.05)) {
				t.Errorf("summary %q time %v", f.Summary, f.Time)
			}
		},
	}, {
		name: "followed to a non-Microsoft host",
		refer: func() *sip.Refer {
			r := refer(7, 202)
			r.Notifies = []sip.Notify{notifyFromSBC(7.2)}
			return r
		},
		legs: []*sip.Call{newLeg("pstn", 7.3, referTarget, carrier)},
		end:  30,
		want: []string{"refer_not_followed/critical/o"},
		check: func(t *testing.T, fs []*finding.Finding) {
			f := fs[0]
			fb := f.Evidence["followed_by"].([]map[string]any)
			if f.Evidence["what_followed"] != "INVITE to a non-Microsoft destination" || len(fb) != 1 || fb[0]["call_id"] != "pstn" || fb[0]["to_microsoft"] != false {
				t.Errorf("evidence %v", f.Evidence)
			}
			if !strings.Contains(f.Summary, "203.0.113.5:5060, which is not a Microsoft proxy") {
				t.Errorf("summary %q", f.Summary)
			}
		},
	}, {
		name: "number sent to the carrier instead of back to Microsoft",
		refer: func() *sip.Refer {
			r := refer(7, 202)
			r.ReferTo = userReferTo
			r.Notifies = []sip.Notify{notifyFromSBC(7.2)}
			return r
		},
		legs: []*sip.Call{newLeg("pstn", 7.3, "sip:4930999@carrier.example;user=phone", carrier)},
		end:  30,
		want: []string{"refer_not_followed/critical/o"},
		check: func(t *testing.T, fs []*finding.Finding) {
			if !strings.Contains(fs[0].Summary, "sent the transfer to 203.0.113.5:5060") {
				t.Errorf("summary %q", fs[0].Summary)
			}
		},
	}, {
		name: "back to Microsoft but not the exact Refer-To",
		refer: func() *sip.Refer {
			r := refer(7, 202)
			r.ReferTo = userReferTo
			r.Notifies = []sip.Notify{notifyFromSBC(7.2)}
			return r
		},
		legs: []*sip.Call{newLeg("ms", 7.3, "sip:+4930999@sip.pstnhub.microsoft.com", msProxy)},
		end:  30,
		want: []string{"refer_not_followed/critical/o"},
		check: func(t *testing.T, fs []*finding.Finding) {
			if fs[0].Evidence["what_followed"] != "INVITE to a Microsoft proxy with a Request-URI other than the Refer-To" {
				t.Errorf("evidence %v", fs[0].Evidence)
			}
		},
	}, {
		name: "linked by Referred-By, rewritten and sent to the carrier",
		refer: func() *sip.Refer {
			r := refer(7, 202)
			r.Notifies = []sip.Notify{notifyFromSBC(7.2)}
			r.NewCallID, r.NewInviteTime, r.NewInviteSrc, r.NewInviteDst = "pstn", at(7.3), sbc, carrier
			r.NewInviteURI = "sip:+4930888@carrier.example"
			return r
		},
		end:  30,
		want: []string{"refer_not_followed/critical/o"},
		check: func(t *testing.T, fs []*finding.Finding) {
			fb := fs[0].Evidence["followed_by"].([]map[string]any)
			if len(fb) != 1 || fb[0]["call_id"] != "pstn" || !strings.Contains(fs[0].Summary, "sent the transfer to 203.0.113.5:5060 (Request-URI sip:+4930888@carrier.example)") {
				t.Errorf("%v\n%s", fb, fs[0].Summary)
			}
		},
	}, {
		name:  "followed, no NOTIFY",
		refer: func() *sip.Refer { return refer(7, 202) },
		legs:  []*sip.Call{newLeg("leg", 7.3, referTarget, msProxy)},
		end:   30,
		want:  []string{"refer_no_notify/warning/o"},
		check: func(t *testing.T, fs []*finding.Finding) {
			if fs[0].Evidence["late_notify"] != nil || !fs[0].Time.Equal(at(17.05)) {
				t.Errorf("evidence %v time %v", fs[0].Evidence, fs[0].Time)
			}
		},
	}, {
		name: "followed, NOTIFY too late",
		refer: func() *sip.Refer {
			r := refer(7, 202)
			r.Notifies = []sip.Notify{notifyFromSBC(25)}
			return r
		},
		legs: []*sip.Call{newLeg("leg", 7.3, referTarget, msProxy)},
		end:  30,
		want: []string{"refer_no_notify/warning/o"},
		check: func(t *testing.T, fs []*finding.Finding) {
			if fs[0].Evidence["late_notify"] != at(25) {
				t.Errorf("late_notify %v", fs[0].Evidence["late_notify"])
			}
		},
	}, {
		name: "followed, only a NOTIFY from Microsoft",
		refer: func() *sip.Refer {
			r := refer(7, 202)
			r.Notifies = []sip.Notify{{Time: at(7.5), Src: msProxy, Dst: sbc, SipFrag: "SIP/2.0 200 OK"}}
			return r
		},
		legs: []*sip.Call{newLeg("leg", 7.3, referTarget, msProxy)},
		end:  30,
		want: []string{"refer_no_notify/warning/o"},
	}, {
		name:  "REFER just before the capture ends: window not elapsed",
		refer: func() *sip.Refer { return refer(55, 202) },
		end:   0,
		want:  nil,
	}, {
		name: "REFER sent by the SBC to Microsoft is not judged",
		refer: func() *sip.Refer {
			r := refer(7, 403)
			r.Src, r.Dst = sbc, msProxy
			return r
		},
		end:  30,
		want: nil,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			orig := msCall("o", "+4930555001", 0, c.end, withRefer(c.refer()))
			calls := append([]*sip.Call{orig}, c.legs...)
			// Something at 60 s makes that the end of the capture.
			calls = append(calls, &sip.Call{CallID: "options", Kind: "options", Start: at(60), Last: at(60)})
			fs := Run(Input{Calls: calls, Config: testConfig()})
			wantRules(t, fs, c.want...)
			if c.check != nil {
				c.check(t, fs)
			}
		})
	}
}

func TestCallRules(t *testing.T) {
	cs := newCerts(t)
	public := conn(cs, netip.MustParseAddrPort("52.114.7.24:9001"), sbc, 1, sbcFQDN, cs.public, time.Minute, true)
	deflt := failed(cs, 9002, 1, sbcFQDN, cs.dflt, time.Millisecond)
	type tc struct {
		name  string
		call  *sip.Call
		conns []*tlsaudit.Conn
		want  []string
		check func(t *testing.T, f *finding.Finding)
	}
	contact := func(s string) callOpt { return func(c *sip.Call) { c.SBCContact = s } }
	allow := func(s string, seen bool) callOpt {
		return func(c *sip.Call) { c.SBCAllow, c.SBCAllowSeen = s, seen }
	}
	cases := []tc{
		{name: "normal call", call: msCall("c", "+4930555001", 0, 120, withBye("Q.850;cause=16", 16, "")), conns: []*tlsaudit.Conn{public}},
		{name: "Allow without REFER", call: msCall("c", "+4930555001", 0, 120, allow("INVITE, ACK, CANCEL, BYE, OPTIONS", true)),
			want: []string{"refer_not_allowed/info/c"},
			check: func(t *testing.T, f *finding.Finding) {
				if f.Evidence["allow"] != "INVITE, ACK, CANCEL, BYE, OPTIONS" || !strings.Contains(f.Summary, "lacks REFER") {
					t.Errorf("%v %q", f.Evidence, f.Summary)
				}
			}},
		{name: "Allow with lower-case refer", call: msCall("c", "+4930555001", 0, 120, allow("invite,refer", true))},
		{name: "no Allow header", call: msCall("c", "+4930555001", 0, 120, allow("", true)), want: []string{"refer_not_allowed/info/c"}},
		{name: "Allow not seen", call: msCall("c", "+4930555001", 0, 120, allow("", false))},
		{name: "Contact IPv4", call: msCall("c", "+4930555001", 0, 120, contact("<sip:192.0.2.10:5061;transport=tls>")),
			want: []string{"contact_not_fqdn/warning/c"},
			check: func(t *testing.T, f *finding.Finding) {
				if f.Evidence["contact_host"] != "192.0.2.10" || f.Evidence["ip_literal"] != true || f.Evidence["contact"] != "<sip:192.0.2.10:5061;transport=tls>" {
					t.Errorf("%v", f.Evidence)
				}
			}},
		{name: "Contact IPv6", call: msCall("c", "+4930555001", 0, 120, contact("sip:+4930111222@[2001:db8::10]:5061;transport=tls")),
			want: []string{"contact_not_fqdn/warning/c"}},
		{name: "Contact not covered by the served certificate", call: msCall("c", "+4930555001", 0, 120, contact("<sip:sbc2.contoso.example:5061>")),
			conns: []*tlsaudit.Conn{public, deflt},
			want:  []string{"contact_not_fqdn/warning/c"},
			check: func(t *testing.T, f *finding.Finding) {
				names, _ := f.Evidence["cert_names"].([]string)
				if len(names) != 1 || names[0] != sbcFQDN || f.Evidence["ip_literal"] != false || !strings.Contains(f.Summary, "sbc2.contoso.example is not covered") {
					t.Errorf("%v %q", f.Evidence, f.Summary)
				}
			}},
		{name: "Contact covered (host case differs)", call: msCall("c", "+4930555001", 0, 120, contact("<sip:SBC.Contoso.Example:5061>")), conns: []*tlsaudit.Conn{public}},
		{name: "Contact judged only against completed handshakes", call: msCall("c", "+4930555001", 0, 120), conns: []*tlsaudit.Conn{deflt}},
		{name: "BYE cause 22 MediaError", call: msCall("c", "+4930555001", 0, 120, withBye(`Q.850 ;cause=22 ;text="x;MediaError"`, 22, "x;MediaError")),
			want: []string{"media_error_bye/warning/c"},
			check: func(t *testing.T, f *finding.Finding) {
				if f.Evidence["q850_cause"] != 22 || f.Evidence["reason"] != `Q.850 ;cause=22 ;text="x;MediaError"` || !strings.Contains(f.Summary, "the BYE from the SBC gives a media error (Q.850 cause 22, MediaError)") {
					t.Errorf("%v %q", f.Evidence, f.Summary)
				}
			}},
		{name: "BYE cause 31 is not 16", call: msCall("c", "+4930555001", 0, 120, withBye("Q.850;cause=31", 31, "")), want: []string{"media_error_bye/warning/c"}},
		{name: "cause only in the raw header", call: msCall("c", "+4930555001", 0, 120, withBye("SIP;cause=200, Q.850;cause=41", 0, "")),
			want: []string{"media_error_bye/warning/c"},
			check: func(t *testing.T, f *finding.Finding) {
				if f.Evidence["q850_cause"] != 41 {
					t.Errorf("%v", f.Evidence)
				}
			}},
		{name: "media error text without a cause", call: msCall("c", "+4930555001", 0, 120, withBye(`SIP;text="Media Error"`, 0, "Media Error")), want: []string{"media_error_bye/warning/c"}},
		{name: "CANCEL is not a BYE", call: msCall("c", "+4930555001", 0, 120, withBye("Q.850;cause=22", 22, ""), func(c *sip.Call) { c.EndReason = "CANCEL" })},
		{name: "short call", call: msCall("c", "+4930555001", 0, 5),
			want: []string{"short_call/info/c"},
			check: func(t *testing.T, f *finding.Finding) {
				if f.Evidence["duration_s"] != 5.0 || f.Evidence["threshold_s"] != 10.0 || !strings.Contains(f.Summary, "lasted only 5 s") {
					t.Errorf("%v %q", f.Evidence, f.Summary)
				}
			}},
		{name: "exactly the threshold", call: msCall("c", "+4930555001", 0, 10)},
		{name: "still open at capture end", call: msCall("c", aaNumber, 0, 0)},
		{name: "closed by the tracker for idling", call: msCall("c", aaNumber, 0, 0.5, func(c *sip.Call) {
			c.EndedBy, c.EndReason, c.EndedByAddr = "timeout", "timeout", netip.AddrPort{}
		})},
		{name: "not answered", call: msCall("c", "+4930555001", 0, 3, func(c *sip.Call) { c.Answered, c.Answer = false, time.Time{} })},
		{name: "transfer missing", call: msCall("c", aaNumber, 0, 30),
			want: []string{"transfer_missing/warning/c"},
			check: func(t *testing.T, f *finding.Finding) {
				if f.Evidence["called_number"] != aaNumber || f.Evidence["duration_s"] != 30.0 || f.Evidence["end_reason"] != "BYE" || f.Evidence["answer_time"] != at(0) {
					t.Errorf("%v", f.Evidence)
				}
			}},
		{name: "carrier leg to the AA number", call: msCall("c", aaNumber, 0, 30, func(c *sip.Call) {
			c.Microsoft, c.SBCSide, c.Caller, c.Callee, c.SBCAllowSeen = false, netip.AddrPort{}, carrier, sbc, false
		})},
		{name: "short AA call: both", call: msCall("c", aaNumber, 0, 4), want: []string{"transfer_missing/warning/c", "short_call/info/c"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := Run(Input{Calls: []*sip.Call{c.call}, Conns: c.conns, Config: testConfig()})
			wantRules(t, fs, c.want...)
			if c.check != nil {
				c.check(t, fs[0])
			}
		})
	}
}

// A nil Config uses the defaults.
func TestNilConfig(t *testing.T) {
	fs := Run(Input{Calls: []*sip.Call{msCall("c", aaNumber, 0, 5)}})
	wantRules(t, fs, "short_call/info/c")
}

func TestSameURI(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{referTo, referTarget, true},
		{"<sip:+4930999@SIP.pstnhub.microsoft.com;user=phone>", "sip:+4930999@sip.pstnhub.microsoft.com;USER=phone", true},
		{"sip:a@h;x=1;y=2", "sip:a@h;y=2;x=1", true},
		{`"Queue" <sip:a@h;x=%41>;tag=1`, "sip:a@h;x=a", true},
		{"sip:a@h", "sip:a@h.", true},
		{"sip:a@h", "sip:A@h", false}, // user parts are case-sensitive
		{"sip:a@h", "sip:a@h:5061", false},
		{"sip:a@h;x=1", "sip:a@h", false}, // a dropped parameter is not the exact target
		{"sip:a@h", "sips:a@h", false},
		{"sip:a@h", "sip:a@g", false},
		{"", "", false},
	}
	for _, c := range cases {
		if got := sameURI(c.a, c.b); got != c.want {
			t.Errorf("sameURI(%q, %q) = %v", c.a, c.b, got)
		}
	}
	if h, ip := uriHost("<sip:user@[2001:db8::1]:5061;transport=tls>"); h != "2001:db8::1" || !ip {
		t.Errorf("uriHost IPv6 = %q %v", h, ip)
	}
	if h, ip := uriHost("Contact: <sip:sbc.example:5061>"); h != "sbc.example" || ip {
		t.Errorf("uriHost = %q %v", h, ip)
	}
}

// sameURI is an equivalence on what it can parse: reflexive and
// symmetric, and it never panics.
func FuzzSameURI(f *testing.F) {
	f.Add(referTo, referTarget)
	f.Add("sip:a@[::1]:5;x=%zz", "<sip:a@[::1]:5;X=%ZZ>")
	f.Fuzz(func(t *testing.T, a, b string) {
		if sameURI(a, b) != sameURI(b, a) {
			t.Fatalf("not symmetric: %q %q", a, b)
		}
		if _, ok := parseURI(a); ok && !sameURI(a, a) {
			t.Fatalf("not reflexive: %q", a)
		}
	})
}
