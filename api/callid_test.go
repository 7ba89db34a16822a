package api

import (
	"net/url"
	"testing"

	"github.com/sbcwatch/sbcwatch/sip"
)

// A Call-ID that was not valid UTF-8 on the wire is stored and served in
// sip.CallIDText's form, and that form (as printed) looks the call up.
func TestCallIDNotUTF8(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	callID := sip.CallIDText("api\xff\xfe\\1@192.0.2.10")
	if callID != `api\xff\xfe\\1@192.0.2.10` {
		t.Fatalf("CallIDText = %q", callID)
	}
	b.seedFieldCase(t, callID)
	got := b.do(t, "GET", "/api/v1/calls/"+url.PathEscape(callID), b.read, nil)
	if got.status != 200 {
		t.Fatalf("detail: %d %s", got.status, got.body)
	}
	var d CallDetail
	got.json(t, &d)
	if d.Call.CallID != callID || len(d.Messages) == 0 {
		t.Fatalf("call %q with %d messages, want %q", d.Call.CallID, len(d.Messages), callID)
	}
	if sip.CallIDBytes(d.Call.CallID) != "api\xff\xfe\\1@192.0.2.10" {
		t.Fatalf("CallIDBytes(%q) does not give the wire bytes back", d.Call.CallID)
	}
}
