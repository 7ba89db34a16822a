package tlsaudit

// SetSBCNames replaces the configured SBC FQDNs checked when a client
// sent no SNI (serve's reload), for the connections judged from now on.
func (t *Tracker) SetSBCNames(names []string) {
	t.o.SBCNames = append([]string(nil), names...)
}
