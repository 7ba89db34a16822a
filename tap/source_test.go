package tap

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

type testPkt struct {
	t    time.Time
	data []byte
	lt   layers.LinkType
}

func somePackets(n int, start time.Time, step time.Duration, lt layers.LinkType) []testPkt {
	var out []testPkt
	for i := range n {
		data := bytes.Repeat([]byte{byte(i + 1)}, 20+i)
		out = append(out, testPkt{t: start.Add(time.Duration(i) * step), data: data, lt: lt})
	}
	return out
}

func readAll(t *testing.T, paths ...string) []Packet {
	t.Helper()
	src, err := Open(paths...)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var out []Packet
	for {
		p, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	done, total := src.Progress()
	if done != total || total == 0 {
		t.Errorf("progress %d/%d at the end", done, total)
	}
	return out
}

func checkSame(t *testing.T, got []Packet, want []testPkt) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d packets, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.Info.Timestamp.Equal(w.t) || !bytes.Equal(g.Data, w.data) || g.LinkType != w.lt || g.Frame != uint64(i+1) {
			t.Fatalf("packet %d: got t=%v lt=%v frame=%d % x, want t=%v lt=%v % x", i, g.Info.Timestamp, g.LinkType, g.Frame, g.Data, w.t, w.lt, w.data)
		}
		if g.Info.CaptureLength != len(w.data) || g.Info.Length != len(w.data) {
			t.Fatalf("packet %d: lengths %d/%d", i, g.Info.CaptureLength, g.Info.Length)
		}
	}
}

