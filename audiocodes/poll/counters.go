package poll

import (
	"strconv"
	"strings"
	"unicode"
)

// Kind says how a counter's values are read.
type Kind int

const (
	// Gauge is a point-in-time value (active calls, ASR, ACD): no delta.
	Gauge Kind = iota
	// Counter is a monotonic total (Counter64 in the MIB): deltas and
	// rates are computed between polls.
	Counter
)

// Counter names shared by SNMP, REST, the JSON output and Samples. The
// full list is in Counters; these are the ones the rules read.
const (
	ShortCalls                 = "short_calls"
	EstablishedCallsIn         = "established_calls_in"
	EstablishedCallsOut        = "established_calls_out"
	AttemptedCallsIn           = "attempted_calls_in"
	AttemptedCallsOut          = "attempted_calls_out"
	BusyCallsIn                = "busy_calls_in"
	BusyCallsOut               = "busy_calls_out"
	NoAnswerCallsIn            = "no_answer_calls_in"
	NoAnswerCallsOut           = "no_answer_calls_out"
	MinutesOfUsage             = "minutes_of_usage"
	TLSAttemptedConnections    = "tls_attempted_connections"
	TLSRejectedConnections     = "tls_rejected_connections"
	EstablishedCallsLegacy     = "established_calls" // performanceMonitoring fallback only: no in/out split
	DerivedNER                 = "ner_interval"
	DerivedAverageCallDuration = "average_call_duration_interval_s"
	DerivedShortCallRatio      = "short_call_ratio"
	PollUp                     = "poll_up"
)

// Def describes one AC-KPI-MIB SBC call-statistics object.
type Def struct {
	// Name is the snake_case counter name.
	Name string
	// MIB is the object name without the acKpiSbcCallStatsCurrentGlobal
	// prefix, as in the MIB (for example "ShortCallsCounterTotal"). The
	// REST KPI id is the same in lower camel case.
	MIB  string
	Kind Kind
	// GlobalCol is the column under 1.3.6.1.4.1.5003.15.3.1.1.1 (instance .0).
	GlobalCol int
	// IPGroupCol is the column in acKpiSbcCallStatsCurrentIpGroupEntry
	// (1.3.6.1.4.1.5003.15.3.1.1.2.1.1); 0 when the table has none.
	IPGroupCol int
}

// OIDs of the objects read besides the call statistics.
const (
	OIDSysUpTime        = "1.3.6.1.2.1.1.3.0"
	OIDGlobalBase       = "1.3.6.1.4.1.5003.15.3.1.1.1"
	OIDIPGroupEntry     = "1.3.6.1.4.1.5003.15.3.1.1.2.1.1"
	OIDTLSRejectedConns = "1.3.6.1.4.1.5003.15.6.1.1.1.2.0" // acKpiDdosStatsCurrentGlobalRejectedSipTlsConnTotal
	OIDTLSAttemptedConn = "1.3.6.1.4.1.5003.15.6.1.1.1.3.0" // acKpiDdosStatsCurrentGlobalAttemptedSipTlsConnTotal
)

