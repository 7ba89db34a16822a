package poll

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/sbcwatch/sbcwatch/config"
)

// SNMPReader reads the AC-KPI-MIB call statistics over SNMP v2c or v3.
// Each Read opens a fresh UDP socket (and, for v3, rediscovers the
// engine), so a restarted SBC never leaves stale v3 state behind.
type SNMPReader struct {
	sbc     string
	host    string
	port    uint16
	version gosnmp.SnmpVersion
	comm    string
	usm     *gosnmp.UsmSecurityParameters
	// timeout is used when the context carries no deadline.
	timeout time.Duration
}

// NewSNMPReader builds a reader from the SBC's poll settings, reading the
// secrets from their *_file fields when set.
func NewSNMPReader(name string, p *config.Poll) (*SNMPReader, error) {
	host, port, err := parseSNMPTarget(p.SNMP.Target)
	if err != nil {
		return nil, fmt.Errorf("poll %s: snmp target: %w", name, err)
	}
	r := &SNMPReader{sbc: name, host: host, port: port, timeout: p.Timeout.D()}
	if r.timeout <= 0 {
		r.timeout = 5 * time.Second
	}
	switch p.SNMP.Version {
	case "", "2c", "v2c":
		r.version = gosnmp.Version2c
		r.comm, err = secret(p.SNMP.Community, p.SNMP.CommunityFile)
		if err != nil {
			return nil, fmt.Errorf("poll %s: community: %w", name, err)
		}
		if r.comm == "" {
			return nil, fmt.Errorf("poll %s: snmp v2c needs a community", name)
		}
	case "3", "v3":
		r.version = gosnmp.Version3
		usm, err := usmParams(p.SNMP)
		if err != nil {
			return nil, fmt.Errorf("poll %s: snmp v3: %w", name, err)
		}
		r.usm = usm
	default:
		return nil, fmt.Errorf("poll %s: snmp version %q is not 2c or 3", name, p.SNMP.Version)
	}
	return r, nil
}

func usmParams(s config.SNMP) (*gosnmp.UsmSecurityParameters, error) {
	if s.User == "" {
		return nil, errors.New("user is required")
	}
	u := &gosnmp.UsmSecurityParameters{UserName: s.User}
	switch strings.ToUpper(strings.ReplaceAll(s.AuthProto, "-", "")) {
	case "SHA", "SHA1":
		u.AuthenticationProtocol = gosnmp.SHA
	case "SHA256":
		u.AuthenticationProtocol = gosnmp.SHA256
	default:
		return nil, fmt.Errorf("auth_proto %q is not SHA or SHA256 (authPriv is required)", s.AuthProto)
	}
	switch strings.ToUpper(s.PrivProto) {
	case "AES", "AES128":
		u.PrivacyProtocol = gosnmp.AES
	default:
		return nil, fmt.Errorf("priv_proto %q is not AES (authPriv is required)", s.PrivProto)
	}
	var err error
	if u.AuthenticationPassphrase, err = secret(s.AuthPass, s.AuthPassFile); err != nil {
		return nil, fmt.Errorf("auth pass: %w", err)
	}
	if u.PrivacyPassphrase, err = secret(s.PrivPass, s.PrivPassFile); err != nil {
		return nil, fmt.Errorf("priv pass: %w", err)
	}
	if len(u.AuthenticationPassphrase) < 8 || len(u.PrivacyPassphrase) < 8 {
		return nil, errors.New("auth and priv passphrases must have at least 8 characters")
	}
	return u, nil
}

