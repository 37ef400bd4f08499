package bitbucket

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/redact"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

// seen is one request as the server got it.
type seen struct {
	Method, URL, Authorization, ContentType, Accept, Body string
}

// script answers the requests to one URL with the given responses in turn
// (the last one repeats) and records every request.
type script struct {
	mu   sync.Mutex
	seen []seen
}

type reply struct {
	code   int
	body   string
	header http.Header
}

func (s *script) on(mock *httpmock.MockTransport, method, url string, replies ...reply) {
	n := 0
	mock.RegisterResponder(method, url, func(r *http.Request) (*http.Response, error) {
		body := ""
		if r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			body = string(b)
		}
		s.mu.Lock()
		s.seen = append(s.seen, seen{r.Method, r.URL.String(), r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.Header.Get("Accept"), body})
		rep := replies[min(n, len(replies)-1)]
		n++
		s.mu.Unlock()
		resp := httpmock.NewStringResponse(rep.code, rep.body)
		for k, v := range rep.header {
			resp.Header[k] = v
		}
		return resp, nil
	})
}

func (s *script) requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.seen...)
}

func newClient(mock *httpmock.MockTransport, auth Auth) *Client {
	return &Client{HTTP: &http.Client{Transport: mock}, Auth: auth, UserAgent: "bitbucket-status/test",
		Secrets: &redact.Set{}, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond, AttemptTimeout: time.Second}
}

var cloud = Cloud{API: DefaultCloudAPI, Workspace: "acme", Slug: "widgets"}

const cloudStatusURL = "https://api.bitbucket.org/2.0/repositories/acme/widgets/commit/" + sha + "/statuses/build"

var status = Status{Key: "gitlab/acme/widgets", State: state.Successful, Name: "GitLab: acme/widgets #7",
	Description: "Pipeline #7 on main passed", URL: "https://gitlab.example.com/acme/widgets/-/pipelines/99?a=1&b=2", Branch: "main"}

