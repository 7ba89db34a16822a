package poll

import (
	"encoding/json"
	"math"
	"testing"
)

// FuzzKPIBody: any body the SBC's REST API answers with decodes into a
// Reading without a panic; a value is either unknown (nil) or a number
// that is finite and not -1, and an exact value agrees with it.
func FuzzKPIBody(f *testing.F) {
	f.Add([]byte(`{"items":[{"id":"shortCallsCounterTotal","value":12},{"id":"activeCallsIn","value":-1},{"id":"asr","value":null}]}`))
	f.Add([]byte(`{"items":[{"id":7,"value":"18446744073709551615"},{"id":"x","value":"  3.5 "}]}`))
	f.Add([]byte(`{"items":[{"id":"a","value":1e400},{"id":"b","value":"-1"},{"id":"c","value":{}}]}`))
	f.Add([]byte(`{"items":[{"id":"a","value":"NaN"},{"id":"b","value":"-Inf"},{"id":"c","value":"0x1p3"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var l kpiList
		if json.Unmarshal(body, &l) != nil {
			return
		}
		rd := &Reading{Global: Values{}, IPGroups: map[string]Values{}}
		fillItems(rd, ScopeGlobal, rd.Global, l.Items)
		for _, it := range l.Items {
			v, exact := jsonNumber(it.Value)
			if v == nil {
				if exact != nil {
					t.Fatalf("%s: exact value without a value", it.Value)
				}
				continue
			}
			if *v == -1 || math.IsNaN(*v) || math.IsInf(*v, 0) {
				t.Fatalf("%s: taken as the value %g", it.Value, *v)
			}
			if exact != nil && math.Abs(float64(*exact)-*v) > 1e-9*math.Max(1, *v) {
				t.Fatalf("%s: exact %d, value %g", it.Value, *exact, *v)
			}
		}
	})
}
