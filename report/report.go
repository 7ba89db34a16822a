// Package report is the output of one analysis: the `analyze --format
// json` contract (calls, tls, findings, stats) and the plain-text report
// that leads with verdicts. It reads records from sip, tlsaudit and
// finding and never changes them.
//
// Memory by output, for `analyze` on the streaming engine:
//
//   - ndjson (NDJSON): one record at a time, nothing held.
//   - json (Spool.WriteJSON): records are spooled to temporary files in
//     sorted runs of 8192 and merged (64 runs of a kind are merged into
//     one as they come, so a merge reads at most 64); held are the run
//     being filled, the merge's read buffers, 8 bytes per finding ID and
//     the IDs of the findings that cite or are cited.
//   - text and csv (Spool.WriteText, Spool.WriteCallsCSV): the same
//     spool, walked twice: the first pass applies the View's filters,
//     counts and measures the table columns (as text/tabwriter would,
//     so the layout is identical), the second prints row by row.
//     Held are the findings without their evidence (about 400 bytes
//     each; the verdicts, the fold and the CSV's rules per call need
//     them) and the Call-IDs and connections findings name; never a row
//     per call or TLS connection.
//   - analyze --call (CallSpool): the one call asked for, with its
//     messages; every TLS connection is written, as its ladder shows it,
//     to a temporary file and only those on the call's ladder
//     (RelatedConns) are read back at the end; the findings go through a
//     Spool (for their report order and IDs) and only the call's are
//     kept. Byte for byte the output of WriteLadderWidth and
//     WriteCallJSON.
//   - analyze --store: the output's spool plus a store sink that saves
//     calls (with their SIP messages), TLS connections and, with
//     --keep-packets, the frames behind them (analyze.PacketSink) in
//     batches of 1000 records or 8 MiB of frames as they are decided,
//     and the findings at the end, read back from the spool in report
//     order and saved in batches too (only the IDs of cited findings are
//     held, to rewrite references across batches).
//   - Report (audit, the tests, small inputs through analyze.Files):
//     every record in memory.
package report

import (
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// Report is everything one analysis found. The JSON members required by
// docs/findings.md are Calls, TLS, Findings and Stats.
type Report struct {
	Calls    []CallJSON         `json:"calls"`
	TLS      []TLSJSON          `json:"tls"`
	Findings []*finding.Finding `json:"findings"`
	Stats    Stats              `json:"stats"`
	Hints    []string           `json:"hints,omitempty"`
	// Warnings say the input was not read whole (a damaged capture).
	Warnings []string `json:"warnings,omitempty"`

	// The records behind the JSON views, for the store, the API and the
	// text ladders. Not serialised.
	CallRecords []*sip.Call      `json:"-"`
	Conns       []*tlsaudit.Conn `json:"-"`
	// Packets are the raw frames behind the calls, when the analysis was
	// asked to keep them (analyze --keep-packets); nil otherwise.
	Packets []Packet `json:"-"`
}

// Packet is one captured frame kept as evidence: a frame that carried a
// call's SIP message (CallID set) or a
// frame of a TLS connection on a call's ladder (ConnID and ConnStart set,
// as tlsaudit.Conn.ID and FirstSeen).
type Packet struct {
	Time      time.Time
	Frame     uint64
	LinkType  int
	Data      []byte
	CallID    string
	ConnID    string
	ConnStart time.Time
}

// CallJSON is one entry of "calls".
type CallJSON struct {
	CallID      string        `json:"call_id"`
	Kind        string        `json:"kind"`
	From        string        `json:"from"`
	To          string        `json:"to"`
	Start       finding.Time  `json:"start"`
	Answer      *finding.Time `json:"answer,omitempty"`
	End         *finding.Time `json:"end"`
	DurationS   float64       `json:"duration_s"`
	Answered    bool          `json:"answered"`
	ReferCount  int           `json:"refer_count"`
	EndedBy     string        `json:"ended_by"`
	EndReason   string        `json:"end_reason"`
	Messages    int           `json:"messages"`
	Microsoft   bool          `json:"microsoft"`
	Q850Cause   int           `json:"q850_cause,omitempty"`
	FinalStatus int           `json:"final_status,omitempty"`
	// Truncated says the call's ladder kept fewer messages than it had
	// (limits.max_messages_per_call, or limits.max_kept_messages reached).
	Truncated bool `json:"truncated,omitempty"`
}

// TLSJSON is one entry of "tls".
type TLSJSON struct {
	// UID is unique per connection (tlsaudit.Conn.UID), unlike
	// client->server, which repeats when a port is reused.
	UID             string       `json:"uid"`
	Client          string       `json:"client"`
	Server          string       `json:"server"`
	SNI             string       `json:"sni"`
	Version         string       `json:"version"`
	Cipher          string       `json:"cipher"`
	CertSubject     string       `json:"cert_subject"`
	CertIssuer      string       `json:"cert_issuer"`
	CertSANs        []string     `json:"cert_sans"`
	CertFingerprint string       `json:"cert_fingerprint_sha256"`
	Outcome         string       `json:"outcome"`
	Alert           string       `json:"alert"`
	DurationMS      float64      `json:"duration_ms"`
	FromMicrosoft   bool         `json:"from_microsoft"`
	Start           finding.Time `json:"start"`
	ClosedBy        string       `json:"closed_by"`
	AppData         bool         `json:"app_data"`
	CertEncrypted   bool         `json:"cert_encrypted"`
	CertRequested   bool         `json:"cert_requested"`
	JA3             string       `json:"ja3,omitempty"`
	JA4             string       `json:"ja4,omitempty"`
	BytesC2S        uint64       `json:"bytes_client_to_server"`
	BytesS2C        uint64       `json:"bytes_server_to_client"`
	// Warnings are the warning alerts the peers carried on after, e.g.
	// "unrecognized_name (server)"; HelloRetry: a TLS 1.3
	// HelloRetryRequest came first.
	Warnings   []string `json:"warnings,omitempty"`
	HelloRetry bool     `json:"hello_retry,omitempty"`
}

// Stats is the "stats" member.
type Stats struct {
	Packets       uint64            `json:"packets"`
	Bytes         uint64            `json:"bytes"`
	SIPMessages   uint64            `json:"sip_messages"`
	TLSHandshakes uint64            `json:"tls_handshakes"`
	Seconds       float64           `json:"seconds"` // capture span, first to last packet
	Malformed     uint64            `json:"malformed"`
	SIPErrors     uint64            `json:"sip_parse_errors"`
	TCPDropped    uint64            `json:"tcp_dropped_bytes"`
	Extra         map[string]uint64 `json:"extra,omitempty"`
}