// secret returns the inline value, or the trimmed content of file.
func secret(inline, file string) (string, error) {
	if file == "" {
		return inline, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// parseSNMPTarget accepts udp://host:port, host:port or host (port 161).
func parseSNMPTarget(t string) (string, uint16, error) {
	if t == "" {
		return "", 0, errors.New("empty target")
	}
	if strings.Contains(t, "://") {
		u, err := url.Parse(t)
		if err != nil {
			return "", 0, err
		}
		if u.Scheme != "udp" {
			return "", 0, fmt.Errorf("scheme %q is not udp", u.Scheme)
		}
		t = u.Host
	}
	host, ps, err := net.SplitHostPort(t)
	if err != nil {
		return t, 161, nil //nolint:nilerr // no port given
	}
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", ps, err)
	}
	return host, uint16(p), nil
}

// Target returns udp://host:port.
func (r *SNMPReader) Target() string {
	return "udp://" + net.JoinHostPort(r.host, strconv.Itoa(int(r.port)))
}

func (r *SNMPReader) client(ctx context.Context) *gosnmp.GoSNMP {
	timeout := r.timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	g := &gosnmp.GoSNMP{
		Target:             r.host,
		Port:               r.port,
		Transport:          "udp",
		Version:            r.version,
		Community:          r.comm,
		Context:            ctx,
		Timeout:            timeout,
		Retries:            0, // the scheduler retries with backoff
		MaxOids:            gosnmp.MaxOids,
		MaxRepetitions:     20,
		ExponentialTimeout: false,
	}
	if r.version == gosnmp.Version3 {
		g.SecurityModel = gosnmp.UserSecurityModel
		g.MsgFlags = gosnmp.AuthPriv
		g.SecurityParameters = &gosnmp.UsmSecurityParameters{
			UserName:                 r.usm.UserName,
			AuthenticationProtocol:   r.usm.AuthenticationProtocol,
			AuthenticationPassphrase: r.usm.AuthenticationPassphrase,
			PrivacyProtocol:          r.usm.PrivacyProtocol,
			PrivacyPassphrase:        r.usm.PrivacyPassphrase,
		}
	}
	return g
}

// Read gets sysUpTime, the global scalars, the TLS totals and walks the
// per-IP-Group table.
func (r *SNMPReader) Read(ctx context.Context) (*Reading, error) {
	g := r.client(ctx)
	if err := g.Connect(); err != nil {
		return nil, fmt.Errorf("snmp %s: connect: %w", r.Target(), err)
	}
	defer g.Conn.Close()

	rd := &Reading{SBC: r.sbc, Method: "snmp", Target: r.Target(), Time: time.Now(),
		Global: Values{}, IPGroups: map[string]Values{}}

	oids := []string{OIDSysUpTime}
	names := []string{""}
	for _, d := range Counters {
		oids = append(oids, d.GlobalOID())
		names = append(names, d.Name)
	}
	for _, t := range tlsCounters {
		oids = append(oids, t.OID)
		names = append(names, t.Name)
	}
	const chunk = 30
	for i := 0; i < len(oids); i += chunk {
		end := min(i+chunk, len(oids))
		pkt, err := g.Get(oids[i:end])
		if err != nil {
			return nil, r.wrap(ctx, "get", err)
		}
		if pkt.Error != gosnmp.NoError {
			return nil, fmt.Errorf("snmp %s: get: agent error %s at %d", r.Target(), pkt.Error, pkt.ErrorIndex)
		}
		if len(pkt.Variables) != end-i {
			return nil, fmt.Errorf("snmp %s: get: %d varbinds for %d oids", r.Target(), len(pkt.Variables), end-i)
		}
		for j, v := range pkt.Variables {
			name := names[i+j]
			if name == "" {
				if v.Type == gosnmp.TimeTicks {
					ticks := gosnmp.ToBigInt(v.Value).Uint64()
					up := time.Duration(ticks) * 10 * time.Millisecond
					rd.Uptime = &up
				}
				continue
			}
			rd.Global[name] = pduValue(rd, ScopeGlobal, name, v)
		}
	}

	pdus, err := g.BulkWalkAll(OIDIPGroupEntry)
	if err != nil {
		return nil, r.wrap(ctx, "walk ip group table", err)
	}
	prefix := "." + OIDIPGroupEntry + "."
	for _, v := range pdus {
		rest, ok := strings.CutPrefix(v.Name, prefix)
		if !ok {
			continue
		}
		colS, ipg, ok := strings.Cut(rest, ".")
		col, err := strconv.Atoi(colS)
		if !ok || err != nil {
			continue
		}
		d := byIPGroupCol[col]
		if d == nil {
			continue // the index column and columns not read
		}
		vals := rd.IPGroups[ipg]
		if vals == nil {
			vals = Values{}
			rd.IPGroups[ipg] = vals
		}
		vals[d.Name] = pduValue(rd, IPGroupScope(ipg), d.Name, v)
	}
	return rd, nil
}

// wrap names a timeout for what it usually is: no answer, because the
// SBC is unreachable or ignores the community or v3 credentials.
func (r *SNMPReader) wrap(ctx context.Context, op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		strings.Contains(err.Error(), "timeout") {
		return fmt.Errorf("snmp %s: %s: no response before timeout (unreachable, or wrong community/credentials): %w", r.Target(), op, err)
	}
	return fmt.Errorf("snmp %s: %s: %w", r.Target(), op, err)
}

// pduValue converts a varbind; -1 (also as an all-ones unsigned value)
// and noSuchObject/noSuchInstance become nil, "not supported".
func pduValue(rd *Reading, scope, name string, v gosnmp.SnmpPDU) *float64 {
	switch v.Type {
	case gosnmp.Counter64:
		u := gosnmp.ToBigInt(v.Value).Uint64()
		if u == math.MaxUint64 {
			return nil
		}
		rd.setRaw(scope, name, u, 64)
		return f64(float64(u))
	case gosnmp.Counter32, gosnmp.Gauge32, gosnmp.Uinteger32, gosnmp.TimeTicks:
		u := gosnmp.ToBigInt(v.Value).Uint64()
		if u == math.MaxUint32 {
			return nil
		}
		rd.setRaw(scope, name, u, 32)
		return f64(float64(u))
	case gosnmp.Integer:
		i := gosnmp.ToBigInt(v.Value).Int64()
		if i == -1 {
			return nil
		}
		if i >= 0 {
			rd.setRaw(scope, name, uint64(i), 32)
		}
		return f64(float64(i))
	case gosnmp.OctetString:
		// Some agents render numbers as strings.
		if b, ok := v.Value.([]byte); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64); err == nil && f != -1 {
				return f64(f)
			}
		}
		return nil
	}
	return nil // NoSuchObject, NoSuchInstance, Null, EndOfMibView
}
