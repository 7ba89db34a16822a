package sip

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

// teamsCall is one answered Direct Routing call as the SBC sees it: an
// INVITE with SDP from Microsoft, 100, 180, 200 with SDP, ACK (about
// 5.5 KB of SIP in all). %[1]s is the Call-ID.
var teamsCall = []string{
	"INVITE sip:+4930123456@sbc.contoso.example:5061;transport=tls SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS 52.114.75.24:5061;branch=z9hG4bK%[1]s-1\r\n" +
		"Record-Route: <sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls;lr>\r\n" +
		"Max-Forwards: 68\r\nFrom: <sip:+4989987654@sip.pstnhub.microsoft.com:5061;user=phone>;tag=%[1]s-a\r\n" +
		"To: <sip:+4930123456@sbc.contoso.example:5061;user=phone>\r\nCall-ID: %[1]s\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:api-du-a-euwe.pstnhub.microsoft.com:443;x-i=9fd1c0a2-62c7-4a4c-b1a1-0b6e3f0fa6b2;x-c=%[1]s/d-4-1>\r\n" +
		"Allow: INVITE, ACK, OPTIONS, CANCEL, BYE, NOTIFY, REFER\r\nSupported: timer\r\nSession-Expires: 3600\r\n" +
		"User-Agent: Microsoft.PSTNHub.SIPProxy v.2026.10.1.2 i.EUWE.4\r\nX-MS-SBC-Host: sbc.contoso.example\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: 600\r\n\r\n" +
		"v=0\r\no=- 1 0 IN IP4 52.115.1.1\r\ns=session\r\nc=IN IP4 52.115.1.1\r\nb=CT:10000000\r\nt=0 0\r\n" +
		"m=audio 52000 RTP/SAVP 104 9 111 18 0 8 103 97 13 118 101\r\na=rtcp:52001\r\n" +
		"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:qpzx1Uq9HZNK7Zw0mXQTgNOW5ePBbDM7dIsHcNYu|2^31\r\n" +
		"a=rtpmap:104 SILK/16000\r\na=rtpmap:9 G722/8000\r\na=rtpmap:111 SILK/8000\r\na=rtpmap:18 G729/8000\r\n" +
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:103 SILK/8000\r\na=rtpmap:97 RED/8000\r\n" +
		"a=rtpmap:13 CN/8000\r\na=rtpmap:118 CN/16000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n" +
		"a=ptime:20\r\na=sendrecv\r\n",
	"SIP/2.0 100 Trying\r\nVia: SIP/2.0/TLS 52.114.75.24:5061;branch=z9hG4bK%[1]s-1\r\n" +
		"From: <sip:+4989987654@sip.pstnhub.microsoft.com:5061;user=phone>;tag=%[1]s-a\r\n" +
		"To: <sip:+4930123456@sbc.contoso.example:5061;user=phone>\r\nCall-ID: %[1]s\r\nCSeq: 1 INVITE\r\n" +
		"Server: Mediant SW/v.7.40A.500.123\r\nContent-Length: 0\r\n\r\n",
	"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/TLS 52.114.75.24:5061;branch=z9hG4bK%[1]s-1\r\n" +
		"Record-Route: <sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls;lr>\r\n" +
		"From: <sip:+4989987654@sip.pstnhub.microsoft.com:5061;user=phone>;tag=%[1]s-a\r\n" +
		"To: <sip:+4930123456@sbc.contoso.example:5061;user=phone>;tag=%[1]s-b\r\nCall-ID: %[1]s\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:+4930123456@sbc.contoso.example:5061;transport=tls>\r\nServer: Mediant SW/v.7.40A.500.123\r\n" +
		"Content-Length: 0\r\n\r\n",
	"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 52.114.75.24:5061;branch=z9hG4bK%[1]s-1\r\n" +
		"Record-Route: <sip:sip-du-a-eu.pstnhub.microsoft.com:5061;transport=tls;lr>\r\n" +
		"From: <sip:+4989987654@sip.pstnhub.microsoft.com:5061;user=phone>;tag=%[1]s-a\r\n" +
		"To: <sip:+4930123456@sbc.contoso.example:5061;user=phone>;tag=%[1]s-b\r\nCall-ID: %[1]s\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:+4930123456@sbc.contoso.example:5061;transport=tls>\r\nServer: Mediant SW/v.7.40A.500.123\r\n" +
		"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY\r\nSession-Expires: 3600;refresher=uac\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: 300\r\n\r\n" +
		"v=0\r\no=AudioCodes 1 1 IN IP4 192.0.2.10\r\ns=Phone-Call\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n" +
		"m=audio 6000 RTP/SAVP 0 101\r\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:ZmFrZWtleWZha2VrZXlmYWtla2V5ZmFrZWtleQ|2^31\r\n" +
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n",
	"ACK sip:+4930123456@sbc.contoso.example:5061;transport=tls SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS 52.114.75.24:5061;branch=z9hG4bK%[1]s-2\r\nMax-Forwards: 68\r\n" +
		"From: <sip:+4989987654@sip.pstnhub.microsoft.com:5061;user=phone>;tag=%[1]s-a\r\n" +
		"To: <sip:+4930123456@sbc.contoso.example:5061;user=phone>;tag=%[1]s-b\r\nCall-ID: %[1]s\r\nCSeq: 1 ACK\r\n" +
		"Content-Length: 0\r\n\r\n",
}

