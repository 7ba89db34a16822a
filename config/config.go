// Package config holds the settings shared by `sbcwatch analyze` and
// `sbcwatch serve`: which addresses and names are the SBC, which are
// Microsoft, which numbers expect a transfer, the thresholds of the rules,
// and (for serve) the pollers and audits. It is loaded from YAML with
// unknown fields rejected, defaults applied first and validated at load.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultMicrosoftRanges are the Direct Routing signaling and media ranges
// (commercial, GCC High, DoD); see docs/direct-routing-facts.md §4.1.
var DefaultMicrosoftRanges = []string{
	"52.112.0.0/14",
	"52.120.0.0/14",
	"52.127.64.0/21",
	"52.127.88.0/21",
}

// DefaultMicrosoftHostSuffixes mark a SIP host as Microsoft's proxy.
var DefaultMicrosoftHostSuffixes = []string{
	".pstnhub.microsoft.com",
	".pstnhub.gov.teams.microsoft.us",
	".pstnhub.dod.teams.microsoft.us",
}

// Duration is a time.Duration that reads "10s", "1m" from YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		// A TypeError is collected with the others (an unknown key
		// elsewhere is still reported), not the end of decoding.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration: use a number with a unit, such as 10s, 1m30s or 2h", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is the whole configuration. Field comments are the user docs.
type Config struct {
	// SBCs lists the SBCs watched. analyze needs none: it infers the SBC
	// side as the non-Microsoft peer of a Microsoft dialog.
	SBCs []SBC `yaml:"sbcs"`
	// MicrosoftRanges are CIDR prefixes whose addresses are Microsoft's
	// SIP proxies and media processors.
	MicrosoftRanges []string `yaml:"microsoft_ranges"`
	// MicrosoftHostSuffixes mark SIP hosts as Microsoft's (Via, Contact,
	// Record-Route, Request-URI).
	MicrosoftHostSuffixes []string `yaml:"microsoft_host_suffixes"`
	// ExpectTransfer lists called numbers (Auto Attendant resource
	// accounts) whose answered calls should end in a REFER. Compared on
	// digits only, so "+4969..." and "4969..." match.
	ExpectTransfer []string `yaml:"expect_transfer"`
	// ShortCall is the short-call threshold (default 10s).
	ShortCall Duration `yaml:"short_call"`
	// ReferWindow is how long after an accepted REFER the SBC has to send
	// the new INVITE and a NOTIFY (default 10s).
	ReferWindow Duration `yaml:"refer_window"`
	// GiveUpWindow is how soon after the last failed inbound TLS attempt a
	// dialog must end to be blamed for a lost REFER (default 60s).
	GiveUpWindow Duration `yaml:"give_up_window"`
	// ExpiryWarning is how early tls_cert_expiring fires (default 720h).
	ExpiryWarning Duration `yaml:"expiry_warning"`
	// Trust lists PEM files whose certificates are trusted roots.
	Trust []string `yaml:"trust"`
	// NoSystemRoots leaves the system roots out of the trust store.
	NoSystemRoots bool `yaml:"no_system_roots"`
	// DialogTimeout ends a dialog that saw no message for this long on
	// the capture clock (default 4h), bounding state.
	DialogTimeout Duration `yaml:"dialog_timeout"`
	// TeamsTLSContextID is the SBC's TLS context configured for the Teams
	// proxy set (AudioCodes "ContextID"); unset, it is inferred from the
	// Microsoft connections in the SBC's log that matched a proxy set.
	TeamsTLSContextID *int `yaml:"teams_tls_context_id"`
	// LogYear is the year of an SBC log's device dates (they carry none);
	// 0 takes the year of the log file's modification time.
	LogYear int `yaml:"log_year"`
	// LogTimezone is the IANA zone of the SBC's device clock (default UTC).
	LogTimezone string `yaml:"log_timezone"`
	// Limits bounds memory on any input.
	Limits Limits `yaml:"limits"`
	// Serve holds the daemon's settings.
	Serve Serve `yaml:"serve"`

	// Parsed forms of the fields above, filled by Validate.
	msPrefixes []netip.Prefix
	msSuffixes []string
	sbcAddrs   []netip.Addr
	validated  bool
}

// SBC is one watched SBC.
type SBC struct {
	// Name identifies the SBC in findings, the store and the API.
	Name string `yaml:"name"`
	// FQDNs are the names Microsoft uses for the SBC (certificate names).
	FQDNs []string `yaml:"fqdns"`
	// Addresses are the SBC's own IP addresses.
	Addresses []string `yaml:"addresses"`
	// Poll configures the counter poller (SNMP or REST).
	Poll *Poll `yaml:"poll"`
	// Audit configures scheduled TLS audits.
	Audit *Audit `yaml:"audit"`
}

