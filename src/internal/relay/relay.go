// Package relay is bitbucket-status-relay: it accepts GitLab's pipeline
// webhooks, stores each one durably before answering, and posts the status
// the pipeline's own jobs would post to Bitbucket, coalescing, ordering and
// retrying on the way. The HTTP side (handler.go) knows nothing of how work
// is done; the worker (worker.go) and the sweep (sweep.go) read the store.
package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/pipeline"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/repourl"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/statuskey"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

// Relay is one running relay.
type Relay struct {
	cfg     *Config
	store   store.Store
	clients map[string]*bitbucket.Client
	log     *slog.Logger
	metrics *metrics
	// owner names this process's leases.
	owner string
	// wake tells the worker that work was accepted.
	wake chan struct{}
	// ready is false while starting and once shutting down.
	ready atomic.Bool

	mirrorMu sync.Mutex
	mirrors  map[int64]mirrorEntry

	pauseMu sync.Mutex
	pauses  map[string]pause

	// routedProjectsKnown: the exact-path routes' projects are recorded for
	// the sweep (only the sweep's goroutine reads and writes it).
	routedProjectsKnown bool
}

type mirrorEntry struct {
	url     string
	fetched time.Time
}

// pause is a credential's rate-limit pause.
type pause struct {
	until   time.Time
	backoff time.Duration
}

// Options are what the relay takes besides its configuration.
type Options struct {
	Version string
	// Transport sends HTTP requests to Bitbucket and GitLab; nil: a real one.
	Transport http.RoundTripper
	// Log receives the JSON log lines (already filtered of secrets).
	Log io.Writer
}

// New wires a relay over st.
func New(cfg *Config, st store.Store, o Options) *Relay {
	transport := o.Transport
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = http.ProxyFromEnvironment
		t.MaxIdleConnsPerHost = 32
		transport = t
	}
	noRedirects := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	httpClient := &http.Client{Transport: transport, CheckRedirect: noRedirects}
	logger := slog.New(slog.NewJSONHandler(o.Log, nil))
	r := &Relay{cfg: cfg, store: st, clients: map[string]*bitbucket.Client{}, log: logger, metrics: newMetrics(st),
		owner: newOwner(), wake: make(chan struct{}, 1), mirrors: map[int64]mirrorEntry{}, pauses: map[string]pause{}}
	for name, auth := range cfg.Credentials {
		r.clients[name] = &bitbucket.Client{HTTP: httpClient, Auth: auth, UserAgent: "bitbucket-status-relay/" + o.Version,
			Log: &logWriter{log: logger, credential: name}, AttemptTimeout: postTimeout, MaxAttempts: 1}
	}
	if cfg.GitLab != nil {
		cfg.GitLab.HTTP = &http.Client{Transport: transport, CheckRedirect: noRedirects, Timeout: postTimeout}
		cfg.GitLab.UserAgent = "bitbucket-status-relay/" + o.Version
	}
	return r
}

func newOwner() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// logWriter turns the Bitbucket client's notices into log lines.
type logWriter struct {
	log        *slog.Logger
	credential string
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.log.Warn(strings.TrimPrefix(strings.TrimSpace(string(p)), "bitbucket-status: "), "credential", w.credential)
	return len(p), nil
}

// work is a stored report's body: the pipeline as last heard of, and where
// its status goes.
type work struct {
	Pipeline gitlab.Pipeline `json:"pipeline"`
	Dest     Destination     `json:"destination"`
}

// skipError is a pipeline that is not reported, with the reason.
type skipError struct {
	reason string // metric label
	msg    string
}

func (e *skipError) Error() string { return e.msg }

