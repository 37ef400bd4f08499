package connect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
)

// verifyStep proves the loop: after a change (or with --verify) it starts
// a mirror update and waits, within --wait, for an update that started
// after the ask to end, then says what GitLab fetched or why it could not.
// A run that changed nothing only reads the mirror's last update.
func (r *run) verifyStep(ctx context.Context) error {
	if r.opts.DryRun {
		r.note("verify", "would start a mirror update and wait for it")
		return nil
	}
	m, mirrored, err := r.readMirror(ctx)
	switch {
	case err != nil:
		return err
	case !mirrored:
		return fmt.Errorf("GitLab project %s has no pull mirror after the mirror step: see Settings > Repository > Mirroring repositories", r.target.GitLabPath)
	}
	if r.wrote == 0 && !r.opts.Verify {
		switch m.UpdateStatus {
		case "failed":
			return fmt.Errorf("the mirror's last update failed: %s", gitlab.MirrorAdvice(r.redact(deref(m.LastError)), false))
		case "finished":
			r.note("verify", "unchanged: the mirror's last update finished at %s (nothing changed, so none was started; --verify starts one)",
				clock(parseTime(m.UpdatedAt)))
		default:
			r.note("verify", "the mirror's update is %s (nothing changed, so none was started; --verify starts one)", orNone(m.UpdateStatus))
		}
		return nil
	}
	baseline := parseTime(m.StartedAt)
	err = r.gitlabCall(ctx, http.MethodPost, r.projectID()+"/mirror/pull", nil, nil, nil)
	var ae *gitlab.APIError
	switch {
	case errors.As(err, &ae) && ae.StatusCode == http.StatusForbidden && strings.Contains(strings.ToLower(ae.Message), "pause"):
		return fmt.Errorf("%s", gitlab.MirrorAdvice(r.redact(deref(m.LastError)), true))
	case err != nil:
		return fmt.Errorf("starting the mirror update: %w", explainWrite(err))
	}
	start := time.Now()
	deadline := start.Add(r.opts.Wait)
	lastProgress := start
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.opts.poll()):
		}
		m, _, err = r.readMirror(ctx)
		if err != nil {
			return err
		}
		if parseTime(m.StartedAt).After(baseline) {
			switch m.UpdateStatus {
			case "finished":
				return r.fetched(ctx, m)
			case "failed":
				return fmt.Errorf("GitLab could not fetch %s: %s", r.target.CloneURL, gitlab.MirrorAdvice(r.redact(deref(m.LastError)), false))
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no update of the mirror ended within %s of asking (update status %s): GitLab defers an update asked within its "+
				"interval (5 minutes) of the last one; run connect --verify again in a few minutes, or see Settings > Repository > "+
				"Mirroring repositories", r.opts.Wait, orNone(m.UpdateStatus))
		}
		if r.opts.Progress != nil && time.Since(lastProgress) >= 10*time.Second {
			lastProgress = time.Now()
			fmt.Fprintf(r.opts.Progress, "  verify     waiting for GitLab to update the mirror of %s (%s, update status %s)\n",
				r.target.GitLabPath, time.Since(start).Round(time.Second), orNone(m.UpdateStatus))
		}
	}
}

// fetched says what the update brought: the default branch's head.
func (r *run) fetched(ctx context.Context, m mirrorState) error {
	var p project
	if err := r.gitlabCall(ctx, http.MethodGet, r.projectID(), nil, nil, &p); err != nil {
		return fmt.Errorf("reading the project after the update: %w", err)
	}
	var branch struct {
		Commit struct {
			ID string `json:"id"`
		} `json:"commit"`
	}
	when := clock(parseTime(m.StartedAt))
	if p.DefaultBranch == "" {
		r.note("verify", "GitLab's mirror updated (started %s) but the repository has no default branch yet: push one", when)
		return nil
	}
	err := r.gitlabCall(ctx, http.MethodGet, r.projectID()+"/repository/branches/"+url.PathEscape(p.DefaultBranch), nil, nil, &branch)
	var ae *gitlab.APIError
	switch {
	case errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound:
		r.note("verify", "GitLab's mirror updated (started %s); it has no branch %s yet", when, p.DefaultBranch)
		return nil
	case err != nil:
		return fmt.Errorf("reading branch %s: %w", p.DefaultBranch, err)
	}
	r.note("verify", "GitLab fetched %s at %s (update started %s): a push now runs its pipeline", p.DefaultBranch, short(branch.Commit.ID), when)
	return nil
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "(never)"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func short(commit string) string { return commit[:min(12, len(commit))] }