// Poll is a per-SBC poller configuration.
type Poll struct {
	// Method is "snmp" or "rest".
	Method   string   `yaml:"method"`
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	Retries  int      `yaml:"retries"`
	SNMP     SNMP     `yaml:"snmp"`
	REST     REST     `yaml:"rest"`
	// ShortCallRatio is the short/established ratio per interval above
	// which short_calls_spike fires (default 0.3).
	ShortCallRatio float64 `yaml:"short_call_ratio"`
	// MissesBeforeFinding is N for sbc_unreachable (default 3).
	MissesBeforeFinding int `yaml:"misses_before_finding"`
}

// SNMP settings; secrets may come from files.
type SNMP struct {
	Target        string `yaml:"target"`  // udp://host:port
	Version       string `yaml:"version"` // 2c or 3
	Community     string `yaml:"community"`
	CommunityFile string `yaml:"community_file"`
	User          string `yaml:"user"`
	AuthProto     string `yaml:"auth_proto"` // SHA, SHA256
	AuthPass      string `yaml:"auth_pass"`
	AuthPassFile  string `yaml:"auth_pass_file"`
	PrivProto     string `yaml:"priv_proto"` // AES
	PrivPass      string `yaml:"priv_pass"`
	PrivPassFile  string `yaml:"priv_pass_file"`
}

