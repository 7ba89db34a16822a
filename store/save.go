package store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// SaveResult counts what one save added; rows that were already stored
// are not counted.
type SaveResult struct {
	IngestID     int64 `json:"ingest_id"`
	Calls        int64 `json:"calls"`
	Messages     int64 `json:"sip_messages"`
	Connections  int64 `json:"tls_connections"`
	Certificates int64 `json:"certificates"`
	Findings     int64 `json:"findings"`
	Packets      int64 `json:"packets"`
	// Problems counts the problems the new findings are sightings of
	// (new, updated or re-opened).
	Problems int64 `json:"problems"`
}

// SaveReport stores one analysis of the capture or log named source, seen
// at the SBC named sbc: its calls, their SIP messages, TLS connections,
// certificates and findings. It is idempotent: every row has a natural or
// content-derived key and is inserted with ON CONFLICT, so saving the same
// capture twice stores nothing twice (a call seen again with a later last
// message is updated in place).
func (s *Store) SaveReport(ctx context.Context, sbc, source string, r *report.Report) error {
	_, err := s.SaveReportResult(ctx, sbc, source, r)
	return err
}

// SaveReportResult is SaveReport returning what was added.
func (s *Store) SaveReportResult(ctx context.Context, sbc, source string, r *report.Report) (SaveResult, error) {
	if sbc == "" {
		return SaveResult{}, fmt.Errorf("store: save report: sbc name is required")
	}
	if r == nil {
		return SaveResult{}, fmt.Errorf("store: save report: nil report")
	}
	calls, conns := r.CallRecords, r.Conns
	if len(calls) == 0 && len(r.Calls) > 0 {
		calls = callsFromJSON(r.Calls)
	}
	if len(conns) == 0 && len(r.TLS) > 0 {
		conns = connsFromJSON(r.TLS)
	}
	b := buildBatch(sbc, calls, conns, r.Findings)
	b.addPackets(sbc, r.Packets)
	stats, err := jsonb(r.Stats)
	if err != nil {
		return SaveResult{}, fmt.Errorf("store: save report: %w", err)
	}
	res, err := s.saveBatch(ctx, sbc, source, stats, b)
	if err != nil {
		return res, fmt.Errorf("store: save report %s: %w", source, err)
	}
	s.log.Debug("report saved", "sbc", sbc, "source", source, "calls", res.Calls,
		"messages", res.Messages, "tls", res.Connections, "findings", res.Findings, "packets", res.Packets)
	return res, nil
}

// batch holds the rows of one save, already keyed and deduplicated.
type batch struct {
	calls                             []callRec
	messages                          []msgRef // rows are encoded while copying, so raw text is not duplicated up front
	conns                             [][]any
	certs                             [][]any
	findings                          [][]any
	packets                           [][]any
	msgTimes, connTimes, findingTimes []time.Time
	packetTimes                       []time.Time
	keys                              []string // content identity of all but messages, for the ingest digest
}

func (b *batch) empty() bool {
	return len(b.calls)+len(b.messages)+len(b.conns)+len(b.findings)+len(b.packets) == 0
}

