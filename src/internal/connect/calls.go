package connect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/redact"
)

// Planned is a request that changes something, as a dry run prints it:
// the body's secrets redacted.
type Planned struct {
	Method, URL, Body string
}

// gate holds every worker's GitLab requests while GitLab's rate limit
// lasts: one 429 stops them all until its Retry-After.
type gate struct {
	mu    sync.Mutex
	until time.Time
	log   io.Writer
}

func (g *gate) wait(ctx context.Context) error {
	for {
		g.mu.Lock()
		d := time.Until(g.until)
		g.mu.Unlock()
		if d <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
}

// defaultRateLimitWait is the pause after a 429 that names no Retry-After.
const defaultRateLimitWait = 30 * time.Second

func (g *gate) pause(d time.Duration) {
	if d <= 0 {
		d = defaultRateLimitWait
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if until := time.Now().Add(d); until.After(g.until) {
		g.until = until
		if g.log != nil {
			fmt.Fprintf(g.log, "GitLab answered 429 (rate limited): no request to GitLab for %s\n", d.Round(time.Second))
		}
	}
}

// writes reports whether a method changes something.
func writes(method string) bool { return method != http.MethodGet && method != http.MethodHead }

// gitlabCall sends one GitLab request. In a dry run a write is planned,
// not sent. A 429 pauses every worker for its Retry-After, then the
// request is sent again; a 5xx or no answer is tried again for the
// requests that can be repeated safely (not POST).
func (r *run) gitlabCall(ctx context.Context, method, path string, q url.Values, body, out any) error {
	if writes(method) && r.opts.DryRun {
		u := strings.TrimRight(r.opts.GitLab.BaseURL, "/") + "/api/v4/" + path
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		r.planned(method, u, body)
		return nil
	}
	for attempt := 1; ; attempt++ {
		if err := r.opts.gate.wait(ctx); err != nil {
			return err
		}
		err := r.opts.GitLab.Do(ctx, method, path, q, body, out)
		var ae *gitlab.APIError
		var ne net.Error
		switch {
		case err == nil:
			if writes(method) {
				r.wrote++
			}
			return nil
		case errors.As(err, &ae) && ae.StatusCode == http.StatusTooManyRequests && attempt < 6:
			r.opts.gate.pause(ae.RetryAfter)
			continue
		case method == http.MethodPost || attempt >= 3 || ctx.Err() != nil:
			return err // a POST may have been done; the others tried enough
		case errors.As(err, &ae) && ae.StatusCode >= 500, !errors.As(err, &ae) && errors.As(err, &ne):
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(attempt) * r.opts.retryWait()):
			}
			continue
		}
		return err
	}
}

// bitbucketCall sends one Bitbucket request (the client retries 5xx and
// 429 itself); a dry run plans a write instead.
func (r *run) bitbucketCall(ctx context.Context, method, u string, body, out any) error {
	if writes(method) && r.opts.DryRun {
		r.planned(method, u, body)
		return nil
	}
	req := bitbucket.Request{Method: method, URL: u}
	if body != nil {
		req.Body = encode(body)
	}
	resp, err := r.opts.Bitbucket.Do(ctx, req)
	if err != nil {
		return err
	}
	if writes(method) {
		r.wrote++
	}
	if out != nil && len(bytes.TrimSpace(resp.Body)) > 0 {
		if err := json.Unmarshal(resp.Body, out); err != nil {
			return fmt.Errorf("the answer to %s %s is not the JSON Bitbucket sends: %v", method, u, err)
		}
	}
	return nil
}

// encode is JSON without HTML escaping, so a URL's "&" stays as it is.
func encode(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// planned records a write a dry run would make, secrets redacted: every
// secret connect holds, and anything shaped like one.
func (r *run) planned(method, u string, body any) {
	p := Planned{Method: method, URL: r.redact(u)}
	if body != nil {
		p.Body = r.redact(string(encode(body)))
	}
	r.plan = append(r.plan, p)
	r.wrote++
}

func (r *run) redact(s string) string {
	if r.opts.Secrets != nil {
		s = r.opts.Secrets.Scrub(s)
	}
	return redact.Shapes(s)
}
