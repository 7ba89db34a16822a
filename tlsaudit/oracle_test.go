package tlsaudit

import (
	"bytes"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sbcwatch/sbcwatch/internal/testtool"
)

// pdmlField is one <field> (or <proto>) of tshark's PDML output.
type pdmlField struct {
	Name   string      `xml:"name,attr"`
	Show   string      `xml:"show,attr"`
	Value  string      `xml:"value,attr"`
	Fields []pdmlField `xml:"field"`
	Protos []pdmlField `xml:"proto"`
}

type pdmlPacket struct {
	Protos []pdmlField `xml:"proto"`
}

// walk visits f and its descendants in document order; fn returning
// false skips the children of that node.
func (f *pdmlField) walk(fn func(*pdmlField) bool) {
	if !fn(f) {
		return
	}
	for i := range f.Fields {
		f.Fields[i].walk(fn)
	}
	for i := range f.Protos {
		f.Protos[i].walk(fn)
	}
}

// first returns the first descendant named name.
func (f *pdmlField) first(name string) *pdmlField {
	var found *pdmlField
	f.walk(func(x *pdmlField) bool {
		if found != nil {
			return false
		}
		if x.Name == name && x != f {
			found = x
			return false
		}
		return true
	})
	return found
}

// tsHello is what tshark says about one ClientHello.
type tsHello struct{ conn, sni, version, ja3 string }

// tsAlert is one alert record (content type 21) as tshark shows it;
// sender is "src->dst".
type tsAlert struct {
	sender, level, desc string
	encrypted           bool
}

// tsServerHello is what tshark says about one ServerHello: the
// negotiated version (supported_versions when present) and cipher.
type tsServerHello struct{ conn, version, cipher string }

// tsCert is what tshark says about one server Certificate message: the
// leaf's subject DER (x509af.subject value) and its x509sat values.
type tsCert struct {
	conn       string
	client     string // the connection id if the sender was the client
	subjectDER string
	values     []string
}

// tsharkTLS runs tshark on a capture and collects ClientHellos and server
// Certificate messages.
func tsharkTLS(t *testing.T, tshark, path string) (hellos []tsHello, shellos []tsServerHello, certs []tsCert, alerts []tsAlert) {
	t.Helper()
	cmd := exec.Command(tshark, "-n", "-r", path, "-Y", "tcp && (tls.handshake.type==1 || tls.handshake.type==2 || tls.handshake.type==11 || tls.record.content_type==21)", "-T", "pdml")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v: %s", path, err, stderr.String())
	}
	dec := xml.NewDecoder(bytes.NewReader(out))
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "packet" {
			continue
		}
		var p pdmlPacket
		if err := dec.DecodeElement(&p, &se); err != nil {
			t.Fatalf("pdml: %v", err)
		}
		root := &pdmlField{Protos: p.Protos}
		var src, dst, sport, dport string
		root.walk(func(f *pdmlField) bool {
			switch f.Name {
			case "ip.src", "ipv6.src":
				if src == "" {
					src = f.Show
				}
			case "ip.dst", "ipv6.dst":
				if dst == "" {
					dst = f.Show
				}
			case "tcp.srcport":
				sport = f.Show
			case "tcp.dstport":
				dport = f.Show
			}
			return true
		})
		hp := func(a, p string) string {
			if strings.Contains(a, ":") {
				return "[" + a + "]:" + p
			}
			return a + ":" + p
		}
		fwd, rev := hp(src, sport)+"->"+hp(dst, dport), hp(dst, dport)+"->"+hp(src, sport)
		root.walk(func(f *pdmlField) bool {
			if f.Name != "tls.record" {
				return true
			}
			if ct := f.first("tls.record.content_type"); ct == nil || ct.Show != "21" {
				return true
			}
			a := tsAlert{sender: fwd, encrypted: true}
			if d := f.first("tls.alert_message.desc"); d != nil {
				a.encrypted = false
				a.desc = d.Show
				if l := f.first("tls.alert_message.level"); l != nil {
					a.level = l.Show
				}
			}
			alerts = append(alerts, a)
			return false
		})
		root.walk(func(f *pdmlField) bool {
			if f.Name != "tls.handshake" {
				return true
			}
			typ := f.first("tls.handshake.type")
			if typ == nil {
				return false
			}
			switch typ.Show {
			case "1":
				h := tsHello{conn: fwd}
				if x := f.first("tls.handshake.extensions_server_name"); x != nil {
					h.sni = x.Show
				}
				if x := f.first("tls.handshake.version"); x != nil {
					h.version = x.Show
				}
				if x := f.first("tls.handshake.ja3_full"); x != nil {
					h.ja3 = x.Show
				}
				hellos = append(hellos, h)
			case "2":
				sh := tsServerHello{conn: rev}
				if x := f.first("tls.handshake.version"); x != nil {
					sh.version = x.Show
				}
				if x := f.first("tls.handshake.extensions.supported_version"); x != nil {
					sh.version = x.Show
				}
				if x := f.first("tls.handshake.ciphersuite"); x != nil {
					sh.cipher = x.Show
				}
				shellos = append(shellos, sh)
			case "11":
				cert := f.first("tls.handshake.certificate")
				if cert == nil {
					return false // empty (client) Certificate
				}
				subj := cert.first("x509af.subject")
				if subj == nil {
					t.Errorf("%s: certificate without x509af.subject", path)
					return false
				}
				c := tsCert{conn: rev, client: fwd, subjectDER: subj.Value}
				subj.walk(func(x *pdmlField) bool {
					if strings.HasPrefix(x.Name, "x509sat.") && len(x.Fields) == 0 && x.Name != "x509sat.DirectoryString" {
						c.values = append(c.values, x.Show)
					}
					return true
				})
				certs = append(certs, c)
			}
			return false
		})
	}
	return hellos, shellos, certs, alerts
}