// digest is the SHA-256 of the batch's content keys, sorted: "c" and the
// call's key, "m" and the hex message hash, "t" and the connection id,
// "f" and the finding id, "p" and the packet id. It names the ingest, so
// a capture stored again is the same ingest.
func (b *batch) digest() string {
	k := slices.Clone(b.keys)
	slices.Sort(k)
	sums := make([][sha256.Size]byte, len(b.messages))
	for i := range b.messages {
		sums[i] = b.messages[i].sum
	}
	slices.SortFunc(sums, func(x, y [sha256.Size]byte) int {
		if c := cmp.Compare(binary.BigEndian.Uint64(x[:8]), binary.BigEndian.Uint64(y[:8])); c != 0 {
			return c
		}
		return bytes.Compare(x[8:], y[8:])
	})
	h := sha256.New()
	// The message keys ("m" and 64 hex digits, in the order of their
	// bytes) sort after the "c" and "f" keys and before "p" and "t".
	var mk [2 + 2*sha256.Size]byte
	mk[0] = 'm'
	msgs := func() {
		for _, s := range sums {
			hex.Encode(mk[1:], s[:])
			h.Write(mk[:])
		}
	}
	done := false
	for _, s := range k {
		if !done && s > "m" {
			msgs()
			done = true
		}
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	if !done {
		msgs()
	}
	return hex.EncodeToString(h.Sum(nil))
}

var callCols = []string{"sbc", "call_id", "kind", "from_number", "to_number", "from_digits", "to_digits",
	"from_uri", "to_uri", "request_uri", "pai", "caller", "callee", "start_time", "answer_time", "end_time",
	"last_time", "answered", "final_status", "ended_by", "end_reason", "bye_reason", "q850", "reason_text",
	"refer_count", "invites", "message_count", "microsoft", "microsoft_addr", "sbc_side", "sbc_contact",
	"sbc_allow", "truncated", "user_agents", "refers"}

var messageCols = []string{"time", "id", "sbc", "frame", "src", "dst", "transport", "origin", "is_request",
	"method", "status", "reason", "request_uri", "call_id", "cseq", "cseq_method", "from_user", "to_user",
	"from_tag", "to_tag", "branch", "contact", "user_agent", "refer_to", "reason_hdr", "q850", "raw"}

var connCols = []string{"first_seen", "id", "sbc", "conn_id", "client", "server", "sni", "version", "cipher",
	"outcome", "alert", "closed_by", "duration_ms", "from_microsoft", "to_microsoft", "established",
	"app_data", "cert_encrypted", "cert_requested", "fingerprint", "chain", "cert_subject", "cert_issuer",
	"ja3", "ja4", "bytes_c2s", "bytes_s2c", "last_seen", "alerts", "cert_check", "anomalies"}

var certCols = []string{"fingerprint", "der", "subject", "issuer", "sans", "not_before", "not_after", "self_signed"}

var packetCols = []string{"time", "id", "sbc", "frame", "link_type", "call_id", "tls_id", "data"}

var findingCols = []string{"time", "id", "local_id", "rule", "severity", "severity_rank", "call_id",
	"connection", "sbc", "summary", "evidence", "cites", "source", "subject", "provisional", "settles_at", "retracted"}

func buildBatch(sbc string, calls []*sip.Call, conns []*tlsaudit.Conn, fs []*finding.Finding) *batch {
	b := &batch{}
	base := baseTime(calls, conns, fs)

	seenCall := map[string]int{}
	nmsg := 0
	for _, c := range calls {
		if c != nil {
			nmsg += len(c.Messages)
		}
	}
	seenMsg := make(map[[16]byte]struct{}, nmsg)
	b.messages = make([]msgRef, 0, nmsg)
	b.msgTimes = make([]time.Time, 0, nmsg)
	var buf []byte
	for _, c := range calls {
		if c == nil || c.CallID == "" {
			continue
		}
		start := c.Start
		if start.IsZero() {
			start = base
		}
		key := c.CallID + "\x00" + start.UTC().Format(time.RFC3339Nano)
		row := callRec{c: c, start: start}
		if i, ok := seenCall[key]; ok {
			b.calls[i] = row // the later record of the same call wins
		} else {
			seenCall[key] = len(b.calls)
			b.calls = append(b.calls, row)
			b.keys = append(b.keys, "c"+key)
		}
		for _, m := range c.Messages {
			if m == nil {
				continue
			}
			t := m.Time
			if t.IsZero() {
				t = start
			}
			var sum [sha256.Size]byte
			sum, buf = messageSum(buf, sbc, t, m)
			id := [16]byte(sum[:16])
			if _, ok := seenMsg[id]; ok {
				continue
			}
			seenMsg[id] = struct{}{}
			b.messages = append(b.messages, msgRef{t: t, sum: sum, callID: c.CallID, m: m})
			b.msgTimes = append(b.msgTimes, t)
		}
	}

	seenConn := map[string]bool{}
	seenCert := map[string]bool{}
	for _, c := range conns {
		if c == nil {
			continue
		}
		t := c.FirstSeen
		if t.IsZero() {
			t = base
		}
		connID := c.ID
		if connID == "" {
			connID = c.Client.String() + "->" + c.Server.String()
		}
		id := hashHex(sbc, connID, t.UTC().Format(time.RFC3339Nano))
		if seenConn[id] {
			continue
		}
		seenConn[id] = true
		var chain []string
		for _, cert := range c.Chain {
			if cert == nil {
				continue
			}
			fp := Fingerprint(cert)
			chain = append(chain, fp)
			if !seenCert[fp] {
				seenCert[fp] = true
				b.certs = append(b.certs, certRow(fp, cert))
			}
		}
		b.conns = append(b.conns, connRow(sbc, t, id, connID, chain, c))
		b.connTimes = append(b.connTimes, t)
		b.keys = append(b.keys, "t"+id)
	}

	// Findings get store-wide ids derived from their content; Cites are
	// rewritten from the analysis-local ids to those.
	ids := make(map[string]string, len(fs))
	type pending struct {
		f  *finding.Finding
		t  time.Time
		id string
	}
	var ps []pending
	seenF := map[string]bool{}
	for _, f := range fs {
		if f == nil {
			continue
		}
		t := f.Time
		if t.IsZero() {
			t = base
		}
		id := StoredFindingID(sbc, f)
		if f.ID != "" {
			ids[f.ID] = id
		}
		if seenF[id] {
			continue
		}
		seenF[id] = true
		ps = append(ps, pending{f, t, id})
	}
	for _, p := range ps {
		f := p.f
		fsbc := f.SBC
		if fsbc == "" {
			fsbc = sbc
		}
		cites := make([]string, 0, len(f.Cites))
		for _, c := range f.Cites {
			if g, ok := ids[c]; ok {
				cites = append(cites, g)
			} else {
				cites = append(cites, c)
			}
		}
		ev := f.Evidence
		if ev == nil {
			ev = map[string]any{}
		}
		// References to other findings use the store's ids, like Cites
		// (the analysis-local id stays in local_id).
		for _, k := range []string{"explained_by", "possibly_explained_by"} {
			if v, ok := ev[k].(string); ok && ids[v] != "" {
				ev = maps.Clone(ev)
				ev[k] = ids[v]
			}
		}
		evJSON, err := jsonb(ev)
		if err != nil {
			evJSON, _ = jsonb(map[string]string{"unencodable_evidence": err.Error()})
		}
		src := f.Source
		if src == "" {
			src = finding.SourcePassive
		}
		b.findings = append(b.findings, []any{p.t.UTC(), p.id, clean(f.ID), clean(f.Rule), string(f.Severity),
			f.Severity.Rank(), clean(f.CallID), clean(f.Connection), clean(fsbc), clean(f.Summary),
			json.RawMessage(evJSON), cites, src, clean(finding.Subject(f)), f.Provisional, optTime(f.SettlesAt), f.Retracted})
		b.findingTimes = append(b.findingTimes, p.t)
		b.keys = append(b.keys, "f"+p.id)
	}
	return b
}

// addPackets adds the kept raw frames: a TLS connection's frames are tied
// to its stored row by the same id buildBatch gives the connection.
func (b *batch) addPackets(sbc string, ps []report.Packet) {
	seen := map[string]bool{}
	for _, p := range ps {
		if p.Time.IsZero() || len(p.Data) == 0 {
			continue
		}
		id := hashHex(sbc, p.Time.UTC().Format(time.RFC3339Nano), strconv.FormatUint(p.Frame, 10), string(p.Data))
		if seen[id] {
			continue
		}
		seen[id] = true
		tlsID := ""
		if p.ConnID != "" {
			tlsID = hashHex(sbc, p.ConnID, p.ConnStart.UTC().Format(time.RFC3339Nano))
		}
		b.packets = append(b.packets, []any{p.Time.UTC(), id, sbc, int64(p.Frame), p.LinkType, clean(p.CallID), tlsID, p.Data})
		b.packetTimes = append(b.packetTimes, p.Time)
		b.keys = append(b.keys, "p"+id)
	}
}

// baseTime stands in for missing times: the earliest time in the input,
// else the start of today (UTC).
func baseTime(calls []*sip.Call, conns []*tlsaudit.Conn, fs []*finding.Finding) time.Time {
	var min time.Time
	note := func(t time.Time) {
		if !t.IsZero() && (min.IsZero() || t.Before(min)) {
			min = t
		}
	}
	for _, c := range calls {
		if c != nil {
			note(c.Start)
		}
	}
	for _, c := range conns {
		if c != nil {
			note(c.FirstSeen)
		}
	}
	for _, f := range fs {
		if f != nil {
			note(f.Time)
		}
	}
	if min.IsZero() {
		return time.Now().UTC().Truncate(24 * time.Hour)
	}
	return min.UTC()
}

// callRec is a call waiting to be copied, with the start time it is
// stored under.
type callRec struct {
	c     *sip.Call
	start time.Time
}

// appendCallRow encodes r as a binary COPY row of callCols, and of
// ingest_id after them when ingest is not 0.
func appendCallRow(b []byte, sbc string, r *callRec, ingest int64) []byte {
	c := r.c
	n := len(callCols)
	if ingest != 0 {
		n++
	}
	b = appendTuple(b, n)
	b = appendText(b, sbc)
	b = appendText(b, c.CallID)
	b = appendText(b, c.Kind)
	b = appendText(b, c.From)
	b = appendText(b, c.To)
	b = appendDigits(b, c.From)
	b = appendDigits(b, c.To)
	b = appendText(b, c.FromURI)
	b = appendText(b, c.ToURI)
	b = appendText(b, c.RequestURI)
	b = appendText(b, c.PAI)
	b = appendAddrPort(b, c.Caller)
	b = appendAddrPort(b, c.Callee)
	b = appendTimestamptz(b, r.start)
	b = appendOptTime(b, c.Answer)
	b = appendOptTime(b, c.End)
	last := c.Last
	if last.IsZero() {
		last = c.End
	}
	b = appendOptTime(b, last)
	b = appendBool(b, c.Answered)
	b = appendInt4(b, c.FinalStatus)
	b = appendText(b, c.EndedBy)
	b = appendText(b, c.EndReason)
	b = appendText(b, c.ByeReason)
	b = appendInt4(b, c.Q850Cause)
	b = appendText(b, c.ReasonText)
	b = appendInt4(b, len(c.Refers))
	b = appendInt4(b, c.Invites)
	b = appendInt4(b, c.MessageCount)
	b = appendBool(b, c.Microsoft)
	if c.MicrosoftAddr.IsValid() {
		b = appendText(b, c.MicrosoftAddr.String())
	} else {
		b = appendText(b, "")
	}
	b = appendAddrPort(b, c.SBCSide)
	b = appendText(b, c.SBCContact)
	b = appendText(b, c.SBCAllow)
	b = appendBool(b, c.Truncated)
	b = appendTextArray(b, c.UserAgents)
	refers := []byte("[]")
	if len(c.Refers) > 0 {
		if j, err := jsonb(refersJSON(c.Refers)); err == nil {
			refers = j
		}
	}
	b = appendJSONB(b, refers)
	if ingest != 0 {
		b = appendInt8(b, ingest)
	}
	return b
}

// messageSum is the SHA-256 of what makes a stored SIP message the same
// one: sbc, time, source, destination and raw text, each followed by a
// NUL. Its first 16 bytes are the message's id (sip_messages.id, a uuid);
// before schema version 9 the id was all 32 bytes in hex. buf is scratch
// space, returned for reuse.
func messageSum(buf []byte, sbc string, t time.Time, m *sip.Message) ([sha256.Size]byte, []byte) {
	buf = append(buf[:0], sbc...)
	buf = append(buf, 0)
	buf = t.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, 0)
	for _, a := range []netip.AddrPort{m.Src, m.Dst} {
		if a.IsValid() {
			buf = a.AppendTo(buf)
		} else {
			buf = append(buf, "invalid AddrPort"...) // as AddrPort.String
		}
		buf = append(buf, 0)
	}
	buf = append(buf, m.Raw...)
	buf = append(buf, 0)
	return sha256.Sum256(buf), buf
}

