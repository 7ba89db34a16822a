package report

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// Spool builds the report from records as a streaming analysis decides
// them, without holding them: each call, TLS connection and finding is
// written, as its JSON view, to a temporary file in sorted runs, and the
// report is written at the end by merging the runs (calls by start, TLS
// connections by first packet, findings most severe first, numbered
// F1..Fn in that order). A finding sent again with the same ID replaces
// the earlier one. Memory is bounded by the run size, whatever the
// input's length. It has the methods of pipeline.Sink.
type Spool struct {
	dir     string
	kinds   [3]*spoolKind
	seq     uint64
	err     error
	latest  latestSeq       // finding ID -> seq of its latest version
	refs    map[string]bool // IDs other findings refer to
	run     int             // records per sorted run
	fanIn   int             // runs of a kind before they are merged into one
	merged  int             // merged runs written (their names)
	scratch []byte          // reused to encode a call view

	// Counters for the summary line.
	calls, answered, microsoft, conns, failed int
	sev                                       map[finding.Severity]int
}

// spoolRun is how many records a run holds before it is sorted and
// written.
const spoolRun = 8192

// spoolFanIn is how many runs of a kind are merged into one.
const spoolFanIn = 64

const (
	kindCall = iota
	kindTLS
	kindFinding
)

// spoolKind is the sorted runs of one kind of record.
type spoolKind struct {
	buf  []spoolRec
	runs []string
}

// spoolRec is one record with its sort key.
type spoolRec struct {
	p    int64    // severity and rule priority (findings)
	s0   string   // rule (findings)
	t    int64    // time, ns
	s1   string   // call id
	s2   string   // connection
	seq  uint64   // arrival order: ties, and which version of a finding is latest
	id   string   // finding ID
	data []byte   // the JSON view
	refs []string // IDs this finding refers to: cites first, then the evidence's
	nc   int      // how many of refs are cites
}

func compareRec(x, y *spoolRec) int {
	return cmp.Or(cmp.Compare(x.p, y.p), strings.Compare(x.s0, y.s0), cmp.Compare(x.t, y.t),
		strings.Compare(x.s1, y.s1), strings.Compare(x.s2, y.s2), cmp.Compare(x.seq, y.seq))
}

// NewSpool returns a Spool writing under a new temporary directory in
// dir ("" for the system's). Close removes it.
func NewSpool(dir string) (*Spool, error) {
	d, err := os.MkdirTemp(dir, "sbcwatch-report-")
	if err != nil {
		return nil, fmt.Errorf("report: spool: %w", err)
	}
	s := &Spool{dir: d, run: spoolRun, fanIn: spoolFanIn, latest: latestSeq{other: map[string]uint64{}}, refs: map[string]bool{}, sev: map[finding.Severity]int{}}
	for i := range s.kinds {
		s.kinds[i] = &spoolKind{}
	}
	return s, nil
}

// Close removes the temporary files.
func (s *Spool) Close() error { return os.RemoveAll(s.dir) }

// Err is the first error spooling met (a full disk); the writers return
// it too.
func (s *Spool) Err() error { return s.err }

// Call takes a call as the analysis lets it go.
func (s *Spool) Call(c *sip.Call) {
	v := CallView(c)
	s.calls++
	if v.Answered {
		s.answered++
	}
	if v.Microsoft {
		s.microsoft++
	}
	r := spoolRec{t: c.Start.UnixNano(), s1: c.CallID}
	if b, ok := appendCallJSON(s.scratch[:0], &v); ok {
		s.scratch = b
		s.addData(kindCall, r, bytes.Clone(b)) // one allocation of the exact size
		return
	}
	s.add(kindCall, r, v)
}

// TLSConn takes a TLS connection that ended.
func (s *Spool) TLSConn(c *tlsaudit.Conn) {
	v := ConnView(c)
	s.conns++
	if v.Outcome != tlsaudit.OutcomeEstablished && v.Outcome != tlsaudit.OutcomeIncomplete {
		s.failed++
	}
	s.add(kindTLS, spoolRec{t: c.FirstSeen.UnixNano(), s2: c.ID}, v)
}

// Finding takes a finding as it is decided or updated.
func (s *Spool) Finding(f *finding.Finding) {
	if s.latest.get(f.ID) == 0 || f.ID == "" {
		s.sev[f.Severity]++
	}
	r := spoolRec{p: int64(f.Severity.Rank())*1000 + int64(finding.RulePriority(f.Rule)), s0: f.Rule,
		t: f.Time.UnixNano(), s1: f.CallID, s2: f.Connection, id: f.ID}
	r.refs = Refs(f)
	r.nc = len(f.Cites)
	for _, id := range r.refs {
		s.refs[id] = true
	}
	s.add(kindFinding, r, f)
	s.latest.set(f.ID, s.seq)
}

