package api

import (
	"strings"
	"testing"
)

func TestMetricsCountOpenProblems(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	b.seedFieldCase(t, "metrics@x")
	m := string(b.do(t, "GET", "/metrics", "", nil).body)
	for _, want := range []string{
		"# TYPE sbcwatch_open_problems gauge",
		`sbcwatch_open_problems{rule="refer_delivery_failed",sbc="sbc1",severity="critical"} 1`,
		`sbcwatch_open_problems_unacknowledged{rule="refer_delivery_failed",sbc="sbc1",severity="critical"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
}
