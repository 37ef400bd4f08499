package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/config"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/explain"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

const (
	// postTimeout bounds one post (GitLab re-read included): a hung
	// Bitbucket holds a worker this long at most.
	postTimeout = 20 * time.Second
	// lease is how long a claimed row is this process's: past it, another
	// replica (or this one after a restart) takes it over. Longer than a
	// post, so a live replica keeps its rows; short enough that a dead one's
	// work moves on within 30 s.
	lease = 25 * time.Second
	// poll is how often the worker looks for retries that became due.
	poll = 250 * time.Millisecond
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
	defer inflight.Wait()
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	for ctx.Err() == nil {
		free := cap(slots) - len(slots)
		if free == 0 {
			select {
			case <-ctx.Done():
			case <-freed:
			}
			continue
		}
		rows, err := r.store.Claim(ctx, r.owner, time.Now(), lease, free)
		if err != nil && ctx.Err() == nil {
			r.log.Error("claiming work", "error", err.Error())
		}
		for _, row := range rows {
			slots <- struct{}{}
			inflight.Add(1)
			go func() {
				defer func() {
					<-slots
					inflight.Done()
					select {
					case freed <- struct{}{}:
					default:
					}
				}()
				r.post(row)
			}()
		}
		if err == nil && len(rows) == free {
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

// post makes one attempt at a claimed row and records its outcome. It runs
// on its own context: a shutdown lets a post in flight finish.
func (r *Relay) post(row store.Row) {
	ctx, cancel := context.WithTimeout(context.Background(), postTimeout)
	defer cancel()
	start := time.Now()
	o, attrs := r.attempt(ctx, row)
	paused := o.Error == errPaused
	r.metrics.latency.Observe(time.Since(start).Seconds())
	attrs = append(attrs, "status", row.StatusID, "attempt", row.Attempts+1, "ms", time.Since(start).Milliseconds())
	switch {
	case o.Error == "":
		r.log.Info("status posted", attrs...)
	case paused:
		r.log.Info("status waits for its credential's rate-limit pause", append(attrs, "until", o.RetryAt.Format(time.RFC3339))...)
	default:
		r.log.Warn("status not posted", append(attrs, "error", o.Error)...)
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if err := r.store.Finish(fctx, r.owner, row, o); err != nil {
		// The lease expires and the row is tried again: at worst a second post.
		r.log.Error("recording a post's outcome", "status", row.StatusID, "error", err.Error())
	}
}

func (r *Relay) attempt(ctx context.Context, row store.Row) (store.Outcome, []any) {
	var w work
	if err := json.Unmarshal(row.Body, &w); err != nil {
		r.metrics.posts.WithLabelValues("dropped", "none").Inc()
		return store.Outcome{Done: true, Error: "unreadable stored work: " + err.Error()}, nil
	}
	p, d := w.Pipeline, w.Dest
	attrs := []any{"project", p.ProjectPath, "pipeline", p.ID, "commit", p.SHA, "repository", d.Where(), "credential", d.Credential}
	client := r.clients[d.Credential]
	if client == nil {
		r.metrics.posts.WithLabelValues("dropped", "none").Inc()
		return store.Outcome{Done: true, Error: fmt.Sprintf("credential %q is no longer configured", d.Credential)}, attrs
	}
	if until := r.pausedUntil(d.Credential); !until.IsZero() {
		r.metrics.posts.WithLabelValues("paused", "none").Inc()
		return store.Outcome{RetryAt: until, Error: errPaused}, attrs
	}
	if r.cfg.GitLab != nil {
		now, err := r.cfg.GitLab.Pipeline(ctx, p.ProjectID, p.ID)
		var ae *gitlab.APIError
		switch {
		case errors.As(err, &ae) && !ae.Temporary():
			r.metrics.posts.WithLabelValues("dropped", "none").Inc()
			return store.Outcome{Done: true, Error: "re-reading the pipeline: " + err.Error()}, attrs
		case err != nil:
			r.metrics.posts.WithLabelValues("retry", "none").Inc()
			wait := r.backoff(row.Attempts)
			if ae != nil && ae.RetryAfter > wait {
				wait = ae.RetryAfter
			}
			return store.Outcome{RetryAt: time.Now().Add(wait), Error: "re-reading the pipeline: " + err.Error()}, attrs
		}
		now.ProjectPath, now.ProjectID = p.ProjectPath, p.ProjectID
		if now.URL == "" {
			now.URL = p.URL
		}
		p = now
	}
	s, err := statusOf(p, d)
	if err != nil {
		r.metrics.posts.WithLabelValues("dropped", "none").Inc()
		return store.Outcome{Done: true, Error: err.Error()}, attrs
	}
	attrs = append(attrs, "state", string(s.State), "key", s.Key)
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
		return store.Outcome{Done: true, PostedState: string(s.State), PostedPipeline: p.ID}, append(attrs, "code", posted.StatusCode)
	}
	var he *bitbucket.HTTPError
	switch {
	case errors.As(err, &he) && he.StatusCode == http.StatusTooManyRequests:
		until := r.pauseCredential(d.Credential, he.RetryAfter)
		r.metrics.posts.WithLabelValues("retry", "429").Inc()
		return store.Outcome{RetryAt: until, Error: rateLimited(he)}, append(attrs, "code", 429, "paused_until", until.Format(time.RFC3339))
	case he != nil && he.StatusCode >= 500:
		r.metrics.posts.WithLabelValues("retry", strconv.Itoa(he.StatusCode)).Inc()
		return store.Outcome{RetryAt: time.Now().Add(r.backoff(row.Attempts)), Error: he.Error()}, append(attrs, "code", he.StatusCode)
	case he != nil:
		// 400, 401, 403, 404: refused for good, with what the job binary
		// would say about it; the next event for the status tries again.
		run := &config.Run{Cloud: d.Cloud, DataCenter: d.DataCenter, Commit: p.SHA, Status: s, Auth: client.Auth, Timeout: postTimeout,
			From: config.Origins{Owner: d.Via, Slug: d.Via, Commit: "the pipeline's commit", Server: d.Via}}
		r.metrics.posts.WithLabelValues("refused", strconv.Itoa(he.StatusCode)).Inc()
		return store.Outcome{Done: true, Error: explain.Failure(err, run, true)}, append(attrs, "code", he.StatusCode)
	}
	r.metrics.posts.WithLabelValues("retry", "none").Inc()
	return store.Outcome{RetryAt: time.Now().Add(r.backoff(row.Attempts)), Error: err.Error()}, attrs
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
