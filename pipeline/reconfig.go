package pipeline

import (
	"fmt"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck"
)

// SetConfig makes what the engine decides from now on follow cfg
// (serve's reload), keeping everything it holds: open dialogs, TLS
// streams and the correlation's windows. It changes the Microsoft ranges
// and host suffixes, the SBC addresses and FQDNs, the trust store and
// expiry_warning (for connections judged from now on), dialog_timeout,
// and every threshold and limit of the streaming correlation
// (correlate.Stream.SetConfig). The limits that size the decoder and the
// trackers (limits other than max_window_*) stay as they were built.
// A trust store that does not load is an error and changes nothing.
// Call it from the goroutine that feeds the engine.
func (e *Engine) SetConfig(cfg *config.Config) error {
	if cfg == nil {
		return nil
	}
	roots, err := certcheck.LoadTrust(cfg.Trust, cfg.NoSystemRoots)
	if err != nil {
		return fmt.Errorf("pipeline: trust store: %w", err)
	}
	e.cfg = cfg
	e.check = tlsaudit.CertChecker(roots, cfg.ExpiryWarning.D())
	e.tls.SetSBCNames(cfg.SBCFQDNs())
	e.tracker.SetDialogTimeout(cfg.DialogTimeout.D())
	if e.corr.stream != nil {
		e.corr.stream.SetConfig(cfg)
	}
	return nil
}
