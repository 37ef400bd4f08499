package relay

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/pipeline"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/repourl"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/statuskey"
)

// gitlabLookupTimeout bounds a GitLab lookup a webhook waits for; GitLab
// itself gives up on the webhook after 10 s.
const gitlabLookupTimeout = 3 * time.Second

// gitlabBackoff is how long webhooks stop waiting for GitLab lookups after
// one failed: their destination is resolved by the worker meanwhile.
const gitlabBackoff = 30 * time.Second

// destination finds where a pipeline reports: the first matching route;
// else, with GITLAB_TOKEN, its project's pull mirror, where the
// configuration allows it; else the default route (group/project =
// workspace/repository). Never a guess for a subgroup. A child pipeline
// posts nothing unless its route says child_pipelines: own_status, and
// then under a key of its own. An *unresolvedError means GitLab, which the
// answer needs, did not answer.
func (r *Relay) destination(ctx context.Context, p gitlab.Pipeline) (Destination, error) {
	d, err := r.routeOf(ctx, p)
	if err != nil || !p.IsChild() {
		return d, err
	}
	return r.childDestination(ctx, p, d)
}

func (r *Relay) routeOf(ctx context.Context, p gitlab.Pipeline) (Destination, error) {
	for _, rt := range r.cfg.routes {
		captures, ok := rt.match(p.ProjectPath)
		if !ok {
			continue
		}
		via := fmt.Sprintf("route %d (%s)", rt.index, rt.Project)
		if rt.Skip {
			return Destination{}, &skipError{"skip_route", via + " says skip"}
		}
		if p.IsChild() && rt.ChildPipelines != childOwnStatus {
			return Destination{}, childSkipped(p, via+" has no child_pipelines: own_status")
		}
		d := Destination{Credential: rt.Credential, Via: via, ChildPipelines: rt.ChildPipelines,
			NoTestReports: rt.TestReports != nil && !*rt.TestReports}
		if d.Credential == "" {
			d.Credential = DefaultCredential
		}
		project := placeholders(p.ProjectPath, captures)
		d.Key = expand(rt.Key, withPipeline(project, p))
		d.Name = expand(rt.Name, withPipeline(project, p))
		if rt.Cloud != "" {
			repo := expand(rt.Cloud, project)
			ws, slug, ok := strings.Cut(repo, "/")
			if !ok || ws == "" || slug == "" || strings.Contains(slug, "/") {
				return Destination{}, &skipError{"bad_route", fmt.Sprintf("%s: cloud gives %q for %s, not workspace/slug", via, repo, p.ProjectPath)}
			}
			d.Cloud = &bitbucket.Cloud{API: r.cfg.defaultCloudAPI, Workspace: ws, Slug: slug}
		} else {
			repo := expand(rt.Repository, project)
			key, slug, ok := strings.Cut(repo, "/")
			if !ok || key == "" || slug == "" || strings.Contains(slug, "/") {
				return Destination{}, &skipError{"bad_route", fmt.Sprintf("%s: repository gives %q for %s, not PROJECT/slug", via, repo, p.ProjectPath)}
			}
			d.DataCenter = &bitbucket.DataCenter{Server: strings.TrimRight(rt.DataCenter, "/"), Project: key, Slug: slug}
		}
		return d, nil
	}
	if p.IsChild() {
		return Destination{}, childSkipped(p, "no route with child_pipelines: own_status matches "+p.ProjectPath)
	}
	if r.cfg.GitLab != nil && p.ProjectID > 0 && r.cfg.followsMirrors() {
		if d, ok, err := r.mirrorDestination(ctx, p.ProjectID, p.ProjectPath); err != nil {
			return Destination{}, err
		} else if ok {
			return d, nil
		}
	}
	if _, ok := r.cfg.Credentials[DefaultCredential]; !ok {
		return Destination{}, &skipError{"no_credential", "no route matches " + p.ProjectPath + " and BITBUCKET_ACCESS_TOKEN is not set"}
	}
	segs := strings.Split(p.ProjectPath, "/")
	if len(segs) != 2 {
		return Destination{}, &skipError{"subgroup", p.ProjectPath + " is in a subgroup, which cannot be a Bitbucket workspace: add a route for it (BITBUCKET_RELAY_ROUTES)"}
	}
	via := "the default route (group/project)"
	if r.cfg.defaultDataCenter != "" {
		if r.cfg.defaultProject == "" {
			return Destination{}, &skipError{"no_project_key", "no route matches " + p.ProjectPath + ": for Data Center set BITBUCKET_PROJECT or add a route"}
		}
		return Destination{DataCenter: &bitbucket.DataCenter{Server: r.cfg.defaultDataCenter, Project: r.cfg.defaultProject, Slug: segs[1]},
			Credential: DefaultCredential, Via: via}, nil
	}
	return Destination{Cloud: &bitbucket.Cloud{API: r.cfg.defaultCloudAPI, Workspace: segs[0], Slug: segs[1]}, Credential: DefaultCredential, Via: via}, nil
}

