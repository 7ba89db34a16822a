package main

import (
	"strings"
	"testing"
)

// A mistyped flag gets the nearest defined one as a hint: by edit
// distance, or a flag that contains what was typed.
func TestUnknownFlagHint(t *testing.T) {
	for _, c := range []struct{ flag, want string }{
		{"--formt", "did you mean --format?"},
		{"--keep", "did you mean --keep-packets?"}, // contained in it
		{"--widht", "did you mean --width?"},
		{"--zzzzzzzz", "unknown flag --zzzzzzzz (try -h)"}, // nothing close
	} {
		code, out, errOut := runCLI("analyze", c.flag, "x.pcap")
		if code != exitUsage || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", c.flag, code, errOut, exitUsage, c.want)
		}
	}
}