// msgRef is a SIP message waiting to be copied.
type msgRef struct {
	t      time.Time
	sum    [sha256.Size]byte // messageSum; the id is its first 16 bytes
	callID string
	m      *sip.Message
}

// appendMessageRow encodes r as a binary COPY row of messageCols.
func appendMessageRow(b []byte, sbc string, r *msgRef) []byte {
	m := r.m
	cid := m.CallID
	if cid == "" {
		cid = r.callID
	}
	b = appendTuple(b, len(messageCols))
	b = appendTimestamptz(b, r.t)
	b = appendUUID(b, [16]byte(r.sum[:16]))
	b = appendText(b, sbc)
	b = appendInt8(b, int64(m.Frame))
	b = appendAddrPort(b, m.Src)
	b = appendAddrPort(b, m.Dst)
	b = appendText(b, m.Transport)
	b = appendText(b, m.Origin)
	b = appendBool(b, m.IsRequest)
	b = appendText(b, m.Method)
	b = appendInt4(b, m.StatusCode)
	b = appendText(b, m.Reason)
	b = appendText(b, m.RequestURI)
	b = appendText(b, cid)
	b = appendInt8(b, int64(m.CSeq))
	b = appendText(b, m.CSeqMethod)
	b = appendText(b, m.FromUser)
	b = appendText(b, m.ToUser)
	b = appendText(b, m.FromTag)
	b = appendText(b, m.ToTag)
	b = appendText(b, m.Branch)
	b = appendText(b, m.Contact)
	b = appendText(b, m.UserAgent)
	b = appendText(b, m.ReferTo)
	b = appendText(b, m.ReasonHdr)
	b = appendInt4(b, m.Q850Cause)
	return appendTextBytes(b, m.Raw)
}