// REST settings for the AudioCodes REST API.
type REST struct {
	URL          string `yaml:"url"` // https://host
	User         string `yaml:"user"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	CAFile       string `yaml:"ca_file"`
}

// Audit is a per-SBC scheduled TLS audit.
type Audit struct {
	Targets  []string `yaml:"targets"` // host:port
	SNI      []string `yaml:"sni"`
	Interval Duration `yaml:"interval"`
	Count    int      `yaml:"count"`
}

// Limits bounds memory.
type Limits struct {
	// MaxBufferedPagesPerConn and MaxBufferedPagesTotal bound TCP
	// reassembly buffers (pages of ~1900 bytes).
	MaxBufferedPagesPerConn int `yaml:"max_buffered_pages_per_conn"`
	MaxBufferedPagesTotal   int `yaml:"max_buffered_pages_total"`
	// MaxSIPMessage bounds one SIP message (default 65535 bytes).
	MaxSIPMessage int `yaml:"max_sip_message"`
	// MaxDialogs bounds tracked Call-IDs; the oldest idle ones are closed
	// first (default 50000: an open call costs about 14 KB, so about
	// 700 MB at the bound, sized for a 2-core/4 GB host; see README.md).
	MaxDialogs int `yaml:"max_dialogs"`
	// MaxMessagesPerCall bounds the messages kept for a ladder (the count
	// is always exact; default 500).
	MaxMessagesPerCall int `yaml:"max_messages_per_call"`
	// MaxKeptMessages bounds the SIP messages kept for ladders across all
	// calls of one analysis (default 200000); past it, each call still
	// keeps its first 16 messages and is marked truncated, with exact
	// counts and summaries.
	MaxKeptMessages int `yaml:"max_kept_messages"`
	// MaxTLSConns bounds tracked TLS connections (default 200000).
	MaxTLSConns int `yaml:"max_tls_conns"`
	// MaxWindowCalls, MaxWindowConns and MaxWindowEvents bound what the
	// streaming correlation holds while its windows pass: calls let go
	// by the tracker and not yet judged or still needed as context
	// (default 100000), ended TLS connections (default 100000), and
	// INVITEs, REFERs and SBC log sockets (default 200000 each). Records
	// dropped early are counted in the report's stats.
	MaxWindowCalls  int `yaml:"max_window_calls"`
	MaxWindowConns  int `yaml:"max_window_conns"`
	MaxWindowEvents int `yaml:"max_window_events"`
}

// Serve holds the daemon settings (serve.go has the types of the live
// inputs, the spool and the alerts, their defaults and checks).
type Serve struct {
	Listen string `yaml:"listen"`
	// Interfaces are captured with AF_PACKET (Linux, CAP_NET_RAW).
	Interfaces []string `yaml:"interfaces"`
	// ACDRListen, HEPListen and SyslogListen (host:port) each listen on
	// UDP and TCP at that address.
	ACDRListen   string `yaml:"acdr_listen"`
	HEPListen    string `yaml:"hep_listen"`
	SyslogListen string `yaml:"syslog_listen"`
	Retention    int    `yaml:"retention_days"`
	MaxPolls     int    `yaml:"max_concurrent_polls"`
	// Instance names this serve process in every row it stores, so that
	// several instances (one per site or SBC pair) can share a database
	// (default: the host name).
	Instance string `yaml:"instance"`
	// Capture tunes packet capture on Interfaces.
	Capture Capture `yaml:"capture"`
	// QueueSize bounds the items waiting from each source (default
	// 4096); past it, items are dropped and counted.
	QueueSize int `yaml:"queue_size"`
	// OptionsMissingAfter is how long the SBC and a Microsoft proxy may go
	// without OPTIONS before options_missing fires (default 3m).
	OptionsMissingAfter Duration `yaml:"options_missing_after"`
	// ProvisionalAfter is how long after a call's last message serve
	// judges refer_delivery_failed on the evidence so far and reports it
	// provisional, before the full verdict at the correlation lag (about
	// 2.5 min) confirms or retracts it (default 60s; negative: off).
	ProvisionalAfter Duration `yaml:"provisional_after"`
	// Spool keeps pending writes on disk while the database is down or
	// slow.
	Spool Spool `yaml:"spool"`
	// ShutdownTimeout bounds the last writes on SIGTERM (default 10s).
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// Alerts sends new critical and warning findings to webhooks.
	Alerts Alerts `yaml:"alerts"`

	// ResolveAfterDays resolves a stored problem not seen again for this
	// many days (default 14; -1 never).
	ResolveAfterDays int `yaml:"resolve_after_days"`
}

// Default returns a configuration with every default applied.
func Default() *Config {
	c := &Config{}
	c.ApplyDefaults()
	return c
}

// ApplyDefaults fills unset fields with their defaults.
func (c *Config) ApplyDefaults() {
	if len(c.MicrosoftRanges) == 0 {
		c.MicrosoftRanges = append([]string(nil), DefaultMicrosoftRanges...)
	}
	if len(c.MicrosoftHostSuffixes) == 0 {
		c.MicrosoftHostSuffixes = append([]string(nil), DefaultMicrosoftHostSuffixes...)
	}
	setDur(&c.ShortCall, 10*time.Second)
	setDur(&c.ReferWindow, 10*time.Second)
	setDur(&c.GiveUpWindow, 60*time.Second)
	setDur(&c.ExpiryWarning, 30*24*time.Hour)
	setDur(&c.DialogTimeout, 4*time.Hour)
	setInt(&c.Limits.MaxBufferedPagesPerConn, 4096)
	setInt(&c.Limits.MaxBufferedPagesTotal, 65536)
	setInt(&c.Limits.MaxSIPMessage, 65535)
	setInt(&c.Limits.MaxDialogs, 50000)
	setInt(&c.Limits.MaxMessagesPerCall, 500)
	setInt(&c.Limits.MaxKeptMessages, 200000)
	setInt(&c.Limits.MaxTLSConns, 200000)
	setInt(&c.Limits.MaxWindowCalls, 100000)
	setInt(&c.Limits.MaxWindowConns, 100000)
	setInt(&c.Limits.MaxWindowEvents, 200000)
	setInt(&c.Serve.Retention, 30)
	setInt(&c.Serve.ResolveAfterDays, 14)
	setInt(&c.Serve.MaxPolls, 8)
	if c.Serve.Listen == "" {
		c.Serve.Listen = "127.0.0.1:8080"
	}
	c.Serve.applyDefaults()
	for i := range c.SBCs {
		if p := c.SBCs[i].Poll; p != nil {
			setDur(&p.Interval, time.Minute)
			setDur(&p.Timeout, 5*time.Second)
			setInt(&p.Retries, 2)
			setInt(&p.MissesBeforeFinding, 3)
			if p.ShortCallRatio == 0 {
				p.ShortCallRatio = 0.3
			}
			if p.SNMP.Version == "" {
				p.SNMP.Version = "2c"
			}
		}
		if a := c.SBCs[i].Audit; a != nil {
			setDur(&a.Interval, 15*time.Minute)
			setInt(&a.Count, 20)
		}
	}
}

func setDur(d *Duration, v time.Duration) {
	if *d == 0 {
		*d = Duration(v)
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

// Load reads, defaults and validates a YAML file. Relative file paths in
// it (trust stores, secret files) are taken relative to the file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.resolvePaths(filepath.Dir(path))
	return c, nil
}

// resolvePaths makes the relative file paths of c relative to dir.
func (c *Config) resolvePaths(dir string) {
	rel := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.Trust {
		rel(&c.Trust[i])
	}
	for _, s := range c.SBCs {
		if p := s.Poll; p != nil {
			rel(&p.SNMP.CommunityFile)
			rel(&p.SNMP.AuthPassFile)
			rel(&p.SNMP.PrivPassFile)
			rel(&p.REST.PasswordFile)
			rel(&p.REST.CAFile)
		}
	}
	rel(&c.Serve.Spool.Dir)
	for i := range c.Serve.Alerts.Webhooks {
		rel(&c.Serve.Alerts.Webhooks[i].SecretFile)
	}
}

// Parse decodes YAML strictly, applies defaults and validates.
func Parse(b []byte) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, errIOEOF) {
		return nil, fmt.Errorf("config: %w", explainYAML(b, err))
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks every field and joins all problems into one error.
func (c *Config) Validate() error {
	var errs []error
	c.msPrefixes = c.msPrefixes[:0]
	c.msSuffixes = c.msSuffixes[:0]
	c.sbcAddrs = c.sbcAddrs[:0]
	for _, s := range c.MicrosoftHostSuffixes {
		c.msSuffixes = append(c.msSuffixes, strings.ToLower(s))
	}
	for _, r := range c.MicrosoftRanges {
		p, err := netip.ParsePrefix(strings.TrimSpace(r))
		if err != nil {
			errs = append(errs, fmt.Errorf("microsoft_ranges: %w", err))
			continue
		}
		c.msPrefixes = append(c.msPrefixes, p.Masked())
	}
	names := map[string]bool{}
	for i, s := range c.SBCs {
		if s.Name == "" {
			errs = append(errs, fmt.Errorf("sbcs[%d]: name is required", i))
		} else if names[s.Name] {
			errs = append(errs, fmt.Errorf("sbcs[%d]: duplicate name %q", i, s.Name))
		}
		names[s.Name] = true
		for _, a := range s.Addresses {
			p, err := netip.ParseAddr(a)
			if err != nil {
				errs = append(errs, fmt.Errorf("sbcs[%d].addresses: %w", i, err))
				continue
			}
			c.sbcAddrs = append(c.sbcAddrs, p.Unmap())
		}
		if p := s.Poll; p != nil {
			if p.Method != "snmp" && p.Method != "rest" {
				errs = append(errs, fmt.Errorf("sbcs[%d].poll.method: %q is not snmp or rest", i, p.Method))
			}
			if p.Interval.D() < 0 || p.Timeout.D() < 0 || p.Retries < 0 {
				errs = append(errs, fmt.Errorf("sbcs[%d].poll: interval, timeout and retries must not be negative", i))
			}
		}
		if a := s.Audit; a != nil && (a.Interval.D() < 0 || a.Count < 0) {
			errs = append(errs, fmt.Errorf("sbcs[%d].audit: interval and count must not be negative", i))
		}
	}
	if c.LogTimezone != "" {
		if _, err := time.LoadLocation(c.LogTimezone); err != nil {
			errs = append(errs, fmt.Errorf("log_timezone: %w", err))
		}
	}
	if c.ShortCall.D() < 0 || c.ReferWindow.D() < 0 || c.GiveUpWindow.D() < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	errs = append(errs, c.Serve.validate()...)
	c.validated = true
	if len(errs) > 0 {
		return fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return nil
}

// parsed makes sure the parsed forms exist (for a Config built in code
// without Validate).
func (c *Config) parsed() {
	if !c.validated {
		_ = c.Validate()
	}
}

// IsMicrosoft reports whether addr lies in a Microsoft range.
func (c *Config) IsMicrosoft(addr netip.Addr) bool {
	c.parsed()
	addr = addr.Unmap()
	for _, p := range c.msPrefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// IsMicrosoftHost reports whether a SIP host name is Microsoft's proxy.
func (c *Config) IsMicrosoftHost(host string) bool {
	c.parsed()
	h := strings.TrimSuffix(host, ".")
	if isASCII(h) {
		// The same test without lowering a copy: it runs for several
		// headers of every SIP message.
		for _, s := range c.msSuffixes {
			if len(h) >= len(s) && asciiLowerEq(h[len(h)-len(s):], s) {
				return true
			}
			if t := strings.TrimPrefix(s, "."); len(h) == len(t) && asciiLowerEq(h, t) {
				return true
			}
		}
		return false
	}
	h = strings.ToLower(h)
	for _, s := range c.msSuffixes {
		if strings.HasSuffix(h, s) || h == strings.TrimPrefix(s, ".") {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// asciiLowerEq reports whether strings.ToLower(h) == s for an ASCII h.
func asciiLowerEq(h, s string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// IsSBCAddr reports whether addr is one of the configured SBC addresses.
func (c *Config) IsSBCAddr(addr netip.Addr) bool {
	c.parsed()
	return slices.Contains(c.sbcAddrs, addr.Unmap())
}

// SBCFQDNs returns every configured SBC FQDN.
func (c *Config) SBCFQDNs() []string {
	var out []string
	for _, s := range c.SBCs {
		out = append(out, s.FQDNs...)
	}
	return out
}

// ExpectsTransfer reports whether a called number is configured as
// expecting a transfer, comparing digits only.
func (c *Config) ExpectsTransfer(number string) bool {
	d := Digits(number)
	if d == "" {
		return false
	}
	for _, n := range c.ExpectTransfer {
		if Digits(n) == d {
			return true
		}
	}
	return false
}

// Digits keeps only the decimal digits of s.
func Digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}
