// Command gencap writes a synthetic but protocol-true capture for
// benchmarks and memory tests: many SIP calls over UDP between a carrier
// and an SBC, and real TLS 1.2 handshakes (made in memory with crypto/tls)
// from a Microsoft address to the SBC, some of which the client aborts.
// With -concurrent N, N calls are up at once (their messages interleave);
// with -rtp N, each call carries N RTP packets each way between answer and
// BYE.
//
//	go run ./tools/gencap -calls 20000 -o /tmp/big.pcap
//	go run ./tools/gencap -calls 30000 -concurrent 6000 -tls-every 0 -o /tmp/sip.pcap
//	go run ./tools/gencap -calls 2000 -rtp 250 -tls-every 0 -o /tmp/rtp.pcap
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func main() {
	calls := flag.Int("calls", 1000, "number of SIP calls")
	tlsEvery := flag.Int("tls-every", 10, "one TLS handshake every N calls (0: none)")
	out := flag.String("o", "gen.pcap", "output file")
	concurrent := flag.Int("concurrent", 1, "calls up at once (their messages interleave)")
	rtp := flag.Int("rtp", 0, "RTP packets per call and direction")
	up := flag.Int("up", 1, "calls up at once, each held -hold (1: one call after the other, each a few ms long; see -concurrent for interleaved short calls)")
	hold := flag.Duration("hold", 3*time.Minute, "how long each call stays up when -up > 1")
	flag.Parse()
	if *calls < 0 || *concurrent < 1 || *rtp < 0 || *tlsEvery < 0 || *up < 1 {
		log.Fatal("gencap: -calls, -rtp and -tls-every must be >= 0, -concurrent and -up >= 1")
	}
	if *up > 1 {
		if err := runBusy(*calls, *tlsEvery, *up, *hold, *out); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := run(*calls, *tlsEvery, *concurrent, *rtp, *out); err != nil {
		log.Fatal(err)
	}
}

type writer struct {
	w   *pcapgo.Writer
	t   time.Time
	buf gopacket.SerializeBuffer
}

func (w *writer) packet(src, dst net.IP, sport, dport uint16, tcp *layers.TCP, payload []byte) error {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: src, DstIP: dst}
	var ls []gopacket.SerializableLayer
	if tcp != nil {
		ip.Protocol = layers.IPProtocolTCP
		tcp.SrcPort, tcp.DstPort = layers.TCPPort(sport), layers.TCPPort(dport)
		tcp.Window = 65535
		_ = tcp.SetNetworkLayerForChecksum(ip)
		ls = []gopacket.SerializableLayer{eth, ip, tcp, gopacket.Payload(payload)}
	} else {
		ip.Protocol = layers.IPProtocolUDP
		udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		_ = udp.SetNetworkLayerForChecksum(ip)
		ls = []gopacket.SerializableLayer{eth, ip, udp, gopacket.Payload(payload)}
	}
	if err := gopacket.SerializeLayers(w.buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return err
	}
	b := w.buf.Bytes()
	w.t = w.t.Add(200 * time.Microsecond)
	return w.w.WritePacket(gopacket.CaptureInfo{Timestamp: w.t, CaptureLength: len(b), Length: len(b)}, b)
}

var (
	carrier = net.IPv4(198, 51, 100, 7).To4()
	sbc     = net.IPv4(192, 0, 2, 10).To4()
	ms      = net.IPv4(52, 114, 75, 24).To4()
)

func run(calls, tlsEvery, concurrent, rtp int, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	pw := pcapgo.NewWriter(f)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return err
	}
	w := &writer{w: pw, t: time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC), buf: gopacket.NewSerializeBuffer()}
	hs, err := handshakes()
	if err != nil {
		return err
	}
	// Round robin over the calls up at once: one packet of each in turn;
	// a finished call makes room for the next.
	type live struct {
		i, at int
		msgs  []msg
	}
	var up []*live
	next := 0
	for next < calls || len(up) > 0 {
		for len(up) < concurrent && next < calls {
			up = append(up, &live{i: next, msgs: callMessages(next, rtp)})
			next++
		}
		kept := up[:0]
		for _, c := range up {
			m := c.msgs[c.at]
			c.at++
			if err := w.emit(c.i, m); err != nil {
				return err
			}
			if c.at < len(c.msgs) {
				kept = append(kept, c)
				continue
			}
			if tlsEvery > 0 && c.i%tlsEvery == 0 {
				if err := w.tlsConn(hs[c.i/tlsEvery%len(hs)], uint16(20000+c.i%40000)); err != nil {
					return err
				}
			}
		}
		up = kept
	}
	return nil
}

