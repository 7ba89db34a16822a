package tap

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func hepChunk(typ uint16, v []byte) []byte {
	return cat(be16(0), be16(typ), be16(uint16(6+len(v))), v)
}

// encodeHEP builds a HEP v3 packet of a SIP message.
func encodeHEP(src, dst netip.AddrPort, proto uint8, ts time.Time, ptype uint8, payload []byte, compress bool) []byte {
	var body []byte
	if src.Addr().Is4() {
		body = cat(hepChunk(1, []byte{2}), hepChunk(3, src.Addr().AsSlice()), hepChunk(4, dst.Addr().AsSlice()))
	} else {
		body = cat(hepChunk(1, []byte{10}), hepChunk(5, src.Addr().AsSlice()), hepChunk(6, dst.Addr().AsSlice()))
	}
	body = cat(body, hepChunk(2, []byte{proto}), hepChunk(7, be16(src.Port())), hepChunk(8, be16(dst.Port())),
		hepChunk(9, be32(uint32(ts.Unix()))), hepChunk(10, be32(uint32(ts.Nanosecond()/1000))),
		hepChunk(11, []byte{ptype}), hepChunk(12, be32(2001)), hepChunk(0x11, []byte("call-id@x")))
	if compress {
		var z bytes.Buffer
		zw := zlib.NewWriter(&z)
		zw.Write(payload)
		zw.Close()
		body = cat(body, hepChunk(16, z.Bytes()))
	} else {
		body = cat(body, hepChunk(15, payload))
	}
	return cat([]byte("HEP3"), be16(uint16(6+len(body))), body)
}

func TestHEPCaptures(t *testing.T) {
	dir := capturesDir(t)
	r, st := decodeAll(t, Options{}, filepath.Join(dir, "hep-wireshark", "hep.pcap"))
	if st.HEPPackets != 8 || st.HEPSkipped != 2 || len(r.datagrams) != 6 {
		t.Fatalf("hep.pcap: %d hep, %d skipped, %d delivered", st.HEPPackets, st.HEPSkipped, len(r.datagrams))
	}
	first := r.datagrams[0]
	want := Meta{
		Time:      time.Date(2016, 12, 11, 11, 19, 56, 100000, time.UTC),
		Src:       netip.MustParseAddrPort("192.168.1.1:5060"),
		Dst:       netip.MustParseAddrPort("192.168.1.2:5060"),
		Transport: UDP, Origin: OriginHEP,
		Exporter: netip.MustParseAddrPort("127.0.0.1:51160"),
		Frame:    1,
	}
	if first.m != want || !bytes.HasPrefix(first.p, []byte("INVITE sip:nodejs@127.0.0.1 SIP/2.0")) {
		t.Fatalf("first: %+v %q", first.m, first.p[:40])
	}

	r, st = decodeAll(t, Options{}, filepath.Join(dir, "hep-wireshark", "hep3_compressed.pcap.pcapng"))
	if st.HEPPackets != 21 || len(r.datagrams) != 21 {
		t.Fatalf("compressed: %d hep, %d delivered", st.HEPPackets, len(r.datagrams))
	}
	for _, d := range r.datagrams {
		if d.m.Origin != OriginHEP || d.m.Transport != TCP || !(bytes.HasPrefix(d.p, []byte("REGISTER ")) || bytes.HasPrefix(d.p, []byte("SIP/2.0 "))) {
			t.Fatalf("compressed frame %d: %+v %q", d.m.Frame, d.m, d.p[:20])
		}
		if !bytes.Contains(d.p, []byte("\r\nCall-ID: ")) && !bytes.Contains(d.p, []byte("\r\ni: ")) {
			t.Fatalf("frame %d: inflated payload has no Call-ID", d.m.Frame)
		}
	}
}

