package config

import (
	"strings"
	"testing"
)

func TestYAMLErrorsNameLineAndNearestKey(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"short_cal: 10s\n", `config: line 1: unknown key "short_cal" at the top level (did you mean "short_call"?)`},
		{"serve:\n  listen: x\n  retention_dayz: 3\n", `config: line 3: unknown key "retention_dayz" under serve (did you mean "retention_days"?)`},
		{"serve:\n  listen: x\nretention_days: 3\n", `config: line 3: unknown key "retention_days" at the top level (it belongs under serve)`},
		{"sbcs:\n  - name: a\n    poll:\n      methd: snmp\n", `config: line 4: unknown key "methd" under sbcs.poll (did you mean "method"?)`},
		{"sbcs:\n  - name: a\n\tfqdns: [x]\n", `config: line 3: a tab in the indentation; YAML indents with spaces`},
		{"short_call: 10\n", `config: line 1: "10" is not a duration: use a number with a unit, such as 10s, 1m30s or 2h`},
		// Both problems, though the duration comes after the key.
		{"sbcs:\n  - name: a\n    fqdn: [x]\nshort_call: 10\n", `config: line 3: unknown key "fqdn" under sbcs (did you mean "fqdns"?); line 4: "10" is not a duration`},
		{"zzzz: 1\n", `config: line 1: unknown key "zzzz" at the top level (known: `},
		{"sbcs: [\n", `config: line 1: did not find expected node content`},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s…", tc.yaml, err, tc.want)
		}
	}
}