// emit writes one message (or RTP packet) of call i.
func (w *writer) emit(i int, m msg) error {
	src, dst := carrier, sbc
	if m.fromSBC {
		src, dst = sbc, carrier
	}
	if m.rtpSeq > 0 {
		// RTP v2, PCMU, 20 ms of audio; ports per call.
		port := uint16(16384 + 2*(i%20000))
		b := make([]byte, 12+160)
		b[0], b[1] = 0x80, 0
		b[2], b[3] = byte(m.rtpSeq>>8), byte(m.rtpSeq)
		ts := uint32(m.rtpSeq) * 160
		b[4], b[5], b[6], b[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
		b[8], b[9], b[10], b[11] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		return w.packet(src, dst, port, port, nil, b)
	}
	return w.packet(src, dst, 5060, 5060, nil, []byte(m.text))
}

// runBusy writes calls as a busy SBC carries them: a new call every
// hold/up, each answered at once and ended hold later, so about up calls
// are up at any time and the capture spans calls*hold/up.
func runBusy(calls, tlsEvery, up int, hold time.Duration, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	pw := pcapgo.NewWriter(bw)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return err
	}
	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	w := &writer{w: pw, t: t0, buf: gopacket.NewSerializeBuffer()}
	hs, err := handshakes()
	if err != nil {
		return err
	}
	gap := hold / time.Duration(up)
	write := func(ms []msg) error {
		for _, m := range ms {
			src, dst := carrier, sbc
			if m.fromSBC {
				src, dst = sbc, carrier
			}
			if err := w.packet(src, dst, 5060, 5060, nil, []byte(m.text)); err != nil {
				return err
			}
		}
		return nil
	}
	for s, e := 0, 0; e < calls; {
		start := t0.Add(time.Duration(s) * gap)
		end := t0.Add(time.Duration(e)*gap + hold)
		if s < calls && start.Before(end) {
			if start.After(w.t) {
				w.t = start
			}
			if err := write(callMessages(s, 0)[:5]); err != nil {
				return err
			}
			if tlsEvery > 0 && s%tlsEvery == 0 {
				if err := w.tlsConn(hs[s/tlsEvery%len(hs)], uint16(20000+s%40000)); err != nil {
					return err
				}
			}
			s++
			continue
		}
		if end.After(w.t) {
			w.t = end
		}
		if err := write(callMessages(e, 0)[5:]); err != nil {
			return err
		}
		e++
	}
	return bw.Flush()
}

type msg struct {
	fromSBC bool
	text    string
	rtpSeq  int // > 0: an RTP packet, not SIP
}

func callMessages(i, rtp int) []msg {
	id := fmt.Sprintf("gen-%d@198.51.100.7", i)
	from := fmt.Sprintf("<sip:+4930%07d@198.51.100.7>;tag=c%d", i, i)
	to := "<sip:+4969987654@192.0.2.10>"
	toT := to + fmt.Sprintf(";tag=s%d", i)
	sdp := "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\n"
	req := func(method, toh string, cseq int, body string) string {
		ct := ""
		if body != "" {
			ct = "Content-Type: application/sdp\r\n"
		}
		return fmt.Sprintf("%s sip:+4969987654@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK%d%s\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContact: <sip:198.51.100.7:5060>\r\n%sContent-Length: %d\r\n\r\n%s",
			method, i, method, from, toh, id, cseq, method, ct, len(body), body)
	}
	resp := func(code int, reason, toh string, cseq int, method string) string {
		return fmt.Sprintf("SIP/2.0 %d %s\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK%d%s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContent-Length: 0\r\n\r\n",
			code, reason, i, method, from, toh, id, cseq, method)
	}
	out := []msg{
		{false, req("INVITE", to, 1, sdp), 0},
		{true, resp(100, "Trying", to, 1, "INVITE"), 0},
		{true, resp(180, "Ringing", toT, 1, "INVITE"), 0},
		{true, resp(200, "OK", toT, 1, "INVITE"), 0},
		{false, req("ACK", toT, 1, ""), 0},
	}
	for k := 1; k <= rtp; k++ {
		out = append(out, msg{false, "", k}, msg{true, "", k})
	}
	return append(out,
		msg{false, req("BYE", toT, 2, ""), 0},
		msg{true, resp(200, "OK", toT, 2, "BYE"), 0})
}

