package poll

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Values maps counter names to values; a nil value means the SBC answered
// "not supported" (-1, JSON null, noSuchObject) for that object.
type Values map[string]*float64

// Reading is one poll of one SBC: the raw values, not yet differenced.
type Reading struct {
	SBC    string    `json:"sbc"`
	Method string    `json:"method"` // snmp, rest or rest-pm (performanceMonitoring fallback)
	Target string    `json:"target"`
	Time   time.Time `json:"time"`
	// Uptime is the device uptime (sysUpTime, or systemUpTime over
	// REST) when known; it going down marks a restart.
	Uptime *time.Duration `json:"-"`
	// Global holds the SBC-wide counters and the TLS connection totals.
	Global Values `json:"global"`
	// IPGroups holds the per-IP-Group counters keyed by IP Group index.
	IPGroups map[string]Values `json:"ip_groups"`
	// IPGroupNames holds the IP Group names when the method reports them
	// (REST does, the SNMP KPI table does not).
	IPGroupNames map[string]string `json:"ip_group_names,omitempty"`

	// raw keeps integral counter values exactly (scope "/" name), with
	// their bit width, for wrap-aware deltas.
	raw map[string]rawCounter
}

type rawCounter struct {
	v    uint64
	bits int // 32 or 64; 0 when unknown (REST)
}

// MarshalJSON adds uptime_s to the encoding.
func (r *Reading) MarshalJSON() ([]byte, error) {
	type plain Reading
	var up *float64
	if r.Uptime != nil {
		s := r.Uptime.Seconds()
		up = &s
	}
	ipg := r.IPGroups
	if ipg == nil {
		ipg = map[string]Values{}
	}
	return json.Marshal(struct {
		*plain
		UptimeS  *float64          `json:"uptime_s"`
		IPGroups map[string]Values `json:"ip_groups"`
	}{(*plain)(r), up, ipg})
}

func (r *Reading) setRaw(scope, name string, v uint64, bits int) {
	if r.raw == nil {
		r.raw = map[string]rawCounter{}
	}
	r.raw[scope+"/"+name] = rawCounter{v, bits}
}

func (r *Reading) scopeValues(scope string) Values {
	if scope == ScopeGlobal {
		return r.Global
	}
	return r.IPGroups[strings.TrimPrefix(scope, ipGroupPrefix)]
}

// Supported counts the values the SBC answered with a number, over all
// scopes; 0 usually means the device has no AC-KPI-MIB / KPI API.
func (r *Reading) Supported() int {
	n := 0
	for _, scope := range r.Scopes() {
		for _, v := range r.scopeValues(scope) {
			if v != nil {
				n++
			}
		}
	}
	return n
}

// Scopes returns "global" then "ipgroup:N" in numeric order.
func (r *Reading) Scopes() []string {
	out := []string{ScopeGlobal}
	for _, id := range sortedIDs(r.IPGroups) {
		out = append(out, ipGroupPrefix+id)
	}
	return out
}

// Scope names.
const (
	ScopeGlobal   = "global"
	ipGroupPrefix = "ipgroup:"
)

// IPGroupScope returns the Sample scope of an IP Group.
func IPGroupScope(id string) string { return ipGroupPrefix + id }

func sortedIDs[V any](m map[string]V) []string {
	ids := slices.Collect(maps.Keys(m))
	sort.Slice(ids, func(i, j int) bool {
		a, errA := strconv.Atoi(ids[i])
		b, errB := strconv.Atoi(ids[j])
		if errA == nil && errB == nil {
			return a < b
		}
		return ids[i] < ids[j]
	})
	return ids
}

// orderedNames lists the names in v: known counters in MIB order, then
// the TLS totals, then any others sorted.
func orderedNames(v Values) []string {
	var out []string
	seen := map[string]bool{}
	for _, d := range Counters {
		if _, ok := v[d.Name]; ok {
			out = append(out, d.Name)
			seen[d.Name] = true
		}
	}
	for _, t := range tlsCounters {
		if _, ok := v[t.Name]; ok {
			out = append(out, t.Name)
			seen[t.Name] = true
		}
	}
	var rest []string
	for n := range v {
		if !seen[n] {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// WriteText prints a reading for a human: one counter a line, "n/a" for
// objects the SBC does not support.
func (r *Reading) WriteText(out io.Writer) error {
	w := &strings.Builder{}
	up := "unknown"
	if r.Uptime != nil {
		up = r.Uptime.Truncate(time.Second).String()
	}
	fmt.Fprintf(w, "SBC %s via %s %s at %s (uptime %s)\n", r.SBC, r.Method, r.Target, r.Time.UTC().Format(time.RFC3339), up)
	writeValues(w, "global", r.Global)
	for _, id := range sortedIDs(r.IPGroups) {
		title := "ip group " + id
		if n := r.IPGroupNames[id]; n != "" {
			title += " (" + n + ")"
		}
		writeValues(w, title, r.IPGroups[id])
	}
	_, err := io.WriteString(out, w.String())
	return err
}

func writeValues(w io.Writer, title string, v Values) {
	fmt.Fprintln(w, title)
	for _, n := range orderedNames(v) {
		s := "n/a (not supported)"
		if p := v[n]; p != nil {
			s = strconv.FormatFloat(*p, 'f', -1, 64)
		}
		fmt.Fprintf(w, "  %-34s %s\n", n, s)
	}
}

// Reader reads the current counters of one SBC. Read honours the
// context's deadline and cancellation.
type Reader interface {
	Read(ctx context.Context) (*Reading, error)
	// Target names what is polled (udp://host:port or https://host).
	Target() string
}

func f64(v float64) *float64 { return &v }