func connRow(sbc string, t time.Time, id, connID string, chain []string, c *tlsaudit.Conn) []any {
	alert := ""
	for _, a := range c.Alerts {
		if a.Encrypted {
			alert = "encrypted"
		} else {
			alert = a.Name
			if alert == "" {
				alert = fmt.Sprintf("alert %d", a.Description)
			}
		}
		break
	}
	alerts, err := jsonb(c.Alerts)
	if err != nil || c.Alerts == nil {
		alerts = []byte("[]")
	}
	var check any
	fp, subject, issuer := "", "", ""
	if leaf := c.Leaf(); leaf != nil {
		fp, subject, issuer = Fingerprint(leaf), leaf.Subject.String(), leaf.Issuer.String()
	}
	if c.Check != nil {
		if b, err := jsonb(c.Check); err == nil {
			check = json.RawMessage(b)
		}
		if c.Check.Fingerprint != "" {
			fp = strings.ToLower(c.Check.Fingerprint)
		}
		if c.Check.Subject != "" {
			subject, issuer = c.Check.Subject, c.Check.Issuer
		}
	}
	if chain == nil {
		chain = []string{}
	}
	an := make([]string, 0, len(c.Anomalies))
	for _, a := range c.Anomalies {
		an = append(an, clean(a))
	}
	ja3, ja4 := "", ""
	if c.Hello != nil {
		ja3, ja4 = c.Hello.JA3, c.Hello.JA4
	}
	return []any{t.UTC(), id, sbc, clean(connID), apString(c.Client), apString(c.Server), clean(c.SNI),
		c.Version, c.Cipher, c.Outcome, clean(alert), c.ClosedBy, float64(c.Duration) / float64(time.Millisecond),
		c.FromMicrosoft, c.ToMicrosoft, c.Established, c.AppData, c.CertEncrypted, c.CertRequested, fp, chain,
		clean(subject), clean(issuer), clean(ja3), clean(ja4), int64(c.BytesC2S), int64(c.BytesS2C),
		optTime(c.LastSeen), json.RawMessage(alerts), check, an}
}