func TestHEPOverUDPAndTCP(t *testing.T) {
	ts := time.Date(2026, 11, 21, 9, 0, 0, 123456000, time.UTC)
	a := netip.MustParseAddrPort("[2001:db8::5]:5061")
	b := netip.MustParseAddrPort("[2001:db8::6]:5061")
	msgs := [][]byte{[]byte("REFER sip:x SIP/2.0\r\n\r\n"), []byte("SIP/2.0 202 Accepted\r\n\r\n"), bytes.Repeat([]byte("N"), 3000)}
	var stream []byte
	for i, m := range msgs {
		stream = append(stream, encodeHEP(a, b, 6, ts, 1, m, i == 1)...)
	}
	stream = append(stream, encodeHEP(a, b, 17, ts, 100, []byte("a log line"), false)...)

	// UDP: several HEP packets in one datagram.
	r := &rec{}
	d := NewDecoder(r, Options{})
	pkt := udpOuter(t, 9060, stream)
	d.Decode(Packet{Data: pkt, LinkType: layers.LinkTypeRaw, Frame: 1, Info: gopacket.CaptureInfo{Timestamp: time.Unix(1, 0)}})
	d.Close()
	check := func(how string, r *rec, st Stats, exporter netip.AddrPort) {
		t.Helper()
		if len(r.datagrams) != 3 || st.HEPPackets != 4 || st.HEPSkipped != 1 {
			t.Fatalf("%s: %d datagrams, stats %+v", how, len(r.datagrams), st)
		}
		for i, dg := range r.datagrams {
			if !bytes.Equal(dg.p, msgs[i]) || dg.m.Src != a || dg.m.Dst != b || !dg.m.Time.Equal(ts) || dg.m.Transport != TCP || dg.m.Exporter != exporter {
				t.Fatalf("%s: datagram %d: %+v", how, i, dg.m)
			}
		}
	}
	check("udp", r, d.Stats(), netip.MustParseAddrPort("10.0.0.1:40000"))

	// TCP: the same bytes cut every 7 bytes.
	r = &rec{}
	f := newFeeder(t, r, Options{})
	f.feed(seg{from: cli, seq: 0, syn: true})
	for off := 0; off < len(stream); off += 7 {
		f.feed(seg{from: cli, seq: 1 + uint32(off), ackf: true, data: stream[off:min(off+7, len(stream))]})
	}
	f.d.Close()
	check("tcp", r, f.d.Stats(), cli)
	if len(r.streams) != 1 || r.streams[0].data[0].Len() != 0 {
		t.Fatal("HEP stream bytes leaked to the stream consumer")
	}
}

func TestHEPBounds(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:5060")
	// A zlib bomb: 8 MiB of zeros, over the 1 MiB default.
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(make([]byte, 8<<20))
	zw.Close()
	body := cat(hepChunk(3, a.Addr().AsSlice()), hepChunk(4, a.Addr().AsSlice()), hepChunk(11, []byte{1}), hepChunk(16, z.Bytes()))
	bomb := cat([]byte("HEP3"), be16(uint16(6+len(body))), body)
	good := encodeHEP(a, a, 17, time.Unix(1700000000, 0), 1, []byte("OPTIONS sip:a SIP/2.0\r\n\r\n"), true)
	bad := append([]byte(nil), good...)
	binary.BigEndian.PutUint16(bad[10:], 3) // chunk length below its header
	short := append([]byte(nil), good...)
	binary.BigEndian.PutUint16(short[4:], uint16(len(good)+10))

	r := &rec{}
	d := NewDecoder(r, Options{})
	for i, p := range [][]byte{bomb, bad, short, good} {
		pkt := udpOuter(t, 9060, p)
		d.Decode(Packet{Data: pkt, LinkType: layers.LinkTypeRaw, Frame: uint64(i + 1), Info: gopacket.CaptureInfo{Timestamp: time.Unix(1, 0)}})
	}
	st := d.Stats()
	if len(r.datagrams) != 1 || !strings.HasPrefix(string(r.datagrams[0].p), "OPTIONS") {
		t.Fatalf("%d datagrams", len(r.datagrams))
	}
	if st.Malformed != 3 || st.HEPSkipped != 3 {
		t.Fatalf("stats %+v", st)
	}
}
