package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/internal/testtool"
)

// A test binary has no VCS stamp, so the -ldflags values are what
// version prints.
func TestVersionFallsBackToLdflags(t *testing.T) {
	defer func(v, c, d string) { version, commit, date = v, c, d }(version, commit, date)
	version, commit, date = "v1.2.3", "0123456789abcdef0123456789abcdef01234567", "2026-12-01T10:00:00Z"
	code, out, _ := runCLI("version")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"sbcwatch v1.2.3\n", "commit: 0123456789abcdef0123456789abcdef01234567\n", "date: 2026-12-01T10:00:00Z\n", "go: go1."} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
	version, commit, date = "dev", "", ""
	if _, out, _ = runCLI("version"); !strings.Contains(out, "commit: unknown\n") || !strings.Contains(out, "sbcwatch dev\n") {
		t.Errorf("without build information:\n%s", out)
	}
}

// `make build` gives a binary whose version shows the checkout's commit:
// from Go's VCS stamp in a clone, from the Makefile's -ldflags where Go
// stamps nothing (a git worktree, whose .git is a file).
func TestVersionShowsCommit(t *testing.T) {
	git := testtool.Need(t, "git")
	mk := testtool.Need(t, "make")
	head, err := exec.Command(git, "rev-parse", "HEAD").Output()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI runs from a git checkout, but git rev-parse HEAD failed: %v", err)
		}
		t.Skipf("not a git checkout (%v): nothing to compare the commit with", err)
	}
	bin := filepath.Join(t.TempDir(), "sbcwatch")
	build := exec.Command(mk, "-s", "-C", "../..", "build", "BIN="+bin)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "commit: " + strings.TrimSpace(string(head))
	if !strings.Contains(string(out), want) {
		t.Fatalf("version output lacks %q:\n%s", want, out)
	}
	if strings.Contains(string(out), "date: unknown") {
		t.Errorf("no build date:\n%s", out)
	}
}