func certRow(fp string, c *x509.Certificate) []any {
	sans := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		sans = append(sans, ip.String())
	}
	for _, u := range c.URIs {
		sans = append(sans, u.String())
	}
	// Self-signed: issued by itself and signed by its own key (CheckSignatureFrom
	// would also demand that it be a CA, which default SBC certificates are not).
	selfSigned := string(c.RawSubject) == string(c.RawIssuer) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
	return []any{fp, c.Raw, clean(c.Subject.String()), clean(c.Issuer.String()), sans,
		c.NotBefore.UTC(), c.NotAfter.UTC(), selfSigned}
}

// Fingerprint is the lower-case hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

// FindingID is the store-wide id of a finding: 32 hex digits of a SHA-256
// over what makes it the same finding.
// StoredFindingID is the id the store gives finding f saved under sbc
// (f.SBC when set). The stable key (finding.KeyOf) names a finding
// whatever its summary, so a finding the engine updates after it was
// first saved keeps its row; findings without one (audits, polls) are
// named by their summary.
func StoredFindingID(sbc string, f *finding.Finding) string {
	if f.SBC != "" {
		sbc = f.SBC
	}
	ident := f.Summary
	if f.Key != "" {
		ident = f.Key
	}
	if f.Rule == finding.TLSCertInconsistent && f.Key != "" {
		// Its time and connection name the earliest connection seen so
		// far and move when an earlier one ends later (finding.KeyOf):
		// the id leaves them out, and a later version with an earlier
		// time moves the row (insertFindings).
		return FindingID(sbc, f.Rule, "", "", time.Time{}, ident)
	}
	return FindingID(sbc, f.Rule, f.CallID, f.Connection, f.Time, ident)
}

// FindingID hashes what names a stored finding.
func FindingID(sbc, rule, callID, connection string, t time.Time, ident string) string {
	return hashHex(sbc, rule, callID, connection, t.UTC().Format(time.RFC3339Nano), ident)[:32]
}

