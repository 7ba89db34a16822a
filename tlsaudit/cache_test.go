package tlsaudit

import (
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck/certtest"
)

func TestInternAndCheckCache(t *testing.T) {
	leaf := certtest.New(t, certtest.Spec{CN: "default.sbc.local"}, nil)
	tr := NewTracker(Options{})
	a, err := tr.parseCert(leaf.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := tr.parseCert(append([]byte(nil), leaf.Cert.Raw...))
	if a != b {
		t.Fatal("the same DER parsed twice")
	}
	check := CertChecker(nil, 0)
	at := time.Now().Truncate(time.Minute) // at and at+1s share a minute
	r1 := check(leaf.Served(), []string{"sbc.example"}, at)
	r2 := check(leaf.Served(), []string{"sbc.example"}, at.Add(time.Second))
	r3 := check(leaf.Served(), []string{"other.example"}, at)
	if r1 != r2 || r1 == r3 || r1.Trusted || r3.Name != "other.example" {
		t.Fatalf("cache: same=%v distinct=%v trusted=%v name=%q", r1 == r2, r1 != r3, r1.Trusted, r3.Name)
	}
}
