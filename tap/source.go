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
	Close() error
}

// ErrNotCapture is wrapped by Open for a file that is not a capture.
var ErrNotCapture = errors.New("not a pcap or pcapng capture")

// Open opens capture files and directories (every regular file inside,
// non-recursive, in name order) and merges their packets into one stream
// in timestamp order: a k-way merge holding one packet per file, each file
// read as a stream. The format is found by magic number: pcap (both byte
// orders, micro- and nanosecond), pcapng (several interfaces and link
// types, several sections), and either of them gzip-compressed.
func Open(paths ...string) (Source, error) {
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
			if e.Type().IsRegular() {
				names = append(names, filepath.Join(p, e.Name()))
			}
		}
		sort.Strings(names)
		files = append(files, names...)
	}
	if len(files) == 0 {
		return nil, errors.New("tap: no capture files")
	}
	m := &merger{}
	for i, f := range files {
		r, err := openFile(f, i)
		if err != nil {
			m.Close()
			return nil, err
		}
		m.files = append(m.files, r)
		m.total += r.size
	}
	for _, r := range m.files {
		if err := r.advance(); err != nil {
			m.Close()
			return nil, err
		}
		if r.ok {
			heap.Push(&m.h, r)
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
	f     *os.File
	cr    *countingReader
	gz    *gzip.Reader
	size  int64

	pcap *pcapgo.Reader
	ng   *pcapgo.NgReader
	rd   packetReader

	// head is the next packet of this file.
	head Packet
	ok   bool
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
	r := &fileReader{name: name, index: index, f: f, size: st.Size()}
	r.cr = &countingReader{r: f}
	br := bufio.NewReaderSize(r.cr, 64<<10)
	base := name
	magic, _ := br.Peek(4)
	if len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("tap: %s: gzip: %w", base, err)
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
			return nil, fmt.Errorf("tap: %s: %w", base, err)
		}
		r.ng, r.rd = ng, ng
	case len(magic) == 4 && isPcapMagic(magic):
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("tap: %s: %w", base, err)
		}
		r.pcap, r.rd = pr, pr
	default:
		r.close()
		return nil, fmt.Errorf("%s: %w", base, ErrNotCapture)
	}
	return r, nil
}

func isPcapMagic(m []byte) bool {
	switch string(m) {
	case "\xa1\xb2\xc3\xd4", "\xd4\xc3\xb2\xa1", "\xa1\xb2\x3c\x4d", "\x4d\x3c\xb2\xa1":
		return true
	}
	return false
}

// advance reads the next packet of the file into head.
func (r *fileReader) advance() error {
	r.ok = false
	data, ci, err := r.rd.ReadPacketData()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		// A truncated last record is how captures cut short end: treat
		// it as the end of the file, as tshark does (with a warning).
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		return fmt.Errorf("tap: %s: %w", r.name, err)
	}
	lt := layers.LinkTypeNull
	if r.pcap != nil {
		lt = r.pcap.LinkType()
	} else if len(ci.AncillaryData) > 0 {
		if l, ok := ci.AncillaryData[0].(layers.LinkType); ok {
			lt = l
		}
		ci.AncillaryData = nil
	}
	r.head = Packet{Data: data, Info: ci, LinkType: lt}
	r.ok = true
	return nil
}

func (r *fileReader) close() {
	if r.gz != nil {
		r.gz.Close()
	}
	r.f.Close()
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
	files []*fileReader
	h     fileHeap
	total int64
	frame uint64
	err   error
	// damaged is the first read error of a file, returned once the
	// others are done.
	damaged error
}

func (m *merger) Next() (Packet, error) {
	if m.err != nil {
		return Packet{}, m.err
	}
	if len(m.h) == 0 {
		if m.damaged != nil {
			m.err = m.damaged
			return Packet{}, m.err
		}
		return Packet{}, io.EOF
	}
	r := m.h[0]
	p := r.head
	if err := r.advance(); err != nil {
		// A damaged record ends its file; the packet already read and the
		// other files still come out, and the error is returned last.
		if m.damaged == nil {
			m.damaged = err
		}
		r.ok = false
	}
	if r.ok {
		heap.Fix(&m.h, 0)
	} else {
		heap.Pop(&m.h)
	}
	m.frame++
	p.Frame = m.frame
	return p, nil
}

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
