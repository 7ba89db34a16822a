package tlsaudit

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// Record content types.
const (
	recordCCS       = 20
	recordAlert     = 21
	recordHandshake = 22
	recordAppData   = 23
	recordHeartbeat = 24
)

// Handshake message types.
const (
	hsHelloRequest       = 0
	hsClientHello        = 1
	hsServerHello        = 2
	hsNewSessionTicket   = 4
	hsCertificate        = 11
	hsServerKeyExchange  = 12
	hsCertificateRequest = 13
	hsServerHelloDone    = 14
	hsCertificateVerify  = 15
	hsClientKeyExchange  = 16
	hsFinished           = 20
)

// Extension code points used here.
const (
	extServerName        = 0
	extSupportedGroups   = 10
	extPointFormats      = 11
	extSignatureAlgs     = 13
	extALPN              = 16
	extSupportedVersions = 43
	extKeyShare          = 51
)

// maxRecordLen is the largest TLSCiphertext fragment RFC 5246 allows
// (2^14 + 2048).
const maxRecordLen = 1<<14 + 2048

// LooksLikeTLS probes the first bytes of a stream direction: a handshake
// record (0x16, version 0x03 0x00..0x04, plausible length) whose first
// message is a ClientHello or ServerHello, or an SSLv2-compatible
// ClientHello (recognised so that it is recorded as an anomaly instead of
// being ignored). It needs at least 6 bytes (9 for SSLv2).
func LooksLikeTLS(b []byte) bool {
	if len(b) >= 6 && b[0] == recordHandshake && b[1] == 3 && b[2] <= 4 {
		n := int(b[3])<<8 | int(b[4])
		return n >= 4 && n <= maxRecordLen && (b[5] == hsClientHello || b[5] == hsServerHello)
	}
	return isSSLv2Hello(b)
}

// isSSLv2Hello recognises an SSL 2.0 record header (2-byte form) holding a
// CLIENT-HELLO with version 2.0 or 3.x whose lengths add up.
func isSSLv2Hello(b []byte) bool {
	if len(b) < 11 || b[0]&0x80 == 0 {
		return false
	}
	n := int(b[0]&0x7f)<<8 | int(b[1])
	if b[2] != 1 {
		return false
	}
	v := uint16(b[3])<<8 | uint16(b[4])
	if v != 0x0002 && (v < 0x0300 || v > 0x0304) {
		return false
	}
	cs := int(b[5])<<8 | int(b[6])
	sid := int(b[7])<<8 | int(b[8])
	chal := int(b[9])<<8 | int(b[10])
	return cs > 0 && cs%3 == 0 && (sid == 0 || sid == 16) && chal >= 16 && chal <= 32 &&
		n == 9+cs+sid+chal
}

// isGREASE reports RFC 8701 GREASE values (0x?a?a with equal bytes).
func isGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>8 == v&0xff
}

var errShort = errors.New("truncated")

// ParseClientHello parses a ClientHello handshake message body (without the
// 4-byte handshake header) and computes its JA3 and JA4 fingerprints.
func ParseClientHello(body []byte) (*ClientHello, error) {
	s := cryptobyte.String(body)
	h := &ClientHello{}
	var random, sessionID, ciphers, compression cryptobyte.String
	if !s.ReadUint16(&h.Version) || !s.ReadBytes((*[]byte)(&random), 32) ||
		!s.ReadUint8LengthPrefixed(&sessionID) || !s.ReadUint16LengthPrefixed(&ciphers) ||
		!s.ReadUint8LengthPrefixed(&compression) {
		return nil, fmt.Errorf("client hello: %w", errShort)
	}
	if len(ciphers)%2 != 0 {
		return nil, errors.New("client hello: odd cipher suites length")
	}
	h.CipherSuites = make([]uint16, 0, len(ciphers)/2)
	for !ciphers.Empty() {
		var c uint16
		ciphers.ReadUint16(&c)
		h.CipherSuites = append(h.CipherSuites, c)
	}
	if !s.Empty() {
		var exts cryptobyte.String
		if !s.ReadUint16LengthPrefixed(&exts) {
			return nil, fmt.Errorf("client hello extensions: %w", errShort)
		}
		for !exts.Empty() {
			var typ uint16
			var data cryptobyte.String
			if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
				return nil, fmt.Errorf("client hello extension: %w", errShort)
			}
			h.Extensions = append(h.Extensions, typ)
			if err := h.parseExtension(typ, data); err != nil {
				return nil, err
			}
		}
	}
	h.JA3 = ja3(h)
	sum := md5.Sum([]byte(h.JA3))
	h.JA3Hash = hex.EncodeToString(sum[:])
	h.JA4 = ja4(h)
	return h, nil
}

func readU16List(data cryptobyte.String, lenBytes int) ([]uint16, bool) {
	var list cryptobyte.String
	var ok bool
	if lenBytes == 1 {
		ok = data.ReadUint8LengthPrefixed(&list)
	} else {
		ok = data.ReadUint16LengthPrefixed(&list)
	}
	if !ok || len(list)%2 != 0 {
		return nil, false
	}
	out := make([]uint16, 0, len(list)/2)
	for !list.Empty() {
		var v uint16
		list.ReadUint16(&v)
		out = append(out, v)
	}
	return out, true
}