func TestCloudPostExactRequestPerAuthKind(t *testing.T) {
	t.Parallel()
	const body = `{"key":"gitlab/acme/widgets","state":"SUCCESSFUL","name":"GitLab: acme/widgets #7",` +
		`"description":"Pipeline #7 on main passed","url":"https://gitlab.example.com/acme/widgets/-/pipelines/99?a=1&b=2","refname":"main"}`
	cases := []struct {
		name string
		auth Auth
		want string
	}{
		{"bearer", Auth{Kind: Bearer, Token: "tok"}, "Bearer tok"},
		{"basic", Auth{Kind: Basic, Username: "jdoe@example.com", Token: "tok"}, "Basic amRvZUBleGFtcGxlLmNvbTp0b2s="},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			mock := httpmock.NewMockTransport()
			var s script
			s.on(mock, "POST", cloudStatusURL, reply{code: 201, body: `{"key":"gitlab/acme/widgets"}`})
			posted, err := cloud.Post(context.Background(), newClient(mock, c.auth), sha, status)
			if err != nil {
				t.Fatal(err)
			}
			if posted.Outcome != "created" || posted.Attempts != 1 {
				t.Errorf("posted = %+v", posted)
			}
			want := seen{"POST", cloudStatusURL, c.want, "application/json", "application/json", body}
			if got := s.requests(); len(got) != 1 || got[0] != want {
				t.Errorf("requests = %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestCloudPostOverwriteIs200(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var s script
	s.on(mock, "POST", cloudStatusURL, reply{code: 200, body: `{}`})
	posted, err := cloud.Post(context.Background(), newClient(mock, Auth{Kind: Bearer, Token: "t"}), sha, status)
	if err != nil || posted.Outcome != "updated" {
		t.Fatalf("posted = %+v, %v", posted, err)
	}
}

func TestCloudTagStatusHasNoRefnameAndEscapesPath(t *testing.T) {
	t.Parallel()
	r := Cloud{API: "http://127.0.0.1:9/2.0/", Workspace: "a b", Slug: "c/d"}
	req := r.StatusRequest(sha, Status{Key: "k", State: state.InProgress, Tag: "v1.0.0", Name: `say "hi" <b>`})
	if want := "http://127.0.0.1:9/2.0/repositories/a%20b/c%2Fd/commit/" + sha + "/statuses/build"; req.URL != want {
		t.Errorf("URL = %s, want %s", req.URL, want)
	}
	if want := `{"key":"k","state":"INPROGRESS","name":"say \"hi\" <b>"}`; string(req.Body) != want {
		t.Errorf("body = %s, want %s", req.Body, want)
	}
}

func TestOAuthClientCredentialsThenBearer(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var tokens, posts script
	tokens.on(mock, "POST", "https://bitbucket.org/site/oauth2/access_token",
		reply{code: 200, body: `{"access_token":"oauth-access-123","expires_in":7200,"token_type":"bearer"}`})
	posts.on(mock, "POST", cloudStatusURL, reply{code: 201, body: `{}`})
	c := newClient(mock, Auth{Kind: OAuth, ClientID: "key", ClientSecret: "secret", TokenURL: "https://bitbucket.org/site/oauth2/access_token"})
	for range 2 {
		if _, err := cloud.Post(context.Background(), c, sha, status); err != nil {
			t.Fatal(err)
		}
	}
	got := tokens.requests()
	want := seen{"POST", "https://bitbucket.org/site/oauth2/access_token", "Basic a2V5OnNlY3JldA==",
		"application/x-www-form-urlencoded", "application/json", "grant_type=client_credentials"}
	if len(got) != 1 || got[0] != want {
		t.Errorf("token requests = %+v\nwant one %+v", got, want)
	}
	for _, p := range posts.requests() {
		if p.Authorization != "Bearer oauth-access-123" {
			t.Errorf("post Authorization = %q", p.Authorization)
		}
	}
	if c.Secrets.Scrub("x oauth-access-123") != "x [REDACTED]" {
		t.Error("the fetched access token was not registered as a secret")
	}
}

// TestOAuthTokenIsRefreshedBeforeItExpires: Cloud's access tokens last two
// hours; a relay posts for weeks. A token is replaced a tenth of its life
// before it expires (here it lasts one second).
func TestOAuthTokenIsRefreshedBeforeItExpires(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var tokens, posts script
	tokens.on(mock, "POST", "https://bitbucket.org/site/oauth2/access_token",
		reply{code: 200, body: `{"access_token":"oauth-1","expires_in":1,"token_type":"bearer"}`},
		reply{code: 200, body: `{"access_token":"oauth-2","expires_in":7200,"token_type":"bearer"}`})
	posts.on(mock, "POST", cloudStatusURL, reply{code: 201, body: `{}`})
	c := newClient(mock, Auth{Kind: OAuth, ClientID: "key", ClientSecret: "secret", TokenURL: "https://bitbucket.org/site/oauth2/access_token"})
	post := func() {
		t.Helper()
		if _, err := cloud.Post(context.Background(), c, sha, status); err != nil {
			t.Fatal(err)
		}
	}
	post()
	post() // within its life: the same token
	time.Sleep(950 * time.Millisecond)
	post() // 0.95 s of 1 s: past the margin, a new one
	post()
	var used []string
	for _, p := range posts.requests() {
		used = append(used, p.Authorization)
	}
	if got := strings.Join(used, ","); got != "Bearer oauth-1,Bearer oauth-1,Bearer oauth-2,Bearer oauth-2" || len(tokens.requests()) != 2 {
		t.Fatalf("tokens used: %s; %d token requests", got, len(tokens.requests()))
	}
	if c.Secrets.Scrub("oauth-1 oauth-2") != "[REDACTED] [REDACTED]" {
		t.Error("a refreshed token is not registered as a secret")
	}
}

// TestOAuthTokenRenewedBetweenRetries: a retry that comes after the token
// expired (a slow 502) sends a new one, not the expired one.
func TestOAuthTokenRenewedBetweenRetries(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var tokens script
	tokens.on(mock, "POST", "https://bitbucket.org/site/oauth2/access_token",
		reply{code: 200, body: `{"access_token":"oauth-1","expires_in":1}`},
		reply{code: 200, body: `{"access_token":"oauth-2","expires_in":7200}`})
	var used []string
	var mu sync.Mutex
	mock.RegisterResponder("POST", cloudStatusURL, func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		used = append(used, r.Header.Get("Authorization"))
		n := len(used)
		mu.Unlock()
		if n == 1 {
			time.Sleep(time.Second)
			return httpmock.NewStringResponse(502, ``), nil
		}
		return httpmock.NewStringResponse(201, `{}`), nil
	})
	c := newClient(mock, Auth{Kind: OAuth, ClientID: "key", ClientSecret: "secret", TokenURL: "https://bitbucket.org/site/oauth2/access_token"})
	c.AttemptTimeout = 5 * time.Second
	if _, err := cloud.Post(context.Background(), c, sha, status); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(used, ","); got != "Bearer oauth-1,Bearer oauth-2" {
		t.Fatalf("tokens used: %s", got)
	}
}

// TestOAuth401FetchesANewTokenOnce: a token refused before its announced
// expiry (revoked, or the server's clock) is replaced once and the request
// sent again; a 401 to a token just fetched is the answer.
func TestOAuth401FetchesANewTokenOnce(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var tokens script
	tokens.on(mock, "POST", "https://bitbucket.org/site/oauth2/access_token",
		reply{code: 200, body: `{"access_token":"oauth-1","expires_in":7200}`},
		reply{code: 200, body: `{"access_token":"oauth-2","expires_in":7200}`},
		reply{code: 200, body: `{"access_token":"oauth-3","expires_in":7200}`})
	var mu sync.Mutex
	var used []string
	refuse := map[string]bool{"Bearer oauth-1": false}
	mock.RegisterResponder("POST", cloudStatusURL, func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		defer mu.Unlock()
		auth := r.Header.Get("Authorization")
		used = append(used, auth)
		if refuse[auth] || auth == "Bearer oauth-3" {
			return httpmock.NewStringResponse(401, ``), nil
		}
		return httpmock.NewStringResponse(201, `{}`), nil
	})
	c := newClient(mock, Auth{Kind: OAuth, ClientID: "key", ClientSecret: "secret", TokenURL: "https://bitbucket.org/site/oauth2/access_token"})
	if _, err := cloud.Post(context.Background(), c, sha, status); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	refuse["Bearer oauth-1"] = true // revoked
	mu.Unlock()
	if _, err := cloud.Post(context.Background(), c, sha, status); err != nil {
		t.Fatalf("a revoked token was not replaced: %v", err)
	}
	mu.Lock()
	refuse["Bearer oauth-2"] = true
	mu.Unlock()
	_, err := cloud.Post(context.Background(), c, sha, status)
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 401 {
		t.Fatalf("a 401 to a token just fetched: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(used, ","); got != "Bearer oauth-1,Bearer oauth-1,Bearer oauth-2,Bearer oauth-2,Bearer oauth-3" || len(tokens.requests()) != 3 {
		t.Fatalf("tokens used: %s; %d token requests", got, len(tokens.requests()))
	}
}

func TestOAuthFailure(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var tokens script
	tokens.on(mock, "POST", "https://bitbucket.org/site/oauth2/access_token",
		reply{code: 400, body: `{"error_description": "Invalid OAuth client credentials", "error": "unauthorized_client"}`})
	c := newClient(mock, Auth{Kind: OAuth, ClientID: "key", ClientSecret: "secret", TokenURL: "https://bitbucket.org/site/oauth2/access_token"})
	_, err := cloud.Post(context.Background(), c, sha, status)
	var oe *OAuthError
	var he *HTTPError
	if !errors.As(err, &oe) || !errors.As(err, &he) {
		t.Fatalf("err = %v", err)
	}
	want := "getting an OAuth access token from https://bitbucket.org/site/oauth2/access_token: POST https://bitbucket.org/site/oauth2/access_token: " +
		"400 Bad Request: unauthorized_client: Invalid OAuth client credentials"
	if err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

func TestRetriesThenSucceeds(t *testing.T) {
	t.Parallel()
	for _, code := range []int{429, 500, 502, 503, 504} {
		mock := httpmock.NewMockTransport()
		var s script
		s.on(mock, "POST", cloudStatusURL, reply{code: code}, reply{code: code}, reply{code: 201, body: "{}"})
		var log strings.Builder
		c := newClient(mock, Auth{Kind: Bearer, Token: "t"})
		c.Log = &log
		posted, err := cloud.Post(context.Background(), c, sha, status)
		if err != nil || posted.Attempts != 3 || len(s.requests()) != 3 {
			t.Errorf("%d: posted = %+v, err = %v, requests = %d", code, posted, err, len(s.requests()))
		}
		if n := strings.Count(log.String(), "; retrying in "); n != 2 {
			t.Errorf("%d: retry log = %q", code, log.String())
		}
	}
}

func TestConnectionErrorIsRetried(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	calls := 0
	mock.RegisterResponder("POST", cloudStatusURL, func(*http.Request) (*http.Response, error) {
		calls++
		if calls == 1 {
			return nil, errors.New("connection reset by peer")
		}
		return httpmock.NewStringResponse(201, "{}"), nil
	})
	posted, err := cloud.Post(context.Background(), newClient(mock, Auth{Kind: Bearer, Token: "t"}), sha, status)
	if err != nil || posted.Attempts != 2 {
		t.Fatalf("posted = %+v, %v", posted, err)
	}
}

func TestNoRetryOnOtherClientErrors(t *testing.T) {
	t.Parallel()
	for _, code := range []int{400, 401, 403, 404, 409, 422} {
		mock := httpmock.NewMockTransport()
		var s script
		s.on(mock, "POST", cloudStatusURL, reply{code: code, body: `{"type":"error","error":{"message":"nope"}}`})
		_, err := cloud.Post(context.Background(), newClient(mock, Auth{Kind: Bearer, Token: "t"}), sha, status)
		var he *HTTPError
		if !errors.As(err, &he) || he.StatusCode != code || he.Attempts != 1 || len(s.requests()) != 1 {
			t.Errorf("%d: err = %v, requests = %d", code, err, len(s.requests()))
		}
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var s script
	s.on(mock, "POST", cloudStatusURL, reply{code: 429, header: http.Header{"Retry-After": {"1"}}}, reply{code: 201, body: "{}"})
	var log strings.Builder
	c := newClient(mock, Auth{Kind: Bearer, Token: "t"})
	c.Log = &log
	start := time.Now()
	if _, err := cloud.Post(context.Background(), c, sha, status); err != nil {
		t.Fatal(err)
	}
	// Backoff alone would wait about a millisecond here.
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("waited %s, want the 1s Retry-After asked for", waited)
	}
	if !strings.Contains(log.String(), "429 Too Many Requests (attempt 1); retrying in 1s") {
		t.Errorf("log = %q", log.String())
	}
}

func TestRetryAfterBeyondBudgetGivesUpAtOnce(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var s script
	s.on(mock, "POST", cloudStatusURL, reply{code: 429, header: http.Header{"Retry-After": {"120"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := cloud.Post(ctx, newClient(mock, Auth{Kind: Bearer, Token: "t"}), sha, status)
	var he *HTTPError
	if !errors.As(err, &he) || !he.BudgetSpent || he.WantedWait != 120*time.Second || time.Since(start) > time.Second {
		t.Fatalf("err = %+v after %s", err, time.Since(start))
	}
}

func TestRetryAfterParsing(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{"7": 7 * time.Second, "0": 0, "Wed, 25 Nov 2026 12:00:30 GMT": 30 * time.Second,
		"Wed, 25 Nov 2026 11:00:00 GMT": 0}
	for v, want := range cases {
		if got, ok := retryAfter(v, now); !ok || got != want {
			t.Errorf("retryAfter(%q) = %s, %v; want %s", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "-1", "soon"} {
		if _, ok := retryAfter(v, now); ok {
			t.Errorf("retryAfter(%q) accepted", v)
		}
	}
}

func TestBudgetEndsRetries(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var s script
	s.on(mock, "POST", cloudStatusURL, reply{code: 503, body: "<html>Service Unavailable</html>"})
	c := newClient(mock, Auth{Kind: Bearer, Token: "t"})
	c.BaseDelay, c.MaxDelay = 20*time.Millisecond, 40*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := cloud.Post(ctx, c, sha, status)
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 503 || !he.BudgetSpent || he.Attempts < 3 {
		t.Fatalf("err = %+v", err)
	}
	if he.Text != "<html>Service Unavailable</html>" {
		t.Errorf("Text = %q", he.Text)
	}
}

func TestErrorBodies(t *testing.T) {
	t.Parallel()
	cases := []struct{ body, want string }{
		{`{"type":"error","error":{"message":"key: Ensure this value has at most 40 characters (it has 48).","fields":{"key":["Ensure this value has at most 40 characters (it has 48)."]}}}`,
			"key: Ensure this value has at most 40 characters (it has 48). — fields: key: Ensure this value has at most 40 characters (it has 48)."},
		{`{"type":"error","error":{"message":"Bad request","detail":"url: Enter a valid URL.","fields":{"url":"Enter a valid URL."}}}`,
			"Bad request — url: Enter a valid URL. — fields: url: Enter a valid URL."},
		{`{"errors":[{"context":null,"message":"Project FOO does not exist.","exceptionName":"com.atlassian.bitbucket.project.NoSuchProjectException"}]}`,
			"Project FOO does not exist."},
		{``, ""},
		{"<html>\n<body>Bad gateway</body>", "<html> ..."},
		{`{"unexpected":true}`, `{"unexpected":true}`},
	}
	for _, c := range cases {
		e := newHTTPError(Request{Method: "POST", URL: "u"}, 400, []byte(c.body), 1)
		if got := e.Said(); got != c.want {
			t.Errorf("Said(%s) = %q\nwant %q", c.body, got, c.want)
		}
	}
}