func hashHex(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func optTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

func apString(ap interface {
	IsValid() bool
	String() string
}) string {
	if !ap.IsValid() {
		return ""
	}
	return ap.String()
}

// clean makes s storable as Postgres text: valid UTF-8, no NUL bytes.
func clean(s string) string {
	if utf8.ValidString(s) && !strings.Contains(s, "\x00") {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// saveBatch writes b in one transaction.
func (s *Store) saveBatch(ctx context.Context, sbc, source string, stats []byte, b *batch) (SaveResult, error) {
	var res SaveResult
	// Partitions first, outside the data transaction (DDL takes its own
	// lock; a partition that exists is harmless if the save fails).
	for _, p := range []struct {
		table string
		ts    []time.Time
	}{{"sip_messages", b.msgTimes}, {"tls_connections", b.connTimes}, {"findings", b.findingTimes}, {"packets", b.packetTimes}} {
		if err := EnsurePartitions(ctx, s.pool, p.table, p.ts); err != nil {
			return res, err
		}
	}
	digest := b.digest()
	err := retryTx(ctx, s.pool, func(tx pgx.Tx) error {
		res = SaveResult{}
		// The rows every save updates (the SBC's last_seen, the days
		// stored into) are written last, just before the commit, so that
		// saves of other batches run side by side and wait for each
		// other only there; the SBC's row must exist before its ingest.
		if _, err := tx.Exec(ctx, `insert into sbcs (name) values ($1) on conflict do nothing`, clean(sbc)); err != nil {
			return fmt.Errorf("sbc: %w", err)
		}
		err := tx.QueryRow(ctx, `
with ins as (
  insert into ingests (sbc, source, content_sha256, stats) values ($1, $2, $3, $4)
  on conflict (sbc, source, content_sha256) do nothing returning id)
select id from ins union all
select id from ingests where sbc = $1 and source = $2 and content_sha256 = $3
limit 1`, sbc, clean(source), digest, json.RawMessage(stats)).Scan(&res.IngestID)
		if errors.Is(err, pgx.ErrNoRows) {
			// A concurrent save committed the same ingest after this
			// statement's snapshot: a new statement sees it.
			err = tx.QueryRow(ctx, `select id from ingests where sbc = $1 and source = $2 and content_sha256 = $3`,
				sbc, clean(source), digest).Scan(&res.IngestID)
		}
		if err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		if !b.empty() {
			if err := saveRows(ctx, tx, sbc, b, &res); err != nil {
				return err
			}
		}
		if err := UpsertSBC(ctx, tx, SBC{Name: sbc}); err != nil {
			return err
		}
		return noteStored(ctx, tx, map[string][]time.Time{"sip_messages": b.msgTimes,
			"tls_connections": b.connTimes, "findings": b.findingTimes, "packets": b.packetTimes})
	})
	return res, err
}

// saveRows writes the rows of b in tx, adding to res.
func saveRows(ctx context.Context, tx pgx.Tx, sbc string, b *batch, res *SaveResult) error {
	var err error
	if res.Calls, err = saveCalls(ctx, tx, sbc, b.calls, res.IngestID); err != nil {
		return err
	}
	if res.Messages, err = saveMessages(ctx, tx, sbc, b.messages); err != nil {
		return err
	}
	if res.Certificates, err = copyInsert(ctx, tx, "certificates", certCols, b.certs, 0, "on conflict do nothing"); err != nil {
		return err
	}
	if res.Connections, err = copyInsert(ctx, tx, "tls_connections", connCols, b.conns, res.IngestID, "on conflict do nothing"); err != nil {
		return err
	}
	if res.Findings, res.Problems, err = insertFindings(ctx, tx, b.findings, res.IngestID); err != nil {
		return err
	}
	if res.Packets, err = copyInsert(ctx, tx, "packets", packetCols, b.packets, 0, "on conflict do nothing"); err != nil {
		return err
	}
	return nil
}

// callUpsert is how a call already stored takes a later view of itself
// (more messages, an end): in place, and only when the new view is later.
const callUpsert = `
on conflict (sbc, call_id, start_time) do update set
  kind = excluded.kind, from_number = excluded.from_number, to_number = excluded.to_number,
  from_digits = excluded.from_digits, to_digits = excluded.to_digits, from_uri = excluded.from_uri,
  to_uri = excluded.to_uri, request_uri = excluded.request_uri, pai = excluded.pai,
  caller = excluded.caller, callee = excluded.callee, answer_time = excluded.answer_time,
  end_time = excluded.end_time, last_time = excluded.last_time, answered = excluded.answered,
  final_status = excluded.final_status, ended_by = excluded.ended_by, end_reason = excluded.end_reason,
  bye_reason = excluded.bye_reason, q850 = excluded.q850, reason_text = excluded.reason_text,
  refer_count = excluded.refer_count, invites = excluded.invites, message_count = excluded.message_count,
  microsoft = excluded.microsoft, microsoft_addr = excluded.microsoft_addr, sbc_side = excluded.sbc_side,
  sbc_contact = excluded.sbc_contact, sbc_allow = excluded.sbc_allow, truncated = excluded.truncated,
  user_agents = excluded.user_agents, refers = excluded.refers, stored_at = now()
where excluded.last_time > calls.last_time or (calls.last_time is null and excluded.last_time is not null)`

// saveCalls stores the calls of a batch and returns how many were added
// or updated (binaryCopy with callUpsert).
func saveCalls(ctx context.Context, tx pgx.Tx, sbc string, recs []callRec, ingestID int64) (int64, error) {
	return binaryCopy(ctx, tx, "calls", callCols, len(recs), func(b []byte, i int, ingest int64) []byte {
		return appendCallRow(b, sbc, &recs[i], ingest)
	}, ingestID, callUpsert)
}

// saveMessages stores the SIP messages of a batch and returns how many
// were new (binaryCopy; a message already stored is left as it is).
func saveMessages(ctx context.Context, tx pgx.Tx, sbc string, refs []msgRef) (int64, error) {
	return binaryCopy(ctx, tx, "sip_messages", messageCols, len(refs), func(b []byte, i int, _ int64) []byte {
		return appendMessageRow(b, sbc, &refs[i])
	}, 0, " on conflict do nothing")
}

// binaryCopy stores n rows, each encoded by row in COPY's binary format
// (row i, with ingest when not 0, as ingest_id after cols), and returns
// how many were added or updated. They are copied straight into table (a
// new capture: none is stored yet); when one is (23505), the copy is
// undone and the rows go through a temporary table and an insert with
// conflict instead, which fills ingest_id itself.
func binaryCopy(ctx context.Context, tx pgx.Tx, table string, cols []string, n int, row func(b []byte, i int, ingest int64) []byte, ingestID int64, conflict string) (int64, error) {
	if n == 0 {
		return 0, nil
	}
	copyInto := func(tx pgx.Tx, into string, ingest int64) (int64, error) {
		list := joinCols(cols)
		if ingest != 0 {
			list += ", ingest_id"
		}
		src := newCopyReader(n, func(b []byte, i int) []byte { return row(b, i, ingest) })
		tag, err := tx.Conn().PgConn().CopyFrom(ctx, src, "copy "+into+" ("+list+") from stdin binary")
		return tag.RowsAffected(), err
	}
	added, ok, err := tryCopy(ctx, tx, func(sp pgx.Tx) (int64, error) { return copyInto(sp, table, ingestID) })
	if err != nil || ok {
		if err != nil {
			err = fmt.Errorf("%s: copy: %w", table, err)
		}
		return added, err
	}
	if err := tempTable(ctx, tx, table, cols); err != nil {
		return 0, err
	}
	if _, err := copyInto(tx, "_in_"+table, 0); err != nil {
		return 0, fmt.Errorf("%s: copy: %w", table, err)
	}
	ins, sel := joinCols(cols), joinCols(cols)
	if ingestID != 0 {
		ins += ", ingest_id"
		sel += fmt.Sprintf(", %d::bigint", ingestID)
	}
	tag, err := tx.Exec(ctx, "insert into "+table+" ("+ins+") select "+sel+" from _in_"+table+conflict)
	if err != nil {
		return 0, fmt.Errorf("%s: insert: %w", table, err)
	}
	return tag.RowsAffected(), nil
}

// tryCopy runs copy under a savepoint. ok is false when a row it copied
// is already stored (a unique violation, 23505): nothing of the copy
// remains, and the caller takes the careful path. A concurrent save of
// the same rows makes the copy wait for it, then fail the same way.
func tryCopy(ctx context.Context, tx pgx.Tx, copy func(pgx.Tx) (int64, error)) (n int64, ok bool, err error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return 0, false, err
	}
	n, err = copy(sp)
	if err == nil {
		return n, true, sp.Commit(ctx)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return 0, false, sp.Rollback(ctx)
	}
	return 0, false, err
}

// copyInsert copies rows into a temporary table shaped like table, then
// inserts them with the given conflict clause and returns the rows
// inserted or updated. When ingestID is not 0 it fills ingest_id.
func copyInsert(ctx context.Context, tx pgx.Tx, table string, cols []string, rows [][]any, ingestID int64, conflict string) (int64, error) {
	return copyInsertFrom(ctx, tx, table, cols, len(rows), pgx.CopyFromRows(rows), ingestID, conflict)
}

// copyInsertFrom is copyInsert reading n rows from src.
func copyInsertFrom(ctx context.Context, tx pgx.Tx, table string, cols []string, n int, src pgx.CopyFromSource, ingestID int64, conflict string) (int64, error) {
	if n == 0 {
		return 0, nil
	}
	if err := copyTemp(ctx, tx, table, cols, src); err != nil {
		return 0, err
	}
	tmp, colList := "_in_"+table, joinCols(cols)
	insCols, selCols := colList, colList
	if ingestID != 0 {
		insCols += ", ingest_id"
		selCols += fmt.Sprintf(", %d::bigint", ingestID)
	}
	tag, err := tx.Exec(ctx, fmt.Sprintf("insert into %s (%s) select %s from %s %s", table, insCols, selCols, tmp, conflict))
	if err != nil {
		return 0, fmt.Errorf("%s: insert: %w", table, err)
	}
	return tag.RowsAffected(), nil
}

// copyTemp copies rows into the temporary table _in_<table>, shaped like
// table's cols and emptied first.
func copyTemp(ctx context.Context, tx pgx.Tx, table string, cols []string, src pgx.CopyFromSource) error {
	if err := tempTable(ctx, tx, table, cols); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"_in_" + table}, cols, src); err != nil {
		return fmt.Errorf("%s: copy: %w", table, err)
	}
	return nil
}

