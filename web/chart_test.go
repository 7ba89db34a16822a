package web

import (
	"strings"
	"testing"
	"time"
)

func TestFindSpikesAndDownsample(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	var s chartSeries
	for i := range 100 {
		v := 10.0 + float64(i%3)
		if i == 70 {
			v = 60
		}
		s.Points = append(s.Points, chartPoint{T: t0.Add(time.Duration(i) * time.Minute), V: v})
	}
	sp := findSpikes(s, 3)
	if len(sp) != 1 || sp[0].V != 60 || sp[0].Median != 11 || !sp[0].T.Equal(t0.Add(70*time.Minute)) {
		t.Fatalf("spikes %+v", sp)
	}
	// A flat series and a short one have none; a floor keeps noise out.
	if got := findSpikes(chartSeries{Points: s.Points[:4]}, 0); got != nil {
		t.Errorf("4 points: %v", got)
	}
	if got := findSpikes(s, 100); got != nil {
		t.Errorf("with a floor of 100: %v", got)
	}
	d := downsample(s.Points, 20)
	if len(d) > 20 || len(d) < 15 {
		t.Fatalf("downsampled to %d points", len(d))
	}
	kept := false
	for _, p := range d {
		kept = kept || p.V == 60
	}
	if !kept {
		t.Error("downsampling lost the spike")
	}
	svg := string(svgChart("x <y>", "ms", []chartSeries{s}, sp))
	if !strings.Contains(svg, `aria-label="x &lt;y&gt;"`) || strings.Count(svg, `class="spike"`) != 1 || !strings.Contains(svg, "= 60 (usual 11)") {
		t.Errorf("svg:\n%s", svg[:min(len(svg), 600)])
	}
	if got := string(svgChart("empty", "ms", nil, nil)); !strings.Contains(got, "no data") {
		t.Errorf("empty chart: %s", got)
	}
}
