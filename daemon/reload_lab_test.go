package daemon

import (
	"context"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/internal/testtool"
)

// TestReloadAddsAndRemovesInterfaces (root; ip, tcpreplay): in a network
// namespace with two veth pairs, a reload adds a capture on the second
// interface and changes the SBC's address, so the rebuilt kernel filter
// drops the lab capture's traffic on both; a second reload removes the
// first interface and puts the SBC's address back: the lab traffic is
// captured on the second interface again, and the first is no longer a
// source.
func TestReloadAddsAndRemovesInterfaces(t *testing.T) {
	needRoot(t)
	tcpreplay := testtool.Need(t, "tcpreplay")
	ns := labNetns(t)
	ip := testtool.Need(t, "ip")
	for _, args := range [][]string{
		{"-n", ns, "link", "add", "vrep2", "type", "veth", "peer", "name", "vcap2"},
		{"-n", ns, "link", "set", "vrep2", "up"},
		{"-n", ns, "link", "set", "vcap2", "up"},
	} {
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	spoolDir := t.TempDir()
	load := func(ifcs []string, sbcAddr string) *config.Config {
		cfg, err := config.Load("../testdata/lab/sbcwatch.yaml")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Serve.Interfaces = ifcs
		cfg.Serve.Spool.Dir = spoolDir
		cfg.SBCs[0].Addresses = []string{sbcAddr}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	first := load([]string{"vcap"}, "192.0.2.10")
	var next *config.Config
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	var d *Daemon
	if err := inNetns(t, ns, func() error {
		var err error
		d, err = New(context.Background(), Options{Config: first, Logger: log,
			Reload: func() (*config.Config, error) { return next, nil }})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	d.writer.save = func(context.Context, *batch) error { return nil } // no database here
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.runLive(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	frames := func(name string) (uint64, bool) {
		for _, r := range d.sources() {
			if r.src.Name() == name {
				return r.src.Counters()["frames"], true
			}
		}
		return 0, false
	}
	replay := func(iface string) {
		t.Helper()
		if out, err := exec.Command(ip, "netns", "exec", ns, tcpreplay, "-q", "-t", "-i", iface, labPcap).CombinedOutput(); err != nil {
			t.Fatalf("tcpreplay: %v: %s", err, out)
		}
	}
	reload := func(cfg *config.Config) {
		t.Helper()
		next = cfg
		// Interfaces are looked up and opened in the namespace.
		_ = inNetns(t, ns, func() error { d.applyReload(ctx); return nil })
		if !d.reloadOK.Load() {
			t.Fatal("reload not applied")
		}
	}

	// Reload 1: vcap2 added; the SBC moves to an address the lab
	// capture does not use.
	reload(load([]string{"vcap", "vcap2"}, "198.51.100.1"))
	if _, ok := frames("capture-vcap2"); !ok {
		t.Fatal("capture-vcap2 not started")
	}
	replay("vrep")
	replay("vrep2")
	time.Sleep(time.Second)
	for _, n := range []string{"capture-vcap", "capture-vcap2"} {
		if f, _ := frames(n); f != 0 {
			t.Fatalf("%s took %d frames the rebuilt kernel filter should drop", n, f)
		}
	}

	// Reload 2: vcap removed; the SBC's address back.
	reload(load([]string{"vcap2"}, "192.0.2.10"))
	if _, ok := frames("capture-vcap"); ok {
		t.Fatal("capture-vcap still runs after it was removed")
	}
	replay("vrep2")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if f, _ := frames("capture-vcap2"); f > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("capture-vcap2 took nothing after the filter was rebuilt for the lab address")
		}
	}
	states, ok := d.Ready()
	if !ok || !slices.Equal(slicesSortedKeys(states), []string{"capture-vcap2"}) {
		t.Fatalf("sources after the reloads: %v", states)
	}
	if got := d.cfg.Load().Serve.Interfaces; !slices.Equal(got, []string{"vcap2"}) {
		t.Fatalf("running interfaces %v", got)
	}
	// /metrics exports the running capture, not the removed one.
	mfs, err := d.o.Metrics.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "sbcwatch_source_received_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" {
					seen[l.GetValue()] = true
				}
			}
		}
	}
	if !seen["capture-vcap2"] || seen["capture-vcap"] {
		t.Fatalf("sources on /metrics: %v", seen)
	}
}

func slicesSortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
