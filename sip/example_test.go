package sip_test

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/sip"
)

// The SBC places a call to a Teams Auto Attendant over TLS, Microsoft
// answers, and the SBC hangs up with a media-error cause: what the
// tracker makes of it.
func Example() {
	cfg := config.Default()
	p := sip.NewParser(cfg.Limits.MaxSIPMessage)
	tr := sip.NewTracker(sip.TrackerOptions{IsMicrosoft: cfg.IsMicrosoft, IsMicrosoftHost: cfg.IsMicrosoftHost})
	sbc := netip.MustParseAddrPort("192.168.2.10:5061")
	ms := netip.MustParseAddrPort("52.114.75.24:5061")
	start := time.Date(2026, 4, 1, 9, 54, 0, 0, time.UTC)

	head := "Via: SIP/2.0/TLS 192.168.2.10:5061;branch=z9hG4bK%s\r\n" +
		"From: <sip:+4930111222@sbc.example.de>;tag=sbc1\r\nTo: <sip:+4969123456@sip.pstnhub.microsoft.com>%s\r\n" +
		"Call-ID: ex-1@sbc.example.de\r\nCSeq: %s\r\n"
	send := func(sec int, src, dst netip.AddrPort, first, branch, toTag, cseq string, extra ...string) {
		text := first + "\r\n" + fmt.Sprintf(head, branch, toTag, cseq) + strings.Join(extra, "") + "Content-Length: 0\r\n\r\n"
		meta := sip.MessageMeta{Time: start.Add(time.Duration(sec) * time.Second), Src: src, Dst: dst, Transport: "tls", Origin: "wire"}
		m, err := p.ParseDatagram(meta, []byte(text))
		if err != nil {
			fmt.Println(err)
			return
		}
		tr.Observe(m)
	}
	send(0, sbc, ms, "INVITE sip:+4969123456@sip.pstnhub.microsoft.com SIP/2.0", "1", "", "1 INVITE",
		"Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY\r\n")
	send(2, ms, sbc, "SIP/2.0 200 OK", "1", ";tag=ms1", "1 INVITE")
	send(2, sbc, ms, "ACK sip:+4969123456@sip.pstnhub.microsoft.com SIP/2.0", "2", ";tag=ms1", "1 ACK")
	send(27, sbc, ms, "BYE sip:+4969123456@sip.pstnhub.microsoft.com SIP/2.0", "3", ";tag=ms1", "2 BYE",
		"Reason: Q.850 ;cause=22 ;text=\"<guid>;MediaError\"\r\n")

	for _, c := range tr.Close() {
		fmt.Println(c.Kind, c.From, "->", c.To, "answered:", c.Answered, "lasted", c.Duration())
		fmt.Println("ended by the", c.EndedBy, "with", c.EndReason, "cause", c.Q850Cause, c.ReasonText)
		fmt.Println("Microsoft:", c.Microsoft, c.MicrosoftAddr, "SBC:", c.SBCSide, "Allow:", c.SBCAllow)
		fmt.Println("messages:", c.MessageCount, "refers:", len(c.Refers))
	}
	// Output:
	// invite +4930111222 -> +4969123456 answered: true lasted 25s
	// ended by the caller with BYE cause 22 <guid>;MediaError
	// Microsoft: true 52.114.75.24 SBC: 192.168.2.10:5061 Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY
	// messages: 4 refers: 0
}