func childSkipped(p gitlab.Pipeline, why string) error {
	return &skipError{"child_pipeline", fmt.Sprintf("pipeline %d is a child pipeline of pipeline %d: its parent's status covers it "+
		"(%s)", p.ID, p.ParentPipelineID, why)}
}

// childDestination gives a child pipeline a status of its own: the
// route's key (or gitlab/<path>) and "/<trigger job name>", the same on
// every run of the parent, so a rerun replaces it. The trigger job's name is
// the pipeline's own name (workflow:name) if it has one, else asked of
// GitLab; without either, nothing is posted rather than a key that would
// change with every run.
func (r *Relay) childDestination(ctx context.Context, p gitlab.Pipeline, d Destination) (Destination, error) {
	name := p.Name
	if name == "" && r.cfg.GitLab != nil && p.ParentPipelineID > 0 {
		var err error
		if name, err = r.triggerJobName(ctx, p); err != nil {
			return Destination{}, err
		}
	}
	if name == "" {
		return Destination{}, &skipError{"child_unnamed", fmt.Sprintf("child pipeline %d has no name to key its status on: "+
			"give it workflow:name, or set GITLAB_TOKEN so the relay reads its trigger job's name", p.ID)}
	}
	base := d.Key
	if base == "" {
		base = statuskey.Default(p.ProjectPath)
	}
	d.Key = base + "/" + name
	shown := d.Name
	if shown == "" {
		shown = pipeline.Name(p.ProjectPath, "")
	}
	d.Name = shown + " › " + name
	if p.IID > 0 && !strings.Contains(shown, "#") {
		d.Name += fmt.Sprintf(" #%d", p.IID)
	}
	return d, nil
}

// triggerJobName asks GitLab which trigger job made child pipeline p,
// once per child.
func (r *Relay) triggerJobName(ctx context.Context, p gitlab.Pipeline) (string, error) {
	r.triggersMu.Lock()
	name, ok := r.triggers[p.ID]
	r.triggersMu.Unlock()
	if ok {
		return name, nil
	}
	project := p.ParentProjectID
	if project == 0 {
		project = p.ProjectID
	}
	name, err := r.askGitLab(ctx, "bridges", func(ctx context.Context) (string, error) {
		return r.cfg.GitLab.TriggerJobName(ctx, project, p.ParentPipelineID, p.ID)
	})
	if err != nil {
		return "", err
	}
	r.triggersMu.Lock()
	if len(r.triggers) > 10000 {
		clear(r.triggers)
	}
	r.triggers[p.ID] = name
	r.triggersMu.Unlock()
	return name, nil
}

// askGitLab runs one GitLab lookup that a destination depends on. A
// failure that may pass (no answer, 429, 5xx) is an *unresolvedError, and
// for gitlabBackoff after it webhooks do not wait for GitLab at all; the
// worker, which has time, asks anyway. A refusal (401, 403, 404) is
// logged and counted: a token that lost access must be visible.
func (r *Relay) askGitLab(ctx context.Context, call string, ask func(context.Context) (string, error)) (string, error) {
	inWebhook := ctx.Value(webhookContext{}) != nil
	if inWebhook && time.Now().UnixMilli() < r.gitlabDownUntil.Load() {
		return "", &unresolvedError{errors.New("GitLab failed to answer moments ago")}
	}
	ctx, cancel := context.WithTimeout(ctx, gitlabLookupTimeout)
	defer cancel()
	v, err := ask(ctx)
	if err == nil {
		return v, nil
	}
	r.countGitLabError(call, err)
	var ae *gitlab.APIError
	if errors.As(err, &ae) && !ae.Temporary() {
		return "", err
	}
	r.gitlabDownUntil.Store(time.Now().Add(gitlabBackoff).UnixMilli())
	return "", &unresolvedError{err}
}

// webhookContext marks the context of a webhook's own request.
type webhookContext struct{}

