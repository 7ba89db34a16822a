package web

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"slices"
	"strings"
	"time"
)

// chartPoint is one value of a series at a time; Failed marks an
// attempt that failed (drawn as a red cross on the axis, not a value).
type chartPoint struct {
	T      time.Time
	V      float64
	Failed bool
	// Note is the point's tooltip (<title>) beyond its time and value.
	Note string
}

// chartSeries is one line of a chart.
type chartSeries struct {
	Name   string
	Points []chartPoint
}

// spike is a value far above its series' usual level.
type spike struct {
	Series string
	T      time.Time
	V      float64
	Median float64
}

// seriesColors are told apart by the colour-blind too (Okabe–Ito).
var seriesColors = []string{"#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000", "#f0e442"}

// findSpikes returns the points of s above median + max(4 MAD, half
// the median, minAbs): with fewer than 5 values there is no usual
// level, so none.
func findSpikes(s chartSeries, minAbs float64) []spike {
	var vs []float64
	for _, p := range s.Points {
		if !p.Failed {
			vs = append(vs, p.V)
		}
	}
	if len(vs) < 5 {
		return nil
	}
	med := median(vs)
	dev := make([]float64, len(vs))
	for i, v := range vs {
		dev[i] = math.Abs(v - med)
	}
	limit := med + max(4*median(dev), med/2, minAbs)
	var out []spike
	for _, p := range s.Points {
		if !p.Failed && p.V > limit {
			out = append(out, spike{Series: s.Name, T: p.T, V: p.V, Median: med})
		}
	}
	return out
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Chart geometry.
const (
	chartW, chartH = 760, 240
	chartLeft      = 62
	chartRight     = 16
	chartTop       = 14
	chartBottom    = 40
)

// svgChart draws series as lines over time with a value axis in unit,
// spikes circled in red and failed points as red crosses on the time
// axis; no JavaScript, scales to its container. label names the chart
// for screen readers.
func svgChart(label, unit string, series []chartSeries, spikes []spike) template.HTML {
	var t0, t1 time.Time
	vmax := 0.0
	n := 0
	for _, s := range series {
		for _, p := range s.Points {
			if n == 0 || p.T.Before(t0) {
				t0 = p.T
			}
			if n == 0 || p.T.After(t1) {
				t1 = p.T
			}
			if !p.Failed {
				vmax = max(vmax, p.V)
			}
			n++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`,
		chartW, chartH, chartW, chartH, html.EscapeString(label))
	if n == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="chart-empty">no data</text></svg>`, chartW/2-30, chartH/2)
		return template.HTML(b.String())
	}
	if vmax <= 0 {
		vmax = 1
	}
	top := niceCeil(vmax * 1.05)
	if unit == "%" && vmax <= 100 {
		top = 100 // a ratio's scale ends at 100 %
	}
	span := t1.Sub(t0)
	if span <= 0 {
		span = time.Minute
		t0 = t0.Add(-span / 2)
	}
	pw, ph := float64(chartW-chartLeft-chartRight), float64(chartH-chartTop-chartBottom)
	x := func(t time.Time) float64 { return float64(chartLeft) + pw*float64(t.Sub(t0))/float64(span) }
	y := func(v float64) float64 { return float64(chartTop) + ph*(1-v/top) }
	// Grid and value labels.
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		fmt.Fprintf(&b, `<line class="grid" x1="%d" y1="%.1f" x2="%d" y2="%.1f"></line>`, chartLeft, y(v), chartW-chartRight, y(v))
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%.1f" text-anchor="end">%s</text>`, chartLeft-6, y(v)+4, html.EscapeString(fmtValue(v)))
	}
	fmt.Fprintf(&b, `<text class="axis unit" x="4" y="%d">%s</text>`, chartTop-2, html.EscapeString(unit))
	// Time labels: start, middle, end.
	for i, anchor := range []string{"start", "middle", "end"} {
		t := t0.Add(span * time.Duration(i) / 2)
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%d" text-anchor="%s">%s</text>`, x(t), chartH-chartBottom+16, anchor, t.UTC().Format("01-02 15:04"))
	}
	fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d" text-anchor="end">UTC</text>`, chartW-chartRight, chartH-4)
	// Lines and points.
	for i, s := range series {
		color := seriesColors[i%len(seriesColors)]
		var pts []string
		for _, p := range s.Points {
			if !p.Failed {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.T), y(p.V)))
			}
		}
		fmt.Fprintf(&b, `<g class="series" data-series="%s">`, html.EscapeString(s.Name))
		if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"></polyline>`, color, strings.Join(pts, " "))
		}
		for _, p := range s.Points {
			tip := fmt.Sprintf("%s %s: %s %s", s.Name, p.T.UTC().Format("2006-01-02 15:04:05"), fmtValue(p.V), unit)
			if p.Failed {
				tip = fmt.Sprintf("%s %s: failed", s.Name, p.T.UTC().Format("2006-01-02 15:04:05"))
			}
			if p.Note != "" {
				tip += " — " + p.Note
			}
			if p.Failed {
				cx, cy := x(p.T), float64(chartH-chartBottom)
				fmt.Fprintf(&b, `<g class="failed"><title>%s</title><path d="M%.1f,%.1f l8,8 m0,-8 l-8,8" stroke="#b71c1c" stroke-width="2.5"></path></g>`,
					html.EscapeString(tip), cx-4, cy-4)
				continue
			}
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s</title></circle>`, x(p.T), y(p.V), color, html.EscapeString(tip))
		}
		b.WriteString(`</g>`)
	}
	for _, sp := range spikes {
		fmt.Fprintf(&b, `<circle class="spike" cx="%.1f" cy="%.1f" r="8" fill="none" stroke="#b71c1c" stroke-width="2.5"><title>spike: %s %s = %s (usual %s)</title></circle>`,
			x(sp.T), y(sp.V), html.EscapeString(sp.Series), sp.T.UTC().Format("2006-01-02 15:04"), fmtValue(sp.V), fmtValue(sp.Median))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// fmtValue prints a value without needless decimals.
func fmtValue(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e9:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// legend is the series names with their colours, in order.
type legendItem struct{ Name, Color string }

func legend(series []chartSeries) []legendItem {
	out := make([]legendItem, len(series))
	for i, s := range series {
		out[i] = legendItem{s.Name, seriesColors[i%len(seriesColors)]}
	}
	return out
}
