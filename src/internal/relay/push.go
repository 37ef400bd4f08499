package relay

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/pushhook"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/repourl"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

// The first mile: Bitbucket's push webhooks in (POST /bitbucket, signed
// with BITBUCKET_RELAY_PUSH_SECRET), GitLab's pull mirror of each project
// the repository maps to started at once, and watched until an update
// that started after the last push has run; a mirror that cannot fetch
// shows as FAILED on the pushed commit.

// maxPushBody is the most read of a push webhook: Bitbucket Cloud's
// payloads stop at 256 KB (larger webhooks "may silently fail"), Data
// Center's are smaller.
const maxPushBody = 1 << 20

// push serves POST /bitbucket: verify the signature, read which repository
// moved, store a mirror job per GitLab project durably, answer 202. Every
// delivery must be signed; a wrong or missing signature is refused (401)
// before the body is read past the cap that bounds strangers' bodies. An
// unsigned Data Center ping ("Test connection") is answered and ignored.
func (r *Relay) push(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	event := req.Header.Get("X-Event-Key")
	count := func(result string) { r.metrics.pushes.WithLabelValues(result).Inc() }
	refuse := func(reason string) {
		count("unauthorized")
		if n, ok := r.refusals.allow(time.Now()); ok {
			r.log.Warn("push webhook refused", "reason", reason, "remote", req.RemoteAddr, "event", event, "refused_since_last_line", n)
		}
		w.Header().Set("Connection", "close")
		answer(w, http.StatusUnauthorized, reason)
	}
	signature := req.Header.Get("X-Hub-Signature")
	if event == pushhook.Ping && signature == "" {
		count("ping")
		answer(w, http.StatusOK, "pong: the relay's push endpoint answers (a ping does nothing; pushes must be signed)")
		return
	}
	if !strings.HasPrefix(signature, "sha256=") {
		// Nothing of a stranger's body is read.
		refuse(pushhook.Verify(r.cfg.PushSecret, nil, signature).Error())
		return
	}
	body, release, ok := r.readBody(w, req, maxPushBody, fmt.Sprintf("body over %d bytes: not a Bitbucket push webhook", maxPushBody), "", count)
	defer release()
	if !ok {
		return
	}
	if err := pushhook.Verify(r.cfg.PushSecret, body, signature); err != nil {
		refuse(err.Error())
		return
	}
	switch event {
	case pushhook.Ping:
		count("ping")
		answer(w, http.StatusOK, "pong")
		return
	case pushhook.CloudPush, pushhook.DataCenterPush:
	default:
		count("ignored")
		answer(w, http.StatusOK, fmt.Sprintf("ignored: X-Event-Key %q is not a push (subscribe the webhook to repo:push, or to repo:refs_changed on Data Center)", event))
		return
	}
	p, err := pushhook.Parse(event, body)
	if err != nil {
		count("bad_request")
		r.log.Warn("push webhook refused", "reason", err.Error(), "remote", req.RemoteAddr)
		answer(w, http.StatusBadRequest, "not a push payload: "+err.Error())
		return
	}
	attrs := []any{"repository", p.Where(), "refs", len(p.Refs), "request", cmp.Or(req.Header.Get("X-Request-UUID"), req.Header.Get("X-Request-Id"))}
	if len(p.Refs) == 0 {
		count("ignored")
		r.log.Info("push received: nothing to fetch", append(attrs, "deleted", p.Deleted)...)
		answer(w, http.StatusOK, "nothing to fetch: the push only deleted refs (a pull mirror keeps them)")
		return
	}
	projects := r.pushedProjects(p)
	if len(projects) == 0 {
		count("no_project")
		r.log.Warn("push received for a repository no GitLab project maps to: nothing started", attrs...)
		answer(w, http.StatusOK, "not mapped: no route, default route or known pull mirror maps "+p.Where()+
			" to a GitLab project (a wildcard route cannot be reversed: give the project a route of its own)")
		return
	}
	refs := make([]store.PushedRef, len(p.Refs))
	for i, ref := range p.Refs {
		refs[i] = store.PushedRef{Ref: ref.Ref, Commit: ref.Commit}
	}
	wake := false
	for _, project := range projects {
		fresh, err := r.store.AcceptPush(req.Context(), store.Push{ProjectPath: project, Repository: p.Where(), Refs: refs})
		wake = wake || fresh
		if err != nil {
			count("store_error")
			r.log.Error("push not stored", append(attrs, "project", project, "error", err.Error())...)
			answer(w, http.StatusServiceUnavailable, "not stored; the relay's store is unavailable (Bitbucket sends it again)")
			return
		}
	}
	count("accepted")
	r.log.Info("push received", append(attrs, "projects", strings.Join(projects, " "), "ms", time.Since(start).Milliseconds())...)
	if wake {
		// A push that joins a pending job is taken up with it (within 2 s):
		// waking the worker for each of a burst would only cost the store.
		r.nudgeMirrors()
	}
	answer(w, http.StatusAccepted, "accepted: the pull mirror of "+strings.Join(projects, ", ")+" is to fetch it")
}

