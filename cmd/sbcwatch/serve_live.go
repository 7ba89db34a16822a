package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/live"
	"github.com/sbcwatch/sbcwatch/store"
)

// The live input (ACDR and HEP copies received on UDP) joins `serve`
// through its hooks: calls the tracker finishes are stored, with their
// messages, through a store Batcher.
func init() { serveHooks = append(serveHooks, serveLive) }

// liveFlushTimeout bounds the last write of what the live input handed
// over while stopping.
const liveFlushTimeout = 10 * time.Second

// serveLive runs the live input when serve.acdr_listen or
// serve.hep_listen is set, until ctx ends.
func serveLive(ctx context.Context, cfg *config.Config, st *store.Store, log *slog.Logger) error {
	if cfg.Serve.ACDRListen == "" && cfg.Serve.HEPListen == "" {
		return nil
	}
	b := st.NewBatcher(liveSBCName(cfg), "live", store.BatcherOptions{})
	// The Batcher flushes on size and time, and once more when bctx ends:
	// after the live input returned (ctx ended, or it could not listen),
	// so the calls it handed over while stopping are in that flush.
	bctx, bcancel := context.WithCancel(ctx)
	defer bcancel()
	var wg sync.WaitGroup
	wg.Go(func() { _ = b.Run(bctx) })
	err := live.New(cfg, b, log, live.Options{}).Run(ctx)
	bcancel()
	wg.Wait()
	// What that flush could not write (database down) gets one more try.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), liveFlushTimeout)
	defer cancel()
	if ferr := b.Flush(fctx); ferr != nil {
		log.Warn("live: storing the last calls failed", "err", ferr, "pending", b.Stats().Pending)
	}
	if s := b.Stats(); s.Dropped > 0 {
		log.Warn("live: calls dropped because the database was too slow", "dropped", s.Dropped)
	}
	if err != nil {
		return fmt.Errorf("live input: %w", err)
	}
	return nil
}

// liveSBCName is the name live calls are stored under: the configured
// SBC when there is exactly one, else "live" (the exporter is not mapped
// to an SBC yet).
func liveSBCName(cfg *config.Config) string {
	if len(cfg.SBCs) == 1 {
		return cfg.SBCs[0].Name
	}
	return "live"
}
