package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// certRow is one line of /certificates: a certificate one listener
// served for one SNI.
type certRow struct {
	store.ServedCert
	CN       string
	DaysLeft *int
	Verdict  string
	Class    string // "ok", "warn" or "crit"
	// Inconsistent: the listener served other certificates for the SNI.
	Inconsistent bool
	// Listener is where the certificate was served, "server (SNI)".
	Listener string
}

type certsData struct {
	Rows         []certRow
	Inconsistent int
	Window       string
	Error        string
}

// certWindows are the spans the page can look back over.
var certWindows = map[string]time.Duration{"1d": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour, "all": 0}

func (p *Pages) handleCertificates(w http.ResponseWriter, r *http.Request, _ string) {
	d := certsData{Window: r.URL.Query().Get("window")}
	for k := range r.URL.Query() {
		if k != "window" {
			p.renderError(w, http.StatusBadRequest, fmt.Sprintf("Unknown query parameter %q (known: window).", k))
			return
		}
	}
	if d.Window == "" {
		d.Window = "7d" // a week of connections: every listener, a bounded scan
	}
	span, ok := certWindows[d.Window]
	if !ok {
		p.renderError(w, http.StatusBadRequest, fmt.Sprintf("window %q: use 1d, 7d, 30d or all.", d.Window))
		return
	}
	var from time.Time
	if span > 0 {
		from = time.Now().Add(-span)
	}
	rows, err := store.ServedCertificates(r.Context(), p.opts.Store.Pool(), from, time.Time{}, 0)
	if err != nil {
		p.log.Error("certificates", "err", err)
		p.renderError(w, http.StatusServiceUnavailable, "The certificates could not be read: the database does not answer.")
		return
	}
	now := time.Now()
	for _, sc := range rows {
		row := certRow{ServedCert: sc, CN: cnOf(sc.Subject), Inconsistent: sc.Variants > 1, Listener: sc.Server}
		if sc.SNI != "" {
			row.Listener += " (SNI " + sc.SNI + ")"
		}
		if sc.NotAfter != nil {
			n := daysLeft(*sc.NotAfter, now)
			row.DaysLeft = &n
		}
		row.Verdict, row.Class = certVerdict(sc, row.DaysLeft)
		if row.Inconsistent {
			d.Inconsistent++
		}
		d.Rows = append(d.Rows, row)
	}
	p.render(w, http.StatusOK, "certificates.html", page{Title: "Certificates", Authed: true, Data: d})
}

// daysLeft is the whole days from now until t (negative once past).
func daysLeft(t, now time.Time) int {
	d := t.Sub(now)
	if d < 0 {
		return -int((-d).Hours() / 24)
	}
	return int(d.Hours() / 24)
}

// certVerdict says in a few words whether Microsoft would accept the
// certificate, from the last check of a connection that got it.
func certVerdict(sc store.ServedCert, days *int) (string, string) {
	var c certcheck.Result
	if len(sc.Check) == 0 || json.Unmarshal(sc.Check, &c) != nil {
		return "not checked", "warn"
	}
	var bad []string
	switch {
	case c.Expired || days != nil && *days < 0:
		bad = append(bad, "expired")
	case c.NotYetValid:
		bad = append(bad, "not yet valid")
	case !c.Trusted && c.SelfSigned:
		bad = append(bad, "untrusted (self-signed)")
	case !c.Trusted:
		bad = append(bad, "untrusted")
	}
	if c.NameChecked && !c.NameOK {
		bad = append(bad, "does not cover "+c.Name)
	}
	if c.NoServerAuth {
		bad = append(bad, "no Server Authentication EKU")
	}
	if len(bad) > 0 {
		return strings.Join(bad, "; "), "crit"
	}
	if c.Expiring || days != nil && *days < 30 {
		return "trusted; expires soon", "warn"
	}
	if len(c.Weak) > 0 {
		return "trusted; weak: " + strings.Join(c.Weak, ", "), "warn"
	}
	if c.NameChecked {
		return "trusted; covers " + c.Name, "ok"
	}
	return "trusted", "ok"
}

// cnOf is the CN of a subject, else the subject.
func cnOf(subject string) string {
	for part := range strings.SplitSeq(subject, ",") {
		if cn, ok := strings.CutPrefix(strings.TrimSpace(part), "CN="); ok {
			return cn
		}
	}
	return subject
}
