package relay

import (
	"context"
	"errors"
	"strings"
	"time"
)

// sweepWindow is how far back a sweep looks at most.
const sweepWindow = 24 * time.Hour

// keepPosted is how long a status with nothing pending is kept, to order
// late events against it.
const keepPosted = 30 * 24 * time.Hour

// Sweep runs at start and every interval until ctx ends: for each project
// the relay serves, it lists the pipelines updated since the last sweep and
// accepts them like webhooks, so what GitLab did not deliver (the relay was
// down, the hook disabled, GitLab's own rate limit) is posted. Accept's
// ordering rule drops what is already known.
func (r *Relay) Sweep(ctx context.Context, interval time.Duration) {
	for {
		// Several replicas share a PostgreSQL store: one sweeps at a time.
		if lead, err := r.store.Lead(ctx); err != nil {
			r.log.Warn("sweep: taking the lead", "error", err.Error())
		} else if lead {
			r.sweepOnce(ctx)
			if n, err := r.store.Prune(ctx, time.Now().Add(-keepPosted)); err == nil && n > 0 {
				r.log.Info("pruned old statuses", "count", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (r *Relay) sweepOnce(ctx context.Context) {
	r.rememberRoutedProjects(ctx)
	projects, err := r.store.Projects(ctx)
	if err != nil {
		r.metrics.sweeps.WithLabelValues("error").Inc()
		r.log.Error("sweep: listing projects", "error", err.Error())
		return
	}
	queued := 0
	for _, project := range projects {
		start := time.Now()
		since := project.SweptAt
		if earliest := start.Add(-sweepWindow); since.Before(earliest) {
			since = earliest
		}
		list, err := r.cfg.GitLab.PipelinesUpdatedAfter(ctx, project.ID, since.Add(-time.Minute))
		if err != nil {
			r.metrics.sweeps.WithLabelValues("error").Inc()
			r.log.Warn("sweep: listing pipelines", "project", project.Path, "error", err.Error())
			continue
		}
		for _, p := range list {
			p.ProjectID, p.ProjectPath = project.ID, project.Path
			changed, _, err := r.accept(ctx, p)
			var skip *skipError
			switch {
			case errors.As(err, &skip):
			case err != nil:
				r.log.Warn("sweep: storing a pipeline", "project", project.Path, "pipeline", p.ID, "error", err.Error())
			case changed:
				queued++
			}
		}
		if err := r.store.MarkSwept(ctx, project.ID, start); err != nil {
			r.log.Warn("sweep: recording the sweep", "project", project.Path, "error", err.Error())
		}
	}
	r.metrics.sweeps.WithLabelValues("ok").Inc()
	r.log.Info("sweep done", "projects", len(projects), "queued", queued)
}

// rememberRoutedProjects adds the projects that routes name by their exact
// path (no wildcard) to those swept, so a project is healed even before its
// first webhook reaches the relay. Asked of GitLab once per process.
func (r *Relay) rememberRoutedProjects(ctx context.Context) {
	if r.routedProjectsKnown {
		return
	}
	failed := false
	for _, rt := range r.cfg.routes {
		if rt.Skip || strings.Contains(rt.Project, "*") {
			continue
		}
		path := strings.Trim(rt.Project, "/")
		id, err := r.cfg.GitLab.ProjectID(ctx, path)
		if err == nil {
			err = r.store.RememberProject(ctx, id, path)
		}
		if err != nil {
			failed = true
			r.log.Warn("sweep: finding a routed project", "project", path, "error", err.Error())
		}
	}
	r.routedProjectsKnown = !failed
}
