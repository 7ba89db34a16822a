package sip

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the want.json sections of testdata/golden/*.txtar")

// archive is a minimal txtar: a comment, then "-- name --" sections.
type archive struct {
	comment string
	names   []string
	files   map[string][]byte
}

func readArchive(t *testing.T, path string) *archive {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a := &archive{files: map[string][]byte{}}
	cur := ""
	var buf []byte
	flush := func() {
		if cur == "" {
			a.comment = string(buf)
		} else {
			a.names = append(a.names, cur)
			a.files[cur] = buf
		}
		buf = nil
	}
	for _, line := range strings.SplitAfter(string(b), "\n") {
		l := strings.TrimRight(line, "\n")
		if strings.HasPrefix(l, "-- ") && strings.HasSuffix(l, " --") && len(l) > 6 {
			flush()
			cur = strings.TrimSpace(l[3 : len(l)-3])
			continue
		}
		buf = append(buf, line...)
	}
	flush()
	return a
}

func (a *archive) bytes() []byte {
	var b bytes.Buffer
	b.WriteString(a.comment)
	for _, n := range a.names {
		b.WriteString("-- " + n + " --\n")
		b.Write(a.files[n])
	}
	return b.Bytes()
}

// wireMessage turns a fixture written with LF line ends into SIP text:
// CRLF line ends, and "Content-Length: *" replaced by the body length.
func wireMessage(s string) []byte {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\n", "\r\n")
	if i := strings.Index(s, "\r\n\r\n"); i >= 0 {
		body := len(s) - i - 4
		s = strings.Replace(s, "Content-Length: *\r\n", "Content-Length: "+strconv.Itoa(body)+"\r\n", 1)
	}
	return []byte(s)
}

var testMeta = MessageMeta{
	Time:      time.Date(2026, 4, 1, 9, 55, 5, 313000000, time.UTC),
	Frame:     42,
	Src:       netip.MustParseAddrPort("192.168.2.10:5061"),
	Dst:       netip.MustParseAddrPort("52.114.75.24:5061"),
	Transport: "tls",
	Origin:    "wire",
}

// goldenView is what a golden file pins: every Message field but Raw,
// whose length stands in.
func goldenView(m *Message, err error) any {
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	c := *m
	raw := len(c.Raw)
	c.Raw = nil
	return struct {
		Message
		RawLen int
	}{c, raw}
}

// quotedBytes reads a "wire" or "stream" section: one Go string literal
// per line (so every CR and LF is visible), concatenated; lines starting
// with # are comments.
func quotedBytes(t testing.TB, sec []byte) []byte {
	t.Helper()
	var out []byte
	for _, l := range strings.Split(string(sec), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		s, err := strconv.Unquote(l)
		if err != nil {
			t.Fatalf("section line %q: %v", l, err)
		}
		out = append(out, s...)
	}
	return out
}

// goldenInput returns the bytes of a golden file's message and whether
// they are a TCP stream: "msg" (LF lines fed as CRLF, see wireMessage),
// "wire" (one datagram, exact bytes) or "stream" (exact bytes of one TCP
// direction).
func goldenInput(t testing.TB, a *archive) ([]byte, bool) {
	t.Helper()
	switch {
	case a.files["msg"] != nil:
		return wireMessage(string(a.files["msg"])), false
	case a.files["wire"] != nil:
		return quotedBytes(t, a.files["wire"]), false
	case a.files["stream"] != nil:
		return quotedBytes(t, a.files["stream"]), true
	}
	t.Fatal("no msg, wire or stream section")
	return nil, false
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	p := NewParser(0)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txtar"), func(t *testing.T) {
			a := readArchive(t, f)
			in, stream := goldenInput(t, a)
			var view any
			if stream {
				var c collected
				st := p.NewStream(c.emit)
				st.Write(testMeta, in)
				var msgs []any
				for _, m := range c.msgs {
					msgs = append(msgs, goldenView(m, nil))
				}
				view = map[string]any{"messages": msgs, "errors": st.Errors()}
			} else {
				view = goldenView(p.ParseDatagram(testMeta, in))
			}
			got, err := json.MarshalIndent(view, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			if *update {
				if _, ok := a.files["want.json"]; !ok {
					a.names = append(a.names, "want.json")
				}
				a.files["want.json"] = got
				if err := os.WriteFile(f, a.bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if want := a.files["want.json"]; !bytes.Equal(got, want) {
				t.Errorf("%s: got\n%s\nwant\n%s", f, got, want)
			}
		})
	}
}

// TestFields checks the lifted fields that matter most to the tracker,
// so a careless -update cannot bless a regression in them.
func TestFields(t *testing.T) {
	p := NewParser(0)
	parse := func(t *testing.T, name string) *Message {
		t.Helper()
		a := readArchive(t, "testdata/golden/"+name+".txtar")
		m, err := p.ParseDatagram(testMeta, wireMessage(string(a.files["msg"])))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return m
	}
	t.Run("field BYE", func(t *testing.T) {
		m := parse(t, "field-bye")
		check(t, "method", m.Method, "BYE")
		check(t, "cause", m.Q850Cause, 22)
		check(t, "text", m.ReasonText, "<guid>;MediaError")
		check(t, "reason", m.ReasonHdr, `Q.850 ;cause=22 ;text="<guid>;MediaError"`)
		check(t, "from tag", m.FromTag, "1c2029136551")
		check(t, "to tag", m.ToTag, "fded3353c9f143a3aa8383bc0e58583d")
		check(t, "from user", m.FromUser, "+xxxxx")
		check(t, "cseq", m.CSeq, uint32(3))
		check(t, "branch", m.Branch, "xxxx")
		check(t, "ua", m.UserAgent, "M800C/v.7.40A.100.114")
		check(t, "allow has REFER", strings.Contains(m.Allow, "REFER"), true)
		check(t, "time", m.Time, testMeta.Time)
		check(t, "frame", m.Frame, uint64(42))
	})
	t.Run("compact", func(t *testing.T) {
		m := parse(t, "compact-form")
		check(t, "call-id", m.CallID, "105090259-446faf7a@192.168.1.2")
		check(t, "from tag", m.FromTag, "6433ef9")
		check(t, "to user", m.ToUser, "97239287044")
		check(t, "content type", m.ContentType, "application/sdp")
		check(t, "sdp", strings.Join(m.SDPAddrs, ","), "192.168.1.2")
		check(t, "branch", m.Branch, "z9hG4bKnp104984053-44ce4a41192.168.1.2")
	})
	t.Run("several reasons", func(t *testing.T) {
		m := parse(t, "several-reasons")
		check(t, "cause", m.Q850Cause, 16)
		check(t, "text", m.ReasonText, "Normal call clearing")
	})
	t.Run("tel", func(t *testing.T) {
		m := parse(t, "tel-uris")
		check(t, "from", m.FromUser, "+4930111222")
		check(t, "to", m.ToUser, "+4969123456")
		check(t, "ruri", m.RequestURI, "tel:+4969123456;phone-context=+49")
		check(t, "pai", m.PAI, "sip:+4930111333@carrier.example;user=phone")
	})
	t.Run("refer", func(t *testing.T) {
		m := parse(t, "refer-replaces")
		check(t, "replaces", m.Replaces, "abc@host;to-tag=111;from-tag=222")
		check(t, "referred-by", m.ReferredBy, "<sip:sip.pstnhub.microsoft.com;x-m=8:orgid:1234;x-t=tenant-1;x-ti=corr-1>")
		check(t, "refer-to prefix", strings.HasPrefix(m.ReferTo, "sip:+4969777888@sip.pstnhub.microsoft.com;user=phone?Replaces="), true)
	})
	t.Run("notify", func(t *testing.T) {
		m := parse(t, "notify-sipfrag")
		check(t, "sipfrag", m.SipFrag, "SIP/2.0 100 Trying")
		check(t, "event", m.Event, "refer;id=3")
		check(t, "substate", m.SubState, "active;expires=60")
	})
	t.Run("folded", func(t *testing.T) {
		m := parse(t, "folded-headers")
		check(t, "to user", m.ToUser, "+4969123456")
		check(t, "allow", m.Allow, "INVITE, ACK, OPTIONS, CANCEL, BYE, NOTIFY, REFER")
	})
	t.Run("response", func(t *testing.T) {
		m := parse(t, "ok-response")
		check(t, "status", m.StatusCode, 200)
		check(t, "method", m.Method, "INVITE")
		check(t, "vias", len(m.Via), 2)
		check(t, "rr", len(m.RecordRoute), 3)
		check(t, "ua", strings.HasPrefix(m.UserAgent, "Microsoft.PSTNHub"), true)
		check(t, "sdp", strings.Join(m.SDPAddrs, ","), "52.114.0.10,52.114.0.11")
		check(t, "allow", m.Allow, "INVITE, ACK, OPTIONS, CANCEL, BYE, REFER, NOTIFY")
	})
}

func check[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestParseDatagramErrors(t *testing.T) {
	p := NewParser(300)
	for _, tc := range []struct {
		name string
		in   string
		want error
	}{
		{"keep-alive", "\r\n\r\n", ErrKeepAlive},
		{"too large", "OPTIONS sip:a SIP/2.0\r\n" + strings.Repeat("X-Pad: 0123456789\r\n", 20) + "\r\n", ErrTooLarge},
		{"version", "OPTIONS sip:a@b SIP/3.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n", ErrInvalid},
		{"no call-id", "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCSeq: 1 OPTIONS\r\n\r\n", ErrInvalid},
		{"cseq not a number", "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: notanumber OPTIONS\r\n\r\n", nil},
		{"two to", "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nt: <sip:e@f>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n", ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := p.ParseDatagram(testMeta, []byte(tc.in))
			if tc.want == nil && err != nil && m == nil {
				return // refused; sipgo's own error
			}
			if tc.want == nil || !errors.Is(err, tc.want) || m != nil {
				t.Fatalf("got %v, %v; want error %v", m, err, tc.want)
			}
		})
	}
	// Garbage is an error, not a panic.
	for _, in := range []string{"", "\x00\x01\x02", "HTTP/1.1 200 OK\r\n\r\n", "INVITE\r\n", "SIP/2.0 200\r\n\r\n"} {
		if _, err := p.ParseDatagram(testMeta, []byte(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestParseDatagramLenient(t *testing.T) {
	// A Contact or Refer-To sipgo would refuse must not lose the message.
	in := "REFER sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n" +
		"Call-ID: x\r\nCSeq: 5 REFER\r\nContact: <<<weird\r\nRefer-To: <sip:target@ms.example;x-m=a,b>\r\nMax-Forwards: many\r\n\r\n"
	m, err := NewParser(0).ParseDatagram(testMeta, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "refer-to", m.ReferTo, "sip:target@ms.example;x-m=a,b")
	check(t, "trailing bytes ignored", len(m.Raw), len(in))
}

func TestRequestURIAsWritten(t *testing.T) {
	in := "INVITE SIP:+4969777888@SIP.pstnhub.microsoft.com;X-M=%41;user=phone SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\r\n" +
		"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"
	m, err := NewParser(0).ParseDatagram(testMeta, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "request-uri", m.RequestURI, "SIP:+4969777888@SIP.pstnhub.microsoft.com;X-M=%41;user=phone")
}