func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestTrackerMemoryPerCall measures what one open call costs a live
// tracker (OnDone set, as in serve): each message parsed from its own
// datagram, as received. The README's sizing note and the default
// limits.max_dialogs rest on this figure; the bound fails the test if a
// change makes a call much dearer.
func TestTrackerMemoryPerCall(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap; not in -short runs")
	}
	const calls = 4000
	p := NewParser(0)
	src, dst := netip.MustParseAddrPort("52.114.75.24:5061"), netip.MustParseAddrPort("192.0.2.10:5061")
	t0 := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	done := 0
	tr := NewTracker(TrackerOptions{MaxDialogs: 2 * calls, MaxRawBytes: 65535, OnDone: func(*Call) { done++ }})
	feed := func(i int, msgs []string) {
		id := fmt.Sprintf("%08x-1f2e-4d3c-8b7a-%012x", i, i)
		for j, tmpl := range msgs {
			raw := fmt.Sprintf(tmpl, id)
			raw = strings.Replace(raw, "Content-Length: 600", fmt.Sprintf("Content-Length: %d", len(raw)-strings.Index(raw, "\r\n\r\n")-4), 1)
			raw = strings.Replace(raw, "Content-Length: 300", fmt.Sprintf("Content-Length: %d", len(raw)-strings.Index(raw, "\r\n\r\n")-4), 1)
			s, d := src, dst
			if strings.HasPrefix(raw, "SIP/2.0") {
				s, d = dst, src
			}
			m, err := p.ParseDatagram(MessageMeta{Time: t0.Add(time.Duration(i)*time.Millisecond + time.Duration(j)*time.Microsecond),
				Src: s, Dst: d, Transport: "tls"}, []byte(raw))
			if err != nil {
				t.Fatalf("message %d: %v", j, err)
			}
			tr.Observe(m)
		}
	}
	before := heapNow()
	for i := range calls {
		feed(i, teamsCall)
	}
	open := heapNow()
	if tr.Active() != calls {
		t.Fatalf("%d active", tr.Active())
	}
	perCall := float64(open-before) / calls
	// Every call ends and is handed over.
	for i := range calls {
		bye := []string{strings.NewReplacer("ACK ", "BYE ", "CSeq: 1 ACK", "CSeq: 2 BYE", "-2\r\n", "-3\r\n").Replace(teamsCall[4])}
		feed(i, bye)
	}
	tr.Expire(t0.Add(time.Hour))
	after := heapNow()
	t.Logf("open call: %.1f KB each (%d calls, %.1f MB); after all ended and were handed over: %.1f MB above the start (%d done)",
		perCall/1024, calls, float64(open-before)/(1<<20), float64(int64(after)-int64(before))/(1<<20), done)
	if done != calls {
		t.Fatalf("%d calls handed over", done)
	}
	if perCall > 32<<10 {
		t.Errorf("an open call costs %.1f KB; the sizing in README.md assumes about 16 KB", perCall/1024)
	}
}