func (h *ClientHello) parseExtension(typ uint16, data cryptobyte.String) error {
	bad := func() error { return fmt.Errorf("client hello extension %d: malformed", typ) }
	switch typ {
	case extServerName:
		var list cryptobyte.String
		if !data.ReadUint16LengthPrefixed(&list) {
			return bad()
		}
		for !list.Empty() {
			var nameType uint8
			var name cryptobyte.String
			if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&name) {
				return bad()
			}
			if nameType == 0 && h.SNI == "" {
				h.SNI = string(name)
			}
		}
	case extALPN:
		var list cryptobyte.String
		if !data.ReadUint16LengthPrefixed(&list) {
			return bad()
		}
		for !list.Empty() {
			var p cryptobyte.String
			if !list.ReadUint8LengthPrefixed(&p) {
				return bad()
			}
			h.ALPN = append(h.ALPN, string(p))
		}
	case extSupportedGroups:
		v, ok := readU16List(data, 2)
		if !ok {
			return bad()
		}
		h.Groups = v
	case extSignatureAlgs:
		v, ok := readU16List(data, 2)
		if !ok {
			return bad()
		}
		h.SigAlgs = v
	case extSupportedVersions:
		v, ok := readU16List(data, 1)
		if !ok {
			return bad()
		}
		h.Versions = v
	case extPointFormats:
		var list cryptobyte.String
		if !data.ReadUint8LengthPrefixed(&list) {
			return bad()
		}
		h.PointFormats = append([]uint8{}, list...)
	case extKeyShare:
		var list cryptobyte.String
		if !data.ReadUint16LengthPrefixed(&list) {
			return bad()
		}
		for !list.Empty() {
			var g uint16
			var key cryptobyte.String
			if !list.ReadUint16(&g) || !list.ReadUint16LengthPrefixed(&key) {
				return bad()
			}
			h.KeyShares = append(h.KeyShares, g)
		}
	}
	return nil
}

// ja3 builds the JA3 string: version,ciphers,extensions,groups,point
// formats in decimal, '-' separated, GREASE left out.
func ja3(h *ClientHello) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(int(h.Version)))
	list := func(vs []uint16) {
		b.WriteByte(',')
		first := true
		for _, v := range vs {
			if isGREASE(v) {
				continue
			}
			if !first {
				b.WriteByte('-')
			}
			first = false
			b.WriteString(strconv.Itoa(int(v)))
		}
	}
	list(h.CipherSuites)
	list(h.Extensions)
	list(h.Groups)
	b.WriteByte(',')
	for i, p := range h.PointFormats {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(strconv.Itoa(int(p)))
	}
	return b.String()
}

// ja4Version maps a version code to JA4's two characters.
func ja4Version(v uint16) string {
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	}
	return "00"
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// ja4 computes the FoxIO JA4 fingerprint (TLS over TCP) as specified in
// FoxIO-LLC/ja4 technical_details/JA4.md: GREASE ignored everywhere,
// version from supported_versions (highest) else legacy version, counts
// capped at 99, ALPN first/last character (hex fallback for
// non-alphanumeric), sorted cipher hash, sorted extension hash without
// SNI and ALPN followed by the signature algorithms in order.
func ja4(h *ClientHello) string {
	// hex4 lists values as 4-digit lower-case hex, comma separated;
	// sorting the numbers sorts their fixed-width hex strings.
	hex4 := func(vs []uint16, sortThem bool, skip func(uint16) bool) string {
		vals := make([]uint16, 0, len(vs))
		for _, v := range vs {
			if !isGREASE(v) && (skip == nil || !skip(v)) {
				vals = append(vals, v)
			}
		}
		if sortThem {
			slices.Sort(vals)
		}
		const digits = "0123456789abcdef"
		buf := make([]byte, 0, len(vals)*5)
		for i, v := range vals {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, digits[v>>12], digits[v>>8&15], digits[v>>4&15], digits[v&15])
		}
		return string(buf)
	}
	ver := h.Version
	if len(h.Versions) > 0 {
		ver = 0
		for _, v := range h.Versions {
			if !isGREASE(v) && v > ver {
				ver = v
			}
		}
	}
	sni := "i"
	if slices.Contains(h.Extensions, extServerName) {
		sni = "d"
	}
	count := func(vs []uint16) int {
		n := 0
		for _, v := range vs {
			if !isGREASE(v) {
				n++
			}
		}
		return min(n, 99)
	}
	alpn := "00"
	if len(h.ALPN) > 0 && h.ALPN[0] != "" {
		a := h.ALPN[0]
		if isAlnum(a[0]) && isAlnum(a[len(a)-1]) {
			alpn = string([]byte{a[0], a[len(a)-1]})
		} else {
			x := hex.EncodeToString([]byte(a))
			alpn = string([]byte{x[0], x[len(x)-1]})
		}
	}
	hash12 := func(s string) string {
		if s == "" {
			return "000000000000"
		}
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])[:12]
	}
	ciphers := hex4(h.CipherSuites, true, nil)
	exts := hex4(h.Extensions, true, func(v uint16) bool { return v == extServerName || v == extALPN })
	c := exts
	if sigs := hex4(h.SigAlgs, false, nil); sigs != "" {
		c = exts + "_" + sigs
	}
	var chash string
	if exts == "" {
		chash = "000000000000"
	} else {
		chash = hash12(c)
	}
	return fmt.Sprintf("t%s%s%02d%02d%s_%s_%s", ja4Version(ver), sni,
		count(h.CipherSuites), count(h.Extensions), alpn, hash12(ciphers), chash)
}

