package sip

import "time"

// SetDialogTimeout changes the idle time after which an open call ends
// (serve's reload); calls already open are measured against it from the
// next Expire. The linger of ended calls stays within it (a timeout
// shortened below the linger shortens the linger for good).
func (t *Tracker) SetDialogTimeout(d time.Duration) {
	if d <= 0 {
		return
	}
	t.o.DialogTimeout = d
	t.o.Linger = min(t.o.Linger, d)
}
