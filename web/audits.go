package web

import (
	"html/template"
	"net/http"
	"sort"
	"time"

	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/tlsaudit/audit"
)

// auditTarget is one audited target on the audits page.
type auditTarget struct {
	Target   string
	SBC      string
	Last     store.AuditRecord
	Audits   int
	Failed   int
	Chart    template.HTML
	Legend   []legendItem
	Spikes   []spike
	Attempts int
	// History is the newest audits, newest first.
	History []store.AuditRecord
}

type auditsData struct {
	Targets []auditTarget
	Days    int
}

// auditDays is how far back the audits page looks.
const auditDays = 30

func (p *Pages) handleAudits(w http.ResponseWriter, r *http.Request, _ string) {
	if len(r.URL.Query()) > 0 {
		p.renderError(w, http.StatusBadRequest, "The audits page takes no query parameters.")
		return
	}
	ctx, db := r.Context(), p.opts.Store.Pool()
	from := time.Now().Add(-auditDays * 24 * time.Hour)
	recs, err := store.ListAudits(ctx, db, store.AuditQuery{Limit: store.MaxLimit})
	if err != nil {
		p.log.Error("audits", "err", err)
		p.renderError(w, http.StatusServiceUnavailable, "The audits could not be read: the database does not answer.")
		return
	}
	atts, err := store.AuditAttempts(ctx, db, from, time.Time{}, 0)
	if err != nil {
		p.log.Error("audit attempts", "err", err)
		p.renderError(w, http.StatusServiceUnavailable, "The audits could not be read: the database does not answer.")
		return
	}
	// The target of each audit, from its attempts (else its own).
	targetOf := map[int64]string{}
	for _, a := range atts {
		targetOf[a.AuditID] = a.Target
	}
	byTarget := map[string]*auditTarget{}
	var order []string
	for _, a := range recs.Items { // newest first
		key := targetOf[a.ID]
		if key == "" {
			key = a.Target
		}
		if key == "" {
			key = a.SBC
		}
		t := byTarget[key]
		if t == nil {
			t = &auditTarget{Target: key, SBC: a.SBC, Last: a}
			byTarget[key] = t
			order = append(order, key)
		}
		t.Audits++
		if !a.OK {
			t.Failed++
		}
		if len(t.History) < 10 {
			t.History = append(t.History, a)
		}
	}
	// Handshake time per resolved address, of the expected-name probe.
	series := map[string]map[string]*chartSeries{}
	for _, a := range atts {
		if a.Probe != "" && a.Probe != audit.ProbeSNI {
			continue
		}
		if series[a.Target] == nil {
			series[a.Target] = map[string]*chartSeries{}
		}
		s := series[a.Target][a.Address]
		if s == nil {
			s = &chartSeries{Name: a.Address}
			series[a.Target][a.Address] = s
		}
		s.Points = append(s.Points, chartPoint{T: a.Time, V: a.HandshakeMS, Failed: !a.OK, Note: a.Error})
	}
	d := auditsData{Days: auditDays}
	for _, key := range order {
		t := byTarget[key]
		var ss []chartSeries
		for _, s := range series[key] {
			ss = append(ss, *s)
			t.Attempts += len(s.Points)
		}
		sort.Slice(ss, func(i, j int) bool { return ss[i].Name < ss[j].Name })
		for _, s := range ss {
			t.Spikes = append(t.Spikes, findSpikes(s, 50)...)
		}
		t.Chart = svgChart("TLS handshake time per address of "+key, "ms", ss, t.Spikes)
		t.Legend = legend(ss)
		d.Targets = append(d.Targets, *t)
	}
	p.render(w, http.StatusOK, "audits.html", page{Title: "Audits", Authed: true, Data: d})
}
