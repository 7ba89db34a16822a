package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestOrderBoundAndReopen: records come back in append order across
// segments and a reopen; a full spool refuses and counts; a torn tail is
// skipped and counted.
func TestOrderBoundAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.Append(fmt.Appendf(nil, "r%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	seg, ok, err := s.Oldest()
	if err != nil || !ok || len(seg.Records) != 3 || string(seg.Records[2]) != "r2" {
		t.Fatalf("oldest: %v %v %q", ok, err, seg.Records)
	}
	// Appends after Oldest go to a new segment; the first is removed.
	if err := s.Append([]byte("r3")); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(seg); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	seg, ok, err = s.Oldest()
	if err != nil || !ok || len(seg.Records) != 1 || string(seg.Records[0]) != "r3" {
		t.Fatalf("after reopen: %v %v %q", ok, err, seg.Records)
	}
	if err := s.Remove(seg); err != nil {
		t.Fatal(err)
	}
	if !s.Empty() || s.Stats().Bytes != 0 {
		t.Fatalf("not empty: %+v", s.Stats())
	}

	// Bound.
	small, err := Open(t.TempDir(), 30)
	if err != nil {
		t.Fatal(err)
	}
	if err := small.Append(make([]byte, 20)); err != nil {
		t.Fatal(err)
	}
	if err := small.Append(make([]byte, 20)); !errors.Is(err, ErrFull) {
		t.Fatalf("over the bound: %v", err)
	}
	if st := small.Stats(); st.Dropped != 1 || st.Appended != 1 {
		t.Fatalf("stats %+v", st)
	}

	// Torn tail: a record cut short by a crash.
	tdir := t.TempDir()
	ts, _ := Open(tdir, 1<<20)
	_ = ts.Append([]byte("whole"))
	ts.Close()
	f, _ := os.OpenFile(filepath.Join(tdir, fmt.Sprintf("%020d.seg", 1)), os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{0, 0, 0, 9, 1, 2, 3, 4, 'x'})
	f.Close()
	ts, _ = Open(tdir, 1<<20)
	seg, _, _ = ts.Oldest()
	if len(seg.Records) != 1 || string(seg.Records[0]) != "whole" || ts.Stats().Torn != 1 {
		t.Fatalf("torn: %q %+v", seg.Records, ts.Stats())
	}
}
