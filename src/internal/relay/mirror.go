package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/pipeline"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

const (
	// mirrorLease is how long a mirror job is this replica's: its few
	// GitLab requests end long before.
	mirrorLease = time.Minute
	// mirrorWorkers is how many mirror jobs advance at once.
	mirrorWorkers = 4
	// defaultMirrorPoll is how soon a job looks again at an update in
	// progress.
	defaultMirrorPoll = 5 * time.Second
	// mirrorGiveUp is how long after asking a job waits for an update to
	// run before it says none did; GitLab's own schedule (every 30 minutes)
	// would have run one by then.
	mirrorGiveUp = 40 * time.Minute
)

// MirrorWork advances mirror jobs until ctx ends.
func (r *Relay) MirrorWork(ctx context.Context) {
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	var inflight sync.WaitGroup
	defer inflight.Wait()
	var warmed time.Time
	for ctx.Err() == nil {
		if r.cfg.followsMirrors() && time.Since(warmed) > mirrorTTL {
			warmed = time.Now()
			r.warmMirrors(ctx)
		}
		jobs, err := r.store.ClaimPushes(ctx, store.Claim{Owner: r.owner, Lease: mirrorLease, Limit: mirrorWorkers})
		if err != nil && ctx.Err() == nil {
			r.log.Error("claiming mirror jobs: the store cannot write", "error", err.Error())
		}
		for _, job := range jobs {
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				r.advanceMirror(job)
			}()
		}
		inflight.Wait()
		if len(jobs) == mirrorWorkers {
			continue
		}
		select {
		case <-ctx.Done():
		case <-r.mirrorWake:
		case <-ticker.C:
		}
	}
}