// oracleCaptures are the shared captures with TLS handshakes.
var oracleCaptures = []string{
	"arkime/badcurveball.pcap",
	"nDPI/ja3_lots_of_cipher_suites.pcap",
	"nDPI/tls_alert.pcap",
	"nDPI/selfsigned.pcap",
	"nDPI/ssl-cert-name-mismatch.pcap",
	"nDPI/tls_verylong_certificate.pcap",
	"nDPI/whois.pcapng",
	"nDPI/sites.pcapng",
	"suricata-verify/ja4-tls--input.pcap",
	"suricata-verify/tls-extra-alert--input.pcap",
	"scapy/tls_tcp_frag.pcap.gz",
	"PcapPlusPlus/many_interfaces-1.pcapng",
	"heplify/sip_ipv4_tcp_retrans.pcap",
	"sngrep/tlssaved.pcap",
}

// TestOracleTshark compares, for every ClientHello and every server
// Certificate in the shared captures and in ours, the SNI, the legacy
// version, the JA3 string and the leaf subject (DER bytes and x509sat
// attribute values) with tshark's dissection.
func TestOracleTshark(t *testing.T) {
	tshark := testtool.Need(t, "tshark")
	var files []string
	dir, shared := findCaptures()
	if shared {
		for _, f := range oracleCaptures {
			files = append(files, filepath.Join(dir, f))
		}
	} else if os.Getenv("CI") == "true" {
		t.Fatalf("shared captures not found at %s (set SBCWATCH_CAPTURES)", dir)
	} else {
		t.Logf("shared captures not found at %s: comparing our own captures only", dir)
	}
	own, _ := filepath.Glob("testdata/*.pcap")
	gz, _ := filepath.Glob("testdata/*.pcap.gz")
	files = append(append(files, own...), gz...)
	var totalHellos, totalSH, totalCerts, totalAlerts atomic.Int32
	t.Run("files", func(t *testing.T) {
		for _, path := range files {
			t.Run(filepath.Base(path), func(t *testing.T) {
				t.Parallel()
				tr := NewTracker(Options{})
				replay(t, path, tr)
				conns := tr.Conns()
				byID := map[string][]*Conn{}
				for _, c := range conns {
					byID[c.ID] = append(byID[c.ID], c)
				}
				hellos, shellos, certs, alerts := tsharkTLS(t, tshark, path)
				// Alerts: per connection, the same alerts in the same order
				// (TLS 1.3 alerts travel as type 23 and are left out).
				wantAlerts := map[*Conn][]string{}
				for _, a := range alerts {
					from := ""
					var c *Conn
					if cs := byID[a.sender]; len(cs) > 0 {
						from, c = "client", cs[len(cs)-1]
					} else {
						parts := strings.SplitN(a.sender, "->", 2)
						if cs := byID[parts[1]+"->"+parts[0]]; len(cs) > 0 {
							from, c = "server", cs[len(cs)-1]
						}
					}
					if c == nil {
						// Tolerated only for a connection captured after its
						// handshake (no hello either way): its first bytes are
						// not a hello, so it is not judged TLS by content
						// (nDPI/tls_alert.pcap port 37780, heplify port 52790).
						parts := strings.SplitN(a.sender, "->", 2)
						back := parts[1] + "->" + parts[0]
						for _, h := range hellos {
							if h.conn == a.sender || h.conn == back {
								t.Errorf("tshark alert %+v on no connection of ours", a)
							}
						}
						for _, h := range shellos {
							if h.conn == a.sender || h.conn == back {
								t.Errorf("tshark alert %+v on no connection of ours", a)
							}
						}
						continue
					}
					if a.encrypted {
						wantAlerts[c] = append(wantAlerts[c], from+" encrypted")
					} else {
						wantAlerts[c] = append(wantAlerts[c], from+" "+a.level+"/"+a.desc)
					}
				}
				nAlerts := 0
				for _, c := range conns {
					if c.VersionCode == 0x0304 {
						continue
					}
					var got []string
					for _, a := range c.Alerts {
						if a.Encrypted {
							got = append(got, a.From+" encrypted")
						} else {
							got = append(got, fmt.Sprintf("%s %d/%d", a.From, a.Level, a.Description))
						}
					}
					nAlerts += len(got)
					if strings.Join(got, ",") != strings.Join(wantAlerts[c], ",") {
						t.Errorf("%s alerts %q, tshark %q", c.ID, got, wantAlerts[c])
					}
				}
				totalAlerts.Add(int32(nAlerts))
				// ServerHellos: negotiated version and cipher.
				seenSH := map[string]bool{}
				for _, sh := range shellos {
					k := fmt.Sprint(sh)
					if seenSH[k] {
						continue
					}
					seenSH[k] = true
					found := false
					for _, c := range byID[sh.conn] {
						if fmt.Sprintf("0x%04x", c.VersionCode) == sh.version && fmt.Sprintf("0x%04x", c.CipherCode) == sh.cipher {
							found = true
						}
					}
					if !found {
						t.Errorf("tshark server hello %+v: no connection of ours negotiated it", sh)
					}
				}
				oursSH := 0
				for _, c := range conns {
					if c.VersionCode != 0 {
						oursSH++
					}
				}
				if oursSH != len(seenSH) {
					t.Errorf("%d server hellos parsed, tshark shows %d distinct", oursSH, len(seenSH))
				}
				totalSH.Add(int32(len(seenSH)))
				// Each tshark hello must match a hello of ours on the same
				// connection; duplicates (retransmitted hellos tshark shows
				// twice) collapse.
				seen := map[string]bool{}
				for _, h := range hellos {
					k := fmt.Sprint(h)
					if seen[k] {
						continue
					}
					seen[k] = true
					totalHellos.Add(1)
					var match *Conn
					for _, c := range byID[h.conn] {
						if c.Hello != nil && c.Hello.SNI == h.sni && fmt.Sprintf("0x%04x", c.Hello.Version) == h.version && c.Hello.JA3 == h.ja3 {
							match = c
						}
					}
					if match == nil {
						var got []string
						for _, c := range byID[h.conn] {
							if c.Hello != nil {
								got = append(got, fmt.Sprintf("sni=%q v=0x%04x ja3=%s", c.Hello.SNI, c.Hello.Version, c.Hello.JA3))
							}
						}
						t.Errorf("tshark hello %+v: no matching hello; ours on that connection: %v", h, got)
					}
				}
				ours := 0
				for _, c := range conns {
					if c.Hello != nil {
						ours++
					}
				}
				if ours != len(seen) {
					t.Errorf("%d hellos parsed, tshark shows %d distinct", ours, len(seen))
				}
				seenCert := map[string]bool{}
				clientCerts := 0
				for _, tc := range certs {
					k := fmt.Sprint(tc)
					if seenCert[k] {
						continue
					}
					if len(byID[tc.client]) > 0 {
						// A client certificate (mutual TLS): we only keep
						// ClientCertSent, checked in TestPeers.
						clientCerts++
						continue
					}
					seenCert[k] = true
					totalCerts.Add(1)
					var match *Conn
					for _, c := range byID[tc.conn] {
						if l := c.Leaf(); l != nil && hex.EncodeToString(l.RawSubject) == tc.subjectDER {
							match = c
						}
					}
					if match == nil {
						t.Errorf("tshark certificate on %s (subject DER %s…): no connection of ours served it", tc.conn, tc.subjectDER[:min(40, len(tc.subjectDER))])
						continue
					}
					var vals []string
					for _, n := range match.Leaf().Subject.Names {
						vals = append(vals, fmt.Sprint(n.Value))
					}
					if strings.Join(vals, "|") != strings.Join(tc.values, "|") {
						t.Errorf("%s: subject values %q, tshark x509sat %q", tc.conn, vals, tc.values)
					}
				}
				oursCerts := 0
				for _, c := range conns {
					if c.Leaf() != nil {
						oursCerts++
					}
				}
				if oursCerts != len(seenCert) {
					t.Errorf("%d served certificates parsed, tshark shows %d distinct", oursCerts, len(seenCert))
				}
				t.Logf("%d connections, %d hellos, %d certificates agree with tshark", len(conns), len(seen), len(seenCert))
			})
		}
	})
	h, sh, c, al := totalHellos.Load(), totalSH.Load(), totalCerts.Load(), totalAlerts.Load()
	t.Logf("total: %d client hellos, %d server hellos, %d server certificates, %d alerts compared", h, sh, c, al)
	if shared && (h < 80 || sh < 60 || c < 40 || al < 40) || h < 20 || sh < 20 || c < 18 || al < 20 {
		t.Errorf("too few comparisons (%d hellos, %d certs): captures missing?", h, c)
	}
}