// Refs returns the IDs a finding refers to: Cites, and evidence
// "explained_by" and "possibly_explained_by".
func Refs(f *finding.Finding) []string {
	out := slices.Clone(f.Cites)
	for _, k := range []string{"explained_by", "possibly_explained_by"} {
		if v, ok := f.Evidence[k].(string); ok && v != "" {
			out = append(out, v)
		}
	}
	return out
}

func (s *Spool) add(kind int, r spoolRec, v any) {
	if s.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		s.err = fmt.Errorf("report: spool: %w", err)
		return
	}
	s.addData(kind, r, b)
}

// addData adds a record whose JSON view is b.
func (s *Spool) addData(kind int, r spoolRec, b []byte) {
	if s.err != nil {
		return
	}
	s.seq++
	r.seq, r.data = s.seq, b
	k := s.kinds[kind]
	k.buf = append(k.buf, r)
	if len(k.buf) >= s.run {
		s.flush(kind)
	}
}

// flush sorts the buffered records of a kind and writes them as a run.
func (s *Spool) flush(kind int) {
	k := s.kinds[kind]
	if len(k.buf) == 0 || s.err != nil {
		return
	}
	slices.SortFunc(k.buf, func(x, y spoolRec) int { return compareRec(&x, &y) })
	name := fmt.Sprintf("%s/%d-%d.run", s.dir, kind, len(k.runs))
	f, err := os.Create(name)
	if err != nil {
		s.err = fmt.Errorf("report: spool: %w", err)
		return
	}
	w := bufio.NewWriterSize(f, 1<<16)
	for i := range k.buf {
		writeRec(w, &k.buf[i])
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		s.err = fmt.Errorf("report: spool: %w", err)
		return
	}
	k.runs = append(k.runs, name)
	k.buf = k.buf[:0]
	s.compact(kind)
}

func writeRec(w *bufio.Writer, r *spoolRec) {
	var b [binary.MaxVarintLen64]byte
	num := func(v int64) { w.Write(b[:binary.PutVarint(b[:], v)]) }
	str := func(s string) { num(int64(len(s))); w.WriteString(s) }
	num(r.p)
	str(r.s0)
	num(r.t)
	str(r.s1)
	str(r.s2)
	num(int64(r.seq))
	str(r.id)
	num(int64(len(r.refs)))
	for _, id := range r.refs {
		str(id)
	}
	num(int64(r.nc))
	num(int64(len(r.data)))
	w.Write(r.data)
}

func readRec(rd *bufio.Reader) (spoolRec, error) {
	var r spoolRec
	var err error
	num := func() int64 {
		if err != nil {
			return 0
		}
		var v int64
		v, err = binary.ReadVarint(rd)
		return v
	}
	bytesN := func() []byte {
		n := num()
		if err != nil {
			return nil
		}
		if n < 0 || n > 1<<30 {
			err = errors.New("report: spool: damaged run")
			return nil
		}
		b := make([]byte, n)
		_, err = io.ReadFull(rd, b)
		return b
	}
	r.p = num()
	r.s0 = string(bytesN())
	r.t = num()
	r.s1 = string(bytesN())
	r.s2 = string(bytesN())
	r.seq = uint64(num())
	r.id = string(bytesN())
	for n := num(); err == nil && n > 0; n-- {
		r.refs = append(r.refs, string(bytesN()))
	}
	r.nc = int(num())
	r.data = bytesN()
	return r, err
}

// compact merges the runs of a kind into one when there are fanIn of
// them, so that a merge never reads more than fanIn runs at once: the
// read buffers are bounded too, whatever the input's length (each record
// is rewritten about once per fanIn-fold growth of the input).
func (s *Spool) compact(kind int) {
	k := s.kinds[kind]
	if len(k.runs) < s.fanIn || s.err != nil {
		return
	}
	s.merged++
	name := fmt.Sprintf("%s/%d-m%d.run", s.dir, kind, s.merged)
	f, err := os.Create(name)
	if err != nil {
		s.err = fmt.Errorf("report: spool: %w", err)
		return
	}
	w := bufio.NewWriterSize(f, 1<<16)
	err = mergeRuns(k.runs, func(r *spoolRec) error { writeRec(w, r); return nil })
	if err = errors.Join(err, w.Flush(), f.Close()); err != nil {
		s.err = fmt.Errorf("report: spool: %w", err)
		return
	}
	for _, old := range k.runs {
		_ = os.Remove(old)
	}
	k.runs = append(k.runs[:0], name)
}

// each calls f on every record of a kind in sorted order (a k-way merge
// of the runs and what is still buffered).
func (s *Spool) each(kind int, f func(*spoolRec) error) error {
	s.flush(kind)
	if s.err != nil {
		return s.err
	}
	return mergeRuns(s.kinds[kind].runs, f)
}

