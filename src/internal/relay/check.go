package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
)

// Check makes one read-only request per route (and one to GitLab, with
// GITLAB_TOKEN), posts nothing, and writes a line per check to w. It
// returns the number of failed checks.
func (r *Relay) Check(ctx context.Context, w io.Writer) int {
	failed := 0
	report := func(what string, err error, d *Destination) {
		if err == nil {
			fmt.Fprintf(w, "ok: %s\n", what)
			return
		}
		failed++
		msg := err.Error()
		if d != nil {
			msg = r.advice(err, *d, "", "", false)
		}
		fmt.Fprintf(w, "FAILED: %s: %s\n", what, msg)
	}
	if r.cfg.GitLab != nil {
		v, err := r.cfg.GitLab.Version(ctx)
		report(fmt.Sprintf("GitLab at %s answers with GITLAB_TOKEN (version %s)", r.cfg.GitLab.BaseURL, v), err, nil)
	}
	for _, rt := range r.cfg.routes {
		what := fmt.Sprintf("route %d (%s)", rt.index, rt.Project)
		if rt.Skip {
			fmt.Fprintf(w, "ok: %s: skipped projects, nothing to check\n", what)
			continue
		}
		cred := rt.Credential
		if cred == "" {
			cred = DefaultCredential
		}
		client := r.clients[cred]
		req, d, where := checkRequest(rt, r.cfg.defaultCloudAPI)
		if req.URL == "" {
			fmt.Fprintf(w, "skipped: %s: %s has placeholders down to the server, nothing concrete to read\n", what, where)
			continue
		}
		d.Credential, d.Via = cred, what
		_, err := client.Do(ctx, req)
		report(fmt.Sprintf("%s: credential %q can read %s", what, cred, where), err, &d)
	}
	if _, ok := r.cfg.Credentials[DefaultCredential]; ok {
		fmt.Fprintf(w, "note: the default route (group/project = workspace/repository) is checked by its first post: its repositories are not known in advance\n")
	}
	if r.cfg.PushSecret != "" {
		failed += r.checkPushes(ctx, w)
	}
	return failed
}

// checkPushes checks, without starting anything, that a push can start
// the mirrors: the token's api scope, and for each route with an exact
// project path, that the project is a pull mirror whose settings the token
// may read (the Maintainer role).
func (r *Relay) checkPushes(ctx context.Context, w io.Writer) int {
	failed := 0
	gl := r.cfg.GitLab
	tok, err := gl.Self(ctx)
	switch {
	case err != nil:
		failed++
		fmt.Fprintf(w, "FAILED: GITLAB_TOKEN's scopes (GET /personal_access_tokens/self): %v\n", err)
	case !slices.Contains(tok.Scopes, "api"):
		failed++
		fmt.Fprintf(w, "FAILED: GITLAB_TOKEN has the scopes %s, not api: a push starts GitLab's pull mirror (POST /projects/:id/mirror/pull), "+
			"which needs the api scope: give the relay a token with api (and the Maintainer role on the projects)\n", strings.Join(tok.Scopes, ", "))
	default:
		fmt.Fprintf(w, "ok: GITLAB_TOKEN has the api scope: pushes can start pull mirrors\n")
	}
	for _, rt := range r.cfg.routes {
		if rt.Skip || strings.Contains(rt.Project, "*") {
			continue
		}
		what := fmt.Sprintf("route %d (%s)", rt.index, rt.Project)
		id, err := gl.ProjectID(ctx, rt.Project)
		if err != nil {
			failed++
			fmt.Fprintf(w, "FAILED: %s: the GitLab project: %v\n", what, err)
			continue
		}
		m, err := gl.PullMirror(ctx, id)
		var ae *gitlab.APIError
		switch {
		case errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest:
			failed++
			fmt.Fprintf(w, "FAILED: %s: the project is not a pull mirror (%s): a push to its repository starts nothing; set it up "+
				"(bitbucket-status-relay connect)\n", what, ae.Message)
		case errors.As(err, &ae) && (ae.StatusCode == http.StatusForbidden || ae.StatusCode == http.StatusUnauthorized):
			failed++
			fmt.Fprintf(w, "FAILED: %s: GITLAB_TOKEN may not read the project's mirror (%d): it needs the Maintainer role to start it\n",
				what, ae.StatusCode)
		case err != nil:
			failed++
			fmt.Fprintf(w, "FAILED: %s: the project's pull mirror: %v\n", what, err)
		default:
			fmt.Fprintf(w, "ok: %s: GITLAB_TOKEN can start the pull mirror of %s (from %s; last update %s)\n", what, rt.Project, r.clean(m.URL),
				m.UpdateStatus)
		}
	}
	return failed
}

// checkRequest is the most concrete read-only request a route allows: the
// repository, else the workspace or project, when its placeholders leave one.
func checkRequest(rt route, api string) (bitbucket.Request, Destination, string) {
	concrete := func(s string) bool { return !strings.Contains(s, "{") }
	var d Destination
	if rt.Cloud != "" {
		ws, slug, _ := strings.Cut(rt.Cloud, "/")
		d.Cloud = &bitbucket.Cloud{API: api, Workspace: ws, Slug: slug}
		switch {
		case concrete(ws) && concrete(slug):
			return d.Cloud.CheckRequest(""), d, d.Cloud.Where()
		case concrete(ws):
			return bitbucket.Request{Method: http.MethodGet, URL: api + "/repositories/" + ws + "?pagelen=1"}, d, "workspace " + ws
		}
		return bitbucket.Request{}, d, rt.Cloud
	}
	key, slug, _ := strings.Cut(rt.Repository, "/")
	server := strings.TrimRight(rt.DataCenter, "/")
	d.DataCenter = &bitbucket.DataCenter{Server: server, Project: key, Slug: slug}
	switch {
	case concrete(key) && concrete(slug):
		return d.DataCenter.CheckRequest(""), d, d.DataCenter.Where()
	case concrete(key):
		return bitbucket.Request{Method: http.MethodGet, URL: server + "/rest/api/latest/projects/" + key}, d, "project " + key + " at " + server
	}
	return bitbucket.Request{}, d, rt.Repository
}
