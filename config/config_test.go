package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c := Default()
	if c.ShortCall.D() != 10*time.Second || c.ReferWindow.D() != 10*time.Second || c.GiveUpWindow.D() != time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
	for addr, want := range map[string]bool{
		"52.114.75.24":      true,
		"52.120.1.1":        true,
		"52.127.88.5":       true,
		"52.127.64.1":       true,
		"52.116.0.1":        false,
		"192.0.2.10":        false,
		"::ffff:52.112.0.1": true,
	} {
		if got := c.IsMicrosoft(netip.MustParseAddr(addr)); got != want {
			t.Errorf("IsMicrosoft(%s) = %v", addr, got)
		}
	}
	for host, want := range map[string]bool{
		"sip.pstnhub.microsoft.com":          true,
		"SIP2.PSTNHUB.MICROSOFT.COM.":        true,
		"sip.pstnhub.gov.teams.microsoft.us": true,
		"pstnhub.microsoft.com.evil.example": false,
		"sbc.contoso.example":                false,
	} {
		if got := c.IsMicrosoftHost(host); got != want {
			t.Errorf("IsMicrosoftHost(%s) = %v", host, got)
		}
	}
}

func TestParseStrictAndRelativePaths(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte(`
sbcs:
  - name: m800
    fqdns: [sbc.contoso.example]
    addresses: [192.0.2.10]
expect_transfer: ["+49 69 987654"]
short_call: 15s
trust: [ca.pem]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.ShortCall.D() != 15*time.Second || c.Trust[0] != filepath.Join(dir, "ca.pem") {
		t.Fatalf("got %+v", c)
	}
	if !c.ExpectsTransfer("4969987654") || c.ExpectsTransfer("4969") {
		t.Fatal("ExpectsTransfer compares digits")
	}
	if !c.IsSBCAddr(netip.MustParseAddr("192.0.2.10")) {
		t.Fatal("IsSBCAddr")
	}
	for in, want := range map[string]string{
		"bogus: 1\n":                                                   `unknown key "bogus"`,
		"short_call: soon\n":                                           `"soon" is not a duration`,
		"microsoft_ranges: [52.1.2.3/99]\n":                            "microsoft_ranges",
		"sbcs: [{name: a}, {name: a}]\n":                               "duplicate name",
		"sbcs: [{name: a, poll: {method: x}}]":                         "not snmp or rest",
		"sbcs: [{name: a, poll: {method: snmp, interval: -1m}}]":       "must not be negative",
		"sbcs: [{name: a, audit: {targets: [x:5061], interval: -5m}}]": "must not be negative",
	} {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

// TestIsMicrosoftHostASCIIPath: the byte-wise test for ASCII hosts
// answers as lowering a copy does, for any case, trailing dot or
// non-ASCII host.
func TestIsMicrosoftHostASCIIPath(t *testing.T) {
	c := Default()
	c.MicrosoftHostSuffixes = append(c.MicrosoftHostSuffixes, ".Example.ORG", "exact.test")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ref := func(host string) bool {
		h := strings.ToLower(strings.TrimSuffix(host, "."))
		for _, s := range c.msSuffixes {
			if strings.HasSuffix(h, s) || h == strings.TrimPrefix(s, ".") {
				return true
			}
		}
		return false
	}
	hosts := []string{"sip.pstnhub.microsoft.com", "SIP.PSTNHUB.MICROSOFT.COM.", "pstnhub.microsoft.com",
		"xpstnhub.microsoft.com", "microsoft.com", "a.example.org", "EXAMPLE.org", "example.org.", "exact.test",
		"EXACT.TEST.", "notexact.test", "", ".", "sip.pstnhub.microsoft.com\u212a", "é.example.org", "\u212aexample.org"}
	for _, s := range c.msSuffixes {
		hosts = append(hosts, s, strings.ToUpper(s), "x"+s, s[1:])
	}
	for _, h := range hosts {
		if got, want := c.IsMicrosoftHost(h), ref(h); got != want {
			t.Errorf("IsMicrosoftHost(%q) = %v, lowering a copy says %v", h, got, want)
		}
	}
}
