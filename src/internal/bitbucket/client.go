package bitbucket

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/redact"
)

// maxBody bounds how much of a response is read: Bitbucket's answers here are
// small, and an error page from a proxy need not be read whole.
const maxBody = 1 << 20

// Client sends requests to one Bitbucket server with one credential.
type Client struct {
	HTTP      *http.Client
	Auth      Auth
	UserAgent string
	// Log receives one line per retry, so a slow run explains itself.
	Log io.Writer
	// Secrets learns the OAuth access token as soon as it is fetched.
	Secrets *redact.Set
	// BaseDelay is the wait before the first retry, doubled for each next one
	// up to MaxDelay, with jitter.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// AttemptTimeout bounds one attempt, so a connection that hangs is given
	// up and tried again while the run's budget (the context) lasts.
	AttemptTimeout time.Duration
	// MaxAttempts, when positive, ends the tries after that many: the relay
	// makes one and schedules the next itself, so one slow status never
	// holds a worker.
	MaxAttempts int

	oauthMu sync.Mutex
	oauth   oauthToken

	capsMu sync.Mutex
	caps   map[string]cachedCapabilities

	nearLimit sync.Once
}

// Response is a successful (2xx) answer.
type Response struct {
	StatusCode int
	Body       []byte
	Attempts   int
}

// Do sends req, retrying what may succeed later, until it succeeds, fails
// for good, or ctx ends. A non-2xx answer is an *HTTPError; a request that
// never got an answer is a *TransportError.
//
// With an OAuth consumer each attempt sends the token held then, renewed
// before it expires (a retry may come after it did); and a 401 to a token
// that was not just fetched gets one more try with a new one: a token can
// be revoked, or expire earlier than it said.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	var used string
	fetched := false
	authorize := func(h http.Header) error {
		token, fresh, err := c.oauthAccessToken(ctx)
		if err != nil {
			return err
		}
		used, fetched = token, fresh
		c.Auth.apply(h, token)
		return nil
	}
	resp, err := c.send(ctx, req, "application/json", authorize)
	var he *HTTPError
	if c.Auth.Kind != OAuth || fetched || !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	c.forgetOAuthToken(used)
	return c.send(ctx, req, "application/json", authorize)
}

func (c *Client) send(ctx context.Context, req Request, contentType string, authorize func(http.Header) error) (*Response, error) {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		resp, err := c.attempt(ctx, req, contentType, authorize)
		var oe *OAuthError
		if errors.As(err, &oe) {
			return nil, err
		}
		// asked is the wait the server asked for with Retry-After, if any.
		var wait, asked time.Duration
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, giveUp(ctx, req, nil, err, attempt, time.Since(start), 0)
		case err != nil:
			if !retryableNetError(err) {
				return nil, &TransportError{Method: req.Method, URL: req.URL, Attempts: attempt, Elapsed: time.Since(start), Err: err}
			}
			wait = c.backoff(attempt)
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return &Response{StatusCode: resp.StatusCode, Body: resp.body, Attempts: attempt}, nil
		case retryableStatus(resp.StatusCode):
			if after, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				wait, asked = after, after
				resp.retryAfter = after
			} else {
				wait = c.backoff(attempt)
			}
		default:
			return nil, newHTTPError(req, resp.StatusCode, resp.body, attempt)
		}
		if deadline, ok := ctx.Deadline(); (ok && time.Until(deadline) < wait) || (c.MaxAttempts > 0 && attempt >= c.MaxAttempts) {
			return nil, giveUp(ctx, req, resp, err, attempt, time.Since(start), asked)
		}
		fmt.Fprintf(c.logWriter(), "bitbucket-status: %s %s: %s (attempt %d); retrying in %s\n",
			req.Method, req.URL, describeAttempt(resp, err), attempt, wait.Round(10*time.Millisecond))
		select {
		case <-ctx.Done():
			return nil, giveUp(ctx, req, resp, err, attempt, time.Since(start), 0)
		case <-time.After(wait):
		}
	}
}