// warmMirrors reads the pull mirror of every project the relay has served
// that it has not read within the hour, so that a push to a repository
// only a mirror maps finds its project after a restart too, before any of
// its pipelines arrives.
func (r *Relay) warmMirrors(ctx context.Context) {
	projects, err := r.store.Projects(ctx)
	if err != nil {
		r.log.Warn("reading the projects whose mirrors pushes may map to", "error", err.Error())
		return
	}
	for _, p := range projects {
		r.mirrorMu.Lock()
		m, ok := r.mirrors[p.ID]
		r.mirrorMu.Unlock()
		if ok && time.Since(m.fetched) < mirrorTTL {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		// Its destination errors (a mirror not allowed) are the
		// pipelines' to report, not this read's.
		_, _, _ = r.mirrorDestination(ctx, p.ID, p.Path)
	}
}

// advanceMirror takes one mirror job one step and records where it got.
func (r *Relay) advanceMirror(job store.PushJob) {
	ctx, cancel := context.WithTimeout(context.Background(), mirrorLease*4/5)
	defer cancel()
	o := r.mirrorStep(ctx, job)
	o.Error = r.clean(o.Error)
	for i := range o.Events {
		o.Events[i].Detail = r.clean(o.Events[i].Detail)
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if err := r.store.FinishPush(fctx, r.owner, job, o); err != nil {
		r.log.Error("recording a mirror job's step", "project", job.ProjectPath, "error", err.Error())
	}
}

// mirrorStep is one look at a project's pull mirror, and what follows: an
// update that started after the last push has run (done), is running
// (look again), or has not started; then, unless one from before the push
// is running (a start now would do nothing), GitLab is asked to start one.
// The first look after a push takes the mirror's last start as its
// baseline: whatever started before that look may predate the push, so an
// update later than it is waited for (one update more than needed, at
// worst, never one less).
func (r *Relay) mirrorStep(ctx context.Context, job store.PushJob) store.PushOutcome {
	o := store.PushOutcome{ProjectID: job.ProjectID, Baseline: job.Baseline, BaselineVersion: job.BaselineVersion, Triggered: job.Triggered,
		TriggeredSeen: job.TriggeredSeen}
	gl := r.cfg.GitLab
	attrs := []any{"project", job.ProjectPath, "repository", job.Repository}
	retry := func(call string, err error) store.PushOutcome {
		r.countGitLabError(call, err)
		o.Error = err.Error()
		o.RetryAt = time.Now().Add(r.backoff(job.Attempts))
		var ae *gitlab.APIError
		if errors.As(err, &ae) && ae.RetryAfter > 0 {
			o.RetryAt = time.Now().Add(ae.RetryAfter)
		}
		r.log.Warn("mirror job waits for GitLab", append(attrs, "call", call, "error", err.Error(), "retry_at", o.RetryAt.Format(time.RFC3339))...)
		return o
	}
	end := func(result, kind, detail string) store.PushOutcome {
		r.metrics.mirrorStarts.WithLabelValues(result).Inc()
		r.log.Warn("mirror not started", append(attrs, "result", result, "reason", detail)...)
		o.Done, o.Error = true, detail
		o.Events = append(o.Events, store.PushEvent{Kind: kind, Detail: detail})
		return o
	}
	if o.ProjectID == 0 {
		id, err := gl.ProjectID(ctx, job.ProjectPath)
		var ae *gitlab.APIError
		switch {
		case errors.As(err, &ae) && (ae.StatusCode == http.StatusNotFound || ae.StatusCode == http.StatusForbidden || ae.StatusCode == http.StatusUnauthorized):
			return end("no_project", "failed", fmt.Sprintf("GitLab has no project %s that GITLAB_TOKEN can see (%d): the route or the "+
				"default route names it", job.ProjectPath, ae.StatusCode))
		case err != nil:
			return retry("projects", err)
		}
		o.ProjectID = id
	}
	m, err := gl.PullMirror(ctx, o.ProjectID)
	var ae *gitlab.APIError
	switch {
	case errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest:
		return end("not_mirrored", "failed", fmt.Sprintf("GitLab project %s is not a pull mirror (%s): nothing to start; set it up "+
			"(bitbucket-status-relay connect), or let the project's route skip pushes", job.ProjectPath, ae.Message))
	case errors.As(err, &ae) && (ae.StatusCode == http.StatusForbidden || ae.StatusCode == http.StatusUnauthorized):
		return end("refused", "failed", fmt.Sprintf("GitLab refused to show %s's mirror (%d): GITLAB_TOKEN needs the api scope and "+
			"the Maintainer role on the project", job.ProjectPath, ae.StatusCode))
	case err != nil:
		return retry("mirror", err)
	}
	if job.BaselineVersion != job.Version {
		// The first look since the last push.
		o.Baseline, o.BaselineVersion = m.LastUpdateStartedAt, job.Version
	}
	after := m.LastUpdateStartedAt.After(o.Baseline)
	// An ask GitLab still holds: no update ended since it (GitLab defers an
	// ask within its interval to the interval's end, and keeps it). The
	// update it starts begins after every push received meanwhile, so a
	// burst of pushes costs one ask. An update that ended since consumed
	// it, or it was absorbed by one running already: ask again.
	asked := !o.Triggered.IsZero() && m.LastUpdateAt.Equal(o.TriggeredSeen)
	switch {
	case after && m.UpdateStatus == "finished":
		r.metrics.mirrorUpdates.WithLabelValues("finished").Inc()
		r.log.Info("mirror updated after the push", append(attrs, "started", m.LastUpdateStartedAt.Format(time.RFC3339))...)
		o.Done = true
		o.Events = append(o.Events, store.PushEvent{Kind: "update", Detail: fmt.Sprintf("GitLab's mirror of %s fetched it (update started %s UTC)",
			job.ProjectPath, m.LastUpdateStartedAt.UTC().Format("15:04:05"))})
		return o
	case after && m.UpdateStatus == "failed":
		r.metrics.mirrorUpdates.WithLabelValues("failed").Inc()
		o.Done = true
		return r.mirrorFailed(ctx, job, o, m.LastError, false)
	case after || m.Updating():
		// An update after the push runs; or one that may predate it, which
		// absorbs a start asked now: look again when it has ended.
		o.RetryAt = time.Now().Add(r.cfg.mirrorPoll)
		return o
	case asked && time.Since(o.Triggered) < mirrorGiveUp:
		// Asked already: GitLab defers an update asked within its interval
		// of the last one.
		o.RetryAt = time.Now().Add(r.cfg.mirrorPoll)
		if due := m.LastUpdateAt.Add(r.cfg.MirrorInterval); due.After(o.RetryAt) {
			o.RetryAt = due.Add(r.cfg.mirrorPoll)
		}
		return o
	case asked:
		r.metrics.mirrorUpdates.WithLabelValues("timed_out").Inc()
		o.Done = true
		o.Events = append(o.Events, store.PushEvent{Kind: "failed", Detail: fmt.Sprintf("GitLab ran no update of %s's mirror within %s "+
			"of being asked: its Sidekiq may be behind (Admin > Monitoring > Background jobs)", job.ProjectPath, mirrorGiveUp)})
		return o
	}
	err = gl.StartMirror(ctx, o.ProjectID)
	switch {
	case errors.As(err, &ae) && ae.StatusCode == http.StatusForbidden && strings.Contains(strings.ToLower(ae.Message), "pause"):
		r.metrics.mirrorStarts.WithLabelValues("paused").Inc()
		o.Done = true
		return r.mirrorFailed(ctx, job, o, m.LastError, true)
	case errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest:
		return end("not_mirrored", "failed", fmt.Sprintf("GitLab project %s is not a pull mirror (%s): set it up (bitbucket-status-relay connect)",
			job.ProjectPath, ae.Message))
	case errors.As(err, &ae) && (ae.StatusCode == http.StatusForbidden || ae.StatusCode == http.StatusUnauthorized):
		return end("refused", "failed", fmt.Sprintf("GitLab refused to start %s's mirror (%d %s): GITLAB_TOKEN needs the api scope and the "+
			"Maintainer role on the project", job.ProjectPath, ae.StatusCode, ae.Message))
	case err != nil:
		r.metrics.mirrorStarts.WithLabelValues("error").Inc()
		return retry("mirror_start", err)
	}
	r.metrics.mirrorStarts.WithLabelValues("started").Inc()
	r.metrics.pushToStart.Observe(time.Since(job.FirstPushedAt).Seconds())
	r.log.Info("mirror started", append(attrs, "after_push_ms", time.Since(job.FirstPushedAt).Milliseconds())...)
	o.Triggered, o.TriggeredSeen = time.Now(), m.LastUpdateAt
	o.RetryAt = time.Now().Add(r.cfg.mirrorPoll)
	o.Events = append(o.Events, store.PushEvent{Kind: "mirror", Detail: "asked GitLab to update the pull mirror of " + job.ProjectPath})
	return o
}

// mirrorFailed says on each pushed commit, under the key its pipeline
// would have used, that GitLab could not fetch it, why and what to do;
// the pipeline's own statuses replace it once an update succeeds.
func (r *Relay) mirrorFailed(ctx context.Context, job store.PushJob, o store.PushOutcome, lastError string, paused bool) store.PushOutcome {
	// GitLab's last error may hold the mirror's URL with its credential.
	lastError = r.clean(lastError)
	why := gitlab.MirrorAdvice(lastError, paused)
	r.log.Warn("mirror failed", "project", job.ProjectPath, "repository", job.Repository, "advice", why)
	o.Events = append(o.Events, store.PushEvent{Kind: "failed", Detail: why})
	settings := ""
	if g := r.cfg.GitLab; g != nil {
		settings = g.BaseURL + "/" + job.ProjectPath + "/-/settings/repository#js-push-remote-settings"
	}
	posted := map[string]bool{}
	for _, ref := range job.Refs {
		if posted[ref.Commit] {
			continue
		}
		posted[ref.Commit] = true
		p := gitlab.Pipeline{ProjectID: o.ProjectID, ProjectPath: job.ProjectPath, SHA: ref.Commit, Status: "failed", URL: settings, Source: "push"}
		if branch, ok := strings.CutPrefix(ref.Ref, "refs/heads/"); ok {
			p.Ref = branch
		} else {
			p.Ref, p.Tag = strings.TrimPrefix(ref.Ref, "refs/tags/"), true
		}
		rep, err := r.mirrorFailureReport(ctx, p, why)
		if err != nil {
			r.log.Warn("mirror failure not posted", "project", job.ProjectPath, "commit", ref.Commit, "reason", err.Error())
			continue
		}
		if _, err := r.store.Accept(ctx, []store.Report{rep}, r.keep); err != nil {
			r.log.Error("mirror failure not stored", "project", job.ProjectPath, "commit", ref.Commit, "error", err.Error())
			continue
		}
		r.nudge()
	}
	return o
}

// mirrorFailure is a stored report of a mirror that could not fetch a
// pushed commit: what the status says, in place of a pipeline's.
type mirrorFailure struct {
	Description string `json:"description"`
}

// mirrorFailureReport is the report of a failed mirror for commit p.SHA:
// the key and name a pipeline of the project would post under, as pipeline
// 0, which any real pipeline of the commit replaces.
func (r *Relay) mirrorFailureReport(ctx context.Context, p gitlab.Pipeline, why string) (store.Report, error) {
	d, err := r.destination(ctx, p)
	if err != nil {
		return store.Report{}, err
	}
	s, err := r.mirrorStatus(work{Pipeline: p, Dest: d, Mirror: &mirrorFailure{Description: pipeline.Cut("GitLab could not fetch this commit: "+why, pipeline.MaxText)}})
	if err != nil {
		return store.Report{}, err
	}
	body, err := json.Marshal(work{Pipeline: p, Dest: d, Mirror: &mirrorFailure{Description: s.Description}})
	if err != nil {
		return store.Report{}, err
	}
	return store.Report{StatusID: statusID(d, p.SHA, s.Key), Credential: d.Credential, Server: d.Server(), State: string(state.Failed), Final: true,
		FinishedAt: time.Now(), Body: body, ProjectID: p.ProjectID, ProjectPath: p.ProjectPath, Commit: p.SHA, Source: "mirror",
		GitLabStatus: "mirror failed", Description: s.Description}, nil
}

// mirrorStatus is the status a mirror failure posts: FAILED under the
// pipeline's key and name, linked to the project's mirror settings.
func (r *Relay) mirrorStatus(w work) (bitbucket.Status, error) {
	p, d := w.Pipeline, w.Dest
	s, err := statusOf(p, d)
	if err != nil {
		return s, err
	}
	s.State, s.Description, s.BuildNumber, s.Duration, s.Skipped = state.Failed, w.Mirror.Description, "", 0, false
	s.Name = pipeline.Cut(strings.TrimSuffix(s.Name, " #0"), pipeline.MaxText)
	if r.linkProblem(s.URL, d) != nil {
		s.URL = commitPage(d, p.SHA)
	}
	return s, nil
}
