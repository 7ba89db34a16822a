package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestLogFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SBCWATCH_LOG_FORMAT": "json"}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	lf := addLogFlags(fs, func(k string) string { return env[k] })
	if err := fs.Parse([]string{"--log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log, err := lf.logger(&buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "sbc", "lab")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line (format from the environment): %q", buf.String())
	}
	if line["msg"] != "shown" || line["level"] != "WARN" || line["sbc"] != "lab" {
		t.Errorf("log line %v", line)
	}

	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	lf = addLogFlags(fs, func(string) string { return "" })
	_ = fs.Parse([]string{"--log-level", "debug"})
	buf.Reset()
	log, _ = lf.logger(&buf)
	log.Debug("dbg")
	if !strings.HasPrefix(buf.String(), "time=") || !strings.Contains(buf.String(), "msg=dbg") {
		t.Errorf("text at debug: %q", buf.String())
	}
}

func TestServeRejectsBadLogFlags(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ args, want string }{
		{"--log-format yaml", `--log-format "yaml": want text or json`},
		{"--log-level loud", `--log-level "loud": want debug, info, warn or error`},
	} {
		code, _, errOut := runCLI(append([]string{"serve", "--db", "postgres://127.0.0.1:1/x"}, strings.Fields(c.args)...)...)
		if code != exitUsage || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%s: exit %d, %q", c.args, code, errOut)
		}
	}
}
