package report

import (
	"sort"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// Build assembles a report from finished records. Findings are kept in
// the order given, with their root-cause references and advice set
// (finding.Fold); calls by start time; TLS connections by first packet.
func Build(calls []*sip.Call, conns []*tlsaudit.Conn, fs []*finding.Finding) *Report {
	r := &Report{
		Calls:       make([]CallJSON, 0, len(calls)),
		TLS:         make([]TLSJSON, 0, len(conns)),
		Findings:    fs,
		CallRecords: calls,
		Conns:       conns,
	}
	if r.Findings == nil {
		r.Findings = []*finding.Finding{}
	}
	finding.Fold(r.Findings) // caused_by, explains and advice

	sort.SliceStable(calls, func(i, j int) bool {
		if !calls[i].Start.Equal(calls[j].Start) {
			return calls[i].Start.Before(calls[j].Start)
		}
		return calls[i].CallID < calls[j].CallID
	})
	sort.SliceStable(conns, func(i, j int) bool {
		if !conns[i].FirstSeen.Equal(conns[j].FirstSeen) {
			return conns[i].FirstSeen.Before(conns[j].FirstSeen)
		}
		return conns[i].ID < conns[j].ID
	})
	for _, c := range calls {
		r.Calls = append(r.Calls, CallView(c))
	}
	for _, c := range conns {
		r.TLS = append(r.TLS, ConnView(c))
	}
	return r
}

// CallView is the JSON contract's view of a call.
func CallView(c *sip.Call) CallJSON {
	v := CallJSON{
		CallID:      c.CallID,
		Kind:        c.Kind,
		From:        c.From,
		To:          c.To,
		Start:       finding.Time(c.Start.UTC()),
		Answered:    c.Answered,
		ReferCount:  len(c.Refers),
		EndedBy:     c.EndedBy,
		EndReason:   c.EndReason,
		Messages:    c.MessageCount,
		Microsoft:   c.Microsoft,
		Q850Cause:   c.Q850Cause,
		FinalStatus: c.FinalStatus,
	}
	if !c.Answer.IsZero() {
		t := finding.Time(c.Answer.UTC())
		v.Answer = &t
	}
	if !c.End.IsZero() {
		t := finding.Time(c.End.UTC())
		v.End = &t
		v.DurationS = roundMS(c.Duration())
	}
	return v
}

// ConnView is the JSON contract's view of a TLS connection.
func ConnView(c *tlsaudit.Conn) TLSJSON {
	v := TLSJSON{
		Client:        c.Client.String(),
		Server:        c.Server.String(),
		SNI:           c.SNI,
		Version:       c.Version,
		Cipher:        c.Cipher,
		CertSANs:      []string{},
		Outcome:       c.Outcome,
		DurationMS:    float64(c.Duration.Microseconds()) / 1000,
		FromMicrosoft: c.FromMicrosoft,
		Start:         finding.Time(c.FirstSeen.UTC()),
		ClosedBy:      c.ClosedBy,
		AppData:       c.AppData,
		CertEncrypted: c.CertEncrypted,
		CertRequested: c.CertRequested,
		BytesC2S:      c.BytesC2S,
		BytesS2C:      c.BytesS2C,
		Warnings:      c.Warnings,
		HelloRetry:    c.HelloRetry,
	}
	if c.Hello != nil {
		v.JA3 = c.Hello.JA3Hash
		v.JA4 = c.Hello.JA4
	}
	if ch := c.Check; ch != nil {
		v.CertSubject = ch.Subject
		v.CertIssuer = ch.Issuer
		if ch.SANs != nil {
			v.CertSANs = ch.SANs
		}
		v.CertFingerprint = ch.Fingerprint
	} else if leaf := c.Leaf(); leaf != nil {
		v.CertSubject = leaf.Subject.String()
		v.CertIssuer = leaf.Issuer.String()
		v.CertSANs = append(v.CertSANs, leaf.DNSNames...)
	}
	// The alert that ended a failed handshake; an established connection's
	// closing alert (close_notify, encrypted) is routine and not shown.
	if n := len(c.Alerts); n > 0 && c.Outcome != tlsaudit.OutcomeEstablished {
		a := c.Alerts[n-1]
		if a.Encrypted {
			v.Alert = "encrypted alert (" + a.From + ")"
		} else {
			v.Alert = a.Name + " (" + a.From + ")"
		}
	}
	return v
}

func roundMS(d time.Duration) float64 {
	return float64(d.Milliseconds()) / 1000
}
