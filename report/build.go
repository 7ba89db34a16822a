package report

import (
	"sort"
	"strconv"
	"strings"
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
		Truncated:   c.Truncated,
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
		UID:           c.UID(),
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

// Renumber gives findings the IDs "F1".."Fn" in the order given and
// rewrites the references between them (Cites, evidence "explained_by"
// and "possibly_explained_by") to the new IDs.
func Renumber(fs []*finding.Finding) {
	ids := make(map[string]string, len(fs))
	for i, f := range fs {
		n := "F" + strconv.Itoa(i+1)
		if f.ID != "" {
			ids[f.ID] = n
		}
		f.ID = n
	}
	for _, f := range fs {
		for i, c := range f.Cites {
			if n, ok := ids[c]; ok {
				f.Cites[i] = n
			}
		}
		sort.SliceStable(f.Cites, func(i, j int) bool { return idLess(f.Cites[i], f.Cites[j]) })
		for _, k := range []string{"explained_by", "possibly_explained_by"} {
			if v, ok := f.Evidence[k].(string); ok {
				if n, ok := ids[v]; ok {
					f.Evidence[k] = n
					// transfer_missing names its cause: "… F9 (refer_delivery_failed) says why."
					f.Summary = strings.Replace(f.Summary, " "+v+" (", " "+n+" (", 1)
				}
			}
		}
	}
}

// idLess orders "F2" before "F10".
func idLess(x, y string) bool {
	nx, ex := strconv.Atoi(strings.TrimPrefix(x, "F"))
	ny, ey := strconv.Atoi(strings.TrimPrefix(y, "F"))
	if ex == nil && ey == nil {
		return nx < ny
	}
	return x < y
}
