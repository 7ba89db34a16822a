package store

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
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

	"github.com/sbcwatch/sbcwatch/config"
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
	calls                             [][]any
	messages                          []msgRef // rows are built while copying, so raw text is not duplicated up front
	conns                             [][]any
	certs                             [][]any
	findings                          [][]any
	packets                           [][]any
	msgTimes, connTimes, findingTimes []time.Time
	packetTimes                       []time.Time
	keys                              []string // content identity, for the ingest digest
}

func (b *batch) empty() bool {
	return len(b.calls)+len(b.messages)+len(b.conns)+len(b.findings)+len(b.packets) == 0
}

func (b *batch) digest() string {
	k := slices.Clone(b.keys)
	slices.Sort(k)
	h := sha256.New()
	for _, s := range k {
		h.Write([]byte(s))
		h.Write([]byte{0})
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
	seenMsg := map[string]bool{}
	for _, c := range calls {
		if c == nil || c.CallID == "" {
			continue
		}
		start := c.Start
		if start.IsZero() {
			start = base
		}
		key := c.CallID + "\x00" + start.UTC().Format(time.RFC3339Nano)
		row := callRow(sbc, c, start)
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
			id := messageID(sbc, t, m)
			if seenMsg[id] {
				continue
			}
			seenMsg[id] = true
			b.messages = append(b.messages, msgRef{t: t, id: id, callID: c.CallID, m: m})
			b.msgTimes = append(b.msgTimes, t)
			b.keys = append(b.keys, "m"+id)
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

func callRow(sbc string, c *sip.Call, start time.Time) []any {
	refers, err := jsonb(refersJSON(c.Refers))
	if err != nil {
		refers = []byte("[]")
	}
	ua := make([]string, 0, len(c.UserAgents))
	for _, u := range c.UserAgents {
		ua = append(ua, clean(u))
	}
	last := c.Last
	if last.IsZero() {
		last = c.End
	}
	ms := ""
	if c.MicrosoftAddr.IsValid() {
		ms = c.MicrosoftAddr.String()
	}
	return []any{sbc, clean(c.CallID), clean(c.Kind), clean(c.From), clean(c.To),
		config.Digits(c.From), config.Digits(c.To), clean(c.FromURI), clean(c.ToURI), clean(c.RequestURI),
		clean(c.PAI), apString(c.Caller), apString(c.Callee), start.UTC(), optTime(c.Answer), optTime(c.End),
		optTime(last), c.Answered, c.FinalStatus, clean(c.EndedBy), clean(c.EndReason), clean(c.ByeReason),
		c.Q850Cause, clean(c.ReasonText), len(c.Refers), c.Invites, c.MessageCount, c.Microsoft, ms,
		apString(c.SBCSide), clean(c.SBCContact), clean(c.SBCAllow), c.Truncated, ua, json.RawMessage(refers)}
}

func messageID(sbc string, t time.Time, m *sip.Message) string {
	h := sha256.New()
	for _, p := range []string{sbc, t.UTC().Format(time.RFC3339Nano), m.Src.String(), m.Dst.String()} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	h.Write(m.Raw)
	h.Write([]byte{0})
	return hex.EncodeToString(h.Sum(nil))
}

// msgRef is a SIP message waiting to be copied.
type msgRef struct {
	t      time.Time
	id     string
	callID string
	m      *sip.Message
}

// msgSource feeds messages to CopyFrom one row at a time.
type msgSource struct {
	sbc  string
	refs []msgRef
	i    int
}

func (s *msgSource) Next() bool { s.i++; return s.i <= len(s.refs) }
func (s *msgSource) Values() ([]any, error) {
	r := s.refs[s.i-1]
	return messageRow(s.sbc, r.t, r.id, r.callID, r.m), nil
}
func (s *msgSource) Err() error { return nil }

func messageRow(sbc string, t time.Time, id, callID string, m *sip.Message) []any {
	cid := m.CallID
	if cid == "" {
		cid = callID
	}
	return []any{t.UTC(), id, sbc, int64(m.Frame), apString(m.Src), apString(m.Dst), clean(m.Transport),
		clean(m.Origin), m.IsRequest, clean(m.Method), m.StatusCode, clean(m.Reason), clean(m.RequestURI),
		clean(cid), int64(m.CSeq), clean(m.CSeqMethod), clean(m.FromUser), clean(m.ToUser), clean(m.FromTag),
		clean(m.ToTag), clean(m.Branch), clean(m.Contact), clean(m.UserAgent), clean(m.ReferTo),
		clean(m.ReasonHdr), m.Q850Cause, clean(string(m.Raw))}
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

// messageChunk is how many SIP messages go through the temporary table at
// a time.
const messageChunk = 20000

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
	err := retryTx(ctx, s.pool, func(tx pgx.Tx) error {
		res = SaveResult{}
		if err := UpsertSBC(ctx, tx, SBC{Name: sbc}); err != nil {
			return err
		}
		if err := noteStored(ctx, tx, map[string][]time.Time{"sip_messages": b.msgTimes,
			"tls_connections": b.connTimes, "findings": b.findingTimes, "packets": b.packetTimes}); err != nil {
			return err
		}
		digest := b.digest()
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
		if b.empty() {
			return nil
		}
		if res.Calls, err = copyInsert(ctx, tx, "calls", callCols, b.calls, res.IngestID, `
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
where excluded.last_time > calls.last_time or (calls.last_time is null and excluded.last_time is not null)`); err != nil {
			return err
		}
		// Messages go in chunks so the temporary table stays small; when
		// no message is stored yet in their time range (a new capture),
		// nothing can conflict and they are copied straight in: half the
		// writes. A concurrent save of the same range makes one of the two
		// fail on the primary key and retry the careful way.
		direct, err := noMessagesBetween(ctx, tx, b.msgTimes)
		if err != nil {
			return err
		}
		for i := 0; i < len(b.messages); i += messageChunk {
			chunk := b.messages[i:min(i+messageChunk, len(b.messages))]
			src := &msgSource{sbc: sbc, refs: chunk}
			var n int64
			if direct {
				n, err = tx.CopyFrom(ctx, pgx.Identifier{"sip_messages"}, messageCols, src)
				if err != nil {
					err = fmt.Errorf("sip_messages: copy: %w", err)
				}
			} else {
				n, err = copyInsertFrom(ctx, tx, "sip_messages", messageCols, len(chunk), src, 0, "on conflict do nothing")
			}
			if err != nil {
				return err
			}
			res.Messages += n
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
	})
	return res, err
}

// noMessagesBetween reports whether no SIP message is stored between the
// earliest and the latest of ts (true for none at all).
func noMessagesBetween(ctx context.Context, tx pgx.Tx, ts []time.Time) (bool, error) {
	if len(ts) == 0 {
		return true, nil
	}
	lo, hi := slices.MinFunc(ts, time.Time.Compare), slices.MaxFunc(ts, time.Time.Compare)
	var none bool
	if err := tx.QueryRow(ctx, `select not exists (select 1 from sip_messages where time >= $1 and time <= $2)`,
		lo, hi).Scan(&none); err != nil {
		return false, fmt.Errorf("sip_messages: probe: %w", err)
	}
	return none, nil
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
	tmp := "_in_" + table
	if _, err := tx.Exec(ctx, fmt.Sprintf("create temp table if not exists %s on commit drop as select %s from %s with no data",
		tmp, joinCols(cols), table)); err != nil {
		return fmt.Errorf("%s: temp table: %w", table, err)
	}
	if _, err := tx.Exec(ctx, "truncate "+tmp); err != nil {
		return fmt.Errorf("%s: temp table: %w", table, err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{tmp}, cols, src); err != nil {
		return fmt.Errorf("%s: copy: %w", table, err)
	}
	return nil
}

func joinCols(cols []string) string { return strings.Join(cols, ", ") }

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
		// 23505: a concurrent save stored messages of the same range
		// between the probe and the direct copy (see saveBatch).
		if !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001" && pgErr.Code != "23505") {
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
