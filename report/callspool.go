package report

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// CallSpool builds the ladder of one call (`analyze --call`) from a
// streaming analysis without holding the input: it keeps the call with
// that Call-ID (the one that started first, as the report picks it) with
// its messages, writes every TLS connection as the ladder shows it to a
// temporary file, and passes the findings to a Spool (for their report
// order, IDs and references). At the end only the connections
// RelatedConns puts on the call are read back. The output is the same
// as Report.WriteLadderWidth and Report.WriteCallJSON. It has the
// methods of pipeline.Sink.
type CallSpool struct {
	callID string
	call   *sip.Call
	dir    string
	f      *os.File
	w      *bufio.Writer
	enc    *json.Encoder
	fs     *Spool
	err    error
}

// NewCallSpool returns a CallSpool for callID writing under a new
// temporary directory in dir ("" for the system's). Close removes it.
func NewCallSpool(dir, callID string) (*CallSpool, error) {
	fs, err := NewSpool(dir)
	if err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(fs.dir, "ladder-conns"))
	if err != nil {
		fs.Close()
		return nil, fmt.Errorf("report: call spool: %w", err)
	}
	s := &CallSpool{callID: callID, dir: fs.dir, f: f, w: bufio.NewWriterSize(f, 1<<16), fs: fs}
	s.enc = json.NewEncoder(s.w)
	return s, nil
}

// Close removes the temporary files.
func (s *CallSpool) Close() error {
	s.f.Close()
	return s.fs.Close()
}

// Findings is the spool of the findings, in report order with report IDs
// (for the store).
func (s *CallSpool) Findings() *Spool { return s.fs }

// Call keeps the call if it is the one asked for.
func (s *CallSpool) Call(c *sip.Call) {
	if c.CallID == s.callID && (s.call == nil || c.Start.Before(s.call.Start)) {
		s.call = c
	}
}

// TLSConn writes the connection as a ladder shows it.
func (s *CallSpool) TLSConn(c *tlsaudit.Conn) {
	if s.err != nil {
		return
	}
	if err := s.enc.Encode(ladderConnOf(c)); err != nil {
		s.err = fmt.Errorf("report: call spool: %w", err)
	}
}

// Finding takes a finding as it is decided or updated.
func (s *CallSpool) Finding(f *finding.Finding) { s.fs.Finding(f) }

// ladder reads back what the call's ladder shows; an error for a Call-ID
// the input lacks says so as Report does.
func (s *CallSpool) ladder() (*callLadder, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.call == nil {
		return nil, errNoCall(s.callID)
	}
	l := &callLadder{call: s.call}
	if err := s.w.Flush(); err != nil {
		return nil, fmt.Errorf("report: call spool: %w", err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("report: call spool: %w", err)
	}
	end := ladderEnd(s.call)
	dec := json.NewDecoder(bufio.NewReaderSize(s.f, 1<<16))
	for {
		var c ladderConn
		err := dec.Decode(&c)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("report: call spool: %w", err)
		}
		if related(s.call, end, c.First, c.Client.Addr(), c.Server.Addr()) {
			l.conns = append(l.conns, c)
		}
	}
	// As Build sorts the report's connections.
	slices.SortStableFunc(l.conns, func(x, y ladderConn) int {
		if !x.First.Equal(y.First) {
			return x.First.Compare(y.First)
		}
		if x.ID < y.ID {
			return -1
		}
		if x.ID > y.ID {
			return 1
		}
		return 0
	})
	err := s.fs.Findings(func(f *finding.Finding) error {
		if f.CallID == s.call.CallID {
			l.findings = append(l.findings, f)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// WriteLadder writes the call's ladder as Report.WriteLadderWidth does.
func (s *CallSpool) WriteLadder(w io.Writer, width int) error {
	l, err := s.ladder()
	if err != nil {
		return err
	}
	return l.writeText(w, width)
}

// WriteCallJSON writes the call's detail as Report.WriteCallJSON does.
func (s *CallSpool) WriteCallJSON(w io.Writer) error {
	l, err := s.ladder()
	if err != nil {
		return err
	}
	return l.writeJSON(w)
}

var _ interface {
	Call(*sip.Call)
	TLSConn(*tlsaudit.Conn)
	Finding(*finding.Finding)
} = (*CallSpool)(nil)
