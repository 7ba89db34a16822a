package report

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
)

// TestSpoolManyRuns spools more records than fit in one run, out of
// order, with updated findings and references between them, and checks
// the merged report against the one built in memory.
func TestSpoolManyRuns(t *testing.T) {
	for _, fanIn := range []int{spoolFanIn, 3} {
		t.Run(fmt.Sprintf("fanIn=%d", fanIn), func(t *testing.T) { testSpoolManyRuns(t, fanIn) })
	}
}

func testSpoolManyRuns(t *testing.T, fanIn int) {
	sp, err := NewSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	sp.run, sp.fanIn = 7, fanIn
	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	var calls []*sip.Call
	var fs []*finding.Finding
	for i := 0; i < 100; i++ {
		// Calls arrive as they end, not as they start.
		c := &sip.Call{CallID: fmt.Sprintf("c%03d", i), Kind: "invite", Start: t0.Add(time.Duration((i*37)%100) * time.Second),
			Caller: netip.MustParseAddrPort("192.0.2.1:5060")}
		calls = append(calls, c)
		sp.Call(c)
		f := finding.New(finding.ShortCall, finding.Warning, c.Start, "call %s <short> & odd", c.CallID)
		f.ID = fmt.Sprintf("F%d", i+1)
		f.CallID = c.CallID
		f.Evidence["n"] = i
		if i%10 == 9 {
			f.Cites = []string{fmt.Sprintf("F%d", i)}
		}
		fs = append(fs, f)
		sp.Finding(f)
	}
	// An update: the same ID, more evidence.
	up := *fs[3]
	up.Evidence = map[string]any{"n": 3, "updated": true}
	fs[3] = &up
	sp.Finding(&up)

	all := append([]*finding.Finding(nil), fs...)
	sortLess(all)
	Renumber(all)
	want := Build(calls, nil, all)
	var a, b bytes.Buffer
	if err := want.WriteJSON(&a); err != nil {
		t.Fatal(err)
	}
	if err := sp.WriteJSON(&b, want.Stats, nil, nil); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Fatalf("spooled report differs:\n--- memory\n%s\n--- spool\n%s", a.String(), b.String())
	}
	if n := len(sp.kinds[kindCall].runs); fanIn == spoolFanIn && n < 10 {
		t.Fatalf("only %d runs: the merge was not exercised", n)
	} else if fanIn < spoolFanIn && (sp.merged == 0 || n >= fanIn) {
		t.Fatalf("%d runs, %d merged: runs were not compacted under fan-in %d", n, sp.merged, fanIn)
	}
}

func sortLess(fs []*finding.Finding) {
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && finding.Less(fs[j], fs[j-1]); j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
}
