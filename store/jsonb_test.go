package store

import (
	"encoding/json"
	"testing"
)

func TestJSONBReplacesNUL(t *testing.T) {
	b, err := jsonb(map[string]any{"sni": "evil\x00host", "path": `C:\u0000x`})
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]string
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back["sni"] != "evil\ufffdhost" || back["path"] != `C:\u0000x` {
		t.Fatalf("%q", back)
	}
}
