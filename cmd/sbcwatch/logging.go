package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// logFlags are --log-format and --log-level; their defaults come from
// SBCWATCH_LOG_FORMAT and SBCWATCH_LOG_LEVEL (for containers and units).
type logFlags struct{ format, level string }

func addLogFlags(fs *flag.FlagSet, getenv func(string) string) *logFlags {
	l := &logFlags{}
	fs.StringVar(&l.format, "log-format", envOr(getenv, "SBCWATCH_LOG_FORMAT", "text"), "log format: text or json (default $SBCWATCH_LOG_FORMAT, else text)")
	fs.StringVar(&l.level, "log-level", envOr(getenv, "SBCWATCH_LOG_LEVEL", "info"), "log level: debug, info, warn or error (default $SBCWATCH_LOG_LEVEL, else info)")
	return l
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// logger returns the logger the flags ask for, writing to w, or a
// one-line error for a bad value.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.TrimSpace(l.level))); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(strings.TrimSpace(l.format)) {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", l.format)
}