type rawResponse struct {
	*http.Response
	body       []byte
	retryAfter time.Duration
}

func (c *Client) attempt(ctx context.Context, req Request, contentType string, authorize func(http.Header) error) (*rawResponse, error) {
	if c.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.AttemptTimeout)
		defer cancel()
	}
	var body io.Reader
	if req.Body != nil {
		body = bytes.NewReader(req.Body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, req.URL, body)
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("User-Agent", c.UserAgent)
	if req.Body != nil {
		hr.Header.Set("Content-Type", contentType)
	}
	if err := authorize(hr.Header); err != nil {
		return nil, err
	}
	resp, err := c.httpClient().Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, err
	}
	c.warnNearLimit(resp.Header)
	return &rawResponse{Response: resp, body: data}, nil
}

// warnNearLimit says once per Client that Bitbucket Cloud reported the
// credential close to its hourly limit (X-RateLimit-NearLimit, sent to
// access tokens): before the 429s start, when there is still time to act.
func (c *Client) warnNearLimit(h http.Header) {
	if !strings.EqualFold(h.Get("X-RateLimit-NearLimit"), "true") {
		return
	}
	c.nearLimit.Do(func() {
		limit := "its limit"
		if n := h.Get("X-RateLimit-Limit"); n != "" {
			limit = "its limit of " + n + " requests an hour"
		}
		fmt.Fprintf(c.logWriter(), "bitbucket-status: notice: Bitbucket says this credential is near %s (X-RateLimit-NearLimit): "+
			"once it is used up, every post with it is refused (429) until older requests leave the hour; "+
			"give this project a token of its own, or post less often with it\n", limit)
	})
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) logWriter() io.Writer {
	if c.Log != nil {
		return c.Log
	}
	return io.Discard
}

// backoff doubles the wait for each attempt, caps it, and keeps a random
// half of it, so many jobs hitting one limit do not retry in step.
func (c *Client) backoff(attempt int) time.Duration {
	base, ceiling := c.BaseDelay, c.MaxDelay
	if base <= 0 {
		base = time.Second
	}
	if ceiling <= 0 {
		ceiling = 16 * time.Second
	}
	d := base << min(attempt-1, 20)
	if d > ceiling || d <= 0 {
		d = ceiling
	}
	return d/2 + rand.N(d/2+1)
}

// retryableStatus: rate limiting and the server errors a proxy or an
// overloaded Bitbucket gives. Posting a status twice is harmless: the same key
// overwrites the same status.
func retryableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryableNetError: a connection that failed or an attempt that timed out
// may work next time; a certificate or a host name that does not exist will
// not.
func retryableNetError(err error) bool {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var dns *net.DNSError
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid):
		return false
	case errors.As(err, &dns) && dns.IsNotFound:
		return false
	}
	return true
}

// retryAfter reads a Retry-After header in seconds or as an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

func describeAttempt(resp *rawResponse, err error) string {
	if err != nil {
		return RootCause(err).Error()
	}
	return resp.Status
}

// giveUp is the error for a retryable failure that ctx leaves no time to
// retry: an interruption if ctx was canceled (GitLab canceled the job), else
// a spent budget; asked is the wait the server asked for, if it did.
func giveUp(ctx context.Context, req Request, resp *rawResponse, err error, attempts int, elapsed, asked time.Duration) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return &TransportError{Method: req.Method, URL: req.URL, Attempts: attempts, Elapsed: elapsed, Err: ctx.Err(), Interrupted: true}
	}
	if err != nil || resp == nil {
		if err == nil {
			err = context.DeadlineExceeded
		}
		return &TransportError{Method: req.Method, URL: req.URL, Attempts: attempts, Elapsed: elapsed, Err: err, BudgetSpent: true}
	}
	he := newHTTPError(req, resp.StatusCode, resp.body, attempts)
	he.BudgetSpent = true
	he.WantedWait = asked
	he.RetryAfter = resp.retryAfter
	return he
}

// RootCause drops the method and URL that net/http repeats in its errors.
func RootCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
