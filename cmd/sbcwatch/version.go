package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Set with -ldflags "-X main.version=... -X main.commit=... -X main.date=..."
// (the Makefile does) for builds without VCS information, such as a
// Docker build without .git; the build info wins when it has them.
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// buildInfo is what `sbcwatch version` prints and sbcwatch_build_info
// carries.
type buildInfo struct {
	Version, Commit, Date, Go string
	Modified                  bool
}

// readBuildInfo combines the ldflags values with the module version and
// the vcs.revision, vcs.time and vcs.modified settings Go records when
// building from a git checkout.
func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Date: date, Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if v := bi.Main.Version; b.Version == "dev" && v != "" && v != "(devel)" {
		b.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.Date = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

func (b buildInfo) write(w io.Writer) {
	c := b.Commit
	if c == "" {
		c = "unknown"
	}
	if b.Modified {
		c += " (modified)"
	}
	d := b.Date
	if d == "" {
		d = "unknown"
	}
	fmt.Fprintf(w, "sbcwatch %s\ncommit: %s\ndate: %s\ngo: %s\n", b.Version, c, d, b.Go)
}