// destination finds where a project reports: the first matching route;
// else, with GITLAB_TOKEN, its pull mirror's URL; else the default route
// (group/project = workspace/repository). Never a guess for a subgroup.
func (r *Relay) destination(ctx context.Context, p gitlab.Pipeline) (Destination, error) {
	for _, rt := range r.cfg.routes {
		captures, ok := rt.match(p.ProjectPath)
		if !ok {
			continue
		}
		via := fmt.Sprintf("route %d (%s)", rt.index, rt.Project)
		if rt.Skip {
			return Destination{}, &skipError{"skip_route", via + " says skip"}
		}
		d := Destination{Credential: rt.Credential, Via: via}
		if d.Credential == "" {
			d.Credential = DefaultCredential
		}
		d.Key = expand(rt.Key, p.ProjectPath, captures, "")
		d.Name = expand(rt.Name, p.ProjectPath, captures, fmt.Sprint(p.IID))
		if rt.Cloud != "" {
			ws, slug, ok := strings.Cut(expand(rt.Cloud, p.ProjectPath, captures, ""), "/")
			if !ok || ws == "" || slug == "" || strings.Contains(slug, "/") {
				return Destination{}, &skipError{"bad_route", fmt.Sprintf("%s: cloud gives %q for %s, not workspace/slug", via, expand(rt.Cloud, p.ProjectPath, captures, ""), p.ProjectPath)}
			}
			d.Cloud = &bitbucket.Cloud{API: r.cfg.defaultCloudAPI, Workspace: ws, Slug: slug}
		} else {
			key, slug, ok := strings.Cut(expand(rt.Repository, p.ProjectPath, captures, ""), "/")
			if !ok || key == "" || slug == "" || strings.Contains(slug, "/") {
				return Destination{}, &skipError{"bad_route", fmt.Sprintf("%s: repository gives %q for %s, not PROJECT/slug", via, expand(rt.Repository, p.ProjectPath, captures, ""), p.ProjectPath)}
			}
			d.DataCenter = &bitbucket.DataCenter{Server: strings.TrimRight(rt.DataCenter, "/"), Project: key, Slug: slug}
		}
		return d, nil
	}
	if _, ok := r.cfg.Credentials[DefaultCredential]; !ok {
		return Destination{}, &skipError{"no_credential", "no route matches " + p.ProjectPath + " and BITBUCKET_ACCESS_TOKEN is not set"}
	}
	if r.cfg.GitLab != nil && p.ProjectID > 0 {
		if d, ok, err := r.mirrorDestination(ctx, p.ProjectID); err != nil {
			return Destination{}, err
		} else if ok {
			return d, nil
		}
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

// mirrorTTL is how long a project's mirror URL is remembered.
const mirrorTTL = time.Hour

// mirrorDestination is the repository a "CI/CD for external repository"
// project pulls from, asked of GitLab once an hour per project.
func (r *Relay) mirrorDestination(ctx context.Context, projectID int64) (Destination, bool, error) {
	r.mirrorMu.Lock()
	m, ok := r.mirrors[projectID]
	r.mirrorMu.Unlock()
	if !ok || time.Since(m.fetched) > mirrorTTL {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		u, err := r.cfg.GitLab.MirrorURL(ctx, projectID)
		var ae *gitlab.APIError
		switch {
		case errors.As(err, &ae) && !ae.Temporary():
			// The token may not see the project's settings (Maintainer
			// only): no mirror to follow; the default route decides.
			r.log.Info("no mirror URL from GitLab", "project_id", projectID, "reason", err.Error())
		case err != nil:
			return Destination{}, false, fmt.Errorf("reading project %d's mirror URL from GitLab: %w", projectID, err)
		}
		m = mirrorEntry{url: u, fetched: time.Now()}
		r.mirrorMu.Lock()
		r.mirrors[projectID] = m
		r.mirrorMu.Unlock()
	}
	if m.url == "" {
		return Destination{}, false, nil
	}
	repo, err := repourl.Parse(m.url)
	if err != nil {
		return Destination{}, false, nil
	}
	via := "the project's pull mirror"
	if repo.DataCenter {
		// Only the Data Center server configured here: the credential never
		// goes to a host read from GitLab.
		configured, err := url.Parse(r.cfg.defaultDataCenter)
		mirror, merr := url.Parse(repo.ServerURL)
		if r.cfg.defaultDataCenter == "" || err != nil || merr != nil || !strings.EqualFold(configured.Hostname(), mirror.Hostname()) {
			return Destination{}, false, &skipError{"mirror_unknown", fmt.Sprintf("project %d mirrors %s, which is not BITBUCKET_SERVER_URL: add a route for it", projectID, repo.ServerURL)}
		}
		return Destination{DataCenter: &bitbucket.DataCenter{Server: r.cfg.defaultDataCenter, Project: repo.Owner, Slug: repo.Slug}, Credential: DefaultCredential, Via: via}, true, nil
	}
	return Destination{Cloud: &bitbucket.Cloud{API: r.cfg.defaultCloudAPI, Workspace: repo.Owner, Slug: repo.Slug}, Credential: DefaultCredential, Via: via}, true, nil
}

// statusOf is the status the pipeline's jobs would post: one piece of code
// (pipeline.Status) for the job binary and the relay.
func statusOf(p gitlab.Pipeline, d Destination) (bitbucket.Status, error) {
	st, err := state.Parse(p.Status)
	if err != nil {
		return bitbucket.Status{}, err
	}
	pp := pipeline.Pipeline{ProjectPath: p.ProjectPath, URL: p.URL, State: st, CreatedAt: p.CreatedAt, EndedAt: p.FinishedAt}
	if p.IID > 0 {
		pp.IID = fmt.Sprint(p.IID)
	}
	if p.Tag {
		pp.Tag = p.Ref
	} else {
		pp.Branch = p.Ref
	}
	dc := d.DataCenter != nil
	s := pipeline.Status(pp, dc)
	if d.Key != "" {
		s.Key = statuskey.Fit(d.Key, pipeline.KeyLimit(dc))
	}
	if d.Name != "" {
		s.Name = pipeline.Cut(d.Name, pipeline.MaxText)
	}
	return s, nil
}

// statusID names a status: the repository, the commit and the key.
func statusID(d Destination, commit, key string) string {
	if d.DataCenter != nil {
		return "dc|" + d.DataCenter.Server + "|" + d.DataCenter.Project + "/" + d.DataCenter.Slug + "|" + commit + "|" + key
	}
	return "cloud|" + d.Cloud.API + "|" + d.Cloud.Workspace + "/" + d.Cloud.Slug + "|" + commit + "|" + key
}

// report turns a pipeline into what the store keeps.
func (r *Relay) report(ctx context.Context, p gitlab.Pipeline) (store.Report, bitbucket.Status, Destination, error) {
	d, err := r.destination(ctx, p)
	if err != nil {
		return store.Report{}, bitbucket.Status{}, Destination{}, err
	}
	s, err := statusOf(p, d)
	if err != nil {
		return store.Report{}, bitbucket.Status{}, Destination{}, &skipError{"unknown_status", fmt.Sprintf("pipeline %d: %v", p.ID, err)}
	}
	body, err := json.Marshal(work{Pipeline: p, Dest: d})
	if err != nil {
		return store.Report{}, bitbucket.Status{}, Destination{}, err
	}
	return store.Report{StatusID: statusID(d, p.SHA, s.Key), Credential: d.Credential, PipelineID: p.ID, State: string(s.State),
		Final: s.State.Final(), FinishedAt: p.FinishedAt, Body: body, ProjectID: p.ProjectID, ProjectPath: p.ProjectPath}, s, d, nil
}

// keep is the ordering rule. Per status: a newer pipeline (higher id)
// supersedes an older one, whose late events are ignored. Within a
// pipeline: the same state again is a duplicate (unless the last post was
// refused: the next event tries again); with GITLAB_TOKEN every other event
// is a trigger, since the worker posts what GitLab says now; without it, a
// final state is never replaced by a non-final one, and between final
// states the later finished_at wins (a retried pipeline ends with its last
// result).
func (r *Relay) keep(cur *store.Row, in store.Report) bool {
	switch {
	case cur == nil:
		return true
	case in.PipelineID != cur.PipelineID:
		return in.PipelineID > cur.PipelineID
	case in.State == cur.State && (cur.Pending || cur.LastError == ""):
		return false
	case !cur.Pending && cur.LastError == "" && cur.PostedPipeline == in.PipelineID && cur.PostedState == in.State:
		// What Bitbucket already shows (after a re-read, it may differ from
		// the event that triggered it).
		return false
	case r.cfg.GitLab != nil:
		return true
	case in.State == cur.State:
		// Refused last time: this event tries again.
		return true
	case cur.Final && !in.Final:
		return false
	case cur.Final && in.Final:
		return in.FinishedAt.After(cur.FinishedAt)
	}
	return true
}

// accept stores one pipeline's status durably. It returns whether the
// store took it (false: a duplicate or an out-of-order event).
func (r *Relay) accept(ctx context.Context, p gitlab.Pipeline) (bool, store.Report, error) {
	rep, _, _, err := r.report(ctx, p)
	if err != nil {
		return false, rep, err
	}
	changed, err := r.store.Accept(ctx, []store.Report{rep}, r.keep)
	if err != nil {
		return false, rep, err
	}
	if changed[0] {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	return changed[0], rep, nil
}
