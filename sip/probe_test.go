package sip

import "testing"

func TestLooksLikeSIP(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"INVITE sip:+4969123456@sip.pstnhub.microsoft.com SIP/2.0\r\nVia: x\r\n", true},
		{"OPTIONS sips:sbc.example.de:5061 SIP/2.0\r\n", true},
		{"INVITE tel:+4969123456 SIP/2.0\r\n", true},
		{"invite SIP:a@b SIP/2.0\r\n", true}, // scheme case-insensitive
		{"!INTERESTING-METHOD0123456789_*+`.%INDEED'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\r\n", true},
		{"SIP/2.0 200 OK\r\n", true},
		{"SIP/2.0 100 Trying", true},
		{"SIP/2.0 486\r\n", true},
		{"\r\n\r\nBYE sip:a@b SIP/2.0\r\n", true}, // keep-alives first
		{"REFER sip:sbc.example.de", true},        // prefix of a start line
		{"INVITE sip:a@b HTTP/1.1\r\n", false},
		{"GET / HTTP/1.1\r\nHost: x\r\n", false},
		{"HTTP/1.1 200 OK\r\n", false},
		{"SIP/2.0 2000 OK\r\n", false},
		{"SIP/2.0 20", false},
		{"INVITE http://example.com SIP/2.0\r\n", false},
		{"IN VITE sip:a@b SIP/2.0\r\n", false},
		{"INV(ITE sip:a@b SIP/2.0\r\n", false},
		{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", false}, // TLS ClientHello
		{"\r\n\r\n", false},
		{"", false},
		{"INVITE", false},
	} {
		if got := LooksLikeSIP([]byte(tc.in)); got != tc.want {
			t.Errorf("LooksLikeSIP(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestIsStartLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"INVITE sip:a@b SIP/2.0", true},
		{"NOTIFY urn:service:x SIP/2.0", true},
		{"SIP/2.0 180 Ringing", true},
		{"INVITE sip:a@b", false},
		{"Via: SIP/2.0/TLS h", false},
		{"v=0", false},
		{"INVITE sip:a@b SIP/2.0 ", false},
	} {
		if got := isStartLine([]byte(tc.in)); got != tc.want {
			t.Errorf("isStartLine(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestURIParts(t *testing.T) {
	for _, tc := range []struct{ in, user, host string }{
		{"sip:sbc.example.de:5061;transport=tls", "", "sbc.example.de"},
		{"sip:192.168.2.10:5061;transport=tls", "", "192.168.2.10"},
		{"<sips:+4930111222@sbc.example.de;user=phone>;tag=1", "+4930111222", "sbc.example.de"},
		{`"Teams" <sip:+49@sip.pstnhub.microsoft.com>`, "+49", "sip.pstnhub.microsoft.com"},
		{"tel:+4969123456;phone-context=+49", "+4969123456", ""},
		{"sip:[2001:db8::1]:5061", "", "[2001:db8::1]"},
		{"nonsense", "", ""},
		{"", "", ""},
	} {
		check(t, "user of "+tc.in, URIUser(tc.in), tc.user)
		check(t, "host of "+tc.in, URIHost(tc.in), tc.host)
	}
}

func TestQuickHosts(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"sip:+49@sip.pstnhub.microsoft.com:5061;user=phone", "sip.pstnhub.microsoft.com"},
		{"SIPS:sip2.pstnhub.microsoft.com", "sip2.pstnhub.microsoft.com"},
		{"sip:sip.pstnhub.microsoft.com;x-m=8:orgid:a@b;x-t=c", "sip.pstnhub.microsoft.com"},
		{"sip:u:pw@host.example?Replaces=x%40y", "host.example"},
		{"sip:[2001:db8::1]:5061", "[2001:db8::1]"},
		{"tel:+4969123456", ""},
		{"sip:", ""},
	} {
		check(t, "quickHost "+tc.in, quickHost(tc.in), tc.want)
	}
	for _, tc := range []struct{ in, want string }{
		{"SIP/2.0/TLS sip-du-a-eu.pstnhub.microsoft.com:5061;branch=z9hG4bK1", "sip-du-a-eu.pstnhub.microsoft.com"},
		{"SIP/2.0/UDP 192.0.2.1;rport", "192.0.2.1"},
		{"SIP/2.0/TCP [2001:db8::1]:5060;branch=x", "[2001:db8::1]"},
		{"SIP/2.0/UDP  host.example ;branch=x", "host.example"},
		{"garbage", ""},
	} {
		check(t, "viaHost "+tc.in, viaHost(tc.in), tc.want)
	}
}
