package sip

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// referenceParse is ParseDatagram without the fast path and without
// repairs: sipgo's parser, validate and build.
func referenceParse(p *Parser, b []byte) (*Message, error) {
	return p.parseOne(testMeta, b, b)
}

// checkFast fails when the fast path accepts b but the reference refuses
// it or returns a different Message; it reports whether the fast path
// took b.
func checkFast(t *testing.T, p *Parser, b []byte) bool {
	t.Helper()
	b = bytes.TrimLeft(b, "\r\n")
	if len(b) == 0 || len(b) > p.max {
		return false
	}
	fast, ok := p.fastParse(testMeta, b)
	if !ok {
		return false
	}
	if oddLineEnds(b) {
		t.Fatalf("fast path accepted a head ParseDatagram repairs first:\n%q", b)
	}
	ref, err := referenceParse(p, b)
	if err != nil {
		t.Fatalf("fast path accepted what sipgo refuses (%v):\n%q", err, b)
	}
	if !reflect.DeepEqual(fast, ref) {
		t.Fatalf("fast path differs from sipgo on\n%q\n%s", b, messageDiff(fast, ref))
	}
	return true
}

func messageDiff(a, b *Message) string {
	var out strings.Builder
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for i := 0; i < va.NumField(); i++ {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			fmt.Fprintf(&out, "%s: fast %#v, sipgo %#v\n", va.Type().Field(i).Name, va.Field(i).Interface(), vb.Field(i).Interface())
		}
	}
	return out.String()
}

// trunkMessages are what a Direct Routing trunk carries most: the fast
// path must take every one of them.
func trunkMessages() []string {
	base := []string{
		"INVITE sip:+4969987654@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1INVITE\r\nMax-Forwards: 70\r\nFrom: <sip:+49300000001@198.51.100.7>;tag=c1\r\nTo: <sip:+4969987654@192.0.2.10>\r\nCall-ID: gen-1@198.51.100.7\r\nCSeq: 1 INVITE\r\nContact: <sip:198.51.100.7:5060>\r\nContent-Type: application/sdp\r\nContent-Length: 89\r\n\r\nv=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\n",
		"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1INVITE\r\nFrom: <sip:+49300000001@198.51.100.7>;tag=c1\r\nTo: <sip:+4969987654@192.0.2.10>;tag=s1\r\nCall-ID: gen-1@198.51.100.7\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/TLS 52.114.75.24:5061;branch=z9hG4bKac;rport=5061;received=52.114.75.24\r\nVia: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bKx\r\nRecord-Route: <sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls;lr>, <sip:10.0.0.2;lr>\r\nFrom: \"Alice Example\" <sip:+4930111@sbc.example.com;user=phone>;tag=a;x-ms=1\r\nTo: Bob <sip:+4969222@sip.pstnhub.microsoft.com>;tag=b\r\nCall-ID: 7c2e9b0a-11f1@10.0.0.1\r\nCSeq: 7 INVITE\r\nServer: Microsoft.PSTNHub.SIPProxy v.2024.1.1.1 i.EUWE.1\r\nReason: Q.850;cause=17;text=\"user busy\"\r\nContent-Length: 0\r\n\r\n",
		"BYE sip:+4930111@sbc.example.com:5061;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 52.114.75.24:5061;branch=z9hG4bKbye\r\nMax-Forwards: 70\r\nFrom: <sip:+4969222@sip.pstnhub.microsoft.com>;tag=b\r\nTo: <sip:+4930111@sbc.example.com;user=phone>;tag=a\r\nCall-ID: 7c2e9b0a-11f1@10.0.0.1\r\nCSeq: 8 BYE\r\nUser-Agent: Microsoft.PSTNHub.SIPProxy\r\nP-Asserted-Identity: <tel:+4969222>, <sip:+4969222@contoso.com>\r\nContent-Length: 0\r\n\r\n",
		"REFER sip:+4930111@sbc.example.com:5061;transport=tls SIP/2.0\r\nv: SIP/2.0/TLS 52.114.75.24:5061;branch=z9hG4bKref\r\nf: <sip:+4969222@sip.pstnhub.microsoft.com>;tag=b\r\nt: <sip:+4930111@sbc.example.com>;tag=a\r\ni: ref-1\r\nCSeq: 9 REFER\r\nr: <sip:+4930999@sip.pstnhub.microsoft.com?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\nb: <sip:+4969222@contoso.com>\r\nm: <sip:ms@52.114.75.24:5061;transport=tls>\r\nl: 0\r\n\r\n",
		"NOTIFY sip:ms@52.114.75.24:5061 SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKn\r\nFrom: <sip:+4930111@sbc.example.com>;tag=a\r\nTo: <sip:+4969222@sip.pstnhub.microsoft.com>;tag=b\r\nCall-ID: ref-1\r\nCSeq: 2 NOTIFY\r\nEvent: refer;id=9\r\nSubscription-State: terminated;reason=noresource\r\nContent-Type: message/sipfrag;version=2.0\r\nContent-Length: 16\r\n\r\nSIP/2.0 200 OK\r\n",
		"OPTIONS sip:sip.pstnhub.microsoft.com:5061;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKo;rport\r\nFrom: sip:ping@sbc.example.com;tag=o1\r\nTo: sip:sip.pstnhub.microsoft.com\r\nCall-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nAllow: INVITE, ACK, BYE\r\nAllow: REFER\r\nContent-Length: 0\r\n\r\n",
	}
	out := slices.Clone(base)
	for _, s := range streamMessages {
		out = append(out, string(wireMessage(s)))
	}
	return out
}

