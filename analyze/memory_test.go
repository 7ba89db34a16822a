package analyze

import (
	"context"
	"io"
	"runtime"
	"slices"
	"testing"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// heapPeak samples the live heap (after a collection) and keeps the
// highest.
type heapPeak struct{ base, peak uint64 }

func (h *heapPeak) sample() {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	h.peak = max(h.peak, m.HeapAlloc)
}

func (h *heapPeak) start() {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	h.base, h.peak = m.HeapAlloc, m.HeapAlloc
}

func (h *heapPeak) grew() uint64 { return h.peak - min(h.base, h.peak) }

// discardPackets is a PacketSink that keeps nothing.
type discardPackets struct{ frames int }

func (d *discardPackets) Call(*sip.Call)             {}
func (d *discardPackets) TLSConn(*tlsaudit.Conn)     {}
func (d *discardPackets) Finding(*finding.Finding)   {}
func (d *discardPackets) Packets(ps []report.Packet) { d.frames += len(ps) }

// TestCallAndKeepPacketsMemoryFlat: `analyze --call` (report.CallSpool)
// and --keep-packets (the keeper, its frames handed on as decided) hold
// as much heap on a generated busy capture of 20 000 calls as on one of
// 2 000 (150 calls up at once, a TLS connection from "Microsoft" every
// 10 calls, on the calls' ladders): memory follows the calls up at once
// and the windows, not the input. The in-memory paths they replaced (the
// whole report; every frame held to the end) break the same bound, or
// the bound would prove nothing.
func TestCallAndKeepPacketsMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("analyses 44 000 generated calls four times; not in -short")
	}
	small, large := busyCapture(t, "2000", "150"), busyCapture(t, "20000", "150")
	cfg := config.Default()
	cfg.SBCs = []config.SBC{{Name: "gen", Addresses: []string{"192.0.2.10"}}}
	cfg.MicrosoftRanges = append(slices.Clone(config.DefaultMicrosoftRanges), "198.51.100.0/24")
	ctx := context.Background()
	// Sequential: the read-ahead's batches in flight add noise, not
	// growth.
	run := func(path string, h *heapPeak, keep bool, sink func() (any, error)) {
		opt := Options{Config: cfg, Sequential: true, Progress: func(int64, int64) { h.sample() }}
		if keep {
			opt.KeepPackets = &PacketLimits{}
		}
		h.start()
		s, err := sink()
		if err != nil {
			t.Fatal(err)
		}
		h.sample()
		switch s := s.(type) {
		case *report.CallSpool:
			defer s.Close()
			if _, err := Stream(ctx, []string{path}, opt, s); err != nil {
				t.Fatal(err)
			}
			if err := s.WriteLadder(io.Discard, 0); err != nil {
				t.Fatal(err)
			}
		case *discardPackets:
			if _, err := Stream(ctx, []string{path}, opt, s); err != nil {
				t.Fatal(err)
			}
			if s.frames == 0 {
				t.Fatal("no frames kept")
			}
		case string: // the controls
			var r *report.Report
			var err error
			if keep {
				r, err = oldFiles(ctx, []string{path}, opt)
			} else {
				r, err = Files(ctx, []string{path}, opt)
			}
			if err != nil {
				t.Fatal(err)
			}
			h.sample()
			if err := r.WriteLadder(io.Discard, s); err != nil {
				t.Fatal(err)
			}
		}
		h.sample()
	}
	const call = "gen-1000@198.51.100.7"
	cases := []struct {
		name    string
		keep    bool
		control bool
		sink    func() (any, error)
	}{
		{"--call", false, false, func() (any, error) { return report.NewCallSpool(t.TempDir(), call) }},
		{"--keep-packets", true, false, func() (any, error) { return &discardPackets{}, nil }},
		{"control: --call on the report in memory", false, true, func() (any, error) { return call, nil }},
		{"control: --keep-packets holding every frame", true, true, func() (any, error) { return call, nil }},
	}
	for _, c := range cases {
		var hs, hl heapPeak
		run(small, &hs, c.keep, c.sink)
		run(large, &hl, c.keep, c.sink)
		t.Logf("%s: heap grew %d KB on 2 000 calls, %d KB on 20 000", c.name, hs.grew()>>10, hl.grew()>>10)
		limit := 2*hs.grew() + 4<<20
		if c.control != (hl.grew() > limit) {
			t.Errorf("%s: %d KB on 2 000 calls, %d KB on 20 000 (limit %d KB)", c.name, hs.grew()>>10, hl.grew()>>10, limit>>10)
		}
	}
}
