package metrics_test

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/sbcwatch/sbcwatch/internal/testtool"
	"github.com/sbcwatch/sbcwatch/metrics"
)

const rulesFile = "../deploy/prometheus/sbcwatch-alerts.yml"

// The example alert rules parse (promtool check rules) and name only
// metrics this package exports.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool := testtool.Need(t, "promtool")
	out, err := exec.Command(promtool, "check", "rules", rulesFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check rules: %s", out)
	}

	known := map[string]bool{}
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		metrics.NewStoreCollector(nil, metrics.StoreOptions{}).Describe(ch)
		close(ch)
	}()
	re := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range ch {
		known[re.FindStringSubmatch(d.String())[1]] = true
	}
	mfs, err := metrics.New("v", "r", "d").Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		known[mf.GetName()] = true
	}
	// The per-source counters exist once a source reports.
	for _, n := range []string{"received_total", "dropped_total", "malformed_total", "kernel_drops_total", "queue_depth", "spool_bytes"} {
		known["sbcwatch_source_"+n] = true
	}
	// serve's own collector (package daemon, which imports this one;
	// cmd/sbcwatch TestServeSIGHUPReloads checks them on a running serve).
	for _, n := range []string{"config_last_reload_successful", "config_last_reload_success_timestamp_seconds"} {
		known["sbcwatch_"+n] = true
	}
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`sbcwatch_[a-z_]+`).FindAllString(string(rules), -1)
	if len(used) < 8 {
		t.Fatalf("only %d metric names in the rules", len(used))
	}
	for _, n := range used {
		if !known[n] {
			t.Errorf("the rules use %s, which sbcwatch does not export", n)
		}
	}
}

// What the registry serves passes promtool check metrics (names, units,
// help texts).
func TestPromtoolCheckMetrics(t *testing.T) {
	t.Parallel()
	promtool := testtool.Need(t, "promtool")
	r := metrics.New("v", "r", "d")
	src := r.Source("hep", "0.0.0.0:9060")
	src.Received(3)
	r.ObserveHTTP("/healthz", "GET", 200, 0)
	mfs, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
