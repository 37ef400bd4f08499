package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Serve listens, works and sweeps until ctx ends (SIGTERM), then stops
// accepting, lets the posts in flight finish within the grace period and
// returns; what is left stays in the store for the next start.
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           r.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// A 25 MB body over a slow link still fits; GitLab itself gives up
		// after 10 s.
		ReadTimeout:  60 * time.Second,
		WriteTimeout: 60 * time.Second,
		IdleTimeout:  120 * time.Second,
	}
	workCtx, stopWork := context.WithCancel(context.Background())
	var background sync.WaitGroup
	background.Add(1)
	go func() { defer background.Done(); r.Work(workCtx) }()
	background.Add(1)
	go func() { defer background.Done(); r.Maintain(workCtx) }()
	if r.cfg.PushSecret != "" {
		background.Add(1)
		go func() { defer background.Done(); r.MirrorWork(workCtx) }()
	}
	if r.cfg.GitLab != nil && r.cfg.Sweep > 0 {
		background.Add(1)
		go func() { defer background.Done(); r.Sweep(workCtx, r.cfg.Sweep) }()
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	r.ready.Store(true)
	r.log.Info("listening", "address", ln.Addr().String(), "workers", r.cfg.Workers, "gitlab", r.cfg.GitLab != nil,
		"sweep", r.cfg.Sweep.String(), "routes", len(r.cfg.routes), "pushes", r.cfg.PushSecret != "")

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	r.ready.Store(false)
	r.log.Info("shutting down", "grace", r.cfg.Grace.String())
	graceCtx, cancel := context.WithTimeout(context.Background(), r.cfg.Grace)
	defer cancel()
	if shutdownErr := srv.Shutdown(graceCtx); shutdownErr != nil && err == nil {
		err = fmt.Errorf("stopping the HTTP server: %w", shutdownErr)
	}
	stopWork()
	done := make(chan struct{})
	go func() { background.Wait(); close(done) }()
	select {
	case <-done:
		r.log.Info("stopped")
	case <-graceCtx.Done():
		r.log.Warn("grace period over with posts in flight: they stay in the store and are posted after the next start")
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
