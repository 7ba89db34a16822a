// Package malformed generates a corpus of damaged capture files from one
// good little-endian pcap, for the tests of tap, analyze and the CLI: every
// way a capture seen in the field ends early (cut short, corrupt record or
// block length, corrupt first block, truncated or corrupt gzip), each with
// what a reader must make of it. Generating the corpus keeps binaries out
// of the repository and keeps each case's damage explained in code.
package malformed

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Case is one damaged file.
type Case struct {
	// Name is a file name for the case (its extension hints the format;
	// readers must not rely on it).
	Name string
	Data []byte
	// Fatal is true when nothing readable is left: the reader must fail
	// (exit status 2), not report zero packets.
	Fatal bool
	// Packets is how many packets come out before the damage (for a
	// case that is not Fatal); -1 means some, but fewer than the base.
	Packets int
	// Warn is true when the file ends early and the reader must say so.
	Warn bool
}

// record is one pcap record as it sits in the file.
type record struct {
	ci   gopacket.CaptureInfo
	data []byte
	off  int // offset of the record header in the pcap
}

// records splits a little-endian microsecond pcap into its records.
func records(pcap []byte) (lt layers.LinkType, recs []record, err error) {
	if len(pcap) < 24 || !bytes.Equal(pcap[:4], []byte{0xd4, 0xc3, 0xb2, 0xa1}) {
		return 0, nil, errors.New("malformed: base is not a little-endian microsecond pcap")
	}
	r, err := pcapgo.NewReader(bytes.NewReader(pcap))
	if err != nil {
		return 0, nil, fmt.Errorf("malformed: %w", err)
	}
	off := 24
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, nil, fmt.Errorf("malformed: %w", err)
		}
		recs = append(recs, record{ci: ci, data: data, off: off})
		off += 16 + len(data)
	}
	if len(recs) < 4 {
		return 0, nil, errors.New("malformed: base needs at least 4 packets")
	}
	return r.LinkType(), recs, nil
}

// pcapng writes the records as one pcapng section (SHB, one IDB, EPBs)
// and returns the file with the offset of each EPB.
func pcapng(lt layers.LinkType, recs []record) ([]byte, []int, error) {
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, lt)
	if err != nil {
		return nil, nil, fmt.Errorf("malformed: %w", err)
	}
	if err := w.Flush(); err != nil {
		return nil, nil, fmt.Errorf("malformed: %w", err)
	}
	var offs []int
	for _, r := range recs {
		offs = append(offs, buf.Len())
		if err := w.WritePacket(r.ci, r.data); err != nil {
			return nil, nil, fmt.Errorf("malformed: %w", err)
		}
		if err := w.Flush(); err != nil {
			return nil, nil, fmt.Errorf("malformed: %w", err)
		}
	}
	return buf.Bytes(), offs, nil
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func put32(b []byte, off int, v uint32) []byte {
	out := bytes.Clone(b)
	binary.LittleEndian.PutUint32(out[off:], v)
	return out
}

// Corpus returns the damaged variants of base, a good little-endian
// microsecond pcap of at least 4 packets.
func Corpus(base []byte) ([]Case, error) {
	lt, recs, err := records(base)
	if err != nil {
		return nil, err
	}
	n := len(recs)
	mid := n / 2
	ng, epb, err := pcapng(lt, recs)
	if err != nil {
		return nil, err
	}
	shbLen := int(binary.LittleEndian.Uint32(ng[4:8]))
	zpcap, zng := gz(base), gz(ng)
	badCRC := bytes.Clone(zpcap)
	badCRC[len(badCRC)-8] ^= 0xff // the CRC-32 of the gzip trailer
	return []Case{
		{Name: "good.pcap", Data: base, Packets: n},
		{Name: "header-only.pcap", Data: base[:24], Packets: 0},
		{Name: "pcap-cut-mid-record.pcap", Data: base[:len(base)-5], Packets: n - 1, Warn: true},
		{Name: "pcap-cut-after-record-header.pcap", Data: base[:recs[mid].off+16], Packets: mid, Warn: true},
		{Name: "pcap-cut-mid-record-header.pcap", Data: base[:recs[mid].off+7], Packets: mid, Warn: true},
		{Name: "pcap-bad-caplen-mid-file.pcap", Data: put32(base, recs[mid].off+8, 0x7fffffff), Packets: mid, Warn: true},
		{Name: "pcap-bad-first-record.pcap", Data: put32(base, 24+8, 0xfffffff0), Fatal: true},
		{Name: "pcap-cut-in-file-header.pcap", Data: base[:10], Fatal: true},
		{Name: "good.pcapng", Data: ng, Packets: n},
		{Name: "ng-bad-block-length-mid-file.pcapng", Data: put32(ng, epb[mid]+4, 0x7ffffff0), Packets: mid, Warn: true},
		{Name: "ng-zero-block-length-mid-file.pcapng", Data: put32(ng, epb[mid]+4, 0), Packets: mid, Warn: true},
		{Name: "ng-cut-mid-block.pcapng", Data: ng[:epb[mid]+20], Packets: mid, Warn: true},
		{Name: "ng-bad-first-block.pcapng", Data: put32(ng, 4, 0x7ffffff0), Fatal: true},
		{Name: "ng-bad-interface-block.pcapng", Data: put32(ng, shbLen+4, 0x7ffffff0), Fatal: true},
		{Name: "good.pcap.gz", Data: zpcap, Packets: n},
		{Name: "gz-pcap-cut-mid-stream.pcap.gz", Data: zpcap[:len(zpcap)/2], Packets: -1, Warn: true},
		{Name: "gz-ng-cut-trailer.pcapng.gz", Data: zng[:len(zng)-8], Packets: n, Warn: true},
		{Name: "gz-bad-crc.pcap.gz", Data: badCRC, Packets: n, Warn: true},
		{Name: "gz-cut-in-gzip-header.pcap.gz", Data: zpcap[:6], Fatal: true},
	}, nil
}