// flight is one write of one side of a TLS handshake.
type flight struct {
	fromClient bool
	data       []byte
}

// handshakes makes a few real TLS 1.2 exchanges: a good one and one the
// client aborts because it does not trust the self-signed certificate.
func handshakes() ([][]flight, error) {
	cert, err := selfSigned("default.sbc.local")
	if err != nil {
		return nil, err
	}
	var out [][]flight
	for _, trust := range []bool{true, false} {
		fl, err := handshake(cert, trust)
		if err != nil {
			return nil, err
		}
		out = append(out, fl)
	}
	return out, nil
}

type recConn struct {
	net.Conn
	client bool
	mu     *sync.Mutex
	log    *[]flight
}

func (c recConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	*c.log = append(*c.log, flight{c.client, append([]byte(nil), b...)})
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func handshake(cert tls.Certificate, trust bool) ([]flight, error) {
	a, b := net.Pipe()
	var mu sync.Mutex
	var log []flight
	srv := tls.Server(recConn{b, false, &mu, &log}, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12})
	cfg := &tls.Config{ServerName: "sbc.contoso.example", MaxVersion: tls.VersionTLS12, InsecureSkipVerify: trust}
	cli := tls.Client(recConn{a, true, &mu, &log}, cfg)
	done := make(chan error, 1)
	go func() {
		err := srv.Handshake()
		if err == nil {
			buf := make([]byte, 64)
			_, _ = srv.Read(buf)
		}
		_, _ = io.Copy(io.Discard, srv)
		done <- err
	}()
	err := cli.Handshake()
	if err == nil {
		_, _ = cli.Write([]byte("OPTIONS sip:sbc.contoso.example SIP/2.0\r\n\r\n"))
	}
	cli.Close()
	a.Close()
	<-done
	b.Close()
	mu.Lock()
	defer mu.Unlock()
	return log, nil
}

func selfSigned(cn string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC),
		DNSNames: []string{cn}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// tlsConn writes one TCP connection carrying a recorded handshake.
func (w *writer) tlsConn(fl []flight, port uint16) error {
	var cseq, sseq uint32 = 1000, 5000
	send := func(fromClient bool, t *layers.TCP, data []byte) error {
		if fromClient {
			t.Seq, t.Ack = cseq, sseq
			cseq += uint32(len(data))
			if t.SYN || t.FIN {
				cseq++
			}
			return w.packet(ms, sbc, port, 5061, t, data)
		}
		t.Seq, t.Ack = sseq, cseq
		sseq += uint32(len(data))
		if t.SYN || t.FIN {
			sseq++
		}
		return w.packet(sbc, ms, 5061, port, t, data)
	}
	if err := send(true, &layers.TCP{SYN: true}, nil); err != nil {
		return err
	}
	cseq--
	if err := send(false, &layers.TCP{SYN: true, ACK: true}, nil); err != nil {
		return err
	}
	cseq++
	for _, f := range fl {
		for _, chunk := range split(f.data, 1400) {
			if err := send(f.fromClient, &layers.TCP{ACK: true, PSH: true}, chunk); err != nil {
				return err
			}
		}
	}
	if err := send(true, &layers.TCP{FIN: true, ACK: true}, nil); err != nil {
		return err
	}
	return send(false, &layers.TCP{FIN: true, ACK: true}, nil)
}

func split(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	if len(b) > 0 {
		out = append(out, b)
	}
	return out
}
