package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// LoadAll reads a file like Load but also returns a configuration that
// does not validate, with every problem in the error, so that flags can
// be applied over it and `serve --check-config` can list every problem at
// once. A file that is not valid YAML (or names unknown keys) returns no
// configuration.
func LoadAll(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, errIOEOF) {
		return nil, fmt.Errorf("%s: config: %w", path, explainYAML(b, err))
	}
	c.ApplyDefaults()
	c.resolvePaths(filepath.Dir(path))
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Capture tunes AF_PACKET capture.
type Capture struct {
	// RingMB is the size of the kernel ring per interface (default 64).
	RingMB int `yaml:"ring_mb"`
	// Ports are the TCP/UDP ports the kernel filter keeps (default 5060,
	// 5061, 925, 9060, plus the ports of acdr_listen and hep_listen).
	Ports []int `yaml:"ports"`
	// KeepRTP keeps every UDP datagram of the SBC's addresses (RTP
	// included); by default the kernel drops what is not on Ports.
	KeepRTP bool `yaml:"keep_rtp"`
}

// Spool is the on-disk queue of pending writes.
type Spool struct {
	// Dir holds the spool files; empty keeps pending writes in memory
	// only (bounded, lost on exit).
	Dir string `yaml:"dir"`
	// MaxMB bounds the spool (default 1024); past it, new writes are
	// dropped, counted and logged.
	MaxMB int `yaml:"max_mb"`
}

// Alerts configures the webhooks.
type Alerts struct {
	// MinSeverity is the least severe finding sent: critical or warning
	// (default warning).
	MinSeverity string `yaml:"min_severity"`
	// Webhooks receive each new finding once.
	Webhooks []Webhook `yaml:"webhooks"`
	// Provisional also alerts on provisional findings, with a follow-up
	// when one is retracted (default false: a provisional finding alerts
	// once it is confirmed).
	Provisional bool `yaml:"provisional"`
}

// Webhook is one alert destination.
type Webhook struct {
	Name string `yaml:"name"`
	// Kind is "json" (a JSON POST signed with HMAC-SHA256) or "teams" (a
	// Microsoft Teams channel message through a Workflows webhook).
	Kind string `yaml:"kind"`
	URL  string `yaml:"url"`
	// SecretFile or SecretEnv hold the HMAC key of a json webhook.
	SecretFile string `yaml:"secret_file"`
	SecretEnv  string `yaml:"secret_env"`
}

// Secret reads the webhook's HMAC key from its file or environment
// variable ("" when neither is set).
func (w Webhook) Secret() (string, error) {
	switch {
	case w.SecretFile != "":
		b, err := os.ReadFile(w.SecretFile)
		if err != nil {
			return "", fmt.Errorf("config: webhook %s: secret: %w", w.Name, err)
		}
		return strings.TrimSpace(string(b)), nil
	case w.SecretEnv != "":
		v := os.Getenv(w.SecretEnv)
		if v == "" {
			return "", fmt.Errorf("config: webhook %s: secret: $%s is empty or unset", w.Name, w.SecretEnv)
		}
		return v, nil
	}
	return "", nil
}

func (s *Serve) applyDefaults() {
	setInt(&s.QueueSize, 4096)
	setDur(&s.OptionsMissingAfter, 3*time.Minute)
	setDur(&s.ProvisionalAfter, time.Minute)
	setDur(&s.ShutdownTimeout, 10*time.Second)
	setInt(&s.Capture.RingMB, 64)
	setInt(&s.Spool.MaxMB, 1024)
	if s.Alerts.MinSeverity == "" {
		s.Alerts.MinSeverity = "warning"
	}
	if s.Instance == "" {
		if h, err := os.Hostname(); err == nil {
			s.Instance = h
		}
	}
	for i := range s.Alerts.Webhooks {
		if s.Alerts.Webhooks[i].Kind == "" {
			s.Alerts.Webhooks[i].Kind = "json"
		}
	}
}

// validate returns every problem of the serve section.
func (s *Serve) validate() []error {
	var errs []error
	addr := func(key, v string) {
		if v == "" {
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			errs = append(errs, fmt.Errorf("serve.%s: %q is not host:port: %w", key, v, err))
		}
	}
	addr("listen", s.Listen)
	addr("acdr_listen", s.ACDRListen)
	addr("hep_listen", s.HEPListen)
	addr("syslog_listen", s.SyslogListen)
	seen := map[string]bool{}
	for i, n := range s.Interfaces {
		switch {
		case strings.TrimSpace(n) == "":
			errs = append(errs, fmt.Errorf("serve.interfaces[%d]: empty name", i))
		case seen[n]:
			errs = append(errs, fmt.Errorf("serve.interfaces[%d]: %q listed twice", i, n))
		}
		seen[n] = true
	}
	if s.Retention < 0 {
		errs = append(errs, errors.New("serve.retention_days must not be negative"))
	}
	if s.MaxPolls < 0 {
		errs = append(errs, errors.New("serve.max_concurrent_polls must not be negative"))
	}
	if s.QueueSize < 0 {
		errs = append(errs, errors.New("serve.queue_size must not be negative"))
	}
	if s.OptionsMissingAfter.D() < 0 || s.ShutdownTimeout.D() < 0 {
		errs = append(errs, errors.New("serve: options_missing_after and shutdown_timeout must not be negative"))
	}
	if s.Capture.RingMB < 0 || s.Capture.RingMB > 4096 {
		errs = append(errs, fmt.Errorf("serve.capture.ring_mb: %d is not between 1 and 4096", s.Capture.RingMB))
	}
	for i, p := range s.Capture.Ports {
		if p <= 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("serve.capture.ports[%d]: %d is not a port", i, p))
		}
	}
	if s.Spool.MaxMB < 0 {
		errs = append(errs, errors.New("serve.spool.max_mb must not be negative"))
	}
	if s.Alerts.MinSeverity != "critical" && s.Alerts.MinSeverity != "warning" {
		errs = append(errs, fmt.Errorf("serve.alerts.min_severity: %q is not critical or warning", s.Alerts.MinSeverity))
	}
	names := map[string]bool{}
	for i, w := range s.Alerts.Webhooks {
		at := fmt.Sprintf("serve.alerts.webhooks[%d]", i)
		if w.Name == "" {
			errs = append(errs, fmt.Errorf("%s: name is required", at))
		} else if names[w.Name] {
			errs = append(errs, fmt.Errorf("%s: duplicate name %q", at, w.Name))
		}
		names[w.Name] = true
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s: url %q is not an http(s) URL", at, w.URL))
		}
		switch w.Kind {
		case "json":
			if w.SecretFile == "" && w.SecretEnv == "" {
				errs = append(errs, fmt.Errorf("%s: a json webhook needs secret_file or secret_env (its HMAC-SHA256 key)", at))
			}
			if w.SecretFile != "" && w.SecretEnv != "" {
				errs = append(errs, fmt.Errorf("%s: set secret_file or secret_env, not both", at))
			}
		case "teams":
			if w.SecretFile != "" || w.SecretEnv != "" {
				errs = append(errs, fmt.Errorf("%s: a teams webhook takes no secret (its URL is the secret)", at))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: kind %q is not json or teams", at, w.Kind))
		}
	}
	return errs
}
