// Package connect sets a Bitbucket repository up for GitLab CI/CD in one
// command, every step of GitLab's guide: the GitLab project ("CI/CD for
// external repository") and its pull mirror with working credentials, the
// CI/CD variables the component reads, the Bitbucket push webhook to the
// relay, and a mirror update that proves the loop. Each step reads first
// and writes only what differs, so a second run changes nothing and a run
// cut short is finished by the next.
package connect

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/redact"
)

// Options are one connect run's settings, the same for every repository.
type Options struct {
	// GitLab is the client, with a token that may create projects in the
	// group (or own the project), with the api scope.
	GitLab *gitlab.Client
	// Bitbucket sends the webhook requests, with the BITBUCKET_* credential.
	Bitbucket *bitbucket.Client
	// CloudAPI is Bitbucket Cloud's API base URL.
	CloudAPI string
	// Mirror and CI are the tokens the mirror and the variables carry;
	// MirrorToken and MirrorUser name the mirror's variables in errors.
	Mirror, CI              Token
	MirrorToken, MirrorUser string
	// PushSecret signs the Bitbucket webhook (BITBUCKET_RELAY_PUSH_SECRET);
	// RelayURL is the relay's base URL, "" for no webhook.
	PushSecret, RelayURL string
	// DryRun plans the writes and makes none; Force changes a project that
	// mirrors another repository, or has its own commits; RemoveTokenWebhook
	// deletes webhooks that carry a GitLab token; Verify starts a mirror
	// update even when nothing changed; UpdateCredentials sends the mirror's
	// credentials even when its last update worked.
	DryRun, Force, RemoveTokenWebhook, Verify, UpdateCredentials bool
	// Wait bounds the wait for the mirror update that verifies the loop;
	// Poll is how often it looks (2 s when zero).
	Wait, Poll time.Duration
	// Progress, when set (a terminal), hears how a long wait goes.
	Progress io.Writer
	// Log hears the waits GitLab's rate limit imposes.
	Log     io.Writer
	Secrets *redact.Set

	gate    *gate
	version versionOnce
}

func (o *Options) retryWait() time.Duration {
	if o.Poll > 0 && o.Poll < time.Second {
		return o.Poll
	}
	return time.Second
}

func (o *Options) poll() time.Duration {
	if o.Poll > 0 {
		return o.Poll
	}
	return 2 * time.Second
}

// versionOnce is GitLab's version, read once per run.
type versionOnce struct {
	once         sync.Once
	major, minor int
	err          error
}

// atLeast reports whether GitLab is major.minor or later.
func (r *run) atLeast(ctx context.Context, major, minor int) (bool, error) {
	v := &r.opts.version
	v.once.Do(func() {
		var doc struct {
			Version string `json:"version"`
		}
		if v.err = r.gitlabCall(ctx, http.MethodGet, "version", nil, nil, &doc); v.err == nil {
			_, _ = fmt.Sscanf(doc.Version, "%d.%d", &v.major, &v.minor)
		}
	})
	return v.major > major || (v.major == major && v.minor >= minor), v.err
}

// Steps are connect's steps, in order.
var Steps = []string{"project", "mirror", "variables", "webhook", "verify"}

// Result is what became of one repository.
type Result struct {
	Target Target
	// Changes counts the writes made (or, in a dry run, planned).
	Changes int
	// Lines say what each step found and did, "step: text".
	Lines []string
	// Plan is a dry run's writes.
	Plan []Planned
	// FailedStep is the step that failed ("" none) and Err why.
	FailedStep string
	Err        error
}

// Done lists the steps that completed before a failure.
func (r Result) Done() []string {
	for i, s := range Steps {
		if s == r.FailedStep {
			return Steps[:i]
		}
	}
	return Steps
}

// NotDone lists the steps a failure left.
func (r Result) NotDone() []string { return Steps[len(r.Done()):] }

// run is one repository's setup.
type run struct {
	opts   *Options
	target Target
	// say hears each line as it is found (single runs print them at once).
	say   func(step, text string)
	lines []string
	plan  []Planned
	wrote int

	creds   Credentials
	project project
}

func (r *run) note(step, format string, args ...any) {
	text := r.redact(fmt.Sprintf(format, args...))
	r.lines = append(r.lines, step+": "+text)
	if r.say != nil {
		r.say(step, text)
	}
}

// One sets one repository up; say, when set, hears each line as it comes.
func One(ctx context.Context, opts *Options, t Target, say func(step, text string)) Result {
	if opts.gate == nil {
		opts.gate = &gate{log: opts.Log}
	}
	r := &run{opts: opts, target: t, say: say}
	res := Result{Target: t}
	mirror, err := MirrorCredential(opts.Mirror, t.Repo.DataCenter, opts.MirrorToken, opts.MirrorUser)
	if err != nil {
		res.FailedStep, res.Err = "project", err
		return res
	}
	r.creds.Mirror = mirror
	r.creds.Variables, r.creds.Stale = CIVariables(opts.CI, t)
	for _, step := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"project", r.projectStep}, {"mirror", r.mirrorStep}, {"variables", r.variablesStep}, {"webhook", r.webhookStep},
		{"verify", r.verifyStep},
	} {
		if err := step.do(ctx); err != nil {
			res.FailedStep, res.Err = step.name, fmt.Errorf("%s", r.redact(err.Error()))
			break
		}
	}
	res.Changes, res.Lines, res.Plan = r.wrote, r.lines, r.plan
	return res
}

// Many sets targets up, at most concurrency at once; each result is
// handed to done as it ends, in the order they end.
func Many(ctx context.Context, opts *Options, targets []Target, concurrency int, done func(Result)) []Result {
	if opts.gate == nil {
		opts.gate = &gate{log: opts.Log}
	}
	results := make([]Result, len(targets))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(concurrency, 1))
	for i, t := range targets {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			res := One(ctx, opts, t, nil)
			mu.Lock()
			results[i] = res
			if done != nil {
				done(res)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return results
}

// Summary is a result in one line, for many repositories.
func (r Result) Summary(dryRun bool) string {
	name := r.Target.GitLabPath + " ← " + r.Target.CloneURL
	switch {
	case r.Err != nil:
		return fmt.Sprintf("FAILED %s: at %s: %v (done: %s; not done: %s)", name, r.FailedStep, r.Err, list(r.Done()), list(r.NotDone()))
	case dryRun && r.Changes > 0:
		return fmt.Sprintf("plan   %s: %d change(s) to make", name, r.Changes)
	case r.Changes > 0:
		return fmt.Sprintf("done   %s: %d change(s)", name, r.Changes)
	}
	return fmt.Sprintf("ok     %s: nothing to change", name)
}

func list(steps []string) string {
	if len(steps) == 0 {
		return "none"
	}
	return strings.Join(steps, ", ")
}