// tempTable makes the temporary table _in_<table>, shaped like table's
// cols, dropped at commit, and empty.
func tempTable(ctx context.Context, tx pgx.Tx, table string, cols []string) error {
	tmp := "_in_" + table
	if _, err := tx.Exec(ctx, fmt.Sprintf("create temp table if not exists %s on commit drop as select %s from %s with no data",
		tmp, joinCols(cols), table)); err != nil {
		return fmt.Errorf("%s: temp table: %w", table, err)
	}
	if _, err := tx.Exec(ctx, "truncate "+tmp); err != nil {
		return fmt.Errorf("%s: temp table: %w", table, err)
	}
	return nil
}

func joinCols(cols []string) string { return strings.Join(cols, ", ") }

// joinColsAs is joinCols with each column qualified by alias.
func joinColsAs(alias string, cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = alias + "." + c
	}
	return strings.Join(q, ", ")
}

// retryTx runs fn in a transaction, retrying a few times when Postgres
// aborts it for a deadlock or a serialization failure (two writers saving
// overlapping captures at once).
func retryTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	var err error
	for attempt := range 4 {
		if err = inTx(ctx, pool, fn); err == nil {
			return nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 20 * time.Millisecond):
		}
	}
	return err
}

// callsFromJSON stands in for CallRecords when a report carries only its
// JSON view (for example one read back from `analyze --format json`):
// the calls are stored without messages.
func callsFromJSON(cs []report.CallJSON) []*sip.Call {
	out := make([]*sip.Call, 0, len(cs))
	for _, c := range cs {
		sc := &sip.Call{CallID: c.CallID, Kind: c.Kind, From: c.From, To: c.To, Start: time.Time(c.Start),
			Answered: c.Answered, EndedBy: c.EndedBy, EndReason: c.EndReason, MessageCount: c.Messages,
			Microsoft: c.Microsoft, Q850Cause: c.Q850Cause, FinalStatus: c.FinalStatus}
		if c.Answer != nil {
			sc.Answer = time.Time(*c.Answer)
		}
		if c.End != nil {
			sc.End = time.Time(*c.End)
			sc.Last = time.Time(*c.End)
		}
		for range c.ReferCount {
			sc.Refers = append(sc.Refers, &sip.Refer{})
		}
		out = append(out, sc)
	}
	return out
}

