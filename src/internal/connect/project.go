package connect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
)

// project is the GitLab project as found (or made).
type project struct {
	ID            int64  `json:"id"`
	Path          string `json:"path_with_namespace"`
	DefaultBranch string `json:"default_branch"`
	EmptyRepo     bool   `json:"empty_repo"`
	// created: this run made it (or, in a dry run, would).
	created bool
}

// featuresOff are the features GitLab's "Run CI/CD for external
// repository" turns off (CiCd::SetupProject): the code lives in Bitbucket.
var featuresOff = []string{"issues_access_level", "merge_requests_access_level", "wiki_access_level", "snippets_access_level"}

func (r *run) projectPath() string { return "projects/" + url.PathEscape(r.target.GitLabPath) }

func (r *run) projectID() string {
	if r.project.ID == 0 {
		return "projects/" + url.PathEscape(r.target.GitLabPath)
	}
	return fmt.Sprintf("projects/%d", r.project.ID)
}

// projectStep finds the GitLab project, or creates it as the UI's "Run
// CI/CD for external repository" does: private, its issues, merge
// requests, wiki and snippets off (the API has no ci_cd_only).
func (r *run) projectStep(ctx context.Context) error {
	err := r.gitlabCall(ctx, http.MethodGet, r.projectPath(), nil, nil, &r.project)
	var ae *gitlab.APIError
	switch {
	case err == nil:
		r.note("project", "found %s (id %d)", r.project.Path, r.project.ID)
		return nil
	case errors.As(err, &ae) && (ae.StatusCode == http.StatusUnauthorized):
		return fmt.Errorf("GitLab refused GITLAB_TOKEN (401): it is wrong, expired or revoked; create a token with the api scope")
	case !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound:
		return fmt.Errorf("reading GitLab project %s: %w", r.target.GitLabPath, err)
	}
	group, name := path.Split(r.target.GitLabPath)
	group = strings.TrimSuffix(group, "/")
	var ns struct {
		ID int64 `json:"id"`
	}
	if err := r.gitlabCall(ctx, http.MethodGet, "namespaces/"+url.PathEscape(group), nil, nil, &ns); err != nil {
		if errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound {
			return fmt.Errorf("GitLab has no group %s that GITLAB_TOKEN can see: create the group first (connect creates projects, not groups), "+
				"or check --gitlab-project", group)
		}
		return fmt.Errorf("reading GitLab group %s: %w", group, err)
	}
	body := map[string]any{"name": name, "path": name, "namespace_id": ns.ID, "visibility": "private",
		"description": "CI/CD for " + r.target.CloneURL + " (set up by bitbucket-status-relay connect)"}
	for _, f := range featuresOff {
		body[f] = "disabled"
	}
	var made project
	err = r.gitlabCall(ctx, http.MethodPost, "projects", nil, body, &made)
	switch {
	case errors.As(err, &ae) && (ae.StatusCode == http.StatusForbidden || (ae.StatusCode == http.StatusBadRequest && strings.Contains(ae.Message, "namespace"))):
		return fmt.Errorf("GitLab refused to create %s (%d %s): GITLAB_TOKEN's user may not create projects in group %s; give it a role that may "+
			"(the group's Settings > General > Permissions, \"Roles allowed to create projects\": Maintainer by default), or create the project "+
			"and run connect again", r.target.GitLabPath, ae.StatusCode, ae.Message, group)
	case err != nil:
		return fmt.Errorf("creating GitLab project %s: %w", r.target.GitLabPath, err)
	}
	if r.opts.DryRun {
		made = project{Path: r.target.GitLabPath, EmptyRepo: true}
	}
	made.created = true
	r.project = made
	verb := "created"
	if r.opts.DryRun {
		verb = "would create"
	}
	r.note("project", "%s %s: private; issues, merge requests, wiki and snippets off, as GitLab's \"Run CI/CD for external repository\" makes it",
		verb, r.target.GitLabPath)
	return nil
}

