package tap

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Packet is one captured frame.
type Packet struct {
	// Data is the frame as captured: a buffer of its own, which the
	// source never reuses or modifies (holders may keep parts of it).
	Data     []byte
	Info     gopacket.CaptureInfo
	LinkType layers.LinkType
	// Frame is the 1-based frame number across the merged stream.
	Frame uint64
}

// Source yields the packets of one or more capture files in timestamp
// order.
type Source interface {
	// Next returns the next packet, io.EOF at the end.
	Next() (Packet, error)
	// Progress returns the bytes read of all files and their total size.
	Progress() (done, total int64)
	// Warnings returns one line per file that ended early (truncated,
	// corrupt record, broken gzip stream), in the order they ended.
	Warnings() []string
	Close() error
}

var _ Source = (*merger)(nil)

// ErrNotCapture is wrapped by Open for a file that is not a capture.
var ErrNotCapture = errors.New("not a pcap or pcapng capture")

// Open opens capture files and directories (every regular file inside,
// symbolic links followed, non-recursive, in name order) and merges their
// packets into one stream in timestamp order: a k-way merge holding one
// packet per file, each file read as a stream. A file that ends early (a
// record cut short, a corrupt record or block length, a truncated or
// corrupt gzip stream, a damaged file header) keeps the packets before the
// damage and adds a line to Warnings; Next never fails for it. The format
// is found by magic number: pcap (both byte orders, micro- and
// nanosecond), pcapng (several interfaces and link types, several
// sections), and either of them gzip-compressed.
func Open(paths ...string) (Source, error) {
	return OpenWith(paths)
}

// Stream is a capture read once, as it arrives, from a reader that is not
// a file: standard input, a FIFO. Name names it in warnings.
type Stream struct {
	Name string
	R    io.Reader
}

// OpenWith is Open with streams merged in after the named files: each
// is read as it arrives (a packet is handed on as soon as the merge
// can order it), its size unknown to Progress. A stream is never
// closed by the Source: its owner closes it.
func OpenWith(paths []string, streams ...Stream) (Source, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("tap: %w", err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("tap: %w", err)
		}
		var names []string
		for _, e := range ents {
			name := filepath.Join(p, e.Name())
			if e.Type()&os.ModeSymlink != 0 { // followed, as a named file is
				if st, err := os.Stat(name); err == nil && st.Mode().IsRegular() {
					names = append(names, name)
				}
				continue
			}
			if e.Type().IsRegular() {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		files = append(files, names...)
	}
	if len(files) == 0 && len(streams) == 0 {
		return nil, errors.New("tap: no capture files")
	}
	m := &merger{}
	open := func(i int) (*fileReader, error) {
		if i < len(files) {
			return openFile(files[i], i)
		}
		st := streams[i-len(files)]
		return openReader(st.Name, i, st.R, nil, 0)
	}
	for i := range len(files) + len(streams) {
		r, err := open(i)
		var he *headerError
		if errors.As(err, &he) {
			m.warnings = append(m.warnings, he.Error()+"; no packet could be read from it")
			continue
		}
		if err != nil {
			m.Close()
			return nil, err
		}
		m.files = append(m.files, r)
		m.total += r.size
	}
	for _, r := range m.files {
		r.advance()
		if r.ok {
			heap.Push(&m.h, r)
		} else if r.warning != "" {
			m.warnings = append(m.warnings, r.warning)
		}
	}
	return m, nil
}

// countingReader counts the bytes read from the file (compressed bytes
// for gzip files, so progress matches file sizes).
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type packetReader interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// fileReader reads one capture file as a stream.
type fileReader struct {
	name  string
	index int
	f     io.Closer // nil for a Stream
	cr    *countingReader
	gz    *gzip.Reader
	size  int64

	pcap *pcapgo.Reader
	ng   *pcapgo.NgReader
	rd   packetReader

	// raw counts the uncompressed bytes handed to a pcap reader; want is
	// where the records read so far end (header included).
	raw  *countingReader
	want int64

	// head is the next packet of this file.
	head Packet
	ok   bool
	// packets is how many packets the file gave; warning is set when it
	// ended early.
	packets uint64
	warning string
}

func openFile(name string, index int) (*fileReader, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("tap: %w", err)
	}
	return openReader(name, index, f, f, st.Size())
}

// openReader starts reading a capture from rd (size bytes long, 0 when
// unknown); closer, when set, is closed with the reader.
func openReader(name string, index int, rd io.Reader, closer io.Closer, size int64) (*fileReader, error) {
	r := &fileReader{name: name, index: index, f: closer, size: size}
	r.cr = &countingReader{r: rd}
	br := bufio.NewReaderSize(r.cr, 64<<10)
	base := name
	magic, _ := br.Peek(4)
	if len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			r.close()
			return nil, &headerError{name: base, err: fmt.Errorf("gzip: %w", err)}
		}
		r.gz = gz
		br = bufio.NewReaderSize(gz, 64<<10)
		magic, _ = br.Peek(4)
	}
	switch {
	case len(magic) == 4 && bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}):
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			r.close()
			return nil, &headerError{name: base, err: err}
		}
		r.ng, r.rd = ng, ng
	case len(magic) == 4 && isPcapMagic(magic):
		// pcapgo reports a file cut right after a record header as a
		// clean end; counting the bytes it takes lets advance tell.
		r.raw = &countingReader{r: br}
		r.want = 24
		pr, err := pcapgo.NewReader(r.raw)
		if err != nil {
			r.close()
			return nil, &headerError{name: base, err: err}
		}
		r.pcap, r.rd = pr, pr
	default:
		r.close()
		return nil, fmt.Errorf("%s: %w", base, ErrNotCapture)
	}
	return r, nil
}

