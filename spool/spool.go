// Package spool is a bounded on-disk FIFO of opaque records: what serve
// could not write to the database while it was down or slow waits here,
// in order, and is replayed when it returns.
//
// Records are appended to segment files (NNNNNNNNNNNNNNNNNNNN.seg, at most
// SegmentBytes each), each record framed as its length (4 bytes,
// big-endian), its CRC-32 (IEEE) and its bytes. The oldest segment is
// read whole and removed once its records are written elsewhere, so a
// crash between the write and the removal replays it again: consumers
// must be idempotent. A torn record at the end of a segment (a crash
// mid-append) is counted and skipped. When a record would make the spool
// exceed its bound, Append refuses it with ErrFull: the caller counts and
// logs the drop; the spool never blocks.
package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ErrFull is returned by Append when the spool is at its bound.
var ErrFull = errors.New("spool: full")

// SegmentBytes is the size at which a segment file is closed and a new
// one started.
const SegmentBytes = 4 << 20

// Spool is safe for concurrent use.
type Spool struct {
	dir      string
	maxBytes int64

	mu       sync.Mutex
	segs     []uint64 // sequence numbers, oldest first
	sizes    map[uint64]int64
	total    int64
	cur      *os.File // the newest segment, open for append
	curSeq   uint64
	rotate   bool // the next append starts a new segment
	dropped  uint64
	torn     uint64
	appended uint64
}

// Open opens (creating) the spool in dir, bounded to maxBytes, and finds
// the segments a previous run left.
func Open(dir string, maxBytes int64) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{dir: dir, maxBytes: maxBytes, sizes: map[uint64]int64{}}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		s.segs = append(s.segs, n)
		s.sizes[n] = fi.Size()
		s.total += fi.Size()
	}
	slices.Sort(s.segs)
	if len(s.segs) > 0 {
		s.curSeq = s.segs[len(s.segs)-1]
	}
	return s, nil
}

func (s *Spool) path(n uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d.seg", n))
}

// Append adds one record at the end, or returns ErrFull (counted).
func (s *Spool) Append(rec []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int64(len(rec) + 8)
	if s.total+n > s.maxBytes {
		s.dropped++
		return ErrFull
	}
	if s.cur == nil || s.rotate || s.sizes[s.curSeq] >= SegmentBytes {
		s.rotate = false
		if s.cur != nil {
			s.cur.Close()
		}
		s.curSeq++
		f, err := os.OpenFile(s.path(s.curSeq), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o600)
		if err != nil {
			s.cur = nil
			return fmt.Errorf("spool: %w", err)
		}
		s.cur = f
		s.segs = append(s.segs, s.curSeq)
		s.sizes[s.curSeq] = 0
	}
	buf := make([]byte, 8, n)
	binary.BigEndian.PutUint32(buf, uint32(len(rec)))
	binary.BigEndian.PutUint32(buf[4:], crc32.ChecksumIEEE(rec))
	buf = append(buf, rec...)
	if _, err := s.cur.Write(buf); err != nil {
		return fmt.Errorf("spool: append: %w", err)
	}
	s.sizes[s.curSeq] += n
	s.total += n
	s.appended++
	return nil
}

// Segment is the oldest segment's records, in order.
type Segment struct {
	seq     uint64
	Records [][]byte
}

// Oldest returns the oldest segment's records, or ok false when the
// spool is empty. The newest segment is closed first when it is the
// oldest (later appends start a new one).
func (s *Spool) Oldest() (seg Segment, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) == 0 {
		return Segment{}, false, nil
	}
	n := s.segs[0]
	if n == s.curSeq && s.cur != nil {
		s.cur.Close()
		s.cur = nil
		s.rotate = true
	}
	f, err := os.Open(s.path(n))
	if err != nil {
		return Segment{}, false, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	seg.seq = n
	for {
		var h [8]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			if !errors.Is(err, io.EOF) {
				s.torn++
			}
			break
		}
		l := binary.BigEndian.Uint32(h[:])
		if l > SegmentBytes*4 {
			s.torn++
			break
		}
		rec := make([]byte, l)
		if _, err := io.ReadFull(r, rec); err != nil {
			s.torn++
			break
		}
		if crc32.ChecksumIEEE(rec) != binary.BigEndian.Uint32(h[4:]) {
			s.torn++
			continue
		}
		seg.Records = append(seg.Records, rec)
	}
	return seg, true, nil
}

// Remove deletes a segment returned by Oldest once its records are safe.
func (s *Spool) Remove(seg Segment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(s.path(seg.seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	if i := slices.Index(s.segs, seg.seq); i >= 0 {
		s.segs = slices.Delete(s.segs, i, i+1)
	}
	s.total -= s.sizes[seg.seq]
	delete(s.sizes, seg.seq)
	if seg.seq == s.curSeq {
		s.rotate = true
	}
	return nil
}

// Stats are the spool's counters.
type Stats struct {
	Segments int    `json:"segments"`
	Bytes    int64  `json:"bytes"`
	Appended uint64 `json:"appended"`
	Dropped  uint64 `json:"dropped"`
	Torn     uint64 `json:"torn"`
}

// Stats returns the counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Segments: len(s.segs), Bytes: s.total, Appended: s.appended, Dropped: s.dropped, Torn: s.torn}
}

// Empty reports whether nothing waits.
func (s *Spool) Empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.segs) == 0
}

// Close closes the open segment; the records stay for the next Open.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		err := s.cur.Close()
		s.cur = nil
		return err
	}
	return nil
}
