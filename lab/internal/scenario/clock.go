package scenario

import (
	"flag"
	"fmt"
	"strconv"
	"time"
)

// Flags are the flags every lab program shares.
type Flags struct {
	Scenario string
	T0       string
	PKI      string
}

// Register adds -scenario, -t0 and -pki to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Scenario, "scenario", "", "scenario name")
	fs.StringVar(&f.T0, "t0", "", "common start instant, Unix milliseconds")
	fs.StringVar(&f.PKI, "pki", "", "directory of the lab PKI (labcerts output)")
}

// Resolve returns the scenario and t0.
func (f *Flags) Resolve() (Scenario, time.Time, error) {
	sc, err := Get(f.Scenario)
	if err != nil {
		return Scenario{}, time.Time{}, err
	}
	ms, err := strconv.ParseInt(f.T0, 10, 64)
	if err != nil {
		return Scenario{}, time.Time{}, fmt.Errorf("scenario: -t0 %q: %w", f.T0, err)
	}
	return sc, time.UnixMilli(ms), nil
}

// At sleeps until t0+d (returns at once if that is past) or until done
// is closed; it reports false when done was closed first.
func At(t0 time.Time, d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(time.Until(t0.Add(d)))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}