// mirrorState is GET /projects/:id/mirror/pull.
type mirrorState struct {
	Enabled           *bool   `json:"enabled"`
	URL               string  `json:"url"`
	UpdateStatus      string  `json:"update_status"`
	LastError         *string `json:"last_error"`
	StartedAt         *string `json:"last_update_started_at"`
	UpdatedAt         *string `json:"last_update_at"`
	TriggerBuilds     *bool   `json:"mirror_trigger_builds"`
	OverwriteDiverged *bool   `json:"mirror_overwrites_diverged_branches"`
	OnlyProtected     *bool   `json:"only_mirror_protected_branches"`
}

func is(b *bool, want bool) bool { return b == nil || *b == want }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// readMirror reads the project's pull mirror; ok false: it has none.
func (r *run) readMirror(ctx context.Context) (m mirrorState, ok bool, err error) {
	if r.project.ID == 0 {
		return m, false, nil // a dry run's project, not made
	}
	err = r.gitlabCall(ctx, http.MethodGet, r.projectID()+"/mirror/pull", nil, nil, &m)
	var ae *gitlab.APIError
	switch {
	case errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest:
		return m, false, nil // "The project is not mirrored"
	case errors.As(err, &ae) && (ae.StatusCode == http.StatusForbidden || ae.StatusCode == http.StatusUnauthorized):
		return m, false, fmt.Errorf("GitLab refused to show %s's mirror settings (%d): GITLAB_TOKEN's user needs the Maintainer role on the "+
			"project, and the token the api scope", r.target.GitLabPath, ae.StatusCode)
	case errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound:
		return m, false, fmt.Errorf("GitLab has no pull mirror API for %s (404): pull mirroring needs GitLab Premium (15.6 or later)", r.target.GitLabPath)
	case err != nil:
		return m, false, fmt.Errorf("reading %s's mirror: %w", r.target.GitLabPath, err)
	}
	return m, m.URL != "" && is(m.Enabled, true), nil
}

// sameRepository compares a mirror's URL (credentials masked or not) with
// a clone URL: host and path, any case, ".git" or not.
func sameRepository(a, b string) bool {
	norm := func(raw string) string {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return strings.ToLower(raw)
		}
		return strings.ToLower(u.Hostname() + strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), ".git"))
	}
	return norm(a) == norm(b)
}

