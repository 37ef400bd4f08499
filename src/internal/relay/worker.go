package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

const (
	// postTimeout bounds one post (GitLab re-read included): a hung
	// Bitbucket holds a worker this long at most.
	postTimeout = 20 * time.Second
	// defaultLease is how long a claimed row is this process's, by the
	// store's clock: past it, another replica (or this one after a
	// restart) takes it over. A post ends (its requests are cut) a fifth of
	// the lease before the lease does, so two posts of one status never
	// overlap; a dead replica's work moves on within 30 s.
	defaultLease = 25 * time.Second
	// poll is how often the worker looks for retries that became due.
	poll = 250 * time.Millisecond
	// claimBackoffMax caps the wait between claims while the store fails.
	claimBackoffMax = 5 * time.Second
	// defaultConfirmAfter is how long after a post that followed a request
	// left without an answer the post is made again: past any server's
	// own timeout for a request, so the repeat lands last.
	defaultConfirmAfter = time.Minute
)

// errPaused is the outcome of a row whose credential is paused.
const errPaused = "waiting: the credential is paused by a rate limit"

// Caps of the retry delays: per status for failures that may pass (5xx, no
// answer), per credential for Cloud's 429, which says no Retry-After.
const (
	retryMax   = 2 * time.Minute
	pauseMax   = 10 * time.Minute
	jitterFrac = 0.2
)

// Work posts what is due until ctx ends, then waits for the posts in flight.
func (r *Relay) Work(ctx context.Context) {
	slots := make(chan struct{}, r.cfg.Workers)
	// freed says a post ended, so its slot can take the next row at once.
	freed := make(chan struct{}, 1)
	var inflight sync.WaitGroup
	defer r.reports.inflight.Wait()
	defer inflight.Wait()
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	storeWait := time.Duration(0)
	for ctx.Err() == nil {
		free := cap(slots) - len(slots)
		if free == 0 {
			select {
			case <-ctx.Done():
			case <-freed:
			}
			continue
		}
		claimed := time.Now()
		rows, err := r.store.Claim(ctx, store.Claim{Owner: r.owner, Lease: r.cfg.lease, Limit: free, Skip: r.servers.skip()})
		if err != nil {
			// A claim that did not commit hands out nothing: wait, longer
			// while the store keeps failing, and try again.
			if ctx.Err() == nil {
				r.log.Error("claiming work: the store cannot write", "error", err.Error())
			}
			storeWait = min(max(storeWait*2, poll), claimBackoffMax)
			select {
			case <-ctx.Done():
			case <-time.After(storeWait):
			}
			continue
		}
		storeWait = 0
		for _, row := range rows {
			if !r.servers.take(row.Server) {
				// Another row of this claim filled the server's slots.
				r.handBack(row, "waiting: as many posts as allowed are in flight to "+row.Server)
				continue
			}
			slots <- struct{}{}
			inflight.Add(1)
			// No request for the row may start after its lease, as the
			// store's clock counts it, less a fifth to record the outcome.
			deadline := claimed.Add(row.LeaseLeft - r.cfg.lease/5)
			go func() {
				defer func() {
					<-slots
					inflight.Done()
					select {
					case freed <- struct{}{}:
					default:
					}
				}()
				r.post(row, deadline)
			}()
		}
		if len(rows) == free {
			continue // more may be due
		}
		// Nothing more is due: wait for new work or a retry's time.
		select {
		case <-ctx.Done():
		case <-r.wake:
		case <-ticker.C:
		}
	}
}

// handBack returns a claimed row untried, due again soon.
func (r *Relay) handBack(row store.Row, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.store.Finish(ctx, r.owner, row, store.Outcome{RetryAt: time.Now().Add(poll), NotAttempted: true, Error: why}); err != nil {
		r.log.Error("recording a post's outcome", "status", row.StatusID, "error", err.Error())
	}
}