// headerError is a capture whose magic number is right but whose file
// header (or gzip header) is damaged: Open makes it a warning.
type headerError struct {
	name string
	err  error
}

func (e *headerError) Error() string {
	return fmt.Sprintf("%s: damaged file header (%v)", e.name, e.err)
}

func (e *headerError) Unwrap() error { return e.err }

func isPcapMagic(m []byte) bool {
	switch string(m) {
	case "\xa1\xb2\xc3\xd4", "\xd4\xc3\xb2\xa1", "\xa1\xb2\x3c\x4d", "\x4d\x3c\xb2\xa1":
		return true
	}
	return false
}

// advance reads the next packet of the file into head. A file that ends
// early is ended with a warning, never an error.
func (r *fileReader) advance() {
	r.ok = false
	data, ci, err := r.rd.ReadPacketData()
	if err != nil {
		if errors.Is(err, io.EOF) {
			r.checkEnd()
			return
		}
		r.damaged(err)
		return
	}
	lt := layers.LinkTypeNull
	if r.pcap != nil {
		lt = r.pcap.LinkType()
		r.want += 16 + int64(len(data))
	} else if len(ci.AncillaryData) > 0 {
		if l, ok := ci.AncillaryData[0].(layers.LinkType); ok {
			lt = l
		}
		ci.AncillaryData = nil
	}
	r.head = Packet{Data: data, Info: ci, LinkType: lt}
	r.ok = true
	r.packets++
}

// checkEnd looks behind a clean end of the capture format: a pcap whose
// last record header has no data, or a gzip stream without its trailer.
func (r *fileReader) checkEnd() {
	if r.raw != nil && r.raw.n != r.want {
		r.damaged(io.ErrUnexpectedEOF)
		return
	}
	if r.gz != nil {
		var b [1]byte
		if _, err := r.gz.Read(b[:]); err != nil && !errors.Is(err, io.EOF) {
			r.damaged(fmt.Errorf("gzip: %w", err))
		}
	}
}

// damaged ends the file with a warning naming what was lost.
func (r *fileReader) damaged(err error) {
	what := fmt.Sprintf("%s: damaged after %d packets (%v)", r.name, r.packets, err)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) && r.gz != nil:
		what = fmt.Sprintf("%s: the gzip stream ends early after %d packets (file cut short)", r.name, r.packets)
	case errors.Is(err, io.ErrUnexpectedEOF):
		what = fmt.Sprintf("%s: ends inside a record after %d packets (file cut short, or a corrupt record length)", r.name, r.packets)
	}
	r.warning = what + "; the rest of the file is not read"
	if r.packets == 0 {
		r.warning = what + "; no packet could be read from it"
	}
}

func (r *fileReader) close() {
	if r.gz != nil {
		r.gz.Close()
	}
	if r.f != nil {
		r.f.Close()
	}
}

// fileHeap orders files by the timestamp of their next packet, then by
// their position in the argument list (stable for equal times).
type fileHeap []*fileReader

func (h fileHeap) Len() int { return len(h) }
func (h fileHeap) Less(i, j int) bool {
	ti, tj := h[i].head.Info.Timestamp, h[j].head.Info.Timestamp
	if !ti.Equal(tj) {
		return ti.Before(tj)
	}
	return h[i].index < h[j].index
}
func (h fileHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *fileHeap) Push(x any)   { *h = append(*h, x.(*fileReader)) }
func (h *fileHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type merger struct {
	files    []*fileReader
	h        fileHeap
	last     *fileReader // at the top of h, its head handed out
	total    int64
	frame    uint64
	warnings []string
}

func (m *merger) Next() (Packet, error) {
	// The reader of the packet handed out last reads its next one only
	// now: a stream's packet goes on as soon as it arrived, not when the
	// one after it does.
	if r := m.last; r != nil {
		m.last = nil
		r.advance()
		if r.ok {
			heap.Fix(&m.h, 0)
		} else {
			heap.Pop(&m.h)
			if r.warning != "" {
				m.warnings = append(m.warnings, r.warning)
			}
		}
	}
	if len(m.h) == 0 {
		return Packet{}, io.EOF
	}
	r := m.h[0]
	p := r.head
	m.last = r
	m.frame++
	p.Frame = m.frame
	return p, nil
}

func (m *merger) Warnings() []string { return m.warnings }

func (m *merger) Progress() (done, total int64) {
	for _, r := range m.files {
		done += r.cr.n
	}
	return done, m.total
}

func (m *merger) Close() error {
	for _, r := range m.files {
		r.close()
	}
	m.files = nil
	m.h = nil
	return nil
}
