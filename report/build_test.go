package report

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// The record keeps the warning alerts a handshake carried on after, and
// the HelloRetryRequest mark, in the JSON contract's "tls" entries.
func TestConnViewWarnings(t *testing.T) {
	c := &tlsaudit.Conn{Outcome: tlsaudit.OutcomeEstablished, Warnings: []string{"unrecognized_name (server)"}, HelloRetry: true,
		Alerts: []tlsaudit.Alert{{From: "server", Level: 1, Description: 112, Name: "unrecognized_name"}}}
	b, err := json.Marshal(ConnView(c))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.Contains(s, `"warnings":["unrecognized_name (server)"]`) || !strings.Contains(s, `"hello_retry":true`) ||
		!strings.Contains(s, `"alert":""`) {
		t.Errorf("tls entry %s", s)
	}
}
