// Package testtool holds helpers shared by the tests of several packages.
package testtool

import (
	"os"
	"os/exec"
	"testing"
)

// Need returns the path of a program a test needs. When it is missing the
// test skips and says why, except under CI (CI=true), where it fails:
// scripts/deps.sh installs every such program, so a missing one is a
// broken set-up, not a reason to pass.
func Need(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI (scripts/deps.sh installs it)", name)
		}
		t.Skipf("%s not installed; run scripts/deps.sh", name)
	}
	return p
}
