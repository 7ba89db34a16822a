package sipx

import (
	"bufio"
	"strings"
	"testing"
)

func TestRoundTripStream(t *testing.T) {
	m := NewRequest("INVITE", "sip:+496912345600@sip.pstnhub.microsoft.com:5061;user=phone")
	m.Add("Via", "SIP/2.0/TLS 192.0.2.10:5061;alias;branch=z9hG4bKabc")
	m.Add("From", "<sip:+4917012345601@sbc.contoso.example;user=phone>;tag=f1")
	m.Add("To", "<sip:+496912345600@sip.pstnhub.microsoft.com;user=phone>")
	m.Add("Call-ID", "x@192.0.2.10").Add("CSeq", "1 INVITE")
	m.Body = []byte("v=0\r\n")
	raw := m.Bytes()
	r := bufio.NewReader(strings.NewReader("\r\n" + string(raw) + string(raw)))
	for i := 0; i < 2; i++ {
		got, err := Read(r)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Bytes()) != string(raw) {
			t.Fatalf("re-serialised differs:\n%q\n%q", got.Bytes(), raw)
		}
	}
	resp := Response(m, 200, "OK", "t9")
	if Tag(resp.Get("To")) != "t9" || Tag(resp.Get("From")) != "f1" || resp.Method() != "INVITE" || resp.Status() != 200 {
		t.Fatalf("response %q", resp.Bytes())
	}
	if User(m.Get("From")) != "+4917012345601" || URI("<sip:a@b;x=1>;tag=2") != "sip:a@b;x=1" {
		t.Fatal("User/URI")
	}
	d, err := Parse(raw)
	if err != nil || string(d.Body) != "v=0\r\n" {
		t.Fatalf("Parse: %v %q", err, d.Body)
	}
}
