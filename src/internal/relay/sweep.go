package relay

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

// sweepWindow is how far back a sweep looks at most.
const sweepWindow = 24 * time.Hour

// routedTTL is how long the list of the projects routes name is kept
// before the groups are listed again.
const routedTTL = time.Hour

// Sweep runs at start and every interval until ctx ends: for each project
// the relay serves, it lists the pipelines updated since the last sweep and
// accepts them like webhooks, so what GitLab did not deliver (the relay was
// down, the hook disabled, GitLab's own rate limit) is posted. Accept's
// ordering rule drops what is already known. It then reads back, within
// each credential's budget, what Bitbucket shows for the newest of those
// pipelines, and posts again a status that shows something else (another
// writer with the same key, a restored repository).
func (r *Relay) Sweep(ctx context.Context, interval time.Duration) {
	for {
		// Several replicas share a PostgreSQL store: one sweeps at a time.
		if lead, err := r.store.Lead(ctx); err != nil {
			r.log.Warn("sweep: taking the lead", "error", err.Error())
		} else if lead {
			r.sweepOnce(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// Maintain prunes the store every hour (or tenth of the retention) until
// ctx ends, whatever else is configured: it stays bounded with no GitLab
// token and no sweep.
func (r *Relay) Maintain(ctx context.Context) {
	every := min(r.cfg.Retention/10, time.Hour)
	for {
		if lead, err := r.store.Lead(ctx); err == nil && lead {
			r.pruneOnce(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func (r *Relay) pruneOnce(ctx context.Context) {
	p, err := r.store.Prune(ctx, r.cfg.Retention)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("pruning the store", "error", err.Error())
		}
		return
	}
	r.metrics.pruned.WithLabelValues("posted").Add(float64(p.Posted))
	r.metrics.pruned.WithLabelValues("abandoned").Add(float64(p.Abandoned))
	r.metrics.pruned.WithLabelValues("project").Add(float64(p.Projects))
	if p.Abandoned > 0 {
		r.log.Warn("dropped statuses Bitbucket never took within the retention", "count", p.Abandoned, "retention", r.cfg.Retention.String())
	}
	if p.Posted+p.Projects > 0 {
		r.log.Info("pruned old statuses", "statuses", p.Posted, "projects", p.Projects)
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
	queued, verified, reposted := 0, 0, 0
	for _, project := range projects {
		start := time.Now()
		since := project.SweptAt
		if earliest := start.Add(-sweepWindow); since.Before(earliest) {
			since = earliest
		}
		list, err := r.cfg.GitLab.PipelinesUpdatedAfter(ctx, project.ID, since.Add(-time.Minute))
		if err != nil {
			r.countGitLabError("list", err)
			r.metrics.sweeps.WithLabelValues("error").Inc()
			r.log.Warn("sweep: listing pipelines", "project", project.Path, "error", err.Error())
			continue
		}
		// The newest pipeline of each status, to read back.
		newest := map[string]pipelineAt{}
		for _, p := range list {
			p.ProjectID, p.ProjectPath = project.ID, project.Path
			changed, rep, err := r.accept(context.WithValue(ctx, viaContext{}, "sweep"), p)
			var skip *skipError
			var unresolved *unresolvedError
			switch {
			case errors.As(err, &skip):
				continue
			case errors.As(err, &unresolved):
			case err != nil:
				r.log.Warn("sweep: storing a pipeline", "project", project.Path, "pipeline", p.ID, "error", err.Error())
				continue
			case changed:
				queued++
			}
			if n, ok := newest[rep.StatusID]; !ok || p.ID > n.pipeline.ID {
				newest[rep.StatusID] = pipelineAt{p, rep}
			}
		}
		for _, n := range newest {
			switch r.verify1(ctx, n.pipeline, n.report) {
			case "same":
				verified++
			case "differs":
				verified++
				reposted++
			}
		}
		if err := r.store.MarkSwept(ctx, project.ID, start); err != nil {
			r.log.Warn("sweep: recording the sweep", "project", project.Path, "error", err.Error())
		}
	}
	r.metrics.sweeps.WithLabelValues("ok").Inc()
	r.log.Info("sweep done", "projects", len(projects), "queued", queued, "verified", verified, "posted_again", reposted)
	if err := r.store.RecordSweep(ctx, store.Sweep{Projects: len(projects), Queued: queued, Verified: verified, Reposted: reposted,
		Replica: r.owner}); err != nil {
		r.log.Warn("sweep: recording its summary", "error", err.Error())
	}
}

type pipelineAt struct {
	pipeline gitlab.Pipeline
	report   store.Report
}

// verify1 reads what Bitbucket shows for a status the relay believes
// posted, and makes it due again when it shows something else. Only a
// status with nothing pending is read (a pending one is about to be
// posted anyway), within its credential's hourly budget, never while the
// credential is paused by a 429.
func (r *Relay) verify1(ctx context.Context, p gitlab.Pipeline, rep store.Report) string {
	if r.cfg.VerifyPerHour == 0 || strings.HasPrefix(rep.StatusID, "unresolved|") {
		return ""
	}
	row, err := r.store.Get(ctx, rep.StatusID)
	if err != nil || row == nil || row.Pending || row.PostedPipeline == 0 {
		return ""
	}
	client := r.clients[rep.Credential]
	if client == nil || !r.pausedUntil(rep.Credential).IsZero() {
		return ""
	}
	if !r.verifyBudget(rep.Credential).take() {
		r.metrics.verified.WithLabelValues("over_budget").Inc()
		return "over_budget"
	}
	d, err := destinationOf(row)
	if err != nil {
		return ""
	}
	want, err := r.statusOf(p, d)
	if err != nil {
		return ""
	}
	rctx, cancel := context.WithTimeout(ctx, postTimeout)
	defer cancel()
	var shown bitbucket.Shown
	if d.DataCenter != nil {
		shown, err = d.DataCenter.Shown(rctx, client, p.SHA, want.Key)
	} else {
		shown, err = d.Cloud.Shown(rctx, client, p.SHA, want.Key)
	}
	if err != nil {
		r.metrics.verified.WithLabelValues("error").Inc()
		r.log.Warn("sweep: reading back a status", "status", rep.StatusID, "error", err.Error())
		return "error"
	}
	if shown.Shows(want) {
		r.metrics.verified.WithLabelValues("same").Inc()
		return "same"
	}
	r.metrics.verified.WithLabelValues("differs").Inc()
	r.log.Warn("Bitbucket shows another state than the relay posted: posting it again", "status", rep.StatusID,
		"shown_state", shown.State, "shown_url", shown.URL, "found", shown.Found, "want_state", string(want.State), "want_url", want.URL)
	wake := func(cur *store.Row, _ store.Report) (store.Decision, string) {
		if cur == nil {
			return store.Replace, "a new status"
		}
		return store.Wake, fmt.Sprintf("the sweep read %s back from Bitbucket: posted again", cmp.Or(shown.State, "no status"))
	}
	if _, err := r.store.Accept(ctx, []store.Report{rep}, wake); err != nil {
		r.log.Warn("sweep: making a status due again", "status", rep.StatusID, "error", err.Error())
	}
	r.nudge()
	return "differs"
}

// destinationOf reads where a stored row posts.
func destinationOf(row *store.Row) (Destination, error) {
	var w work
	if err := json.Unmarshal(row.Body, &w); err != nil {
		return Destination{}, err
	}
	if w.Unresolved {
		return Destination{}, errors.New("unresolved")
	}
	return w.Dest, nil
}

// tokenBucket allows n reads an hour, refilled evenly.
type tokenBucket struct {
	mu     sync.Mutex
	n      float64
	perSec float64
	max    float64
	at     time.Time
}

func (b *tokenBucket) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.n = min(b.max, b.n+now.Sub(b.at).Seconds()*b.perSec)
	b.at = now
	if b.n < 1 {
		return false
	}
	b.n--
	return true
}

func (r *Relay) verifyBudget(credential string) *tokenBucket {
	r.verifyMu.Lock()
	defer r.verifyMu.Unlock()
	b := r.verify[credential]
	if b == nil {
		perHour := float64(r.cfg.VerifyPerHour)
		b = &tokenBucket{n: perHour, max: perHour, perSec: perHour / 3600, at: time.Now()}
		r.verify[credential] = b
	}
	return b
}

// rememberRoutedProjects adds the projects routes name to those swept, so
// a project is healed even before its first webhook reaches the relay:
// exact paths looked up once, wildcard routes by listing the group before
// their first wildcard (with its subgroups), again every routedTTL.
func (r *Relay) rememberRoutedProjects(ctx context.Context) {
	if !r.routedOnce || time.Since(r.routedAt) > routedTTL {
		if list, complete := r.listRoutedProjects(ctx); complete || !r.routedOnce {
			r.routed, r.routedAt, r.routedOnce = list, time.Now(), complete
		}
	}
	for _, p := range r.routed {
		if err := r.store.RememberProject(ctx, p.ID, p.Path); err != nil {
			r.log.Warn("sweep: recording a routed project", "project", p.Path, "error", err.Error())
		}
	}
}

// listRoutedProjects lists every project a non-skip route is the first
// match for; complete is false when a lookup failed.
func (r *Relay) listRoutedProjects(ctx context.Context) ([]gitlab.ProjectRef, bool) {
	complete := true
	seen := map[int64]bool{}
	var out []gitlab.ProjectRef
	add := func(p gitlab.ProjectRef) {
		if seen[p.ID] || !r.firstRouteReports(p.Path) {
			return
		}
		seen[p.ID] = true
		out = append(out, p)
	}
	groups := map[string]bool{}
	for _, rt := range r.cfg.routes {
		if rt.Skip {
			continue
		}
		literal := literalPrefix(rt.pattern)
		if len(literal) == len(rt.pattern) {
			path := strings.Join(literal, "/")
			id, err := r.cfg.GitLab.ProjectID(ctx, path)
			if err != nil {
				r.countGitLabError("projects", err)
				complete = false
				r.log.Warn("sweep: finding a routed project", "project", path, "error", err.Error())
				continue
			}
			add(gitlab.ProjectRef{ID: id, Path: path})
			continue
		}
		if len(literal) == 0 {
			r.log.Warn("sweep: a route starting with a wildcard names no group to list: its projects are swept once they send a webhook",
				"route", rt.index, "project", rt.Project)
			continue
		}
		group := strings.Join(literal, "/")
		if groups[group] {
			continue
		}
		groups[group] = true
		list, err := r.cfg.GitLab.GroupProjects(ctx, group)
		if err != nil {
			r.countGitLabError("projects", err)
			complete = false
			r.log.Warn("sweep: listing a routed group's projects", "group", group, "error", err.Error())
			continue
		}
		for _, p := range list {
			add(p)
		}
	}
	return out, complete
}

// literalPrefix is a pattern's segments before its first wildcard.
func literalPrefix(pattern []string) []string {
	for i, seg := range pattern {
		if strings.Contains(seg, "*") {
			return pattern[:i]
		}
	}
	return pattern
}

// firstRouteReports reports whether the first route matching path posts
// (is not a skip route).
func (r *Relay) firstRouteReports(path string) bool {
	for _, rt := range r.cfg.routes {
		if _, ok := rt.match(path); ok {
			return !rt.Skip
		}
	}
	return false
}
