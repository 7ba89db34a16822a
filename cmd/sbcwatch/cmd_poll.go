package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/audiocodes/poll"
	"github.com/sbcwatch/sbcwatch/config"
)

const pollUsage = `usage: sbcwatch poll --sbc NAME --config FILE [--format text|json]
       sbcwatch poll --snmp udp://HOST:PORT --community C [--format json]
       sbcwatch poll --snmp udp://HOST:PORT --v3-user U --auth-proto SHA|SHA256 --auth-pass-file F --priv-proto AES --priv-pass-file F
       sbcwatch poll --rest https://HOST --user U --password-file F [--ca FILE]

Reads an AudioCodes SBC's call counters once (AC-KPI-MIB over SNMP, or
the REST /kpi API) and prints them; "n/a" / null means the SBC does not
support the object. Exit 0 on success, 2 on usage errors or when the SBC
cannot be read.

`

// cmdPoll implements `sbcwatch poll`.
func cmdPoll(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sbcwatch poll", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		sbcName    = fs.String("sbc", "", "name of the SBC in the configuration")
		cfgFile    = fs.String("config", "", "configuration file (YAML)")
		format     = fs.String("format", "text", "output format: text or json")
		snmpTarget = fs.String("snmp", "", "SNMP target udp://host:port")
		community  = fs.String("community", "", "SNMP v2c community")
		commFile   = fs.String("community-file", "", "file holding the SNMP v2c community")
		v3User     = fs.String("v3-user", "", "SNMPv3 user (authPriv)")
		authProto  = fs.String("auth-proto", "SHA", "SNMPv3 auth protocol: SHA or SHA256")
		authFile   = fs.String("auth-pass-file", "", "file holding the SNMPv3 auth passphrase")
		privProto  = fs.String("priv-proto", "AES", "SNMPv3 privacy protocol: AES")
		privFile   = fs.String("priv-pass-file", "", "file holding the SNMPv3 privacy passphrase")
		restURL    = fs.String("rest", "", "REST base URL https://host")
		user       = fs.String("user", "", "REST user")
		pwFile     = fs.String("password-file", "", "file holding the REST password")
		caFile     = fs.String("ca", "", "PEM file with the CA (or self-signed certificate) of the device")
		timeout    = fs.Duration("timeout", 0, "timeout of one attempt (default: config, else 5s)")
		retries    = fs.Int("retries", -1, "retries after a failed attempt (default: config, else 1)")
	)
	fs.StringVar(v3User, "v3", "", "alias of --v3-user")
	if _, code, ok := parseArgs(fs, args, false, pollUsage, stdout, stderr); !ok {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sbcwatch poll: "+format+"\n", a...)
		return exitUsage
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	if *format != "text" && *format != "json" {
		return fail("--format %q is not text or json", *format)
	}

	var sbc config.SBC
	modes := 0
	for _, set := range []bool{*cfgFile != "", *snmpTarget != "", *restURL != ""} {
		if set {
			modes++
		}
	}
	switch {
	case modes != 1:
		return fail("give exactly one of --config (with --sbc), --snmp or --rest")
	case *cfgFile != "":
		cfg, err := config.Load(*cfgFile)
		if err != nil {
			return fail("%v", err)
		}
		s, err := pollPickSBC(cfg, *sbcName)
		if err != nil {
			return fail("%v", err)
		}
		sbc = s
	case *snmpTarget != "":
		p := &config.Poll{Method: "snmp", SNMP: config.SNMP{Target: *snmpTarget}}
		if *v3User != "" {
			p.SNMP.Version, p.SNMP.User = "3", *v3User
			p.SNMP.AuthProto, p.SNMP.AuthPassFile = *authProto, *authFile
			p.SNMP.PrivProto, p.SNMP.PrivPassFile = *privProto, *privFile
			if *authFile == "" || *privFile == "" {
				return fail("--v3-user needs --auth-pass-file and --priv-pass-file")
			}
		} else {
			p.SNMP.Version, p.SNMP.Community, p.SNMP.CommunityFile = "2c", *community, *commFile
		}
		sbc = config.SBC{Name: pollHostOf(*snmpTarget), Poll: p}
	default:
		if *user == "" || *pwFile == "" {
			return fail("--rest needs --user and --password-file")
		}
		sbc = config.SBC{Name: pollHostOf(*restURL), Poll: &config.Poll{Method: "rest",
			REST: config.REST{URL: *restURL, User: *user, PasswordFile: *pwFile, CAFile: *caFile}}}
	}
	if *sbcName != "" && *cfgFile == "" {
		sbc.Name = *sbcName
	}
	rt := poll.Retry{Timeout: sbc.Poll.Timeout.D(), Retries: sbc.Poll.Retries, Backoff: time.Second, MaxBackoff: 5 * time.Second}
	if *cfgFile == "" {
		rt.Timeout, rt.Retries = 5*time.Second, 1
	}
	if *timeout > 0 {
		rt.Timeout = *timeout
	}
	if *retries >= 0 {
		rt.Retries = *retries
	}
	if rt.Timeout > 0 {
		sbc.Poll.Timeout = config.Duration(rt.Timeout)
	}

	r, err := poll.NewReader(sbc)
	if err != nil {
		return fail("%v", err)
	}
	rd, err := poll.ReadOnce(ctx, r, rt)
	if err != nil {
		return fail("%s unreachable: %v", sbc.Name, pollOneLine(err))
	}
	if rd.Supported() == 0 {
		fmt.Fprintf(stderr, "sbcwatch poll: warning: %s answered no call statistics (not an AudioCodes SBC with AC-KPI-MIB / the /kpi API?)\n", sbc.Name)
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rd); err != nil {
			return fail("%v", err)
		}
		return exitOK
	}
	if err := rd.WriteText(stdout); err != nil {
		return fail("%v", err)
	}
	return exitOK
}

// pollPickSBC returns the named SBC, or the only one with poll settings.
func pollPickSBC(cfg *config.Config, name string) (config.SBC, error) {
	var polled []config.SBC
	for _, s := range cfg.SBCs {
		if name != "" && s.Name == name {
			if s.Poll == nil {
				return s, fmt.Errorf("sbc %q has no poll settings", name)
			}
			return s, nil
		}
		if s.Poll != nil {
			polled = append(polled, s)
		}
	}
	if name != "" {
		return config.SBC{}, fmt.Errorf("no sbc %q in the configuration", name)
	}
	if len(polled) != 1 {
		return config.SBC{}, fmt.Errorf("%d SBCs have poll settings: name one with --sbc", len(polled))
	}
	return polled[0], nil
}

// pollHostOf names an ad-hoc SBC after its target host.
func pollHostOf(target string) string {
	s := target
	if _, rest, ok := strings.Cut(s, "://"); ok {
		s = rest
	}
	s, _, _ = strings.Cut(s, "/")
	return s
}

// pollOneLine keeps an error on one line (errors.Join uses newlines).
func pollOneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
