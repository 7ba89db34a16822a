package config

import (
	"path/filepath"
	"testing"
)

// TestExampleConfigLoads keeps sbcwatch.example.yaml true to the parser.
func TestExampleConfigLoads(t *testing.T) {
	c, err := Load(filepath.Join("..", "sbcwatch.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SBCs) != 1 || c.SBCs[0].Poll == nil || c.SBCs[0].Audit == nil || !c.ExpectsTransfer("4969987654") {
		t.Fatalf("example config = %+v", c)
	}
}
