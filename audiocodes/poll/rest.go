package poll

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
)

// REST API paths (docs/direct-routing-facts.md §1.7).
const (
	PathKPIGlobal  = "/api/v1/kpi/current/sbc/callStats/global"
	PathKPIIPGroup = "/api/v1/kpi/current/sbc/callStats/ipGroup"
	PathStatus     = "/api/v1/status"
	PathPM         = "/api/v1/performanceMonitoring"
)

// ErrUnauthorized is returned when the SBC rejects the credentials (401
// or 403). Retrying does not help.
var ErrUnauthorized = errors.New("credentials rejected")

// errNotFound marks a 404, which on /kpi selects the fallback.
var errNotFound = errors.New("not found")

// maxBody bounds one REST response.
const maxBody = 4 << 20

// RESTReader reads the KPI tree of the AudioCodes REST API over HTTPS
// with Basic authentication, falling back to the older
// performanceMonitoring API when /kpi answers 404.
type RESTReader struct {
	sbc      string
	base     *url.URL
	user     string
	password string
	client   *http.Client
	timeout  time.Duration
}

// NewRESTReader builds a reader from the SBC's poll settings. The
// device's certificate is verified against the system roots plus
// REST.CAFile when given; verification cannot be turned off.
func NewRESTReader(name string, p *config.Poll) (*RESTReader, error) {
	u, err := url.Parse(strings.TrimRight(p.REST.URL, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("poll %s: rest url %q: not an absolute URL", name, p.REST.URL)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("poll %s: rest url %q: only https is supported (Basic auth would travel in clear)", name, p.REST.URL)
	}
	pw, err := secret(p.REST.Password, p.REST.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("poll %s: rest password: %w", name, err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if p.REST.CAFile != "" {
		pem, err := os.ReadFile(p.REST.CAFile)
		if err != nil {
			return nil, fmt.Errorf("poll %s: rest ca_file: %w", name, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("poll %s: rest ca_file %s: no PEM certificate found", name, p.REST.CAFile)
		}
		tc.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.Proxy = nil // the SBC is on the management network
	t := p.Timeout.D()
	if t <= 0 {
		t = 5 * time.Second
	}
	// Never follow a redirect: it could lead the Basic credentials to
	// plain HTTP or another host. A device API has no reason to redirect.
	noRedirect := func(req *http.Request, _ []*http.Request) error {
		return fmt.Errorf("poll %s: refusing redirect to %s", name, req.URL.Redacted())
	}
	return &RESTReader{sbc: name, base: u, user: p.REST.User, password: pw,
		client: &http.Client{Transport: tr, CheckRedirect: noRedirect}, timeout: t}, nil
}

// Target returns the base URL.
func (r *RESTReader) Target() string { return r.base.String() }

// CloseIdle drops idle keep-alive connections.
func (r *RESTReader) CloseIdle() { r.client.CloseIdleConnections() }

type kpiItem struct {
	ID          json.RawMessage `json:"id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	URL         string          `json:"url"`
	Value       json.RawMessage `json:"value"`
}

type kpiList struct {
	Items []kpiItem `json:"items"`
}

// get fetches path and decodes JSON into out.
func (r *RESTReader) get(ctx context.Context, path string, query url.Values, out any) error {
	u := *r.base
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(r.user, r.password)
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("rest GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("rest GET %s: %w", path, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("rest GET %s: %s: %w", path, resp.Status, ErrUnauthorized)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("rest GET %s: %s: %w", path, resp.Status, errNotFound)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("rest GET %s: unexpected %s", path, resp.Status)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("rest GET %s: decode: %w", path, err)
	}
	return nil
}

// Read gets the global and per-IP-Group KPIs, or the performanceMonitoring
// values on firmware without /kpi.
func (r *RESTReader) Read(ctx context.Context) (*Reading, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	rd := &Reading{SBC: r.sbc, Method: "rest", Target: r.Target(), Time: time.Now(),
		Global: Values{}, IPGroups: map[string]Values{}}
	r.readUptime(ctx, rd)

	var global kpiList
	err := r.get(ctx, PathKPIGlobal, nil, &global)
	if errors.Is(err, errNotFound) {
		rd.Method = "rest-pm"
		if err := r.readPM(ctx, rd); err != nil {
			return nil, fmt.Errorf("rest %s: /kpi answered 404 and performanceMonitoring failed: %w", r.Target(), err)
		}
		return rd, nil
	}
	if err != nil {
		return nil, fmt.Errorf("rest %s: %w", r.Target(), err)
	}
	fillItems(rd, ScopeGlobal, rd.Global, global.Items)

	// A firmware without per-IP-Group KPIs (404) still has the global ones.
	var groups kpiList
	if err := r.get(ctx, PathKPIIPGroup, nil, &groups); err != nil && !errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("rest %s: %w", r.Target(), err)
	}
	for _, g := range groups.Items {
		id := rawString(g.ID)
		if id == "" {
			continue
		}
		var kpis kpiList
		err := r.get(ctx, PathKPIIPGroup+"/"+url.PathEscape(id), nil, &kpis)
		if errors.Is(err, errNotFound) {
			continue // listed but gone since
		}
		if err != nil {
			return nil, fmt.Errorf("rest %s: ip group %s: %w", r.Target(), id, err)
		}
		vals := Values{}
		fillItems(rd, IPGroupScope(id), vals, kpis.Items)
		rd.IPGroups[id] = vals
		if g.Name != "" {
			if rd.IPGroupNames == nil {
				rd.IPGroupNames = map[string]string{}
			}
			rd.IPGroupNames[id] = g.Name
		}
	}
	return rd, nil
}

// readUptime reads systemUpTime (seconds) from /api/v1/status; a failure
// only leaves the uptime unknown.
func (r *RESTReader) readUptime(ctx context.Context, rd *Reading) {
	var st struct {
		SystemUpTime json.RawMessage `json:"systemUpTime"`
	}
	if err := r.get(ctx, PathStatus, nil, &st); err != nil {
		return
	}
	if v, _ := jsonNumber(st.SystemUpTime); v != nil && *v >= 0 {
		up := time.Duration(*v * float64(time.Second))
		rd.Uptime = &up
	}
}

func fillItems(rd *Reading, scope string, vals Values, items []kpiItem) {
	for _, it := range items {
		id := rawString(it.ID)
		if id == "" {
			continue
		}
		name := NameForRESTID(id)
		v, raw := jsonNumber(it.Value)
		vals[name] = v
		if raw != nil {
			rd.setRaw(scope, name, *raw, 0)
		}
	}
}

// rawString returns a JSON string or number as text.
func rawString(m json.RawMessage) string {
	var s string
	if json.Unmarshal(m, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(m, &n) == nil {
		return n.String()
	}
	return ""
}

// jsonNumber decodes a KPI value: null, -1 and non-numbers are nil; a
// numeric string is accepted. The second result is the exact value when
// it is a non-negative integer.
func jsonNumber(m json.RawMessage) (*float64, *uint64) {
	m = bytes.TrimSpace(m)
	if len(m) == 0 || string(m) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(m, &s) == nil {
		m = []byte(strings.TrimSpace(s))
	}
	f, err := strconv.ParseFloat(string(m), 64)
	if err != nil || f == -1 || math.IsNaN(f) || math.IsInf(f, 0) {
		// "NaN" and "Inf" parse too, but are no counter value (and
		// would not survive JSON).
		return nil, nil
	}
	if u, err := strconv.ParseUint(string(m), 10, 64); err == nil {
		return &f, &u
	}
	return &f, nil
}

// pmNames maps performanceMonitoring names (compared without case and
// without the "acPM"/"acPMSIP" prefix) to counter names, and says
// whether the "total" field (counters) or "value" (gauges) is read.
// These are the legacy AC-PM-Control-MIB names; the REST names of 7.2
// firmware are not confirmed, so unknown names are skipped.
var pmNames = map[string]struct {
	name  string
	total bool
}{
	"sbcestablishedcalls": {EstablishedCallsLegacy, true},
	"sbcasr":              {"asr", false},
	"sbcacd":              {"average_call_duration_s", false},
	"sbcactivecalls":      {"active_calls", false},
	"sbcshortcalls":       {ShortCalls, true},
}

func pmKey(name string) string {
	k := strings.ToLower(name)
	for _, p := range []string{"acpmsip", "acpm"} {
		if s, ok := strings.CutPrefix(k, p); ok {
			k = s
			break
		}
	}
	for _, s := range []string{"val", "total"} {
		k = strings.TrimSuffix(k, s)
	}
	return k
}

// readPM reads the realtime (interval=0) value of each known PM name.
func (r *RESTReader) readPM(ctx context.Context, rd *Reading) error {
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := r.get(ctx, PathPM, nil, &list); err != nil {
		return err
	}
	for _, raw := range list.Items {
		name := rawString(raw)
		if name == "" { // items may be objects with a name
			var o struct {
				Name string `json:"name"`
				ID   string `json:"id"`
			}
			_ = json.Unmarshal(raw, &o)
			name = cmp.Or(o.Name, o.ID)
		}
		m, ok := pmNames[pmKey(name)]
		if !ok {
			continue
		}
		var idx struct {
			Indexes []json.RawMessage `json:"indexes"`
		}
		if err := r.get(ctx, PathPM+"/"+url.PathEscape(name), nil, &idx); err != nil {
			return err
		}
		index := "0"
		if len(idx.Indexes) > 0 {
			index = rawString(idx.Indexes[0])
		}
		var val struct {
			Value json.RawMessage `json:"value"`
			Total json.RawMessage `json:"total"`
		}
		q := url.Values{"index": {index}, "interval": {"0"}}
		if err := r.get(ctx, PathPM+"/"+url.PathEscape(name), q, &val); err != nil {
			return err
		}
		field := val.Value
		if m.total {
			field = val.Total
		}
		v, exact := jsonNumber(field)
		rd.Global[m.name] = v
		if exact != nil {
			rd.setRaw(ScopeGlobal, m.name, *exact, 0)
		}
	}
	if len(rd.Global) == 0 {
		return errors.New("performanceMonitoring lists none of the known SBC names")
	}
	return nil
}
