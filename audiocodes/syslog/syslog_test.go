package syslog

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/sip"
)

func readField(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/field-evidence.log")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The field log verbatim: one socket from Microsoft, accepted with
// ProxySetId -1 / ContextID 0 and closed by the peer 16 ms later.
func TestFieldEvidenceLog(t *testing.T) {
	res, err := Parse(strings.NewReader(readField(t)), Options{Year: 2026, Local: netip.MustParseAddr("192.168.2.10")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lines != 19 || len(res.Sockets) != 1 || len(res.Messages) != 0 {
		t.Fatalf("lines=%d sockets=%d messages=%d", res.Lines, len(res.Sockets), len(res.Messages))
	}
	s := res.Sockets[0]
	if s.SocketID != 7535 || s.Handle != 1528 || !s.TLS || s.Peer != netip.MustParseAddrPort("52.114.75.24:8576") ||
		s.LocalPort != 5061 || s.Interface != 0 || s.Local != netip.MustParseAddrPort("192.168.2.10:5061") {
		t.Errorf("socket = %+v", s)
	}
	// [Time:04-01@09:55:04.717] is DD-MM on the device clock.
	if want := time.Date(2026, time.January, 4, 9, 55, 4, 717e6, time.UTC); !s.Accepted.Equal(want) {
		t.Errorf("accepted %v, want %v", s.Accepted, want)
	}
	if d := s.Closed.Sub(s.Accepted); d != 15*time.Millisecond || !s.ClosedByPeer {
		t.Errorf("closed after %v, by peer %v", d, s.ClosedByPeer)
	}
	c := s.Context
	if c == nil || c.ProxySetID != -1 || c.SIPInterface != 0 || c.ContextID != 0 || !strings.Contains(c.Line, "GetTlsContextIdForIpAddress") {
		t.Fatalf("context = %+v", c)
	}
	if len(s.Lines) != 19 || !strings.Contains(s.Lines[0], "HandleSocketEvent socket connected") || !strings.Contains(s.Lines[18], "CloseConnection") {
		t.Errorf("lines: %d\n%s", len(s.Lines), strings.Join(s.Lines, "\n"))
	}
}

// repeat builds the field pattern four times (three within a second, one
// 12 s later) with other ports, socket ids and handles, interleaved with
// an unrelated accept from a carrier that matched proxy set 2.
func repeat(t *testing.T) string {
	block := readField(t)
	var b strings.Builder
	for i, ms := range []int{716, 1016, 1416, 13416} {
		x := strings.NewReplacer(
			"8576", fmt.Sprint(8576+i),
			"7535", fmt.Sprint(7535+i),
			"#1528", fmt.Sprint("#", 1528+i),
			"(#1528)", fmt.Sprintf("(#%d)", 1528+i),
		).Replace(block)
		// shift the device clock
		for _, old := range []int{716, 717, 732} {
			n := old - 716 + ms
			x = strings.ReplaceAll(x, fmt.Sprintf("09:55:04.%03d]", old), fmt.Sprintf("09:55:%02d.%03d]", 4+n/1000, n%1000))
		}
		b.WriteString(x)
	}
	b.WriteString(`10:00:00.000 SIPListeningSocketTLS(#0)::OkayToHandleAccept - returning True [Time:04-01@09:59:59.000]
10:00:00.000 New SIPSocketReliable created - (#1600) - SocketID=7600 [Time:04-01@09:59:59.000]
10:00:00.000 AllowlistManager: Adding TCPTLSSocket Remote IP: 203.0.113.5, Port: 40000, Interface ID: 1, Local Port: 5061, Protocol: 6 succeeded [Time:04-01@09:59:59.000]
10:00:00.000 SIPAppMngr::GetTlsContextIdForIpAddress: ProxySetId = 2, SIPInterface = 1, ContextID = 3 [Time:04-01@09:59:59.000]
10:00:00.000 SIPListeningSocketTLS(#0)::AcceptNewConnection - Incoming connection from 203.0.113.5:40000 accepted. SocketID=7600 [Time:04-01@09:59:59.001]
`)
	return b.String()
}

func TestRepeatedPattern(t *testing.T) {
	res, err := Parse(strings.NewReader(repeat(t)), Options{Year: 2026})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sockets) != 5 {
		t.Fatalf("sockets = %d", len(res.Sockets))
	}
	var ids []int
	for _, s := range res.Sockets[:4] {
		ids = append(ids, s.SocketID)
		if s.Context == nil || s.Context.ProxySetID != -1 || len(s.Lines) != 19 || !s.ClosedByPeer {
			t.Errorf("socket %d: context %+v, %d lines", s.SocketID, s.Context, len(s.Lines))
		}
	}
	if !slices.Equal(ids, []int{7535, 7536, 7537, 7538}) {
		t.Errorf("ids %v", ids)
	}
	if d := res.Sockets[3].Accepted.Sub(res.Sockets[0].Accepted); d != 12700*time.Millisecond {
		t.Errorf("fourth attempt %v after the first", d)
	}
	last := res.Sockets[4]
	if last.Context == nil || last.Context.ProxySetID != 2 || last.Context.ContextID != 3 || last.Interface != 1 || !last.Closed.IsZero() {
		t.Errorf("carrier socket %+v ctx %+v", last, last.Context)
	}
}

// A context lookup without an accept right after it is not pinned on a
// later accept.
func TestLookupNeedsItsAccept(t *testing.T) {
	log := `<134>[S=1] [BID=001122:7] SIPAppMngr::GetTlsContextIdForIpAddress: ProxySetId = -1, SIPInterface = 0, ContextID = 0 [Time:04-01@09:00:00.000]
<134>[S=2] [BID=001122:7] SIPListeningSocketTLS(#0)::AcceptNewConnection - Incoming connection from 52.112.1.1:1000 accepted. SocketID=1 [Time:04-01@09:00:05.000]
`
	res, _ := Parse(strings.NewReader(log), Options{Year: 2026})
	if len(res.Sockets) != 1 || res.Sockets[0].Context != nil {
		t.Fatalf("%+v", res.Sockets)
	}
}

func TestParseLine(t *testing.T) {
	l := ParseLine(`10:44:11.299 10.15.77.55 local0.notice [S=511941] [SID=736502:31:12079] (N 483455) ReleaseAddress. foo [Time:10-09@09:42:56.938]`, 2026, nil)
	if l.Recv != "10:44:11.299" || l.Host != "10.15.77.55" || l.Facility != "local0.notice" || l.Seq != 511941 ||
		l.SID != "736502:31:12079" || l.N != 483455 || l.Text != "ReleaseAddress. foo" ||
		!l.DevTime.Equal(time.Date(2026, time.September, 10, 9, 42, 56, 938e6, time.UTC)) {
		t.Errorf("%+v", l)
	}
	l = ParseLine(`<157>[S=2469] [SID=665997:5:29]  PUBLISH sip:a@b SIP/2.0`, 2026, nil)
	if l.Pri != 157 || l.Seq != 2469 || l.SID != "665997:5:29" || l.N != -1 || l.Text != "PUBLISH sip:a@b SIP/2.0" || !l.DevTime.IsZero() {
		t.Errorf("%+v", l)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	if berlin != nil {
		l = ParseLine(`x [Time:13-12@12:38:18.492] [3644]`, 2025, berlin)
		if !l.DevTime.Equal(time.Date(2025, 12, 13, 11, 38, 18, 492e6, time.UTC)) || l.Text != "x" {
			t.Errorf("%+v", l)
		}
	}
}

// The field BYE, logged as one line with #012 line ends.
const byeLine = `10:44:11.299 10.15.77.55 local0.notice [S=100] [SID=736502:31:12079] (N 483455) ---- Outgoing SIP Message to 52.114.14.70:5061 from SIPInterface #1 (Teams) TLS TO(#1530) ---- #012BYE sip:52.114.14.70:5061;transport=tls;x-i=x-x-x-x-x;x-c=x/s/1/x SIP/2.0#012Via: SIP/2.0/TLS 192.168.2.10:5061;alias;branch=z9hG4bKxxxx#012Max-Forwards: 57#012From: <sip:+4930111222@carriersbc.example.de;user=phone>;tag=1c2029136551#012To: <sip:+4969987654@sbc.contoso.example>;tag=fded3353c9f143a3aa8383bc0e58583d#012Call-ID: abcdef@192.168.2.10#012CSeq: 3 BYE#012Allow: REGISTER, REFER, NOTIFY, SUBSCRIBE, INVITE, ACK, OPTIONS, CANCEL, BYE#012User-Agent: M800C/v.7.40A.100.114#012Reason: Q.850 ;cause=22 ;text="0c9e;MediaError"#012Content-Length: 0#012#012 [Time:04-01@09:55:08.100]`

func TestSIPOneLine(t *testing.T) {
	res, _ := Parse(strings.NewReader(byeLine+"\n"), Options{Year: 2026, Local: netip.MustParseAddr("192.168.2.10")})
	if len(res.Messages) != 1 {
		t.Fatalf("messages %d", len(res.Messages))
	}
	m := res.Messages[0]
	if m.Incoming || m.Interface != "Teams" || m.Conn != 1530 || !m.Complete || m.Gap ||
		m.Meta.Dst != netip.MustParseAddrPort("52.114.14.70:5061") || m.Meta.Src.Addr() != netip.MustParseAddr("192.168.2.10") ||
		m.Meta.Transport != "tls" || m.Meta.Origin != "syslog" {
		t.Errorf("%+v", m)
	}
	if !strings.HasPrefix(string(m.Text), "BYE sip:52.114.14.70:5061;transport=tls") || !strings.HasSuffix(string(m.Text), "Content-Length: 0\r\n\r\n") ||
		strings.Contains(string(m.Text), "#012") {
		t.Errorf("text %q", m.Text)
	}
	msgs, errs := res.SIP(sip.NewParser(0))
	if errs != 0 || len(msgs) != 1 {
		t.Fatalf("%d messages, %d refused", len(msgs), errs)
	}
	msg := msgs[0]
	if msg.Method != "BYE" || msg.Q850Cause != 22 || msg.CallID != "abcdef@192.168.2.10" || !strings.Contains(msg.ReasonText, "MediaError") {
		t.Errorf("parsed %+v", msg)
	}
}

// 7.40A.500 style: the header line alone, the message in the following
// datagrams of the same session, interleaved with another session's line;
// the body is complete when Content-Length bytes have arrived.
func TestSIPSplitOverDatagrams(t *testing.T) {
	body := "v=0#015#012o=- 1 1 IN IP4 192.168.3.1#015#012s=-#015#012"
	n := len(strings.ReplaceAll(strings.ReplaceAll(body, "#015", "\r"), "#012", "\n"))
	log := strings.Join([]string{
		`<157>[S=2468] [SID=665997:5:29]  (N 2413) ---- Outgoing SIP Message to 192.168.3.115:48083 from SIPInterface #0 (SIPInterface_0) UDP TO(#0) ---- [Time:13-12@12:38:18.492] [3644]`,
		`<157>[S=2469] [SID=665997:5:29]  PUBLISH sip:pres@example.com SIP/2.0#015#012Via: SIP/2.0/UDP 192.168.3.1:5060;branch=z9hG4bK1#015#012From: <sip:a@example.com>;tag=1#015#012To: <sip:pres@example.com>#015#012Call-ID: split-1#015#012`,
		`<157>[S=2470] [SID=111111:5:30]  (N 2414) something else entirely [Time:13-12@12:38:18.493]`,
		`<157>[S=2471] [SID=665997:5:29]  CSeq: 1 PUBLISH#015#012Content-Type: application/sdp#015#012Content-Length: ` + fmt.Sprint(n) + `#015#012#015#012v=0#015#012o=- 1 1 IN IP4 `,
		`<157>[S=2472] [SID=665997:5:29]  192.168.3.1#015#012s=-#015#012`,
		`<157>[S=2473] [SID=665997:5:29]  (N 2415) next event [Time:13-12@12:38:18.500]`,
	}, "\n")
	res, _ := Parse(strings.NewReader(log), Options{Year: 2025})
	if len(res.Messages) != 1 {
		t.Fatalf("messages %d", len(res.Messages))
	}
	m := res.Messages[0]
	if !m.Complete || m.Gap || m.SID != "665997:5:29" || m.Meta.Transport != "udp" || m.Meta.Dst != netip.MustParseAddrPort("192.168.3.115:48083") {
		t.Errorf("%+v", m)
	}
	msg, err := sip.NewParser(0).ParseDatagram(m.Meta, m.Text)
	if err != nil {
		t.Fatalf("%v\n%q", err, m.Text)
	}
	if msg.Method != "PUBLISH" || msg.CallID != "split-1" || !strings.HasSuffix(string(m.Text), "s=-\r\n") {
		t.Errorf("%+v\n%q", msg, m.Text)
	}
	// A lost datagram inside the message is flagged, and the message is
	// emitted incomplete when the session moves on.
	log = strings.Replace(log, "\n"+`<157>[S=2472] [SID=665997:5:29]  192.168.3.1#015#012s=-#015#012`, "", 1)
	log = strings.Replace(log, "S=2473", "S=2474", 1)
	res, _ = Parse(strings.NewReader(log), Options{Year: 2025})
	if len(res.Messages) != 1 || res.Messages[0].Complete || res.Gaps != 2 {
		t.Errorf("messages %d complete %v gaps %d", len(res.Messages), res.Messages[0].Complete, res.Gaps)
	}
}

// SIP messages on an accepted socket are counted on it, so a socket
// that carried SIP is told from one that died in the handshake.
func TestSIPCountsOnSocket(t *testing.T) {
	log := readField(t) + strings.NewReplacer("Outgoing SIP Message to 52.114.14.70:5061 from", "Incoming SIP Message from 52.114.75.24:8576 to",
		"TO(#1530)", "TO(#1528) SocketID(7535)").Replace(byeLine) + "\n"
	res, _ := Parse(strings.NewReader(log), Options{Year: 2026})
	if len(res.Sockets) != 1 || res.Sockets[0].SIPMessages != 1 || len(res.Messages) != 1 || !res.Messages[0].Incoming || res.Messages[0].SocketID != 7535 {
		t.Fatalf("%+v %+v", res.Sockets[0], res.Messages)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(byeLine)
	f.Add("<157>[S=1] [SID=a]  (N 1) ---- Incoming SIP Message from 1.2.3.4:5 to SIPInterface #0 (x) TCP TO(#1) ---- #012")
	f.Fuzz(func(t *testing.T, s string) {
		res, err := Parse(strings.NewReader(s), Options{Year: 2026})
		if err != nil {
			return
		}
		for _, m := range res.Messages {
			if len(m.Text) == 0 {
				t.Fatal("empty message emitted")
			}
		}
	})
}

// Other shapes seen from the field (paStash's regexes for 7.20A): the
// empty line after the headers logged as "#012 #012", the closing empty
// line dropped, and a datagram with real line breaks read as several
// lines of a file.
func TestSIPVariants(t *testing.T) {
	cases := map[string]string{
		"space line":                    `<134>[S=1] [SID=a:1:1] (N 1) ---- Incoming SIP Message from 52.114.14.70:5061 to SIPInterface #1 (Teams) TLS TO(#7) ---- #012OPTIONS sip:sbc.contoso.example:5061 SIP/2.0#012Via: SIP/2.0/TLS 52.114.14.70:5061;branch=z9hG4bKo1#012From: <sip:sip.pstnhub.microsoft.com>;tag=a1#012To: <sip:sbc.contoso.example>#012Call-ID: opt-1#012CSeq: 1 OPTIONS#012Content-Length: 0#012 #012 [Time:04-01@10:00:00.000]`,
		"no empty line":                 `<134>[S=1] [SID=a:1:1] (N 1) ---- Incoming SIP Message from 52.114.14.70:5061 to SIPInterface #1 (Teams) TLS TO(#7) ----  OPTIONS sip:sbc.contoso.example:5061 SIP/2.0#012Via: SIP/2.0/TLS 52.114.14.70:5061;branch=z9hG4bKo1#012From: <sip:sip.pstnhub.microsoft.com>;tag=a1#012To: <sip:sbc.contoso.example>#012Call-ID: opt-1#012CSeq: 1 OPTIONS#012Content-Length: 0 [Time:04-01@10:00:00.000]`,
		"real line breaks, with a body": "<134>[S=1] [SID=a:1:1] (N 1) ---- Incoming SIP Message from 52.114.14.70:5061 to SIPInterface #1 (Teams) TLS TO(#7) ---- \r\nOPTIONS sip:sbc.contoso.example:5061 SIP/2.0\r\nVia: SIP/2.0/TLS 52.114.14.70:5061;branch=z9hG4bKo1\r\nFrom: <sip:sip.pstnhub.microsoft.com>;tag=a1\r\nTo: <sip:sbc.contoso.example>\r\nCall-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nab\r\n [Time:04-01@10:00:00.000]",
		"real line breaks":              "<134>[S=1] [SID=a:1:1] (N 1) ---- Incoming SIP Message from 52.114.14.70:5061 to SIPInterface #1 (Teams) TLS TO(#7) ---- \r\nOPTIONS sip:sbc.contoso.example:5061 SIP/2.0\r\nVia: SIP/2.0/TLS 52.114.14.70:5061;branch=z9hG4bKo1\r\nFrom: <sip:sip.pstnhub.microsoft.com>;tag=a1\r\nTo: <sip:sbc.contoso.example>\r\nCall-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n [Time:04-01@10:00:00.000]",
	}
	for name, log := range cases {
		t.Run(name, func(t *testing.T) {
			log += "\n<134>[S=2] [SID=b:1:1] (N 2) unrelated [Time:04-01@10:00:01.000]\n"
			res, _ := Parse(strings.NewReader(log), Options{Year: 2026})
			if len(res.Messages) != 1 || !res.Messages[0].Complete || !res.Messages[0].Incoming {
				t.Fatalf("%+v", res.Messages)
			}
			m := res.Messages[0]
			msg, err := sip.NewParser(0).ParseDatagram(m.Meta, m.Text)
			if err != nil || msg.Method != "OPTIONS" || msg.CallID != "opt-1" {
				t.Fatalf("%v %+v\n%q", err, msg, m.Text)
			}
			if !strings.HasSuffix(string(m.Text), "Content-Length: 0\r\n\r\n") && !strings.HasSuffix(string(m.Text), "Content-Length: 4\r\n\r\nab\r\n") {
				t.Errorf("%q", m.Text)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	field, _ := os.ReadFile("testdata/field-evidence.log")
	var log strings.Builder
	for range 200 {
		log.Write(field)
		log.WriteString(byeLine + "\n")
	}
	s := log.String()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if _, err := Parse(strings.NewReader(s), Options{Year: 2026}); err != nil {
			b.Fatal(err)
		}
	}
}