// connsFromJSON stands in for Conns when a report carries only its JSON
// view: no chain, the certificate facts go into Check.
func connsFromJSON(ts []report.TLSJSON) []*tlsaudit.Conn {
	out := make([]*tlsaudit.Conn, 0, len(ts))
	for _, t := range ts {
		cl, _ := netip.ParseAddrPort(t.Client)
		sv, _ := netip.ParseAddrPort(t.Server)
		c := &tlsaudit.Conn{ID: t.Client + "->" + t.Server, Client: cl, Server: sv, FirstSeen: time.Time(t.Start),
			SNI: t.SNI, Version: t.Version, Cipher: t.Cipher, Outcome: t.Outcome, ClosedBy: t.ClosedBy,
			Duration: time.Duration(t.DurationMS * float64(time.Millisecond)), FromMicrosoft: t.FromMicrosoft,
			AppData: t.AppData, CertEncrypted: t.CertEncrypted, CertRequested: t.CertRequested,
			BytesC2S: t.BytesC2S, BytesS2C: t.BytesS2C, Established: t.Outcome == tlsaudit.OutcomeEstablished}
		if t.Alert != "" {
			c.Alerts = []tlsaudit.Alert{{Name: t.Alert}}
		}
		if t.CertFingerprint != "" || t.CertSubject != "" {
			c.Check = &certcheck.Result{Subject: t.CertSubject, Issuer: t.CertIssuer, SANs: t.CertSANs,
				Fingerprint: t.CertFingerprint}
		}
		if t.JA3 != "" || t.JA4 != "" {
			c.Hello = &tlsaudit.ClientHello{JA3: t.JA3, JA4: t.JA4}
		}
		out = append(out, c)
	}
	return out
}

// Refer is how a call's REFERs are stored and served (calls.refers).
type Refer struct {
	Time           time.Time     `json:"time"`
	Src            string        `json:"src"`
	Dst            string        `json:"dst"`
	CSeq           uint32        `json:"cseq"`
	ReferTo        string        `json:"refer_to"`
	ReferredBy     string        `json:"referred_by,omitempty"`
	Replaces       string        `json:"replaces,omitempty"`
	Response       int           `json:"response"`
	ResponseReason string        `json:"response_reason,omitempty"`
	ResponseTime   *time.Time    `json:"response_time,omitempty"`
	Notifies       []ReferNotify `json:"notifies"`
	NewCallID      string        `json:"new_call_id,omitempty"`
	NewInviteTime  *time.Time    `json:"new_invite_time,omitempty"`
	NewInviteURI   string        `json:"new_invite_uri,omitempty"`
}

// ReferNotify is one NOTIFY after a REFER.
type ReferNotify struct {
	Time     time.Time `json:"time"`
	Src      string    `json:"src"`
	Dst      string    `json:"dst"`
	SipFrag  string    `json:"sipfrag"`
	SubState string    `json:"subscription_state,omitempty"`
}

func refersJSON(rs []*sip.Refer) []Refer {
	out := make([]Refer, 0, len(rs))
	tp := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		u := t.UTC()
		return &u
	}
	for _, r := range rs {
		if r == nil {
			continue
		}
		x := Refer{Time: r.Time.UTC(), Src: apString(r.Src), Dst: apString(r.Dst), CSeq: r.CSeq,
			ReferTo: clean(r.ReferTo), ReferredBy: clean(r.ReferredBy), Replaces: clean(r.Replaces),
			Response: r.Response, ResponseReason: clean(r.ResponseReason), ResponseTime: tp(r.ResponseTime),
			Notifies: []ReferNotify{}, NewCallID: clean(r.NewCallID), NewInviteTime: tp(r.NewInviteTime),
			NewInviteURI: clean(r.NewInviteURI)}
		for _, n := range r.Notifies {
			x.Notifies = append(x.Notifies, ReferNotify{Time: n.Time.UTC(), Src: apString(n.Src), Dst: apString(n.Dst),
				SipFrag: clean(n.SipFrag), SubState: clean(n.SubState)})
		}
		out = append(out, x)
	}
	return out
}
