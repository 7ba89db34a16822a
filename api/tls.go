package api

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

// ServeOption changes how ListenAndServe serves.
type ServeOption func(*serveConfig)

type serveConfig struct {
	certFile, keyFile string
	reload            <-chan os.Signal // for tests; default SIGHUP
}

// WithTLS serves HTTPS with the PEM certificate (chain) and key in the
// two files, read at start and again on every SIGHUP: a renewed
// certificate is picked up without a restart. A reload that fails is
// logged and the previous certificate kept.
func WithTLS(certFile, keyFile string) ServeOption {
	return func(c *serveConfig) { c.certFile, c.keyFile = certFile, keyFile }
}

// certReloader hands the current certificate to each handshake.
type certReloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certReloader) reload() error {
	kp, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("api: tls: %w", err)
	}
	c.cert.Store(&kp)
	return nil
}

func (c *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cert.Load(), nil
}

// watchReload reloads c on every signal until ctx ends; with a nil c (no
// TLS) it only logs that there is nothing to reload.
func watchReload(ctx context.Context, sig <-chan os.Signal, c *certReloader, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
			if c == nil {
				log.Debug("reload signal: no TLS certificate to reload")
				continue
			}
			if err := c.reload(); err != nil {
				log.Error("TLS certificate reload failed; serving the previous one", "err", err)
				continue
			}
			log.Info("TLS certificate reloaded", "subject", c.cert.Load().Leaf.Subject.String(),
				"not_after", c.cert.Load().Leaf.NotAfter)
		}
	}
}

// tlsConfig returns the server TLS configuration around the reloader.
func (c *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.getCertificate}
}

// reloadSignal returns cfg.reload, or a channel receiving SIGHUP and the
// function that stops it.
func (cfg *serveConfig) reloadSignal() (<-chan os.Signal, func()) {
	if cfg.reload != nil {
		return cfg.reload, func() {}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch, func() { signal.Stop(ch) }
}