// pushedProjects are the GitLab projects a Bitbucket repository maps to,
// the mapping of statuses reversed: routes with an exact project path and
// projects whose pull mirror the relay has read, where mirror following is
// allowed; when neither names the repository, the default route (Cloud
// workspace/repository = GitLab group/project). A wildcard route cannot be reversed; nothing is ever guessed:
// each candidate is checked by mapping it forward again.
func (r *Relay) pushedProjects(p pushhook.Push) []string {
	var out []string
	seen := map[string]bool{}
	add := func(path string) {
		if key := strings.ToLower(path); !seen[key] {
			seen[key] = true
			out = append(out, path)
		}
	}
	for _, rt := range r.cfg.routes {
		if rt.Skip || strings.Contains(rt.Project, "*") {
			continue
		}
		if d, ok := r.routeDestination(rt.Project); ok && sameRepository(d, p.Repo) {
			add(rt.Project)
		}
	}
	if r.cfg.followsMirrors() {
		r.mirrorMu.Lock()
		for _, m := range r.mirrors {
			if m.path == "" || m.repo == nil {
				continue
			}
			if repo := *m.repo; sameRepo(repo, p.Repo) && r.mirrorAllowed(repo) {
				add(m.path)
			}
		}
		r.mirrorMu.Unlock()
	}
	if len(out) == 0 && !p.Repo.DataCenter {
		// The default route's project, the same path as the repository's,
		// only when nothing names the repository: a project a route or a
		// mirror maps it to is where its pipelines run.
		candidate := p.Repo.Owner + "/" + p.Repo.Slug
		if d, ok := r.routeDestination(candidate); ok && sameRepository(d, p.Repo) {
			add(candidate)
		}
	}
	return out
}

// routeDestination is where a project's statuses go by the routes and the
// default route alone (no GitLab lookup): what a push's project is checked
// against.
func (r *Relay) routeDestination(path string) (Destination, bool) {
	for _, rt := range r.cfg.routes {
		if _, ok := rt.match(path); ok {
			d, err := r.routeOf(context.Background(), gitlab.Pipeline{ProjectPath: path})
			return d, err == nil
		}
	}
	if _, ok := r.cfg.Credentials[DefaultCredential]; !ok || r.cfg.defaultDataCenter != "" || strings.Count(path, "/") != 1 {
		return Destination{}, false
	}
	ws, slug, _ := strings.Cut(path, "/")
	return Destination{Cloud: &bitbucket.Cloud{API: r.cfg.defaultCloudAPI, Workspace: ws, Slug: slug}}, true
}

// mirrorAllowed reports whether a credential's mirror list allows a
// repository, as mirrorDestination does.
func (r *Relay) mirrorAllowed(repo repourl.Repo) bool {
	_, ok := r.mirrorCredential(func(a mirrorAllowList) bool {
		if repo.DataCenter {
			return a.projects[strings.ToLower(repo.Owner)]
		}
		return a.workspaces[strings.ToLower(repo.Owner)]
	})
	return ok
}

// sameRepository reports whether d posts to the repository pushed to.
func sameRepository(d Destination, pushed repourl.Repo) bool {
	switch {
	case d.Cloud != nil:
		return sameRepo(repourl.Repo{Owner: d.Cloud.Workspace, Slug: d.Cloud.Slug}, pushed)
	case d.DataCenter != nil:
		return sameRepo(repourl.Repo{DataCenter: true, ServerURL: d.DataCenter.Server, Owner: d.DataCenter.Project, Slug: d.DataCenter.Slug}, pushed)
	}
	return false
}

// sameRepo compares two repositories as their servers do: names in any
// case; a Data Center server by its host, when the push named one.
func sameRepo(a, b repourl.Repo) bool {
	if a.DataCenter != b.DataCenter || !strings.EqualFold(a.Owner, b.Owner) || !strings.EqualFold(a.Slug, b.Slug) {
		return false
	}
	if !a.DataCenter || a.ServerURL == "" || b.ServerURL == "" {
		return true
	}
	ua, errA := url.Parse(a.ServerURL)
	ub, errB := url.Parse(b.ServerURL)
	return errA == nil && errB == nil && strings.EqualFold(ua.Hostname(), ub.Hostname())
}

// nudgeMirrors tells the mirror worker there is work.
func (r *Relay) nudgeMirrors() {
	select {
	case r.mirrorWake <- struct{}{}:
	default:
	}
}