// Counters lists every call-statistics object read, in MIB order. The
// IP-Group table column is the global column +1 up to NoRouteCallsIn (the
// index takes column 1), the table has no ClassificationFailed column, so
// from OtherReasonCallsIn on the numbers coincide again, except that the
// table swaps NotEstablishCallsIn/Out (.42 is In, .41 is Out). The table
// has no ActiveSessions column.
var Counters = []Def{
	{"average_call_duration_s", "AverageCallDuration", Gauge, 1, 2},
	{"active_calls_in", "ActiveCallsIn", Gauge, 2, 3},
	{"active_calls_out", "ActiveCallsOut", Gauge, 3, 4},
	{AttemptedCallsIn, "AttemptedCallsInTotal", Counter, 4, 5},
	{AttemptedCallsOut, "AttemptedCallsOutTotal", Counter, 5, 6},
	{"attempted_calls_rate_in", "AttemptedCallsRateIn", Gauge, 6, 7},
	{"attempted_calls_rate_out", "AttemptedCallsRateOut", Gauge, 7, 8},
	{EstablishedCallsIn, "EstablishedCallsInTotal", Counter, 8, 9},
	{EstablishedCallsOut, "EstablishedCallsOutTotal", Counter, 9, 10},
	{"established_calls_rate_in", "EstablishedCallsRateIn", Gauge, 10, 11},
	{"established_calls_rate_out", "EstablishedCallsRateOut", Gauge, 11, 12},
	{"asr", "AnswerSeizureRatio", Gauge, 12, 13},
	{"ner", "NetworkEffectivenessRatio", Gauge, 13, 14},
	{"forwarded_calls_in", "ForwardedCallsInTotal", Counter, 14, 15},
	{"forwarded_calls_out", "ForwardedCallsOutTotal", Counter, 15, 16},
	{"media_broken_connection_calls", "MediaBrokenConnectionCallsTotal", Counter, 16, 17},
	{"not_established_success_calls_in", "NotEstablishSuccessCallsInTotal", Counter, 17, 18},
	{"not_established_success_calls_out", "NotEstablishSuccessCallsOutTotal", Counter, 18, 19},
	{"not_established_failed_calls_in", "NotEstablishFailedCallsInTotal", Counter, 19, 20},
	{"not_established_failed_calls_out", "NotEstablishFailedCallsOutTotal", Counter, 20, 21},
	{BusyCallsIn, "BusyCallsInTotal", Counter, 21, 22},
	{BusyCallsOut, "BusyCallsOutTotal", Counter, 22, 23},
	{NoAnswerCallsIn, "NoAnswerCallsInTotal", Counter, 23, 24},
	{NoAnswerCallsOut, "NoAnswerCallsOutTotal", Counter, 24, 25},
	{"no_resources_calls_in", "NoResourcesCallsInTotal", Counter, 25, 26},
	{"no_resources_calls_out", "NoResourcesCallsOutTotal", Counter, 26, 27},
	{"media_mismatch_calls_in", "MediaMismatchCallsInTotal", Counter, 27, 28},
	{"media_mismatch_calls_out", "MediaMismatchCallsOutTotal", Counter, 28, 29},
	{"admission_failed_calls_in", "AdmissionFailedCallsInTotal", Counter, 29, 30},
	{"admission_failed_calls_out", "AdmissionFailedCallsOutTotal", Counter, 30, 31},
	{"no_route_calls_in", "NoRouteCallsInTotal", Counter, 31, 32},
	{"classification_failed_calls_in", "ClassificationFailedCallsInTotal", Counter, 32, 0},
	{"other_reason_calls_in", "OtherReasonCallsInTotal", Counter, 33, 33},
	{"other_reason_calls_out", "OtherReasonCallsOutTotal", Counter, 34, 34},
	{"abnormal_terminated_calls_in", "AbnormalTerminatedCallsInTotal", Counter, 35, 35},
	{"abnormal_terminated_calls_out", "AbnormalTerminatedCallsOutTotal", Counter, 36, 36},
	{"post_dial_delay_s", "PostDialDelay", Gauge, 37, 37},
	// MinutesOfUsageTotal is a Gauge32 in the MIB but a running total:
	// it is treated as a counter so the interval ACD can be derived.
	{MinutesOfUsage, "MinutesOfUsageTotal", Counter, 38, 38},
	{ShortCalls, "ShortCallsCounterTotal", Counter, 39, 39},
	{"long_calls", "LongCallsCounterTotal", Counter, 40, 40},
	{"not_established_calls_in", "NotEstablishCallsInTotal", Counter, 41, 42},
	{"not_established_calls_out", "NotEstablishCallsOutTotal", Counter, 42, 41},
	{"active_sessions", "ActiveSessions", Gauge, 43, 0},
}

// tlsCounters are the global DDoS-statistics TLS connection totals.
var tlsCounters = []struct {
	Name, OID string
}{
	{TLSAttemptedConnections, OIDTLSAttemptedConn},
	{TLSRejectedConnections, OIDTLSRejectedConns},
}

var (
	byName       = map[string]*Def{}
	byIPGroupCol = map[int]*Def{}
	byRESTID     = map[string]string{}
)

func init() {
	for i := range Counters {
		d := &Counters[i]
		byName[d.Name] = d
		if d.IPGroupCol > 0 {
			byIPGroupCol[d.IPGroupCol] = d
		}
		byRESTID[strings.ToLower(d.MIB)] = d.Name
	}
	// Ids seen in third-party REST clients that do not follow the MIB
	// names (docs/direct-routing-facts.md §1.7).
	for id, name := range map[string]string{
		"mediaBrokenConnectionCalls": "media_broken_connection_calls",
		"noRouteCallsIn":             "no_route_calls_in",
		"shortCalls":                 ShortCalls,
		"shortCallsTotal":            ShortCalls,
		"attemptedSipTlsConnTotal":   TLSAttemptedConnections,
		"rejectedSipTlsConnTotal":    TLSRejectedConnections,
	} {
		byRESTID[strings.ToLower(id)] = name
	}
}

// KindOf returns the kind of a counter name. Names not in Counters are
// gauges, except the TLS totals, the legacy established total and names
// ending in "_total" (unknown REST ids such as "fooCallsTotal").
func KindOf(name string) Kind {
	if d, ok := byName[name]; ok {
		return d.Kind
	}
	if name == TLSAttemptedConnections || name == TLSRejectedConnections || name == EstablishedCallsLegacy ||
		strings.HasSuffix(name, "_total") {
		return Counter
	}
	return Gauge
}

// GlobalOID returns the scalar OID of a global object.
func (d Def) GlobalOID() string { return OIDGlobalBase + "." + strconv.Itoa(d.GlobalCol) + ".0" }

// NameForRESTID maps a REST KPI id to its counter name: the MIB-derived
// ids and a few known aliases map to the SNMP names, any other id to its
// own snake_case form (so unknown KPIs are still shown, under their id).
func NameForRESTID(id string) string {
	if n, ok := byRESTID[strings.ToLower(id)]; ok {
		return n
	}
	return snake(id)
}

// snake converts lowerCamel to snake_case.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
