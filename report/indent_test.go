package report

import (
	"bytes"
	"encoding/json"
	"testing"
)

var indentCases = []string{
	`{}`, `[]`, `{"a":1}`, `[1,2,3]`, `{"a":{},"b":[],"c":[{}],"d":[[]]}`,
	`{"s":"a,b:c{d}[e]","t":"q\"uo\\te\\","u":"\u003chtml\u003e \\\" \r\n"}`,
	`{"nested":{"x":[1,{"y":"z"},null,true,false,-1.5e3]},"e":""}`,
	`"just a string"`, `42`, `null`, `{"k\"ey":"v\\"}`,
}

// TestAppendIndented: the spool's indentation equals encoding/json's.
func TestAppendIndented(t *testing.T) {
	for _, c := range indentCases {
		want, err := json.MarshalIndent(json.RawMessage(c), "    ", "  ")
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if got := appendIndented(nil, []byte(c), "    ", "  "); !bytes.Equal(got, want) {
			t.Errorf("%s:\ngot  %s\nwant %s", c, got, want)
		}
	}
}

// FuzzAppendIndented: for any valid JSON, once compacted as json.Marshal
// writes it, appendIndented equals json.MarshalIndent.
func FuzzAppendIndented(f *testing.F) {
	for _, c := range indentCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) {
			return
		}
		compact, err := json.Marshal(json.RawMessage(s)) // as the spool holds it
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.MarshalIndent(json.RawMessage(compact), "    ", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if got := appendIndented(nil, compact, "    ", "  "); !bytes.Equal(got, want) {
			t.Fatalf("%q:\ngot  %s\nwant %s", compact, got, want)
		}
	})
}
