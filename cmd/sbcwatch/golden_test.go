package main

import (
	"context"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sbcwatch/sbcwatch/store/storetest"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestCLIGolden")

// lab is the lab's failed-transfer capture and its configuration.
var (
	labPcap   = filepath.Join("..", "..", "testdata", "lab", "transfer_fails_default_cert.pcap")
	labConfig = filepath.Join("..", "..", "testdata", "lab", "sbcwatch.yaml")
)

// TestCLIGolden runs the CLI and compares exit code, standard output and
// standard error with testdata/golden/NAME.txt (go test -run
// TestCLIGolden -update rewrites them).
func TestCLIGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"help", []string{"help"}, exitOK},
		{"help-analyze", []string{"help", "analyze"}, exitOK},
		{"help-audit", []string{"help", "audit"}, exitOK},
		{"help-token", []string{"help", "token"}, exitOK},
		{"help-unknown", []string{"help", "frobnicate"}, exitUsage},
		{"analyze-duration-hint", []string{"analyze", "--short-call", "10", labPcap}, exitUsage},
		{"analyze-typo", []string{"analyze", "--numbr", "12345600", labPcap}, exitUsage},
		{"analyze-needs-value", []string{"analyze", labPcap, "--format"}, exitUsage},
		{"analyze-bad-int", []string{"analyze", "--limit", "ten", labPcap}, exitUsage},
		{"analyze-bad-time", []string{"analyze", "--since", "yesterday", labPcap}, exitUsage},
		{"analyze-bad-bool", []string{"analyze", "--progress=maybe", labPcap}, exitUsage},
		{"poll-duration-hint", []string{"poll", "--timeout", "5"}, exitUsage},
		{"audit-typo", []string{"audit", "tls", "sbc.example:5061", "--tiemout", "5s"}, exitUsage},
		{"config-typo", []string{"analyze", "--config", filepath.Join("testdata", "typo.yaml"), labPcap}, exitUsage},
		{"report-80", []string{"analyze", "--config", labConfig, "--width", "80", labPcap}, exitOK},
		{"report-number", []string{"analyze", "--config", labConfig, "--width", "80", "--number", "069 12345600", "--only-findings", labPcap}, exitOK},
		{"report-csv", []string{"analyze", "--config", labConfig, "--format", "csv", "--number", "12345600", labPcap}, exitOK},
		{"report-limit", []string{"analyze", "--config", labConfig, "--width", "80", "--limit", "1", "--until", "2026-11-21T20:52:18.5Z", labPcap}, exitOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, errOut)
			}
			if tc.code == exitUsage && strings.Count(strings.TrimRight(errOut, "\n"), "\n") != 0 {
				t.Errorf("the error is not one line: %q", errOut)
			}
			if strings.HasPrefix(tc.name, "report-") && tc.name != "report-csv" {
				for i, l := range strings.Split(out, "\n") {
					if n := utf8.RuneCountInString(l); n > 80 {
						t.Errorf("line %d is %d columns wide: %q", i+1, n, l)
					}
				}
			}
			got := "exit " + strconv.Itoa(code) + "\n--- stdout\n" + out + "--- stderr\n" + errOut
			golden(t, tc.name, got)
		})
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name+".txt")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestCLIGolden -update)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -run TestCLIGolden -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// Every command's -h prints its help on standard output and exits 0.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"help"}, {"analyze", "-h"}, {"analyze", "--help"}, {"serve", "-h"}, {"audit", "-h"},
		{"audit", "tls", "-h"}, {"poll", "-h"}, {"migrate", "-h"}, {"token", "-h"}, {"token", "create", "-h"},
		{"token", "list", "--help"}, {"help", "serve"}, {"help", "poll"}, {"help", "migrate"},
	} {
		code, out, errOut := runCLI(args...)
		if code != exitOK || !strings.Contains(out, "usage: sbcwatch") || errOut != "" {
			t.Errorf("%v: exit %d, stdout %d bytes, stderr %q", args, code, len(out), errOut)
		}
	}
}

var createdbRE = regexp.MustCompile(`^sbcwatch migrate: database "sbcwatch_missing_13" does not exist on [^ ]+: create it with 'createdb -h [^ ]+ -p \d+ sbcwatch_missing_13', then run 'sbcwatch migrate'\n$`)

// A database that does not exist gets the createdb command to run.
func TestMissingDatabaseSaysCreatedb(t *testing.T) {
	storetest.New(t) // the server answers (or the test says why not)
	u, err := url.Parse(storetest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/sbcwatch_missing_13"
	ctx := context.Background()
	var o, e strings.Builder
	code := run(ctx, []string{"migrate", "--db", u.String()}, &o, &e)
	if code != exitUsage || !createdbRE.MatchString(e.String()) {
		t.Fatalf("exit %d, stderr %q", code, e.String())
	}
}
