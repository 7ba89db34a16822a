package sip

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseDatagramRepairs(t *testing.T) {
	crlf := func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
	invite := `INVITE sip:4321@fec0:0:0:0:216:d3ff:fe0d:22c:5060 SIP/2.0
Call-ID: c3eF6f58@fe80:0:0:0:21a:a0ff:fe07:32e0
Contact: <sip:9876@fe80:0:0:0:21a:a0ff:fe07:32e0:5060>
CSeq: 1 INVITE
From: <sip:9876@fe80:0:0:0:21a:a0ff:fe07:32e0>;tag=a3bhg
To: <sip:4321@fec0:0:0:0:216:d3ff:fe0d:22c>
Via: SIP/2.0/UDP fe80:0:0:0:21a:a0ff:fe07:32e0:5060;branch=z9hG4bK1
Content-Length: 0

`
	hepLF := `SIP/2.0 100 Trying
Call-ID: qgf3dm9rudi@127.0.0.1
CSeq: 1 INVITE
From: <sip:nodejs@127.0.0.1>;tag=2628881569
To: <sip:nodejs@127.0.0.1>
Via: SIP/2.0/UDP 127.0.0.1:48495;branch=z9hG4bK9b82
Content-Length: 0

`
	cut := crlf(`BYE sip:sipp@10.0.2.20:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.2.15;rport;branch=z9hG4bKHUc1
From: test <sip:test@10.0.2.15:5060>;tag=j6QZ
To: <sip:sipp@10.0.2.20:5060>;tag=1
Call-ID: 1-4247@10.0.2.20
CSeq: 99791795 BYE
User-Agent: FreeSWITCH
Content-Lengt`)
	shortBody := crlf(`NOTIFY sip:a@192.0.2.1 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKn1
From: <sip:b@192.0.2.2>;tag=1
To: <sip:a@192.0.2.1>;tag=2
Call-ID: n1@192.0.2.2
CSeq: 2 NOTIFY
Content-Type: message/sipfrag
Content-Length: 400

SIP/2.0 200 OK
`)
	// A bare-LF head whose body ends in CRLFCRLF (as in hep.pcap): the
	// head ends at the first blank line, not in the body.
	hepInvite := "INVITE sip:nodejs@127.0.0.1 SIP/2.0\nCall-ID: q1@127.0.0.1\nCSeq: 1 INVITE\nFrom: <sip:a@127.0.0.1>;tag=1\nTo: <sip:b@127.0.0.1>\nVia: SIP/2.0/UDP 127.0.0.1:48495;branch=z9hG4bK9\nContent-Type: application/sdp\nContent-Length: 18\n\nv=0\r\ns=nodejs\r\n\r\n"
	for name, tc := range map[string]struct {
		in      string
		summary string
		callID  string
		reqURI  string
		fixed   string
	}{
		"unbracketed ipv6":   {crlf(invite), "INVITE", "c3eF6f58@fe80:0:0:0:21a:a0ff:fe07:32e0", "sip:4321@fec0:0:0:0:216:d3ff:fe0d:22c:5060", RepairIPv6},
		"bare LF":            {hepLF, "100 Trying", "qgf3dm9rudi@127.0.0.1", "", RepairLF},
		"bare LF, CRLF body": {hepInvite, "INVITE", "q1@127.0.0.1", "sip:nodejs@127.0.0.1", RepairLF},
		"cut in headers":     {cut, "BYE", "1-4247@10.0.2.20", "sip:sipp@10.0.2.20:5060", RepairTruncated},
		"body cut short":     {shortBody, "NOTIFY", "n1@192.0.2.2", "sip:a@192.0.2.1", RepairTruncated},
	} {
		t.Run(name, func(t *testing.T) {
			m, err := NewParser(0).ParseDatagram(MessageMeta{}, []byte(tc.in))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if m.Summary() != tc.summary || m.CallID != tc.callID || m.RequestURI != tc.reqURI {
				t.Fatalf("got %q %q %q", m.Summary(), m.CallID, m.RequestURI)
			}
			if !slices.Contains(m.Repaired, tc.fixed) {
				t.Fatalf("Repaired = %v, want %q", m.Repaired, tc.fixed)
			}
			if string(m.Raw) != tc.in {
				t.Fatalf("Raw is not the original bytes")
			}
		})
	}
	// A clean message is not marked, and garbage stays refused.
	m, err := NewParser(0).ParseDatagram(MessageMeta{}, []byte(crlf(hepLF)))
	if err != nil || m.Repaired != nil {
		t.Fatalf("clean message: %v %v", err, m.Repaired)
	}
	if _, err := NewParser(0).ParseDatagram(MessageMeta{}, []byte("HELLO world\n\n")); err == nil {
		t.Fatal("garbage parsed")
	}
	if _, err := NewParser(0).ParseDatagram(MessageMeta{}, []byte("\r\n\r\n")); !errors.Is(err, ErrKeepAlive) {
		t.Fatalf("keep-alive: %v", err)
	}
}

func TestBracketHost(t *testing.T) {
	for in, want := range map[string]string{
		"fec0:0:0:0:216:d3ff:fe0d:22c:5060": "[fec0:0:0:0:216:d3ff:fe0d:22c]:5060",
		"fe80:0:0:0:21a:a0ff:fe07:32e0":     "[fe80:0:0:0:21a:a0ff:fe07:32e0]",
		"2001:db8::1":                       "[2001:db8::1]",
		"192.0.2.1:5060":                    "192.0.2.1:5060",
		"[2001:db8::1]:5060":                "[2001:db8::1]:5060",
		"sbc.example:5061":                  "sbc.example:5061",
	} {
		if got, _ := bracketHost(in); got != want {
			t.Errorf("bracketHost(%q) = %q, want %q", in, got, want)
		}
	}
}