// mirrorStep makes the project pull the repository with the credential
// that works for its kind: on GitLab 17.6+ with PUT .../mirror/pull,
// before with import_url, then checked with GET (GitLab's project API has
// left mirrors off before). A project that mirrors another repository, or
// holds its own commits, is changed only with --force.
func (r *run) mirrorStep(ctx context.Context) error {
	m, mirrored, err := r.readMirror(ctx)
	if err != nil {
		return err
	}
	switch {
	case m.URL != "" && !sameRepository(m.URL, r.target.CloneURL) && !r.opts.Force:
		return fmt.Errorf("GitLab project %s mirrors %s, not %s: connect changes another repository's mirror only with --force",
			r.target.GitLabPath, m.URL, r.target.CloneURL)
	case m.URL == "" && !r.project.created && !r.project.EmptyRepo && !r.opts.Force:
		return fmt.Errorf("GitLab project %s has commits of its own and is no mirror: pulling %s into it would overwrite its branches; "+
			"give another --gitlab-project, or --force if that is what you want", r.target.GitLabPath, r.target.CloneURL)
	}
	var why []string
	sendURL := !mirrored || !sameRepository(m.URL, r.target.CloneURL)
	switch {
	case !mirrored:
		why = append(why, "no mirror yet")
	case sendURL:
		why = append(why, "it pulled "+m.URL)
	}
	sendCredentials := sendURL || m.UpdateStatus == "failed" || r.opts.UpdateCredentials
	if !sendURL && m.UpdateStatus == "failed" {
		why = append(why, "its last update failed ("+oneLine(deref(m.LastError))+"): credentials sent again")
	} else if !sendURL && r.opts.UpdateCredentials {
		why = append(why, "credentials sent again (--update-credentials)")
	}
	if mirrored && !is(m.TriggerBuilds, true) {
		why = append(why, "pipelines for mirror updates were off")
	}
	if mirrored && !is(m.OverwriteDiverged, true) {
		why = append(why, "diverged branches were not overwritten")
	}
	if mirrored && !is(m.OnlyProtected, false) {
		why = append(why, "only protected branches were mirrored")
	}
	cred := r.creds.Mirror
	shown := mirrorURL(r.target.CloneURL, cred.User, "")
	if len(why) == 0 {
		r.note("mirror", "unchanged: pulls %s, pipelines for mirror updates on, diverged branches overwritten", shown)
		return nil
	}
	modern, err := r.atLeast(ctx, 17, 6)
	if err != nil {
		return fmt.Errorf("reading GitLab's version: %w", err)
	}
	settings := map[string]any{"mirror_trigger_builds": true, "mirror_overwrites_diverged_branches": true, "only_mirror_protected_branches": false}
	if modern {
		body := map[string]any{"enabled": true}
		for k, v := range settings {
			body[k] = v
		}
		if sendURL || sendCredentials {
			body["url"], body["auth_user"], body["auth_password"] = shown, cred.User, cred.Password
		}
		if err := r.gitlabCall(ctx, http.MethodPut, r.projectID()+"/mirror/pull", nil, body, nil); err != nil {
			return fmt.Errorf("setting %s's pull mirror: %w", r.target.GitLabPath, explainWrite(err))
		}
	} else {
		// Before 17.6 the credentials go in import_url, and GitLab has
		// been known to keep the URL and leave the mirror off: check.
		body := map[string]any{"mirror": true, "import_url": mirrorURL(r.target.CloneURL, cred.User, cred.Password)}
		for k, v := range settings {
			body[k] = v
		}
		if err := r.gitlabCall(ctx, http.MethodPut, r.projectID(), nil, body, nil); err != nil {
			return fmt.Errorf("setting %s's pull mirror (import_url, GitLab before 17.6): %w", r.target.GitLabPath, explainWrite(err))
		}
		if !r.opts.DryRun {
			if _, on, err := r.readMirror(ctx); err != nil || !on {
				return fmt.Errorf("GitLab took %s's mirror settings but the mirror is not on (GitLab's project API has done this before 17.6): "+
					"turn it on in Settings > Repository > Mirroring repositories, or upgrade GitLab to 17.6 or later", r.target.GitLabPath)
			}
		}
	}
	verb := "set"
	if r.opts.DryRun {
		verb = "would set"
	}
	r.note("mirror", "%s (%s): pulls %s with %s, pipelines for mirror updates on, diverged branches overwritten", verb,
		strings.Join(why, "; "), shown, cred.Kind)
	return nil
}

// mirrorURL is the clone URL with the user name GitLab's mirror needs in
// it (without, git fails with "terminal prompts disabled"), and the
// password when given (import_url, before 17.6).
func mirrorURL(clone, user, password string) string {
	u, err := url.Parse(clone)
	if err != nil {
		return clone
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String()
}

// explainWrite adds what to do to GitLab's refusal of a change.
func explainWrite(err error) error {
	var ae *gitlab.APIError
	if errors.As(err, &ae) && (ae.StatusCode == http.StatusForbidden || ae.StatusCode == http.StatusUnauthorized) {
		return fmt.Errorf("%w: GITLAB_TOKEN needs the api scope and its user the Maintainer role on the project", err)
	}
	return err
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

// parseTime reads GitLab's timestamps; zero when absent.
func parseTime(s *string) time.Time {
	t, _ := gitlab.ParseTime(deref(s))
	return t
}
