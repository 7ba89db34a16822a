package main

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"
)

// The ladder of --call fits --width like the report does: no line wider
// than 80 columns, every step still there (its time and addresses on one
// line, what it carried under it), the findings with their words wrapped.
func TestLadderFitsWidth(t *testing.T) {
	const call = "752b01c65f7d53cc77ff@192.0.2.10"
	code, wide, errOut := runCLI("analyze", "--config", labConfig, "--call", call, labPcap)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	code, narrow, errOut := runCLI("analyze", "--config", labConfig, "--call", call, "--width", "80", labPcap)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	long := false
	for _, l := range strings.Split(wide, "\n") {
		long = long || utf8.RuneCountInString(l) > 80
	}
	if !long {
		t.Fatalf("the unlimited ladder has no line over 80 columns; the test proves nothing:\n%s", wide)
	}
	for _, l := range strings.Split(narrow, "\n") {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	for _, want := range []string{
		"20:52:31.412  52.114.75.24:47543 => 192.0.2.10:5061",
		"20:52:44.034  52.114.75.24:54115 => 192.0.2.10:5061",
		"    tls · new TLS connection · sni=sbc.contoso.example;",
		"20:52:47.418  192.0.2.10:34569 -> 52.114.132.46:5061",
		"    tcp/acdr · BYE · CSeq 2 BYE; Reason Q.850 ;cause=22",
		"  F1 CRITICAL refer_delivery_failed\n      Call " + call,
	} {
		if !strings.Contains(narrow, want) {
			t.Errorf("narrow ladder lacks %q:\n%s", want, narrow)
		}
	}
	// As many steps as the one-line ladder has.
	steps := func(s string) int { return strings.Count(s, " -> ") + strings.Count(s, " => ") }
	if steps(narrow) != steps(wide) || steps(wide) != 11 {
		t.Errorf("steps: narrow %d, wide %d, want 11", steps(narrow), steps(wide))
	}
}

// A Call-ID the capture lacks is one line and exit 2, text or JSON, with
// or without --store (the analysis streams; the call is looked up at the
// end).
func TestCallNotFound(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		code, out, errOut := runCLI("analyze", "--config", labConfig, "--format", format, "--call", "no\"such@call", labPcap)
		want := "sbcwatch analyze: no call with Call-ID \"no\\\"such@call\" in this capture\n"
		if code != exitUsage || out != "" || errOut != want {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d and %q", format, code, out, errOut, exitUsage, want)
		}
	}
}

// --call goes with --store (and --keep-packets): the ladder is the one
// printed without the store, and the store gets the whole analysis, the
// frames behind the calls too.
func TestCallWithStore(t *testing.T) {
	const call = "752b01c65f7d53cc77ff@192.0.2.10"
	code, want, errOut := runCLI("analyze", "--config", labConfig, "--call", call, labPcap)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	dsn := testDatabase(t)
	code, got, errOut := runCLI("analyze", "--config", labConfig, "--store", "--keep-packets", "--db", dsn, "--call", call, labPcap)
	if code != exitOK || got != want {
		t.Fatalf("--call --store: exit %d, stderr %s\ngot\n%s\nwant\n%s", code, errOut, got, want)
	}
	if !strings.Contains(errOut, "stored under SBC") {
		t.Fatalf("no store summary on stderr: %q", errOut)
	}
	st, err := storeOpen(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for table, least := range map[string]int{"calls": 2, "tls_connections": 2, "findings": 2, "packets": 20} {
		var n int
		if err := st.Pool().QueryRow(context.Background(), "select count(*) from "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n < least {
			t.Errorf("%s: %d rows stored, want at least %d", table, n, least)
		}
	}
}