func writePcap(t *testing.T, path string, nanos bool, pkts []testPkt) {
	t.Helper()
	var buf bytes.Buffer
	var w *pcapgo.Writer
	if nanos {
		w = pcapgo.NewWriterNanos(&buf)
	} else {
		w = pcapgo.NewWriter(&buf)
	}
	if err := w.WriteFileHeader(65535, pkts[0].lt); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: p.t, CaptureLength: len(p.data), Length: len(p.data)}
		if err := w.WritePacket(ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// bigEndianPcap writes a pcap by hand, big-endian, micro or nanoseconds.
func bigEndianPcap(pkts []testPkt, nanos bool) []byte {
	var b bytes.Buffer
	magic := uint32(0xa1b2c3d4)
	if nanos {
		magic = 0xa1b23c4d
	}
	hdr := make([]byte, 24)
	binary.BigEndian.PutUint32(hdr[0:], magic)
	binary.BigEndian.PutUint16(hdr[4:], 2)
	binary.BigEndian.PutUint16(hdr[6:], 4)
	binary.BigEndian.PutUint32(hdr[16:], 65535)
	binary.BigEndian.PutUint32(hdr[20:], uint32(pkts[0].lt))
	b.Write(hdr)
	for _, p := range pkts {
		rh := make([]byte, 16)
		binary.BigEndian.PutUint32(rh[0:], uint32(p.t.Unix()))
		frac := p.t.Nanosecond() / 1000
		if nanos {
			frac = p.t.Nanosecond()
		}
		binary.BigEndian.PutUint32(rh[4:], uint32(frac))
		binary.BigEndian.PutUint32(rh[8:], uint32(len(p.data)))
		binary.BigEndian.PutUint32(rh[12:], uint32(len(p.data)))
		b.Write(rh)
		b.Write(p.data)
	}
	return b.Bytes()
}

// ngSection writes one pcapng section with one interface per link type.
func ngSection(t *testing.T, pkts []testPkt, lts []layers.LinkType) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{LinkType: lts[0], SnapLength: 65535, TimestampResolution: 9}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	idx := map[layers.LinkType]int{lts[0]: 0}
	for _, lt := range lts[1:] {
		i, err := w.AddInterface(pcapgo.NgInterface{LinkType: lt, SnapLength: 65535, TimestampResolution: 9})
		if err != nil {
			t.Fatal(err)
		}
		idx[lt] = i
	}
	for _, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: p.t, CaptureLength: len(p.data), Length: len(p.data), InterfaceIndex: idx[p.lt]}
		if err := w.WritePacket(ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bigEndianNgSection writes a pcapng section by hand in big-endian byte
// order (microsecond timestamps, one interface).
func bigEndianNgSection(pkts []testPkt) []byte {
	be := binary.BigEndian
	block := func(typ uint32, body []byte) []byte {
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		n := uint32(12 + len(body))
		b := be.AppendUint32(nil, typ)
		b = be.AppendUint32(b, n)
		b = append(b, body...)
		return be.AppendUint32(b, n)
	}
	shb := be.AppendUint32(nil, 0x1a2b3c4d)
	shb = be.AppendUint16(shb, 1)
	shb = be.AppendUint16(shb, 0)
	shb = be.AppendUint64(shb, ^uint64(0))
	out := block(0x0a0d0d0a, shb)
	idb := be.AppendUint16(nil, uint16(pkts[0].lt))
	idb = be.AppendUint16(idb, 0)
	idb = be.AppendUint32(idb, 65535)
	out = append(out, block(1, idb)...)
	for _, p := range pkts {
		us := uint64(p.t.UnixMicro())
		epb := be.AppendUint32(nil, 0)
		epb = be.AppendUint32(epb, uint32(us>>32))
		epb = be.AppendUint32(epb, uint32(us))
		epb = be.AppendUint32(epb, uint32(len(p.data)))
		epb = be.AppendUint32(epb, uint32(len(p.data)))
		epb = append(epb, p.data...)
		out = append(out, block(6, epb)...)
	}
	return out
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestOpenFormats(t *testing.T) {
	dir := t.TempDir()
	base := time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.UTC)
	micro := somePackets(5, base.Truncate(time.Microsecond), 1500*time.Microsecond, layers.LinkTypeEthernet)
	nano := somePackets(5, base, 1500*time.Nanosecond+7, layers.LinkTypeLinuxSLL)

	t.Run("pcap little-endian micro", func(t *testing.T) {
		p := filepath.Join(dir, "le.pcap")
		writePcap(t, p, false, micro)
		checkSame(t, readAll(t, p), micro)
	})
	t.Run("pcap little-endian nano", func(t *testing.T) {
		p := filepath.Join(dir, "len.pcap")
		writePcap(t, p, true, nano)
		checkSame(t, readAll(t, p), nano)
	})
	t.Run("pcap big-endian micro", func(t *testing.T) {
		p := filepath.Join(dir, "be.pcap")
		os.WriteFile(p, bigEndianPcap(micro, false), 0o644)
		checkSame(t, readAll(t, p), micro)
	})
	t.Run("pcap big-endian nano", func(t *testing.T) {
		p := filepath.Join(dir, "ben.pcap")
		os.WriteFile(p, bigEndianPcap(nano, true), 0o644)
		checkSame(t, readAll(t, p), nano)
	})
	t.Run("pcapng two sections mixed link types", func(t *testing.T) {
		a := somePackets(4, base, time.Millisecond, layers.LinkTypeEthernet)
		a[1].lt, a[3].lt = layers.LinkTypeRaw, layers.LinkTypeRaw
		b := somePackets(3, base.Add(time.Second), time.Millisecond, layers.LinkTypeLinuxSLL2)
		b[2].lt = layers.LinkTypeNull
		file := append(ngSection(t, a, []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeRaw}),
			ngSection(t, b, []layers.LinkType{layers.LinkTypeLinuxSLL2, layers.LinkTypeNull})...)
		p := filepath.Join(dir, "two.pcapng")
		os.WriteFile(p, file, 0o644)
		checkSame(t, readAll(t, p), append(a, b...))
	})
	t.Run("pcapng little- then big-endian section", func(t *testing.T) {
		a := somePackets(3, base, time.Millisecond, layers.LinkTypeEthernet)
		b := somePackets(3, base.Add(time.Second).Truncate(time.Microsecond), time.Millisecond, layers.LinkTypeRaw)
		p := filepath.Join(dir, "mixed-endian.pcapng")
		os.WriteFile(p, append(ngSection(t, a, []layers.LinkType{layers.LinkTypeEthernet}), bigEndianNgSection(b)...), 0o644)
		checkSame(t, readAll(t, p), append(a, b...))
	})
	t.Run("gzip pcap and pcapng", func(t *testing.T) {
		p := filepath.Join(dir, "z.pcap.gz")
		os.WriteFile(p, gz(t, bigEndianPcap(nano, true)), 0o644)
		checkSame(t, readAll(t, p), nano)
		q := filepath.Join(dir, "z.pcapng.gz")
		os.WriteFile(q, gz(t, ngSection(t, micro, []layers.LinkType{layers.LinkTypeEthernet})), 0o644)
		checkSame(t, readAll(t, q), micro)
	})
}

