package tap

import (
	"encoding/binary"
	"net/netip"

	"github.com/sbcwatch/sbcwatch/audiocodes/acdr"
)

// acdr handles one AudioCodes debug recording packet sent by exporter.
//
// Time: the ACDR timestamp is a free-running microsecond counter of the
// device (32 bits from header version 4, wrapping every 71.6 minutes),
// not a wall clock, so copies are dated by their capture time.
func (d *Decoder) acdr(exporter netip.AddrPort, b []byte) {
	p, err := acdr.Decode(b)
	if err != nil {
		d.stats.ACDRSkipped++
		d.malformed = true
		return
	}
	d.stats.ACDRPackets++
	m := Meta{Time: d.cur.ci.Timestamp, Origin: OriginACDR, Exporter: exporter, Frame: d.cur.frame}
	payload := p.Payload
	switch p.Media {
	case acdr.MediaSIP:
		switch p.Trace {
		case acdr.TraceSystem:
			if se, err := acdr.ParseSystemExt(p.Ext); err == nil {
				m.Src, m.Dst = se.Src, se.Dst
				m.Transport = transportOf(se.IPProtocol)
				m.Outgoing, m.Incoming = se.Outgoing, !se.Outgoing
			}
		case acdr.TraceNet2Host:
			m.Incoming = true
		case acdr.TraceHost2Net:
			m.Outgoing = true
		}
		if p.Has(acdr.FlagHeaderAdded) {
			src, dst, tr, inner, ok := innerIP(payload)
			if !ok {
				d.stats.ACDRSkipped++
				d.malformed = true
				return
			}
			m.Src, m.Dst, m.Transport, payload = src, dst, tr, inner
		}
	case acdr.MediaTLS, acdr.MediaTLSPeek:
		te, err := acdr.ParseTLSExt(p.Ext)
		if err != nil {
			d.stats.ACDRSkipped++
			return
		}
		sip := te.Application == acdr.TLSAppSIP ||
			(te.Application == acdr.TLSAppTCP && (isSIPPort(te.Src.Port()) || isSIPPort(te.Dst.Port())))
		if !sip {
			d.stats.ACDRSkipped++
			return
		}
		m.Src, m.Dst, m.Transport = te.Src, te.Dst, TLS
		m.Incoming, m.Outgoing = p.Trace == acdr.TraceNet2Host, p.Trace == acdr.TraceHost2Net
		if p.Has(acdr.FlagHeaderAdded) {
			// As Wireshark does for every media type: an IP packet.
			src, dst, _, inner, ok := innerIP(payload)
			if !ok {
				d.stats.ACDRSkipped++
				d.malformed = true
				return
			}
			m.Src, m.Dst, payload = src, dst, inner
		}
	default:
		d.stats.ACDRSkipped++
		return
	}
	if len(payload) == 0 {
		d.stats.ACDRSkipped++
		return
	}
	d.h.Datagram(m, payload)
}

func isSIPPort(p uint16) bool { return p == 5060 || p == 5061 }

func transportOf(ipProto uint8) Transport {
	switch ipProto {
	case 6:
		return TCP
	case 132:
		return SCTP
	}
	return UDP
}

// innerIP decodes the IP packet an ACDR HeaderAdded copy carries and
// returns its endpoints and transport payload (UDP or TCP, one segment).
func innerIP(b []byte) (src, dst netip.AddrPort, tr Transport, payload []byte, ok bool) {
	if len(b) < 1 {
		return
	}
	var sa, da netip.Addr
	var proto uint8
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:]))
		if ihl < 20 || len(b) < ihl || total < ihl {
			return
		}
		if total < len(b) {
			b = b[:total]
		}
		sa, da = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		proto = b[9]
		b = b[ihl:]
	case 6:
		if len(b) < 40 {
			return
		}
		sa, da = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		proto = b[6]
		b = b[40:]
	default:
		return
	}
	switch proto {
	case 17:
		if len(b) < 8 {
			return
		}
		src = netip.AddrPortFrom(sa, binary.BigEndian.Uint16(b))
		dst = netip.AddrPortFrom(da, binary.BigEndian.Uint16(b[2:]))
		n := int(binary.BigEndian.Uint16(b[4:]))
		payload = b[8:]
		if n >= 8 && n-8 < len(payload) {
			payload = payload[:n-8]
		}
		return src, dst, UDP, payload, true
	case 6:
		if len(b) < 20 {
			return
		}
		off := int(b[12]>>4) * 4
		if off < 20 || len(b) < off {
			return
		}
		src = netip.AddrPortFrom(sa, binary.BigEndian.Uint16(b))
		dst = netip.AddrPortFrom(da, binary.BigEndian.Uint16(b[2:]))
		return src, dst, TCP, b[off:], true
	}
	return
}
