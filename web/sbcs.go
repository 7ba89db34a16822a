package web

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/sbcwatch/sbcwatch/store"
)

// sbcChart is one counter chart of an SBC.
type sbcChart struct {
	Title, Unit string
	Chart       template.HTML
	Spikes      []spike
	Samples     int
}

// sbcRow is one SBC on the SBCs page.
type sbcRow struct {
	store.SBC
	// PollUp is the last poll_up sample: nil when never polled.
	PollUp   *store.CounterSample
	Charts   []sbcChart
	Findings []store.Finding
	// Missing names the charts without a sample in the window.
	Missing []string
}

type sbcsData struct {
	SBCs   []sbcRow
	Window string
	// Span is Window in words ("day", "7 days").
	Span string
}

// sbcCounter is a chart of the SBCs page: the first counter of names
// that has samples; delta plots the per-poll increase of a total.
type sbcCounter struct {
	title, unit string
	names       []string
	delta       bool
	minSpike    float64
}

var sbcCounters = []sbcCounter{
	{"Short calls per poll", "calls", []string{"short_calls"}, true, 3},
	{"NER", "%", []string{"ner_interval", "ner"}, false, 5},
	{"ACD", "s", []string{"average_call_duration_interval_s", "average_call_duration_s"}, false, 30},
}

// maxSamplesRead bounds the samples read per counter; maxChartPoints
// the points drawn (the highest of each time bucket, so spikes stay).
const (
	maxSamplesRead = 20000
	maxChartPoints = 240
)

func (p *Pages) handleSBCs(w http.ResponseWriter, r *http.Request, _ string) {
	d := sbcsData{Window: r.URL.Query().Get("window")}
	for k := range r.URL.Query() {
		if k != "window" {
			p.renderError(w, http.StatusBadRequest, fmt.Sprintf("Unknown query parameter %q (known: window).", k))
			return
		}
	}
	if d.Window == "" {
		d.Window = "1d"
	}
	span, ok := certWindows[d.Window]
	if !ok || span == 0 {
		p.renderError(w, http.StatusBadRequest, fmt.Sprintf("window %q: use 1d, 7d or 30d.", d.Window))
		return
	}
	ctx, db := r.Context(), p.opts.Store.Pool()
	sbcs, err := store.ListSBCs(ctx, db)
	if err != nil {
		p.log.Error("sbcs", "err", err)
		p.renderError(w, http.StatusServiceUnavailable, "The SBCs could not be read: the database does not answer.")
		return
	}
	d.Span = map[string]string{"1d": "day", "7d": "7 days", "30d": "30 days"}[d.Window]
	from := time.Now().Add(-span)
	for _, s := range sbcs {
		row := sbcRow{SBC: s}
		up, err := counterSeries(ctx, db, s.Name, "poll_up", from)
		if err != nil {
			p.log.Error("sbcs", "err", err)
			p.renderError(w, http.StatusServiceUnavailable, "The counters could not be read: the database does not answer.")
			return
		}
		if len(up) > 0 {
			row.PollUp = &up[len(up)-1]
		}
		for _, c := range sbcCounters {
			var samples []store.CounterSample
			for _, name := range c.names {
				if samples, err = counterSeries(ctx, db, s.Name, name, from); err != nil || len(samples) > 0 {
					break
				}
			}
			if err != nil {
				p.log.Error("sbcs", "err", err)
				p.renderError(w, http.StatusServiceUnavailable, "The counters could not be read: the database does not answer.")
				return
			}
			if len(samples) == 0 {
				row.Missing = append(row.Missing, c.title)
				continue
			}
			cs := chartSeries{Name: c.title}
			for _, smp := range samples {
				v := smp.Value
				if c.delta {
					if smp.Delta == nil {
						continue
					}
					v = *smp.Delta
				}
				cs.Points = append(cs.Points, chartPoint{T: smp.Time, V: v})
			}
			spikes := findSpikes(cs, c.minSpike)
			cs.Points = downsample(cs.Points, maxChartPoints)
			row.Charts = append(row.Charts, sbcChart{Title: c.title, Unit: c.unit, Samples: len(samples), Spikes: spikes,
				Chart: svgChart(c.title+" of "+s.Name, c.unit, []chartSeries{cs}, spikes)})
		}
		fs, err := store.ListFindings(ctx, db, store.FindingQuery{SBC: s.Name, From: from, Limit: 10})
		if err != nil {
			p.log.Warn("sbcs: findings", "err", err)
		}
		for _, f := range fs.Items {
			if f.CallID == "" {
				row.Findings = append(row.Findings, f)
			}
		}
		d.SBCs = append(d.SBCs, row)
	}
	p.render(w, http.StatusOK, "sbcs.html", page{Title: "SBCs", Authed: true, Data: d})
}

// counterSeries reads an SBC's global series of counter since from,
// oldest first, at most maxSamplesRead samples.
func counterSeries(ctx context.Context, db store.DBTX, sbc, counter string, from time.Time) ([]store.CounterSample, error) {
	q := store.CounterQuery{SBC: sbc, Counter: counter, Scope: "global", From: from, Limit: store.MaxLimit}
	var out []store.CounterSample
	for len(out) < maxSamplesRead {
		pg, err := store.ListCounterSamples(ctx, db, q)
		if err != nil {
			return nil, err
		}
		out = append(out, pg.Items...)
		if pg.NextCursor == "" {
			break
		}
		q.Cursor = pg.NextCursor
	}
	return out, nil
}

// downsample keeps at most n points: the highest of each of n equal
// time buckets.
func downsample(pts []chartPoint, n int) []chartPoint {
	if len(pts) <= n || n < 2 {
		return pts
	}
	t0, t1 := pts[0].T, pts[len(pts)-1].T
	span := t1.Sub(t0)
	if span <= 0 {
		return pts[:n]
	}
	out := make([]chartPoint, 0, n)
	bucket := -1
	for _, p := range pts {
		b := min(int(float64(p.T.Sub(t0))/float64(span)*float64(n)), n-1)
		if b != bucket {
			out = append(out, p)
			bucket = b
			continue
		}
		if last := &out[len(out)-1]; p.V > last.V {
			*last = p
		}
	}
	return out
}
