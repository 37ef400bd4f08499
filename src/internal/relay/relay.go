// Package relay is bitbucket-status-relay: it accepts GitLab's pipeline
// webhooks, stores each one durably before answering, and posts the status
// the pipeline's own jobs would post to Bitbucket, coalescing, ordering and
// retrying on the way. The HTTP side (handler.go) knows nothing of how work
// is done; the worker (worker.go) and the sweep (sweep.go) read the store;
// destination.go decides where a pipeline reports.
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/config"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/pipeline"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/redact"
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
	// wake tells the worker that work was accepted; mirrorWake, the mirror
	// worker that a push was.
	wake, mirrorWake chan struct{}
	// ready is false while starting and once shutting down.
	ready atomic.Bool
	// servers limits the posts in flight per Bitbucket server and breaks
	// the circuit to one that keeps failing.
	servers *serverGates
	// bodies bounds the webhook bodies being read at once.
	bodies *readBudget
	// refusals samples the log lines of refused webhooks; readyLog, of
	// failed readiness checks; logins, of refused status page logins.
	refusals, readyLog, logins sampler
	// readyWrote is when readiness last committed a write; readyErr, how
	// that ended.
	readyMu    sync.Mutex
	readyWrote time.Time
	readyErr   error

	mirrorMu sync.Mutex
	mirrors  map[int64]mirrorEntry
	// gitlabDownUntil: after GitLab failed to answer, webhooks do not wait
	// for it until then; their destination is resolved later.
	gitlabDownUntil atomic.Int64

	triggersMu sync.Mutex
	triggers   map[int64]string // child pipeline id -> its trigger job's name

	pauseMu sync.Mutex
	pauses  map[string]pause

	// reports are the test reports published.
	reports reports
	// secrets are every credential the relay knows (the configuration's, and
	// OAuth access tokens as they are fetched): removed from what reports
	// send (test output may print one) and from every text a server sent
	// before it is stored.
	secrets *redact.Set

	verifyMu sync.Mutex
	verify   map[string]*tokenBucket // per credential

	// routed is the sweep's list of the projects routes name (exact paths
	// and wildcard groups), and when it was made; only the sweep's
	// goroutine reads and writes them.
	routed     []gitlab.ProjectRef
	routedAt   time.Time
	routedOnce bool
}

