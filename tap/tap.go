// Package tap turns packet captures into application payloads: it reads
// pcap and pcapng files (several, in time order, gzip too), peels link
// layers, VLAN tags and tunnels (IP-in-IP, GRE, ERSPAN, VXLAN), reassembles
// IP fragments and TCP streams, and unwraps exported copies (HEP v3,
// AudioCodes debug recording). It knows nothing of SIP or TLS: what it
// delivers goes to a Handler, which picks the protocol by content.
//
// Time is the capture clock only: every timestamp handed on comes from the
// capture (or the exporter's header), so replays are deterministic.
//
// Open reads the files; a Decoder, fed one packet at a time, calls the
// Handler. Memory is bounded on any input (TCP pages, fragments, inflated
// HEP payloads); every packet not delivered is counted in Stats. README.md
// lists the encapsulations, how ACDR copies are dated and the limits.
package tap

import (
	"net/netip"
	"time"
)

// Origin says how a payload reached sbcwatch.
type Origin uint8

const (
	// OriginWire is a payload seen directly on the wire.
	OriginWire Origin = iota
	// OriginACDR is a copy exported by an AudioCodes SBC as debug recording.
	OriginACDR
	// OriginHEP is a copy carried in HEP v3.
	OriginHEP
	// OriginSyslog is a copy reconstructed from AudioCodes syslog.
	OriginSyslog
)

func (o Origin) String() string {
	switch o {
	case OriginWire:
		return "wire"
	case OriginACDR:
		return "acdr"
	case OriginHEP:
		return "hep"
	case OriginSyslog:
		return "syslog"
	}
	return "unknown"
}

// Transport is the original transport of a payload.
type Transport uint8

const (
	UDP Transport = iota
	TCP
	TLS // a decrypted copy of a TLS stream's application data
	SCTP
)

func (t Transport) String() string {
	switch t {
	case UDP:
		return "udp"
	case TCP:
		return "tcp"
	case TLS:
		return "tls"
	case SCTP:
		return "sctp"
	}
	return "unknown"
}

// Meta describes one delivered payload.
type Meta struct {
	// Time is the capture timestamp, or the exporter's own timestamp for
	// ACDR and HEP copies.
	Time time.Time
	// Src and Dst are the original endpoints (for copies: the addresses
	// the exporter reports, not the exporter's).
	Src, Dst  netip.AddrPort
	Transport Transport
	Origin    Origin
	// Exporter is the sender of an ACDR/HEP copy (zero on the wire).
	Exporter netip.AddrPort
	// Frame is the 1-based frame number in the capture (0 when unknown).
	Frame uint64
	// Outgoing is set when an exporter says the SBC sent the message
	// (ACDR direction 1); Incoming when it received it. Both false when
	// not known.
	Outgoing, Incoming bool
}

// Dir is the direction of bytes within a TCP connection.
type Dir uint8

const (
	// ClientToServer is from the side that sent the first SYN (or, when
	// the capture started mid-stream, the side first seen sending).
	ClientToServer Dir = iota
	ServerToClient
)

func (d Dir) String() string {
	if d == ClientToServer {
		return "client"
	}
	return "server"
}

// ConnInfo identifies one TCP connection.
type ConnInfo struct {
	Client, Server netip.AddrPort
	// FirstSeen is the time of the first packet of the connection.
	FirstSeen time.Time
	// SawSYN is true when the capture holds the connection's SYN, so the
	// client/server roles are certain.
	SawSYN bool
	// Frame is the frame number of the first packet.
	Frame uint64
}

// EventKind is a TCP control event.
type EventKind uint8

const (
	EventSYN EventKind = iota
	EventSYNACK
	EventFIN
	EventRST
)

func (e EventKind) String() string {
	return [...]string{"syn", "synack", "fin", "rst"}[e]
}

// Event is a TCP control event seen on a connection.
type Event struct {
	Kind EventKind
	Dir  Dir
	Time time.Time
}

// CloseReason says why a stream ended.
type CloseReason uint8

const (
	// CloseFIN: both sides (or one side) sent FIN.
	CloseFIN CloseReason = iota
	// CloseRST: a reset ended the connection.
	CloseRST
	// CloseIdle: the capture clock passed the idle timeout.
	CloseIdle
	// CloseEnd: the capture ended with the connection open.
	CloseEnd
)

// Handler receives what the tap decodes. The pipeline implements it.
// Calls are made from one goroutine in capture order; a Handler must copy
// any byte slice it keeps beyond the call.
type Handler interface {
	// Datagram delivers one UDP/SCTP payload after IP reassembly, or one
	// exported copy of a message (ACDR, HEP), with its original endpoints.
	Datagram(m Meta, payload []byte)
	// Stream is called once per new TCP connection and returns the
	// consumer of its bytes and events (nil to ignore the connection).
	Stream(c ConnInfo) StreamConsumer
}

// StreamConsumer receives one TCP connection's reassembled bytes, in
// order per direction, and its control events.
type StreamConsumer interface {
	Data(dir Dir, data []byte, t time.Time)
	// Gap reports n bytes lost in dir (capture loss or a buffer limit).
	Gap(dir Dir, n int, t time.Time)
	Event(e Event)
	Close(t time.Time, reason CloseReason)
}

// Stats counts what the tap saw. Every skip is counted somewhere.
type Stats struct {
	Packets      uint64 `json:"packets"`
	Bytes        uint64 `json:"bytes"`
	Malformed    uint64 `json:"malformed"`    // undecodable frames
	UnknownLink  uint64 `json:"unknown_link"` // link types not handled
	Fragments    uint64 `json:"fragments"`    // IP fragments seen
	Reassembled  uint64 `json:"reassembled"`  // datagrams rebuilt from fragments
	FragDropped  uint64 `json:"frag_dropped"` // fragments given up on
	TCPSegments  uint64 `json:"tcp_segments"`
	TCPConns     uint64 `json:"tcp_conns"`
	TCPDropped   uint64 `json:"tcp_dropped_bytes"` // bytes lost to buffer limits or gaps
	UDPDatagrams uint64 `json:"udp_datagrams"`
	HEPPackets   uint64 `json:"hep_packets"`
	ACDRPackets  uint64 `json:"acdr_packets"`
	Tunnels      uint64 `json:"tunneled"` // packets that came out of a tunnel
	// HEPSkipped counts HEP packets not delivered: payload types other
	// than SIP (logs 100, RTCP 5, QoS 35...) or undecodable ones.
	HEPSkipped uint64 `json:"hep_skipped"`
	// ACDRSkipped counts ACDR packets not delivered: media types other
	// than SIP and TLS-carried SIP, or undecodable ones.
	ACDRSkipped uint64 `json:"acdr_skipped"`
	// NonIP counts frames that carry no IP (ARP, LLDP, STP, ...).
	NonIP uint64 `json:"non_ip"`
	// OtherIP counts IP packets of protocols not decoded (ICMP, ESP,
	// OSPF, ...) and IP fragments of them.
	OtherIP uint64 `json:"other_ip"`
	// SCTPChunks counts SCTP DATA chunks seen.
	SCTPChunks  uint64    `json:"sctp_chunks"`
	First, Last time.Time `json:"-"`
}
