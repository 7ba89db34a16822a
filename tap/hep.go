package tap

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// hepMsg is one decoded HEP v3 packet.
type hepMsg struct {
	family, proto uint8
	src, dst      netip.Addr
	sport, dport  uint16
	sec, usec     uint32
	haveTime      bool
	ptype         uint8
	payload       []byte
	compressed    bool
}

var errHEP = errors.New("hep: malformed")

// parseHEP decodes one HEP v3 packet of exactly len(b) bytes (b starts
// with "HEP3" and its length field equals len(b)).
func parseHEP(b []byte) (hepMsg, error) {
	var m hepMsg
	if len(b) < 6 || string(b[:4]) != "HEP3" {
		return m, errHEP
	}
	if int(binary.BigEndian.Uint16(b[4:])) != len(b) {
		return m, fmt.Errorf("hep: length field %d, packet %d: %w", binary.BigEndian.Uint16(b[4:]), len(b), errHEP)
	}
	p := b[6:]
	for len(p) > 0 {
		if len(p) < 6 {
			return m, fmt.Errorf("hep: truncated chunk header: %w", errHEP)
		}
		vendor := binary.BigEndian.Uint16(p)
		typ := binary.BigEndian.Uint16(p[2:])
		n := int(binary.BigEndian.Uint16(p[4:]))
		if n < 6 || n > len(p) {
			return m, fmt.Errorf("hep: chunk length %d: %w", n, errHEP)
		}
		v := p[6:n]
		p = p[n:]
		if vendor != 0 {
			continue
		}
		switch typ {
		case 1:
			if len(v) >= 1 {
				m.family = v[0]
			}
		case 2:
			if len(v) >= 1 {
				m.proto = v[0]
			}
		case 3:
			if len(v) == 4 {
				m.src = netip.AddrFrom4([4]byte(v))
			}
		case 4:
			if len(v) == 4 {
				m.dst = netip.AddrFrom4([4]byte(v))
			}
		case 5:
			if len(v) == 16 {
				m.src = netip.AddrFrom16([16]byte(v))
			}
		case 6:
			if len(v) == 16 {
				m.dst = netip.AddrFrom16([16]byte(v))
			}
		case 7:
			if len(v) >= 2 {
				m.sport = binary.BigEndian.Uint16(v)
			}
		case 8:
			if len(v) >= 2 {
				m.dport = binary.BigEndian.Uint16(v)
			}
		case 9:
			if len(v) >= 4 {
				m.sec = binary.BigEndian.Uint32(v)
				m.haveTime = true
			}
		case 10:
			if len(v) >= 4 {
				m.usec = binary.BigEndian.Uint32(v)
			}
		case 11:
			if len(v) >= 1 {
				m.ptype = v[0]
			}
		case 15:
			m.payload = v
		case 16:
			m.payload = v
			m.compressed = true
		}
	}
	return m, nil
}

// inflate decompresses a zlib payload of at most max bytes.
func inflate(b []byte, max int) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("hep: inflate: %w", err)
	}
	defer zr.Close()
	out, err := io.ReadAll(io.LimitReader(zr, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("hep: inflate: %w", err)
	}
	if len(out) > max {
		return nil, fmt.Errorf("hep: inflated payload over %d bytes", max)
	}
	return out, nil
}

// hep handles a UDP payload that starts with "HEP3": one or more HEP
// packets back to back.
func (d *Decoder) hep(exporter netip.AddrPort, b []byte) {
	for len(b) >= 6 && string(b[:4]) == "HEP3" {
		n := int(binary.BigEndian.Uint16(b[4:]))
		if n < 6 || n > len(b) {
			d.stats.HEPSkipped++
			d.malformed = true
			return
		}
		d.hepPacket(exporter, b[:n])
		b = b[n:]
	}
	if len(b) > 0 {
		d.malformed = true
	}
}

// hepPacket delivers one HEP packet (exactly one, length checked).
func (d *Decoder) hepPacket(exporter netip.AddrPort, b []byte) {
	m, err := parseHEP(b)
	if err != nil {
		d.stats.HEPSkipped++
		d.malformed = true
		return
	}
	d.stats.HEPPackets++
	if m.ptype != 1 || m.payload == nil {
		d.stats.HEPSkipped++
		return
	}
	payload := m.payload
	if m.compressed {
		payload, err = inflate(payload, d.opt.MaxInflate)
		if err != nil {
			d.stats.HEPSkipped++
			d.malformed = true
			return
		}
	}
	t := d.cur.ci.Timestamp
	if m.haveTime && m.sec != 0 {
		t = time.Unix(int64(m.sec), int64(m.usec)*1000).UTC()
	}
	tr := UDP
	switch m.proto {
	case 6:
		tr = TCP
	case 132:
		tr = SCTP
	}
	d.h.Datagram(Meta{
		Time:      t,
		Src:       netip.AddrPortFrom(m.src, m.sport),
		Dst:       netip.AddrPortFrom(m.dst, m.dport),
		Transport: tr,
		Origin:    OriginHEP,
		Exporter:  exporter,
		Frame:     d.cur.frame,
	}, payload)
}

// hepStream frames HEP packets carried over TCP by their length field.
type hepStream struct {
	buf []byte
}

// maxHEPBuffer bounds the bytes buffered for one HEP-over-TCP direction.
const maxHEPBuffer = 1 << 17

// feed appends data and delivers every complete HEP packet. After a gap
// the buffer resynchronises on the next "HEP3".
func (h *hepStream) feed(d *Decoder, exporter netip.AddrPort, data []byte) {
	h.buf = append(h.buf, data...)
	for {
		if i := bytes.Index(h.buf, []byte("HEP3")); i != 0 {
			if i < 0 {
				// keep a possible partial magic
				if k := len(h.buf) - 3; k > 0 {
					h.buf = h.buf[:copy(h.buf, h.buf[k:])]
				}
				return
			}
			d.malformed = true
			h.buf = h.buf[:copy(h.buf, h.buf[i:])]
		}
		if len(h.buf) < 6 {
			return
		}
		n := int(binary.BigEndian.Uint16(h.buf[4:]))
		if n < 6 {
			h.buf = h.buf[:copy(h.buf, h.buf[4:])]
			continue
		}
		if len(h.buf) < n {
			if len(h.buf) > maxHEPBuffer {
				h.buf = h.buf[:0]
			}
			return
		}
		d.hepPacket(exporter, h.buf[:n])
		h.buf = h.buf[:copy(h.buf, h.buf[n:])]
	}
}

func (h *hepStream) reset() { h.buf = h.buf[:0] }