type mirrorEntry struct {
	// path is the project's, for a push to find the projects that mirror
	// a repository.
	path string
	// repo is the repository the mirror pulls, read once when fetched;
	// nil when the project has no mirror URL, or one that names none.
	repo    *repourl.Repo
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
	// Secrets learns the secrets fetched while running (OAuth access
	// tokens), so the log filter removes them too.
	Secrets *redact.Set
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
	secrets := o.Secrets
	if secrets == nil {
		secrets = &redact.Set{}
	}
	for _, v := range cfg.Secrets {
		secrets.Add(v)
	}
	for _, a := range cfg.Credentials {
		if a.Kind == bitbucket.Basic {
			secrets.AddBasic(a.Username, a.Token)
		}
	}
	r := &Relay{cfg: cfg, store: st, clients: map[string]*bitbucket.Client{}, log: logger, owner: newOwner(),
		wake: make(chan struct{}, 1), mirrorWake: make(chan struct{}, 1), mirrors: map[int64]mirrorEntry{}, pauses: map[string]pause{}, triggers: map[int64]string{},
		verify: map[string]*tokenBucket{}, bodies: newReadBudget(smallBodyBudget, cfg.ReadBudget),
		refusals: sampler{interval: 10 * time.Second}, readyLog: sampler{interval: 10 * time.Second},
		logins: sampler{interval: 10 * time.Second}, secrets: secrets}
	r.servers = newServerGates(cfg.ServerWorkers, cfg.RetryBase, logger)
	r.metrics = newMetrics(st, r.servers)
	for name, auth := range cfg.Credentials {
		r.clients[name] = &bitbucket.Client{HTTP: httpClient, Auth: auth, UserAgent: "bitbucket-status-relay/" + o.Version,
			Log: &logWriter{log: logger, credential: name}, AttemptTimeout: postTimeout, MaxAttempts: 1, Secrets: secrets}
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
// its status goes. Unresolved: where is not known yet (GitLab did not
// answer the lookup); the worker finds it, then stores the real report.
type work struct {
	Pipeline   gitlab.Pipeline `json:"pipeline"`
	Dest       Destination     `json:"destination"`
	Unresolved bool            `json:"unresolved,omitempty"`
	// Mirror, when set, is a pull mirror that could not fetch the commit:
	// it posts that, not the pipeline (there is none yet).
	Mirror *mirrorFailure `json:"mirror,omitempty"`
}

// clean makes a text that came from a server (an error body) fit to
// store and show: every credential the relay knows, and anything shaped
// like one, removed; control characters made visible.
func (r *Relay) clean(text string) string {
	return redact.Printable(r.secrets.Scrub(text))
}

// statusOf is statusOf with a link Bitbucket takes: a pipeline's web_url
// that is not http(s), not on GITLAB_URL's host (when set) or not one
// Bitbucket Cloud accepts is replaced by the pipeline's page on GITLAB_URL,
// else the commit's page on Bitbucket. A javascript: link was posted as it
// came, Cloud refused it, and the status was lost.
func (r *Relay) statusOf(p gitlab.Pipeline, d Destination) (bitbucket.Status, error) {
	s, err := statusOf(p, d)
	if err != nil || r.linkProblem(s.URL, d) == nil {
		return s, err
	}
	s.URL = ""
	if g := r.cfg.GitLab; g != nil && p.ID > 0 {
		s.URL = g.BaseURL + "/" + p.ProjectPath + "/-/pipelines/" + strconv.FormatInt(p.ID, 10)
	}
	if s.URL == "" || r.linkProblem(s.URL, d) != nil {
		s.URL = commitPage(d, p.SHA)
	}
	return s, nil
}

// linkProblem says why a link may not go to Bitbucket.
func (r *Relay) linkProblem(link string, d Destination) error {
	if err := config.CheckLink("the pipeline's web_url", link, d.Cloud != nil); err != nil {
		return err
	}
	if g := r.cfg.GitLab; g != nil {
		u, _ := url.Parse(link)
		base, _ := url.Parse(g.BaseURL)
		if !strings.EqualFold(u.Host, base.Host) {
			return fmt.Errorf("the pipeline's web_url is on %s, not on GITLAB_URL's host %s", u.Host, base.Host)
		}
	}
	return nil
}

// commitPage is the commit's page in Bitbucket's web interface.
func commitPage(d Destination, commit string) string {
	if dc := d.DataCenter; dc != nil {
		return dc.Server + "/projects/" + url.PathEscape(dc.Project) + "/repos/" + url.PathEscape(dc.Slug) + "/commits/" + commit
	}
	return "https://bitbucket.org/" + url.PathEscape(d.Cloud.Workspace) + "/" + url.PathEscape(d.Cloud.Slug) + "/commits/" + commit
}

// statusOf is the status the pipeline's jobs would post: one piece of code
// (pipeline.Status) for the job binary and the relay.
func statusOf(p gitlab.Pipeline, d Destination) (bitbucket.Status, error) {
	st, err := state.Parse(p.Status)
	if err != nil {
		return bitbucket.Status{}, err
	}
	pp := pipeline.Pipeline{ProjectPath: p.ProjectPath, URL: p.URL, State: st, Word: p.Status, Manual: p.Manual, CreatedAt: p.CreatedAt,
		EndedAt: p.FinishedAt}
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

// unresolvedID names the row of a pipeline whose destination is not known
// yet: per project and commit, so the ordering rule holds among them as it
// will in the status they feed (a child apart from its parent).
func unresolvedID(p gitlab.Pipeline) string {
	id := fmt.Sprintf("unresolved|%d|%s", p.ProjectID, p.SHA)
	if p.IsChild() {
		id += fmt.Sprintf("|child-%d", p.ID)
	}
	return id
}

// report turns a pipeline into what the store keeps. A destination that
// needs GitLab while GitLab does not answer gives an unresolved report.
func (r *Relay) report(ctx context.Context, p gitlab.Pipeline) (store.Report, Destination, error) {
	st, err := state.Parse(p.Status)
	if err != nil {
		return store.Report{}, Destination{}, &skipError{"unknown_status", fmt.Sprintf("pipeline %d: %v", p.ID, err)}
	}
	d, err := r.destination(ctx, p)
	var unresolved *unresolvedError
	if errors.As(err, &unresolved) {
		body, err := json.Marshal(work{Pipeline: p, Unresolved: true})
		if err != nil {
			return store.Report{}, Destination{}, err
		}
		return store.Report{StatusID: unresolvedID(p), Server: r.cfg.GitLab.BaseURL, PipelineID: p.ID, State: string(st), Final: st.Final(),
			FinishedAt: p.FinishedAt, Body: body, ProjectID: p.ProjectID, ProjectPath: p.ProjectPath, Commit: p.SHA,
			Source: sourceOf(ctx, p), GitLabStatus: p.Status, IID: p.IID}, Destination{}, unresolved
	}
	if err != nil {
		return store.Report{}, Destination{}, err
	}
	s, err := r.statusOf(p, d)
	if err != nil {
		return store.Report{}, Destination{}, &skipError{"unknown_status", fmt.Sprintf("pipeline %d: %v", p.ID, err)}
	}
	body, err := json.Marshal(work{Pipeline: p, Dest: d})
	if err != nil {
		return store.Report{}, Destination{}, err
	}
	return store.Report{StatusID: statusID(d, p.SHA, s.Key), Credential: d.Credential, Server: d.Server(), PipelineID: p.ID,
		State: string(s.State), Final: s.State.Final(), FinishedAt: p.FinishedAt, Body: body, ProjectID: p.ProjectID,
		ProjectPath: p.ProjectPath, Commit: p.SHA, Source: sourceOf(ctx, p), GitLabStatus: p.Status, Description: s.Description, IID: p.IID}, d, nil
}

// sourceOf says where an event came from, for the status's history: the
// pipeline's source, and how it reached the relay.
func sourceOf(ctx context.Context, p gitlab.Pipeline) string {
	via := "webhook"
	if v, ok := ctx.Value(viaContext{}).(string); ok {
		via = v
	}
	if p.Source == "" {
		return via
	}
	return p.Source + ", " + via
}

// viaContext names how the events of a context reach the relay, when not
// by webhook: "sweep", "resolved".
type viaContext struct{}

// keep is the ordering rule. Per status: a newer pipeline (higher id)
// supersedes an older one, whose late events are ignored; but a skipped
// pipeline ran nothing and never takes another's place. Within a
// pipeline: the same state again is a duplicate (unless the last post was
// refused: the next event tries again); a final state is never replaced by
// a non-final one, and between final states the later finished_at wins (a
// retried pipeline ends with its last result). That is the state stored,
// and posted when GitLab cannot be asked. With GITLAB_TOKEN an event the
// rule leaves out still wakes the status: the worker posts what GitLab
// says now (a retried pipeline running again), and falls back to the
// stored state if GitLab does not answer.
func (r *Relay) keep(cur *store.Row, in store.Report) (store.Decision, string) {
	switch {
	case cur == nil:
		return store.Replace, "a new status"
	case in.PipelineID != cur.PipelineID && skipped(&in) && !skipped(&cur.Report):
		return store.Ignore, fmt.Sprintf("ignored: pipeline %d was skipped (it ran nothing): it does not replace pipeline %d's %s",
			in.PipelineID, cur.PipelineID, cur.State)
	case in.PipelineID < cur.PipelineID && skipped(&cur.Report):
		return store.Replace, fmt.Sprintf("pipeline %d was skipped (it ran nothing): pipeline %d's %s replaces it", cur.PipelineID,
			in.PipelineID, in.State)
	case in.PipelineID > cur.PipelineID:
		return store.Replace, fmt.Sprintf("pipeline %d is newer than %d: it replaces it", in.PipelineID, cur.PipelineID)
	case in.PipelineID < cur.PipelineID:
		return store.Ignore, fmt.Sprintf("ignored: pipeline %d is older than %d, which this status shows", in.PipelineID, cur.PipelineID)
	case in.State == cur.State && in.Final && in.FinishedAt.After(cur.FinishedAt):
		// A later run of the pipeline (a retry) that ended as the one before:
		// its time is kept, so that a late event of the earlier run, or of
		// one in between, cannot win over it.
		return store.Replace, fmt.Sprintf("the pipeline ended %s again, later (a rerun): this is its last result", in.State)
	case in.State == cur.State && cur.Pending:
		return store.Ignore, "ignored: a duplicate of the state waiting to be posted"
	case !cur.Pending && cur.LastError == "" && cur.PostedPipeline == in.PipelineID && cur.PostedState == in.State:
		// What Bitbucket was last given (after a re-read, it may differ
		// from the event that triggered it).
		if in.State == cur.State {
			return store.Ignore, "ignored: a duplicate"
		}
		return store.Ignore, "ignored: Bitbucket shows it already"
	case in.State == cur.State && cur.LastError != "":
		return store.Replace, "the last post was refused: this event tries again"
	case in.State == cur.State:
		// Bitbucket was last given something else: a rerun (its running
		// state was posted after a re-read) that ended as before.
		return store.Replace, fmt.Sprintf("Bitbucket was last given %s: this %s is new", shownText(cur), in.State)
	case cur.Final && (!in.Final || !in.FinishedAt.After(cur.FinishedAt)):
		if r.cfg.GitLab != nil {
			return store.Wake, fmt.Sprintf("after %s, %s: GitLab is asked which is right before posting", cur.State, in.State)
		}
		return store.Ignore, fmt.Sprintf("ignored: %s came after the final %s of the same pipeline", in.State, cur.State)
	}
	return store.Replace, "taken"
}

// skipped reports whether a report is of a skipped pipeline ([ci skip],
// only optional manual jobs): it ran nothing, so it never takes the place
// of another pipeline's state.
func skipped(r *store.Report) bool { return r.GitLabStatus == "skipped" }

// shownText names what Bitbucket was last given for a status.
func shownText(cur *store.Row) string {
	if cur.PostedPipeline == 0 {
		return "nothing"
	}
	return fmt.Sprintf("%s for pipeline %d", cur.PostedState, cur.PostedPipeline)
}

// accept stores one pipeline's status durably. It returns whether the
// store took it (false: a duplicate or an out-of-order event).
func (r *Relay) accept(ctx context.Context, p gitlab.Pipeline) (bool, store.Report, error) {
	rep, _, err := r.report(ctx, p)
	var unresolved *unresolvedError
	if err != nil && !errors.As(err, &unresolved) {
		return false, rep, err
	}
	changed, serr := r.store.Accept(ctx, []store.Report{rep}, r.keep)
	if serr != nil {
		return false, rep, serr
	}
	if changed[0] {
		r.nudge()
	}
	return changed[0], rep, err
}

// noteSkip records a pipeline not reported, for the operator who asks why
// its commit shows nothing; a failure to record it is only logged.
func (r *Relay) noteSkip(ctx context.Context, p gitlab.Pipeline, skip *skipError) {
	err := r.store.NoteSkip(ctx, store.Skip{Commit: p.SHA, ProjectPath: p.ProjectPath, PipelineID: p.ID, IID: p.IID, Source: p.Source,
		Reason: skip.reason, Detail: r.clean(skip.msg)})
	if err != nil {
		r.log.Warn("recording why a pipeline is not reported", "pipeline", p.ID, "error", err.Error())
	}
}

// nudge tells the worker there is work, without waiting.
func (r *Relay) nudge() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// skipError is a pipeline that is not reported, with the reason.
type skipError struct {
	reason string // metric label
	msg    string
}

func (e *skipError) Error() string { return e.msg }

// unresolvedError is a destination that needs GitLab, which did not answer:
// the event is stored as it is, and its destination found later.
type unresolvedError struct{ err error }

func (e *unresolvedError) Error() string {
	return "its destination waits for GitLab, which did not answer: " + e.err.Error()
}

func (e *unresolvedError) Unwrap() error { return e.err }