func TestOpenDirectoryMergesInTimeOrder(t *testing.T) {
	dir := t.TempDir()
	base := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	// Three rotated files whose times interleave at the seams, named so
	// that name order is not time order.
	all := somePackets(30, base, 10*time.Millisecond, layers.LinkTypeEthernet)
	files := map[string][]testPkt{}
	for i, p := range all {
		switch {
		case i < 11:
			files["c-first.pcap"] = append(files["c-first.pcap"], p)
		case i < 21:
			files["a-second.pcap"] = append(files["a-second.pcap"], p)
		default:
			files["b-third.pcap"] = append(files["b-third.pcap"], p)
		}
	}
	// Interleave: move one packet of the second file into the first.
	files["c-first.pcap"] = append(files["c-first.pcap"], files["a-second.pcap"][1])
	files["a-second.pcap"] = append(files["a-second.pcap"][:1], files["a-second.pcap"][2:]...)
	for name, pk := range files {
		if name == "b-third.pcap" {
			os.WriteFile(filepath.Join(dir, name), gz(t, bigEndianPcap(pk, true)), 0o644)
			continue
		}
		writePcap(t, filepath.Join(dir, name), true, pk)
	}
	got := readAll(t, dir)
	checkSame(t, got, all)
}

func TestOpenNotACapture(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.txt")
	os.WriteFile(p, []byte("hello, this is text\n"), 0o644)
	_, err := Open(p)
	if err == nil || !errors.Is(err, ErrNotCapture) {
		t.Fatalf("err = %v", err)
	}
	if want := p + ": not a pcap or pcapng capture"; err.Error() != want {
		t.Fatalf("err = %q, want %q", err, want)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Open(empty); !errors.Is(err, ErrNotCapture) {
		t.Fatalf("empty file: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "missing.pcap")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestOpenTruncatedLastRecord(t *testing.T) {
	dir := t.TempDir()
	pk := somePackets(3, time.Unix(1700000000, 0), time.Second, layers.LinkTypeEthernet)
	b := bigEndianPcap(pk, false)
	p := filepath.Join(dir, "cut.pcap")
	os.WriteFile(p, b[:len(b)-5], 0o644)
	got := readAll(t, p)
	checkSame(t, got, pk[:2])
	src, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for {
		if _, err := src.Next(); err != nil {
			break
		}
	}
	if w := src.Warnings(); len(w) != 1 || !strings.Contains(w[0], "cut.pcap: ends inside a record after 2 packets") {
		t.Fatalf("warnings %q", w)
	}
}

// A Stream reads like the same bytes in a file, merged by time with the
// named files; one cut short ends with a warning that names it.
func TestOpenWithStream(t *testing.T) {
	path := filepath.Join("..", "testdata", "lab", "transfer_fails_default_cert.pcap")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	read := func(src Source, err error) (frames []Packet, warnings []string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		for {
			p, err := src.Next()
			if errors.Is(err, io.EOF) {
				return frames, src.Warnings()
			}
			if err != nil {
				t.Fatal(err)
			}
			frames = append(frames, p)
		}
	}
	file, _ := read(Open(path))
	// iotest-like: the stream hands over a few bytes at a time.
	stream, warn := read(OpenWith(nil, Stream{Name: "standard input", R: &trickle{b: raw}}))
	if len(file) == 0 || len(stream) != len(file) || len(warn) != 0 {
		t.Fatalf("stream: %d packets (file %d), warnings %v", len(stream), len(file), warn)
	}
	for i := range file {
		if !bytes.Equal(file[i].Data, stream[i].Data) || !file[i].Info.Timestamp.Equal(stream[i].Info.Timestamp) || stream[i].Frame != uint64(i+1) {
			t.Fatalf("packet %d differs", i+1)
		}
	}
	// File and stream of the same packets: merged, each packet twice.
	both, _ := read(OpenWith([]string{path}, Stream{Name: "standard input", R: bytes.NewReader(raw)}))
	if len(both) != 2*len(file) {
		t.Fatalf("file + stream: %d packets, want %d", len(both), 2*len(file))
	}
	for i := 1; i < len(both); i++ {
		if both[i].Info.Timestamp.Before(both[i-1].Info.Timestamp) {
			t.Fatalf("packet %d out of time order", i+1)
		}
	}
	// Cut short.
	_, warn = read(OpenWith(nil, Stream{Name: "standard input", R: bytes.NewReader(raw[:len(raw)*2/3])}))
	if len(warn) != 1 || !strings.HasPrefix(warn[0], "standard input: ends inside a record") {
		t.Fatalf("cut stream: warnings %q", warn)
	}
}

// trickle reads at most 7 bytes at a time, as a slow pipe would.
type trickle struct{ b []byte }

func (r *trickle) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 7)], r.b)
	r.b = r.b[n:]
	return n, nil
}