// post makes one attempt at a claimed row and records its outcome. It runs
// on its own context, which ends at deadline: a shutdown lets a post in
// flight finish; a lease never outlives its post.
func (r *Relay) post(row store.Row, deadline time.Time) {
	if limit := time.Now().Add(postTimeout); limit.Before(deadline) {
		deadline = limit
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	o, result, attrs := r.attempt(ctx, row)
	// What a server said is stored and shown: never a credential, never a
	// terminal's control sequence.
	o.Error = r.clean(o.Error)
	r.servers.done(row.Server, result)
	r.metrics.latency.Observe(time.Since(start).Seconds())
	attrs = append(attrs, "status", row.StatusID, "attempt", row.Attempts+1, "ms", time.Since(start).Milliseconds())
	switch {
	case o.PostedState != "":
		r.log.Info("status posted", attrs...)
	case o.Done && o.Error == "":
		r.log.Info("destination resolved", attrs...)
	case o.NotAttempted:
		r.log.Info("status waits", append(attrs, "reason", o.Error, "until", o.RetryAt.Format(time.RFC3339))...)
	default:
		r.log.Warn("status not posted", append(attrs, "error", o.Error, "uncertain", o.Uncertain)...)
	}
	// Recorded while the lease lasts, trying again if the store fails for a
	// moment (PostgreSQL restarting): a result not recorded leaves the
	// status leased until its lease ends, then posted again.
	leaseEnd := deadline.Add(r.cfg.lease / 5)
	for wait := 100 * time.Millisecond; ; wait = min(wait*2, time.Second) {
		fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
		f, err := r.store.Finish(fctx, r.owner, row, o)
		fcancel()
		switch {
		case err != nil && time.Now().Add(wait).Before(leaseEnd):
			time.Sleep(wait)
			continue
		case err != nil:
			r.log.Error("recording a post's outcome", "status", row.StatusID, "error", err.Error())
		case f.Rearmed:
			r.metrics.posts.WithLabelValues("rearmed", "none").Inc()
			r.log.Warn("another post of this status happened while this one ran, which may have landed last: the newest state is posted again",
				"status", row.StatusID)
			r.nudge()
		}
		return
	}
}

// attempt makes the row's one post: the outcome to store, what it says of
// the server, and the log line's attributes.
func (r *Relay) attempt(ctx context.Context, row store.Row) (store.Outcome, serverResult, []any) {
	var w work
	if err := json.Unmarshal(row.Body, &w); err != nil {
		r.metrics.posts.WithLabelValues("dropped", "none").Inc()
		return store.Outcome{Done: true, Error: "unreadable stored work: " + err.Error()}, serverUntried, nil
	}
	if w.Unresolved {
		return r.resolve(ctx, row, w.Pipeline)
	}
	p, d := w.Pipeline, w.Dest
	if d.Cloud == nil && d.DataCenter == nil {
		r.metrics.posts.WithLabelValues("dropped", "none").Inc()
		return store.Outcome{Done: true, Error: "unreadable stored work: it names no repository"}, serverUntried, []any{"pipeline", p.ID}
	}
	attrs := []any{"project", p.ProjectPath, "pipeline", p.ID, "commit", p.SHA, "repository", d.Where(), "credential", d.Credential}
	client := r.clients[d.Credential]
	if client == nil {
		r.metrics.posts.WithLabelValues("dropped", "none").Inc()
		return store.Outcome{Done: true, Error: fmt.Sprintf("credential %q is no longer configured", d.Credential)}, serverUntried, attrs
	}
	if until := r.pausedUntil(d.Credential); !until.IsZero() {
		r.metrics.posts.WithLabelValues("paused", "none").Inc()
		return store.Outcome{RetryAt: until, NotAttempted: true, Error: errPaused}, serverUntried, attrs
	}
	if r.cfg.GitLab != nil && w.Mirror == nil {
		p = r.reread(ctx, p)
	}
	s, err := r.statusOf(p, d)
	if w.Mirror != nil {
		s, err = r.mirrorStatus(w)
	}
	if err != nil {
		r.metrics.posts.WithLabelValues("dropped", "none").Inc()
		return store.Outcome{Done: true, Error: err.Error()}, serverUntried, attrs
	}
	if s.URL != p.URL {
		attrs = append(attrs, "link", s.URL, "link_refused", r.linkProblem(p.URL, d).Error())
	}
	wantsTests := w.Mirror == nil && r.wantsTests(p, d, s)
	var tests *testSummary
	if wantsTests && d.DataCenter != nil {
		// Data Center shows the counts on the status itself: they are read
		// first, waiting for GitLab at most gitlabLookupTimeout. Cloud's
		// status has no such field: its report reads them after the post.
		tests = r.testCounts(ctx, p)
		s.Tests = tests.counts()
	}
	attrs = append(attrs, "state", string(s.State), "key", s.Key)
	tried := &store.Attempt{State: string(s.State), PipelineID: p.ID, IID: p.IID}
	var posted bitbucket.Posted
	if d.DataCenter != nil {
		posted, err = d.DataCenter.Post(ctx, client, p.SHA, s)
	} else {
		posted, err = d.Cloud.Post(ctx, client, p.SHA, s)
	}
	if err == nil {
		r.resume(d.Credential)
		r.metrics.posts.WithLabelValues("posted", strconv.Itoa(posted.StatusCode)).Inc()
		if posted.Notice != "" {
			attrs = append(attrs, "notice", posted.Notice)
		}
		tried.Code = posted.StatusCode
		if wantsTests {
			r.publishTests(row.StatusID, p, d, tests)
		}
		return store.Outcome{Done: true, PostedState: string(s.State), PostedPipeline: p.ID, ConfirmAfter: r.cfg.confirmAfter, Attempt: tried},
			serverAnswered, append(attrs, "code", posted.StatusCode)
	}
	var he *bitbucket.HTTPError
	if errors.As(err, &he) {
		tried.Code = he.StatusCode
	}
	switch {
	case he != nil && he.StatusCode == http.StatusTooManyRequests:
		until := r.pauseCredential(d.Credential, he.RetryAfter)
		r.metrics.posts.WithLabelValues("retry", "429").Inc()
		return store.Outcome{RetryAt: until, Error: rateLimited(he), Attempt: tried}, serverAnswered,
			append(attrs, "code", 429, "paused_until", until.Format(time.RFC3339))
	case he != nil && he.StatusCode >= 500:
		r.metrics.posts.WithLabelValues("retry", strconv.Itoa(he.StatusCode)).Inc()
		return store.Outcome{RetryAt: time.Now().Add(r.backoff(row.Attempts)), Error: he.Error(), Attempt: tried}, serverFailed,
			append(attrs, "code", he.StatusCode)
	case he != nil:
		// 400, 401, 403, 404: refused for good, with what to change, in the
		// relay's terms; the next event for the status tries again.
		r.metrics.posts.WithLabelValues("refused", strconv.Itoa(he.StatusCode)).Inc()
		return store.Outcome{Done: true, Error: r.advice(err, d, s.Key, p.SHA, true), Attempt: tried}, serverAnswered, append(attrs, "code", he.StatusCode)
	}
	r.metrics.posts.WithLabelValues("retry", "none").Inc()
	msg := err.Error()
	if ctx.Err() != nil {
		msg = "no answer before the post's deadline (its lease, or " + postTimeout.String() + "): " + msg
	}
	return store.Outcome{RetryAt: time.Now().Add(r.backoff(row.Attempts)), Uncertain: mayHaveArrived(err), Error: msg, Attempt: tried}, serverFailed, attrs
}

// mayHaveArrived reports whether a request that got no answer may still
// have reached Bitbucket: anything but a connection that was never made.
func mayHaveArrived(err error) bool {
	return !errors.Is(err, syscall.ECONNREFUSED) && !strings.Contains(err.Error(), "no such host")
}

// reread asks GitLab for the pipeline as it is now. If GitLab does not
// answer, or refuses (a token that lost access), the stored event's own
// state is posted instead: the webhook was authenticated, and the ordering
// rule kept the right event. The failure is logged and counted.
func (r *Relay) reread(ctx context.Context, p gitlab.Pipeline) gitlab.Pipeline {
	rctx, cancel := context.WithTimeout(ctx, gitlabLookupTimeout)
	defer cancel()
	now, err := r.cfg.GitLab.Pipeline(rctx, p.ProjectID, p.ID)
	if err != nil {
		r.countGitLabError("pipeline", err)
		r.log.Warn("could not re-read the pipeline from GitLab: posting the webhook's own state", "project", p.ProjectPath,
			"pipeline", p.ID, "state", p.Status, "error", err.Error())
		return p
	}
	now.ProjectPath, now.ProjectID = p.ProjectPath, p.ProjectID
	now.ParentProjectID, now.ParentPipelineID = p.ParentProjectID, p.ParentPipelineID
	if now.URL == "" {
		now.URL = p.URL
	}
	if now.Status == p.Status {
		// The API names no jobs: the webhook's manual jobs still hold.
		now.Manual = p.Manual
	}
	if strings.HasPrefix(now.Ref, "refs/") {
		// The API names a merge request pipeline's ref refs/merge-requests/N/head;
		// the webhook names the branch, which is what Bitbucket shows it on.
		now.Ref = p.Ref
	}
	return now
}

// resolve finds where an unresolved pipeline reports, now that there is
// time to ask GitLab, and stores it there as a webhook would have.
func (r *Relay) resolve(ctx context.Context, row store.Row, p gitlab.Pipeline) (store.Outcome, serverResult, []any) {
	attrs := []any{"project", p.ProjectPath, "pipeline", p.ID, "commit", p.SHA}
	changed, rep, err := r.accept(context.WithValue(ctx, viaContext{}, "resolved"), p)
	var skip *skipError
	var unresolved *unresolvedError
	switch {
	case errors.As(err, &skip):
		r.metrics.skipped.WithLabelValues(skip.reason).Inc()
		r.noteSkip(ctx, p, skip)
		return store.Outcome{Done: true, Error: "not reported: " + skip.msg}, serverAnswered, attrs
	case errors.As(err, &unresolved):
		r.metrics.posts.WithLabelValues("retry", "none").Inc()
		return store.Outcome{RetryAt: time.Now().Add(r.backoff(row.Attempts)), Error: "waiting for GitLab to find where it reports: " + unresolved.err.Error()},
			serverFailed, attrs
	case err != nil:
		return store.Outcome{RetryAt: time.Now().Add(r.backoff(row.Attempts)), Error: err.Error()}, serverUntried, attrs
	}
	return store.Outcome{Done: true}, serverAnswered, append(attrs, "resolved_to", rep.StatusID, "changed", changed)
}

// backoff is the wait before retrying a status that failed attempts times:
// doubling from BITBUCKET_RELAY_RETRY_BASE to retryMax, with jitter; never
// giving up, so a Bitbucket down for an hour gets every status when it is
// back.
func (r *Relay) backoff(attempts int) time.Duration {
	d := r.cfg.RetryBase << min(attempts, 20)
	if d > retryMax || d <= 0 {
		d = retryMax
	}
	return jitter(d)
}

// rateLimited says what a 429 means for the relay: it waits, by itself.
func rateLimited(he *bitbucket.HTTPError) string {
	said := ""
	if s := he.Said(); s != "" {
		said = ": " + s
	}
	if he.RetryAfter > 0 {
		return fmt.Sprintf("Bitbucket answered 429 Too Many Requests%s; it asked to wait %s: every post with this credential waits", said, he.RetryAfter)
	}
	return "Bitbucket answered 429 Too Many Requests" + said + "; the credential's hourly rate limit is used up: every post with it waits, " +
		"longer each time the limit is still reached. Give busy projects a credential of their own (a route with its own credential)"
}

func jitter(d time.Duration) time.Duration {
	spread := time.Duration(float64(d) * jitterFrac)
	return d - spread + rand.N(2*spread+1)
}

// pauseCredential stops posts with a credential after a 429: for the wait
// Data Center asked (Retry-After), or, for Cloud, which asks none, for a
// wait that doubles with each 429 in a row, capped. Other credentials go on.
func (r *Relay) pauseCredential(credential string, retryAfter time.Duration) time.Time {
	r.pauseMu.Lock()
	defer r.pauseMu.Unlock()
	p := r.pauses[credential]
	if time.Now().Before(p.until) {
		// Posts that were in flight when the pause began get the same 429:
		// one pause, not one doubling per worker.
		return p.until
	}
	wait := retryAfter
	if wait <= 0 {
		p.backoff = min(max(p.backoff*2, r.cfg.PauseBase), pauseMax)
		wait = jitter(p.backoff)
	}
	if until := time.Now().Add(wait); until.After(p.until) {
		p.until = until
	}
	r.pauses[credential] = p
	return p.until
}

func (r *Relay) pausedUntil(credential string) time.Time {
	r.pauseMu.Lock()
	defer r.pauseMu.Unlock()
	if p := r.pauses[credential]; time.Now().Before(p.until) {
		return p.until
	}
	return time.Time{}
}

// resume forgets a credential's backoff once a post with it succeeds.
func (r *Relay) resume(credential string) {
	r.pauseMu.Lock()
	defer r.pauseMu.Unlock()
	delete(r.pauses, credential)
}