// mergeRuns calls f on every record of the runs in sorted order.
func mergeRuns(runs []string, f func(*spoolRec) error) error {
	type src struct {
		rd   *bufio.Reader
		file *os.File
		cur  spoolRec
	}
	var srcs []*src
	defer func() {
		for _, x := range srcs {
			x.file.Close()
		}
	}()
	for _, name := range runs {
		fh, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("report: spool: %w", err)
		}
		x := &src{rd: bufio.NewReaderSize(fh, 1<<15), file: fh}
		srcs = append(srcs, x)
		if x.cur, err = readRec(x.rd); err != nil {
			return fmt.Errorf("report: spool: %w", err)
		}
	}
	for len(srcs) > 0 {
		best := 0
		for i := 1; i < len(srcs); i++ {
			if compareRec(&srcs[i].cur, &srcs[best].cur) < 0 {
				best = i
			}
		}
		x := srcs[best]
		if err := f(&x.cur); err != nil {
			return err
		}
		next, err := readRec(x.rd)
		if errors.Is(err, io.EOF) {
			x.file.Close()
			srcs = slices.Delete(srcs, best, best+1)
			continue
		}
		if err != nil {
			return fmt.Errorf("report: spool: %w", err)
		}
		x.cur = next
	}
	return nil
}

// latestSeq maps finding IDs to the seq of their latest version (0: not
// seen): a slice for the engine's "F<n>", a map for any other ID, so a
// report of many findings costs 8 bytes each here.
type latestSeq struct {
	byN   []uint64
	other map[string]uint64
}

func idNumber(id string) (int, bool) {
	if len(id) < 2 || id[0] != 'F' || id[1] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(id[1:])
	return n, err == nil && n > 0 && n < 1<<31
}

func (l *latestSeq) get(id string) uint64 {
	if n, ok := idNumber(id); ok {
		if n < len(l.byN) {
			return l.byN[n]
		}
		return 0
	}
	return l.other[id]
}

func (l *latestSeq) set(id string, seq uint64) {
	if n, ok := idNumber(id); ok {
		if n >= len(l.byN) {
			l.byN = append(l.byN, make([]uint64, n+1-len(l.byN)+len(l.byN)/2)...)
		}
		l.byN[n] = seq
		return
	}
	l.other[id] = seq
}

// findings walks the latest version of every finding in report order,
// numbered F1..Fn, with references rewritten to the new IDs and the
// root-cause links and advice of finding.Fold, worked out over the
// findings that cite or are cited (few) so that none is held.
// Findings hands over every finding, in its latest version, in report
// order and with the report's IDs (F1..Fn) and references: what
// WriteJSON writes, as findings (for the store).
func (s *Spool) Findings(f func(*finding.Finding) error) error { return s.findings(f) }

