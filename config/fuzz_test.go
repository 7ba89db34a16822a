package config

import (
	"net/netip"
	"os"
	"testing"
)

// FuzzParse: any bytes give a config or an error, never a panic; a config
// that parses answers its questions and is stable when parsed again from
// the same bytes.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../sbcwatch.example.yaml"); err == nil {
		f.Add(b)
	}
	if b, err := os.ReadFile("../testdata/lab/sbcwatch.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("microsoft_ranges: [52.112.0.0/14]\nshort_call: 10s\n"))
	f.Add([]byte("sbcs:\n  - name: a\n    addresses: [192.0.2.1, '::1']\n    fqdns: ['*.x']\n"))
	f.Add([]byte("limits: {max_dialogs: -1}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			if c != nil {
				t.Fatalf("config and error: %v", err)
			}
			return
		}
		for _, a := range []string{"52.114.75.24", "192.0.2.10", "::1", "2603:1063::1"} {
			c.IsMicrosoft(netip.MustParseAddr(a))
			c.IsSBCAddr(netip.MustParseAddr(a))
		}
		c.IsMicrosoftHost("sip.pstnhub.microsoft.com")
		c.ExpectsTransfer("+4969987654")
		c.SBCFQDNs()
		again, err := Parse(b)
		if err != nil || len(again.SBCs) != len(c.SBCs) || again.ShortCall != c.ShortCall {
			t.Fatalf("parsing the same bytes again: %v", err)
		}
	})
}