func TestFastParseTakesTrunkTraffic(t *testing.T) {
	p := NewParser(0)
	for i, s := range trunkMessages() {
		if !checkFast(t, p, []byte(s)) {
			t.Errorf("message %d: fast path declined\n%q", i, s)
		}
		// Through the public entry point as well.
		m, err := p.ParseDatagram(testMeta, []byte(s))
		if err != nil || m.CallID == "" {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

// TestFastParseDeclines: what the fast path must leave to the reference
// (which repairs or refuses it, or renders it differently).
func TestFastParseDeclines(t *testing.T) {
	ok := trunkMessages()[1]
	cases := map[string]string{
		"bare LF":          strings.ReplaceAll(ok, "\r\n", "\n"),
		"tab":              strings.Replace(ok, "CSeq: 1", "CSeq:\t1", 1),
		"non-ASCII":        strings.Replace(ok, "gen-1@", "gen-\xe9@", 1),
		"IPv6 Via":         strings.Replace(ok, "198.51.100.7:5060;branch", "[2001:db8::1]:5060;branch", 1),
		"Via list":         strings.Replace(ok, "branch=z9hG4bK1INVITE", "branch=z9hG4bK1INVITE, SIP/2.0/UDP 10.0.0.1", 1),
		"two Call-IDs":     strings.Replace(ok, "CSeq:", "Call-ID: x\r\nCSeq:", 1),
		"short body":       strings.Replace(ok, "Content-Length: 0", "Content-Length: 10", 1),
		"quoted param":     strings.Replace(ok, "branch=z9hG4bK1INVITE", "branch=\"z9hG4bK1INVITE\"", 1),
		"port leading 0":   strings.Replace(ok, ":5060;", ":05060;", 1),
		"duplicate param":  strings.Replace(ok, "branch=z9hG4bK1INVITE", "branch=a;branch=b", 1),
		"lower-case sip/2": strings.Replace(ok, "SIP/2.0 180", "sip/2.0 180", 1),
	}
	p := NewParser(0)
	for name, s := range cases {
		if _, took := p.fastParse(testMeta, []byte(s)); took {
			t.Errorf("%s: fast path took it", name)
		}
		checkFast(t, p, []byte(s))
	}
}

// FuzzFastParse is the differential test: whenever the fast path returns a
// Message, sipgo (with validate and build) must accept the same bytes and
// return an identical Message.
func FuzzFastParse(f *testing.F) {
	fuzzSeeds(f, func(b []byte) { f.Add(b) })
	for _, s := range trunkMessages() {
		f.Add([]byte(s))
	}
	p := NewParser(4096)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFast(t, p, b)
	})
}

// BenchmarkParseDatagramReference is BenchmarkParseDatagram through sipgo
// only, for comparison.
func BenchmarkParseDatagramReference(b *testing.B) {
	_, msgs := wireStream(b)
	p := NewParser(0)
	b.SetBytes(int64(len(msgs[0])))
	for b.Loop() {
		if _, err := referenceParse(p, msgs[0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseTrunk parses a mix of trunk messages per iteration.
func BenchmarkParseTrunk(b *testing.B) {
	var msgs [][]byte
	n := 0
	for _, s := range trunkMessages() {
		msgs = append(msgs, []byte(s))
		n += len(s)
	}
	p := NewParser(0)
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		for _, m := range msgs {
			if _, err := p.ParseDatagram(testMeta, m); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/msg")
}

// TestFastParseMutations replaces and inserts, at every position of the
// head of each trunk message, each byte that matters to SIP syntax, and
// requires the fast path either to decline or to agree with sipgo. Random
// fuzzing rarely builds such near-valid messages.
func TestFastParseMutations(t *testing.T) {
	p := NewParser(0)
	tricky := []byte(" ;=\"<>:@,?[]\\/%\t\r\nA0")
	took, tried := 0, 0
	for _, s := range trunkMessages() {
		head := strings.Index(s, "\r\n\r\n") + 4
		for i := 0; i < head; i++ {
			for _, c := range tricky {
				rep := []byte(s)
				rep[i] = c
				ins := append([]byte(s[:i]), c)
				ins = append(ins, s[i:]...)
				for _, b := range [][]byte{rep, ins} {
					tried++
					if checkFast(t, p, b) {
						took++
					}
				}
			}
		}
	}
	// Most mutations leave a message the fast path still reads (inside a
	// value, say): the comparison above must have had work to do.
	if took < tried/4 {
		t.Fatalf("fast path took only %d of %d mutated messages", took, tried)
	}
	t.Logf("fast path took %d of %d mutated messages", took, tried)
}

// TestTrackerDetachesCallStrings: the strings a Call keeps must not point
// into a fast-parsed datagram, or a call whose messages are not kept would
// still pin every datagram it took a string from.
func TestTrackerDetachesCallStrings(t *testing.T) {
	p := NewParser(0)
	tr := NewTracker(TrackerOptions{MaxMessagesPerCall: 1})
	var raws [][]byte
	for _, s := range trunkMessages()[2:6] { // 486, BYE, REFER, NOTIFY
		m, err := p.ParseDatagram(testMeta, []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, m.Raw)
		tr.Observe(m)
	}
	inside := func(s string) bool {
		if s == "" {
			return false
		}
		ptr := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		for _, r := range raws {
			lo := uintptr(unsafe.Pointer(unsafe.SliceData(r)))
			if ptr >= lo && ptr < lo+uintptr(cap(r)) {
				return true
			}
		}
		return false
	}
	calls := tr.Close()
	if len(calls) != 2 {
		t.Fatalf("%d calls", len(calls))
	}
	for _, c := range calls {
		strs := []string{c.CallID, c.From, c.To, c.FromURI, c.ToURI, c.RequestURI, c.PAI,
			c.EndReason, c.ByeReason, c.ReasonText, c.SBCContact, c.SBCAllow}
		strs = append(strs, c.UserAgents...)
		strs = append(strs, c.SDPAddrs...)
		for _, r := range c.Refers {
			strs = append(strs, r.ReferTo, r.ReferredBy, r.Replaces, r.ResponseReason, r.NewCallID, r.NewInviteURI)
			for _, n := range r.Notifies {
				strs = append(strs, n.SipFrag, n.SubState)
			}
		}
		for _, s := range strs {
			if inside(s) {
				t.Errorf("call %s: %q points into a datagram", c.CallID, s)
			}
		}
		if c.CallID == "ref-1" && (len(c.Refers) != 1 || len(c.Refers[0].Notifies) != 1) {
			t.Errorf("call ref-1: refers %+v", c.Refers)
		}
	}
}

// TestTrackerMessagesOwned: with MessagesOwned the ladder keeps the
// caller's Message itself; without, a copy the caller may go on changing.
func TestTrackerMessagesOwned(t *testing.T) {
	p := NewParser(0)
	for _, owned := range []bool{false, true} {
		m, err := p.ParseDatagram(testMeta, []byte(trunkMessages()[0]))
		if err != nil {
			t.Fatal(err)
		}
		tr := NewTracker(TrackerOptions{MessagesOwned: owned})
		tr.Observe(m)
		calls := tr.Close()
		if len(calls) != 1 || len(calls[0].Messages) != 1 {
			t.Fatalf("owned %v: %d calls", owned, len(calls))
		}
		if kept := calls[0].Messages[0]; (kept == m) != owned || kept.CallID != m.CallID {
			t.Errorf("owned %v: kept the caller's Message: %v", owned, kept == m)
		}
	}
}

// oddLineEndsScan is oddLineEnds without its one-pass check of plain
// CRLF heads: the head as splitHead cuts it, scanned line end by line
// end.
func oddLineEndsScan(b []byte) bool {
	head, _, _ := splitHead(b)
	for i := bytes.IndexAny(head, "\r\n"); i >= 0 && i < len(head); {
		if head[i] == '\n' || i+1 == len(head) || head[i+1] != '\n' {
			return true
		}
		j := bytes.IndexAny(head[i+2:], "\r\n")
		if j < 0 {
			break
		}
		i += 2 + j
	}
	return false
}

// FuzzOddLineEnds: the one-pass check answers as the scan does for any
// datagram as ParseDatagram hands it over (leading line ends trimmed).
func FuzzOddLineEnds(f *testing.F) {
	fuzzSeeds(f, func(b []byte) { f.Add(b) })
	for _, s := range trunkMessages() {
		f.Add([]byte(s))
	}
	for _, s := range []string{"A\r\n\r\n", "A\n\r\n\r\n", "A\r\r\n\r\n", "A\r\nB\rC\r\n\r\nx\n", "A\r\nB", "A\r\n", "A\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		b = bytes.TrimLeft(b, "\r\n")
		if got, want := oddLineEnds(b), oddLineEndsScan(b); got != want {
			t.Fatalf("oddLineEnds(%q) = %v, the scan says %v", b, got, want)
		}
	})
}