func (s *Spool) findings(f func(*finding.Finding) error) error {
	// First pass: the new IDs of the findings that cite or are cited,
	// and Fold's walk over them in report order.
	ids := map[string]string{}
	type foldState struct {
		causedBy string   // old ID of the root cause
		explains []string // old IDs
	}
	fold := map[string]*foldState{}
	present := map[string]bool{}
	n := 0
	err := s.each(kindFinding, func(r *spoolRec) error {
		if s.latest.get(r.id) != r.seq {
			return nil
		}
		n++
		if s.refs[r.id] || r.nc > 0 {
			ids[r.id] = "F" + strconv.Itoa(n)
			present[r.id] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	state := func(id string) *foldState {
		st := fold[id]
		if st == nil {
			st = &foldState{}
			fold[id] = st
		}
		return st
	}
	err = s.each(kindFinding, func(r *spoolRec) error {
		if s.latest.get(r.id) != r.seq || r.nc == 0 {
			return nil
		}
		me := state(r.id)
		if me.causedBy != "" {
			return nil
		}
		// Fold walks the cites as renumbered: by their new IDs.
		cites := slices.Clone(r.refs[:r.nc])
		slices.SortStableFunc(cites, func(x, y string) int {
			nx, ny := cmp.Or(ids[x], x), cmp.Or(ids[y], y)
			if idLess(nx, ny) {
				return -1
			}
			if idLess(ny, nx) {
				return 1
			}
			return 0
		})
		for _, id := range cites {
			if !present[id] || id == r.id {
				continue
			}
			g := state(id)
			if g.causedBy != "" || len(g.explains) > 0 {
				continue
			}
			g.causedBy = r.id
			me.explains = append(me.explains, id)
		}
		return nil
	})
	if err != nil {
		return err
	}
	n = 0
	return s.each(kindFinding, func(r *spoolRec) error {
		if s.latest.get(r.id) != r.seq {
			return nil
		}
		n++
		var fd finding.Finding
		if err := json.Unmarshal(r.data, &fd); err != nil {
			return fmt.Errorf("report: spool: %w", err)
		}
		old := fd.ID
		fd.ID = "F" + strconv.Itoa(n)
		renumberRefs(&fd, ids)
		fd.CausedBy, fd.Explains = "", nil
		if st := fold[old]; st != nil {
			fd.CausedBy = ids[st.causedBy]
			for _, id := range st.explains {
				fd.Explains = append(fd.Explains, ids[id])
			}
		}
		if fd.Advice == "" {
			fd.Advice = finding.Advice(fd.Rule)
		}
		return f(&fd)
	})
}

// renumberRefs rewrites a finding's references with ids (old -> new).
func renumberRefs(f *finding.Finding, ids map[string]string) {
	for i, c := range f.Cites {
		if n, ok := ids[c]; ok {
			f.Cites[i] = n
		}
	}
	slices.SortStableFunc(f.Cites, func(x, y string) int {
		if idLess(x, y) {
			return -1
		}
		if idLess(y, x) {
			return 1
		}
		return 0
	})
	for _, k := range []string{"explained_by", "possibly_explained_by"} {
		if v, ok := f.Evidence[k].(string); ok {
			if n, ok := ids[v]; ok {
				f.Evidence[k] = n
				// transfer_missing names its cause: "… F9 (refer_delivery_failed) says why."
				f.Summary = strings.Replace(f.Summary, " "+v+" (", " "+n+" (", 1)
			}
		}
	}
}

// WriteJSON writes the report as Report.WriteJSON does, record by
// record.
func (s *Spool) WriteJSON(w io.Writer, st Stats, hints, warnings []string) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	ew := &errWriter{w: bw}
	var buf []byte
	array := func(name string, last bool, walk func(func(v any) error) error) error {
		ew.printf("  %q: ", name)
		first := true
		err := walk(func(v any) error {
			var b []byte
			if raw, ok := v.(json.RawMessage); ok {
				// A spooled view, already json.Marshal's output.
				buf = appendIndented(buf[:0], raw, "    ", "  ")
				b = buf
			} else {
				var err error
				if b, err = json.MarshalIndent(v, "    ", "  "); err != nil {
					return err
				}
			}
			if first {
				ew.printf("[\n    ")
				first = false
			} else {
				ew.printf(",\n    ")
			}
			_, _ = ew.Write(b)
			return ew.err
		})
		if err != nil {
			return err
		}
		if first {
			ew.printf("[]")
		} else {
			ew.printf("\n  ]")
		}
		if !last {
			ew.printf(",")
		}
		ew.printf("\n")
		return nil
	}
	raw := func(kind int) func(func(v any) error) error {
		return func(emit func(v any) error) error {
			return s.each(kind, func(r *spoolRec) error { return emit(json.RawMessage(r.data)) })
		}
	}
	ew.printf("{\n")
	if err := array("calls", false, raw(kindCall)); err != nil {
		return err
	}
	if err := array("tls", false, raw(kindTLS)); err != nil {
		return err
	}
	err := array("findings", false, func(emit func(v any) error) error {
		return s.findings(func(f *finding.Finding) error { return emit(f) })
	})
	if err != nil {
		return err
	}
	tail := struct {
		Stats    Stats    `json:"stats"`
		Hints    []string `json:"hints,omitempty"`
		Warnings []string `json:"warnings,omitempty"`
	}{st, hints, warnings}
	b, err := json.MarshalIndent(tail, "", "  ")
	if err != nil {
		return err
	}
	// The tail's members continue the object: drop its braces.
	body := strings.TrimSuffix(strings.TrimPrefix(string(b), "{\n"), "\n}")
	ew.printf("%s\n}\n", body)
	if ew.err != nil {
		return ew.err
	}
	return bw.Flush()
}

// Report reads the spool back into a Report of JSON views (no records:
// CallRecords and Conns stay nil), for the text report.
func (s *Spool) Report(st Stats, hints, warnings []string) (*Report, error) {
	r := &Report{Calls: []CallJSON{}, TLS: []TLSJSON{}, Findings: []*finding.Finding{}, Stats: st, Hints: hints, Warnings: warnings}
	err := s.each(kindCall, func(rec *spoolRec) error {
		var v CallJSON
		if err := json.Unmarshal(rec.data, &v); err != nil {
			return err
		}
		r.Calls = append(r.Calls, v)
		return nil
	})
	if err == nil {
		err = s.each(kindTLS, func(rec *spoolRec) error {
			var v TLSJSON
			if err := json.Unmarshal(rec.data, &v); err != nil {
				return err
			}
			r.TLS = append(r.TLS, v)
			return nil
		})
	}
	if err == nil {
		err = s.findings(func(f *finding.Finding) error {
			c := *f
			r.Findings = append(r.Findings, &c)
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("report: spool: %w", err)
	}
	return r, nil
}