// serverHello is what the tracker keeps of a ServerHello.
type serverHello struct {
	version uint16 // negotiated: supported_versions when present
	cipher  uint16
	// hrr: this is a TLS 1.3 HelloRetryRequest (RFC 8446 4.1.3).
	hrr bool
}

// helloRetryRandom is the ServerHello.random of a HelloRetryRequest.
var helloRetryRandom = []byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// parseServerHello reads a ServerHello (or HelloRetryRequest) body. It
// reads the way tshark does: the version is supported_versions when that
// extension is present, else the legacy version, whatever its value;
// extensions are read while they fit, so stray bytes after the last
// whole extension or after the extension block leave version and cipher
// known. Such leftovers are described in warn; err is set only when the
// fixed part (up to the compression method) is short.
func parseServerHello(body []byte) (sh serverHello, warn string, err error) {
	s := cryptobyte.String(body)
	var random, sessionID cryptobyte.String
	var comp uint8
	if !s.ReadUint16(&sh.version) || !s.ReadBytes((*[]byte)(&random), 32) ||
		!s.ReadUint8LengthPrefixed(&sessionID) || !s.ReadUint16(&sh.cipher) || !s.ReadUint8(&comp) {
		return sh, "", fmt.Errorf("server hello: %w", errShort)
	}
	sh.hrr = string(random) == string(helloRetryRandom)
	if s.Empty() {
		return sh, "", nil
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) {
		return sh, fmt.Sprintf("server hello: %d bytes after the compression method are not an extension block", len(s)), nil
	}
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if rest := len(exts); !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return sh, fmt.Sprintf("server hello: %d trailing bytes in the extension block", rest), nil
		}
		if typ == extSupportedVersions {
			var v uint16
			if !data.ReadUint16(&v) {
				warn = "server hello: malformed supported_versions"
				continue
			}
			sh.version = v
		}
	}
	if !s.Empty() {
		warn = fmt.Sprintf("server hello: %d trailing bytes after the extensions", len(s))
	}
	return sh, warn, nil
}

// parseCertificateList splits a TLS 1.0-1.2 Certificate message body into
// DER certificates.
func parseCertificateList(body []byte) ([][]byte, error) {
	s := cryptobyte.String(body)
	var list cryptobyte.String
	if !s.ReadUint24LengthPrefixed(&list) {
		return nil, fmt.Errorf("certificate: %w", errShort)
	}
	var out [][]byte
	for !list.Empty() {
		var der cryptobyte.String
		if !list.ReadUint24LengthPrefixed(&der) {
			return out, fmt.Errorf("certificate entry: %w", errShort)
		}
		out = append(out, der)
	}
	return out, nil
}

// VersionName names a TLS protocol version code ("TLS 1.2").
func VersionName(v uint16) string {
	switch v {
	case 0x0002:
		return "SSL 2.0"
	case 0x0300:
		return "SSL 3.0"
	case 0x0301:
		return "TLS 1.0"
	case 0x0302:
		return "TLS 1.1"
	case 0x0303:
		return "TLS 1.2"
	case 0x0304:
		return "TLS 1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

// alertNames are the RFC 8446 / 5246 alert descriptions.
var alertNames = map[int]string{
	0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
	21: "decryption_failed", 22: "record_overflow", 30: "decompression_failure",
	40: "handshake_failure", 41: "no_certificate", 42: "bad_certificate",
	43: "unsupported_certificate", 44: "certificate_revoked", 45: "certificate_expired",
	46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
	49: "access_denied", 50: "decode_error", 51: "decrypt_error",
	60: "export_restriction", 70: "protocol_version", 71: "insufficient_security",
	80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
	100: "no_renegotiation", 109: "missing_extension", 110: "unsupported_extension",
	111: "certificate_unobtainable", 112: "unrecognized_name",
	113: "bad_certificate_status_response", 114: "bad_certificate_hash_value",
	115: "unknown_psk_identity", 116: "certificate_required", 120: "no_application_protocol",
}

// AlertName names an alert description ("bad_certificate"), or
// "alert_N" for unknown codes.
func AlertName(d int) string {
	if n, ok := alertNames[d]; ok {
		return n
	}
	return "alert_" + strconv.Itoa(d)
}