// mirrorVia names what chose a destination read from a pull mirror.
const mirrorVia = "the project's pull mirror"

// mirrorTTL is how long a project's mirror URL is remembered.
const mirrorTTL = time.Hour

// mirrorDestination is the repository a "CI/CD for external repository"
// project pulls from, asked of GitLab once an hour per project, if a
// credential's mirror_workspaces (Cloud) or mirror_projects (Data Center)
// name it: anyone who can create a project in the group can point its
// mirror anywhere, and the platform's credential must not follow.
func (r *Relay) mirrorDestination(ctx context.Context, projectID int64, path string) (Destination, bool, error) {
	r.mirrorMu.Lock()
	m, ok := r.mirrors[projectID]
	r.mirrorMu.Unlock()
	if !ok || time.Since(m.fetched) > mirrorTTL {
		u, err := r.askGitLab(ctx, "mirror", func(ctx context.Context) (string, error) { return r.cfg.GitLab.MirrorURL(ctx, projectID) })
		var unresolved *unresolvedError
		switch {
		case errors.As(err, &unresolved):
			return Destination{}, false, err
		case err != nil:
			// The token may not see the project's settings (Maintainer
			// only): no mirror to follow; the default route decides.
			r.log.Info("no mirror URL from GitLab", "project_id", projectID, "reason", err.Error())
		}
		m = mirrorEntry{path: path, fetched: time.Now()}
		if repo, err := repourl.Parse(u); u != "" && err == nil {
			m.repo = &repo
		}
		r.mirrorMu.Lock()
		r.mirrors[projectID] = m
		r.mirrorMu.Unlock()
	}
	if m.repo == nil {
		return Destination{}, false, nil
	}
	repo := *m.repo
	via := mirrorVia
	if repo.DataCenter {
		// Only the Data Center server configured here: the credential never
		// goes to a host read from GitLab.
		configured, err := url.Parse(r.cfg.defaultDataCenter)
		mirror, merr := url.Parse(repo.ServerURL)
		if r.cfg.defaultDataCenter == "" || err != nil || merr != nil || !strings.EqualFold(configured.Hostname(), mirror.Hostname()) {
			return Destination{}, false, &skipError{"mirror_unknown", fmt.Sprintf("project %d mirrors %s, which is not BITBUCKET_SERVER_URL: add a route for it", projectID, repo.ServerURL)}
		}
		cred, ok := r.mirrorCredential(func(a mirrorAllowList) bool { return a.projects[strings.ToLower(repo.Owner)] })
		if !ok {
			return Destination{}, false, &skipError{"mirror_not_allowed", fmt.Sprintf("project %d mirrors Data Center project %s, which no credential's mirror list names: "+
				"add it to BITBUCKET_RELAY_MIRROR_PROJECTS (or a credential's mirror_projects), or add a route", projectID, repo.Owner)}
		}
		return Destination{DataCenter: &bitbucket.DataCenter{Server: r.cfg.defaultDataCenter, Project: repo.Owner, Slug: repo.Slug}, Credential: cred, Via: via}, true, nil
	}
	cred, ok := r.mirrorCredential(func(a mirrorAllowList) bool { return a.workspaces[strings.ToLower(repo.Owner)] })
	if !ok {
		return Destination{}, false, &skipError{"mirror_not_allowed", fmt.Sprintf("project %d mirrors Bitbucket Cloud workspace %s, which no credential's mirror list names: "+
			"add it to BITBUCKET_RELAY_MIRROR_WORKSPACES (or a credential's mirror_workspaces), or add a route", projectID, repo.Owner)}
	}
	return Destination{Cloud: &bitbucket.Cloud{API: r.cfg.defaultCloudAPI, Workspace: repo.Owner, Slug: repo.Slug}, Credential: cred, Via: via}, true, nil
}

// mirrorCredential is the credential whose mirror list allows a
// destination: the BITBUCKET_* one first, then the routes file's by name.
func (r *Relay) mirrorCredential(allows func(mirrorAllowList) bool) (string, bool) {
	if a, ok := r.cfg.mirrorAllowed[DefaultCredential]; ok && allows(a) {
		if _, ok := r.cfg.Credentials[DefaultCredential]; ok {
			return DefaultCredential, true
		}
	}
	best := ""
	for name, a := range r.cfg.mirrorAllowed {
		if name != DefaultCredential && allows(a) && (best == "" || name < best) {
			best = name
		}
	}
	return best, best != ""
}
