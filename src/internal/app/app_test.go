package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/config"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitcheckout"
)

const (
	sha    = "0123456789abcdef0123456789abcdef01234567"
	secret = "SECRET-TOKEN-4f9a2c"
	// statusURL is where a GitLab job in acme/widgets posts.
	statusURL = "https://api.bitbucket.org/2.0/repositories/acme/widgets/commit/" + sha + "/statuses/build"
	dcURL     = "https://git.example.com/bitbucket/rest/api/latest/projects/PROJ/repos/widgets/commits/" + sha + "/builds"
)

func gitlabEnv(kv ...string) map[string]string {
	env := map[string]string{
		"BITBUCKET_ACCESS_TOKEN": secret,
		"CI_COMMIT_SHA":          sha, "CI_COMMIT_REF_NAME": "main", "CI_COMMIT_BRANCH": "main",
		"CI_PROJECT_PATH": "acme/widgets", "CI_PROJECT_NAMESPACE": "acme", "CI_PROJECT_NAME": "widgets",
		"CI_PROJECT_URL": "https://gitlab.example.com/acme/widgets", "CI_PIPELINE_ID": "1234", "CI_PIPELINE_IID": "7",
		"CI_PIPELINE_URL": "https://gitlab.example.com/acme/widgets/-/pipelines/1234",
		"CI_JOB_NAME":     "bitbucket-status-success", "CI_JOB_URL": "https://gitlab.example.com/acme/widgets/-/jobs/9",
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "<unset>" {
			delete(env, kv[i])
		} else {
			env[kv[i]] = kv[i+1]
		}
	}
	return env
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, env map[string]string, mock *httpmock.MockTransport, args ...string) result {
	t.Helper()
	if mock == nil {
		mock = httpmock.NewMockTransport()
	}
	var stdout, stderr strings.Builder
	p := &Program{Version: "1.2.3", Env: env, Stdout: &stdout, Stderr: &stderr, Transport: mock, RetryDelay: time.Millisecond,
		Now: func() time.Time { return time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC) },
		Checkout: func() (gitcheckout.Checkout, error) {
			return gitcheckout.Checkout{}, fmt.Errorf("not a git repository")
		}}
	code := p.Run(context.Background(), args)
	r := result{code, stdout.String(), stderr.String()}
	// Whatever happened, the secret is not in the output.
	basic := base64.StdEncoding.EncodeToString([]byte(env["BITBUCKET_USERNAME"] + ":" + secret))
	for _, leak := range []string{secret, basic, "oauth-access-7781"} {
		if strings.Contains(r.stdout+r.stderr, leak) {
			t.Errorf("output shows the secret %q:\n%s%s", leak, r.stdout, r.stderr)
		}
	}
	return r
}

// answer registers fixed answers for POST url, used in turn (the last repeats).
func answer(mock *httpmock.MockTransport, method, url string, replies ...httpmock.Responder) {
	r := replies[0]
	for _, next := range replies[1:] {
		r = r.Then(next)
	}
	mock.RegisterResponder(method, url, r)
}

// hang never answers: it returns when the request is given up.
func hang(r *http.Request) (*http.Response, error) {
	<-r.Context().Done()
	return nil, r.Context().Err()
}

func want(t *testing.T, got result, code int, stdout, stderr string) {
	t.Helper()
	if got.code != code || got.stdout != stdout || got.stderr != stderr {
		t.Errorf("got exit %d\nstdout: %q\nstderr: %q\nwant exit %d\nstdout: %q\nstderr: %q", got.code, got.stdout, got.stderr, code, stdout, stderr)
	}
}

func TestPostSuccess(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	answer(mock, "POST", statusURL, httpmock.NewStringResponder(201, `{}`))
	want(t, run(t, gitlabEnv(), mock, "running"), 0,
		"Posted INPROGRESS for commit "+sha+" to bitbucket.org/acme/widgets (key \"gitlab/acme/widgets\", created)\n", "")
	answer(mock, "POST", statusURL, httpmock.NewStringResponder(200, `{}`))
	want(t, run(t, gitlabEnv(), mock, "passed"), 0,
		"Posted SUCCESSFUL for commit "+sha+" to bitbucket.org/acme/widgets (key \"gitlab/acme/widgets\", updated)\n", "")
}

// TestChildPipelineNeverPostsToItsParentsKey: a job of a child pipeline
// (trigger: include:) posting under the project's key would replace its
// parent's status: a child's success over a parent that fails. It posts
// nothing, says why, and succeeds; with a key of its own it posts there.
func TestChildPipelineNeverPostsToItsParentsKey(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var bodies []string
	mock.RegisterResponder("POST", statusURL, func(r *http.Request) (*http.Response, error) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		return httpmock.NewStringResponse(201, "{}"), nil
	})
	for _, args := range [][]string{{"success"}, {"--dry-run", "failed"}} {
		want(t, run(t, gitlabEnv("CI_PIPELINE_SOURCE", "parent_pipeline"), mock, args...), 0,
			"Nothing posted: this is a child pipeline (CI_PIPELINE_SOURCE=parent_pipeline), and its parent pipeline's status covers it "+
				"(trigger it with strategy: depend for the parent to wait for it). To give the child a status of its own, set BITBUCKET_STATUS_KEY "+
				"(the component's status_key input), e.g. gitlab/$CI_PROJECT_PATH/<child name>.\n", "")
	}
	if len(bodies) != 0 {
		t.Fatalf("a child pipeline posted: %v", bodies)
	}
	want(t, run(t, gitlabEnv("CI_PIPELINE_SOURCE", "parent_pipeline", "BITBUCKET_STATUS_KEY", "gitlab/acme/widgets/docs"), mock, "success"), 0,
		"Posted SUCCESSFUL for commit "+sha+" to bitbucket.org/acme/widgets (key \"gitlab/acme/widgets/docs\", created)\n", "")
	// A multi-project downstream pipeline is its own project's pipeline.
	want(t, run(t, gitlabEnv("CI_PIPELINE_SOURCE", "pipeline"), mock, "success"), 0,
		"Posted SUCCESSFUL for commit "+sha+" to bitbucket.org/acme/widgets (key \"gitlab/acme/widgets\", created)\n", "")
	if len(bodies) != 2 || !strings.Contains(bodies[0], `"key":"gitlab/acme/widgets/docs"`) || !strings.Contains(bodies[1], `"key":"gitlab/acme/widgets"`) {
		t.Fatalf("%v", bodies)
	}
}

func TestBuildStatusVariable(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var body string
	mock.RegisterResponder("POST", statusURL, func(r *http.Request) (*http.Response, error) {
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		return httpmock.NewStringResponse(201, "{}"), nil
	})
	r := run(t, gitlabEnv("BUILD_STATUS", "failed"), mock)
	if r.code != 0 || !strings.Contains(body, `"state":"FAILED"`) {
		t.Fatalf("%+v, body %s", r, body)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env    map[string]string
		args   []string
		stderr string
	}{
		{gitlabEnv(), nil, "bitbucket-status: no STATE: give one, as in bitbucket-status running, or set BUILD_STATUS; accepted: " +
			"running, pending, created, manual, scheduled, waiting_for_resource, preparing, waiting_for_callback, inprogress (INPROGRESS); passed, success, " +
			"successful (SUCCESSFUL); failed, failure (FAILED); canceled, canceling, cancelled, stopped, skipped (STOPPED). Commands: check, report, version; see --help\n"},
		{gitlabEnv(), []string{"pased"}, `bitbucket-status: STATE: unknown state "pased": use one of running, pending, created, manual, scheduled, ` +
			`waiting_for_resource, preparing, waiting_for_callback, inprogress (INPROGRESS); passed, success, successful (SUCCESSFUL); failed, failure (FAILED); ` +
			"canceled, canceling, cancelled, stopped, skipped (STOPPED) (or the commands check, report and version)\n"},
		{gitlabEnv("BUILD_STATUS", "green"), nil, `bitbucket-status: BUILD_STATUS: unknown state "green": use one of running, pending, created, manual, scheduled, ` +
			`waiting_for_resource, preparing, waiting_for_callback, inprogress (INPROGRESS); passed, success, successful (SUCCESSFUL); failed, failure (FAILED); ` +
			"canceled, canceling, cancelled, stopped, skipped (STOPPED) (or the commands check, report and version)\n"},
		{gitlabEnv(), []string{"running", "--dry-run"}, "bitbucket-status: expected one STATE argument, got 2 (running --dry-run): " +
			"options go before STATE, as in bitbucket-status --dry-run running\n"},
		{gitlabEnv(), []string{"--bogus", "running"}, "bitbucket-status: flag provided but not defined: -bogus (see bitbucket-status --help)\n"},
		{gitlabEnv("BITBUCKET_ACCESS_TOKEN", "<unset>"), []string{"running"}, "bitbucket-status: no credential: set BITBUCKET_ACCESS_TOKEN to a repository, " +
			"project or workspace access token (sent as Bearer), or to an API token with BITBUCKET_USERNAME set to your Atlassian account email; " +
			"or set BITBUCKET_OAUTH_CLIENT_ID and BITBUCKET_OAUTH_CLIENT_SECRET\n"},
		{gitlabEnv("CI_PROJECT_NAMESPACE", "acme/platform"), []string{"running"}, `bitbucket-status: CI_PROJECT_NAMESPACE is "acme/platform", ` +
			"a GitLab subgroup, which cannot be a Bitbucket workspace: set BITBUCKET_NAMESPACE to the workspace, or BITBUCKET_REPO_URL to the repository's clone URL\n"},
		{gitlabEnv(), []string{"check", "extra"}, "bitbucket-status: check takes no arguments, got \"extra\"\n"},
	}
	for _, c := range cases {
		mock := httpmock.NewMockTransport()
		r := run(t, c.env, mock, c.args...)
		want(t, r, 2, "", c.stderr)
		if n := mock.GetTotalCallCount(); n != 0 {
			t.Errorf("%v: %d requests sent before a usage error", c.args, n)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	t.Parallel()
	want(t, run(t, gitlabEnv(), nil, "version"), 0, "bitbucket-status 1.2.3\n", "")
	want(t, run(t, gitlabEnv(), nil, "--version"), 0, "bitbucket-status 1.2.3\n", "")
	r := run(t, gitlabEnv(), nil, "--help")
	if r.code != 0 {
		t.Fatalf("--help: %+v", r)
	}
	for _, args := range [][]string{{"-h"}, {"help"}, {"check", "--help"}, {"report", "--help"}} {
		if other := run(t, gitlabEnv(), nil, args...); other != r {
			t.Errorf("%v differs from --help: %+v", args, other)
		}
	}
	for _, v := range config.Variables() {
		if !strings.Contains(r.stdout, "   "+v.Name) || !strings.Contains(r.stdout, v.Help) {
			t.Errorf("--help does not explain %s", v.Name)
		}
	}
	for _, s := range []string{"EXIT CODES:", "   2   usage or configuration error", "(default https://api.bitbucket.org/2.0)", "(default 60s)",
		"   bitbucket-status report [--dry-run] [--junit GLOB]...", "   --fail-on SEVERITY ", "report: only with --strict"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("--help lacks %q", s)
		}
	}
}

func TestDryRun(t *testing.T) {
	t.Parallel()
	env := gitlabEnv("BITBUCKET_USERNAME", "jdoe@example.com")
	wantOut := "POST " + statusURL + "\n" +
		"Authorization: Basic [REDACTED] (user \"jdoe@example.com\")\n" +
		"Accept: application/json\nContent-Type: application/json\nUser-Agent: bitbucket-status/1.2.3\n\n" +
		"{\n  \"key\": \"gitlab/acme/widgets\",\n  \"state\": \"SUCCESSFUL\",\n  \"name\": \"GitLab: acme/widgets #7\",\n" +
		"  \"description\": \"Pipeline #7 on main passed\",\n  \"url\": \"https://gitlab.example.com/acme/widgets/-/pipelines/1234\",\n" +
		"  \"refname\": \"main\"\n}\n(dry run: nothing was sent)\n"
	mock := httpmock.NewMockTransport()
	want(t, run(t, env, mock, "--dry-run", "success"), 0, wantOut, "")
	env["BITBUCKET_STATUS_DRY_RUN"] = "true"
	want(t, run(t, env, mock, "success"), 0, wantOut, "")
	if mock.GetTotalCallCount() != 0 {
		t.Error("a dry run sent a request")
	}
	// No credential at all: a dry run still shows the request.
	r := run(t, gitlabEnv("BITBUCKET_ACCESS_TOKEN", "<unset>"), mock, "--dry-run", "running")
	if r.code != 0 || !strings.Contains(r.stdout, "Authorization: (none: no credential is set)\n") {
		t.Errorf("%+v", r)
	}
	r = run(t, gitlabEnv(), mock, "check", "--dry-run")
	want(t, r, 0, "GET https://api.bitbucket.org/2.0/repositories/acme/widgets/commit/"+sha+"\nAuthorization: Bearer [REDACTED]\n"+
		"Accept: application/json\nUser-Agent: bitbucket-status/1.2.3\n(dry run: nothing was sent)\n", "")
}

const failedPrefix = "bitbucket-status: could not post SUCCESSFUL for commit " + sha + " to bitbucket.org/acme/widgets: "

func TestExplainedFailures(t *testing.T) {
	t.Parallel()
	unauthorized := httpmock.NewStringResponder(401, "")
	cases := []struct {
		name   string
		env    map[string]string
		reply  httpmock.Responder
		stderr string
	}{
		{"401 basic with a user name", gitlabEnv("BITBUCKET_USERNAME", "jdoe"), unauthorized,
			"Bitbucket rejected the credential (401 Unauthorized).\n" +
				"It was sent as HTTP Basic with BITBUCKET_USERNAME=\"jdoe\", which is not an email address. A Bitbucket Cloud API token needs your " +
				"Atlassian account email as the user name: set BITBUCKET_USERNAME to it.\n" +
				"If it holds an app password: app passwords stopped working on 28 Jul 2026; create an API token (with BITBUCKET_USERNAME set to " +
				"your Atlassian account email) or a repository access token instead.\n" +
				"If it holds a repository, project or workspace access token: unset BITBUCKET_USERNAME, so it is sent as Bearer.\n"},
		{"401 basic with an email", gitlabEnv("BITBUCKET_USERNAME", "jdoe@example.com"), unauthorized,
			"Bitbucket rejected the credential (401 Unauthorized).\n" +
				"It was sent as HTTP Basic with BITBUCKET_USERNAME=\"jdoe@example.com\", for an API token: check that BITBUCKET_ACCESS_TOKEN is an " +
				"API token of that Atlassian account, not expired (they last at most a year) or revoked.\n" +
				"If it holds an app password: app passwords stopped working on 28 Jul 2026; create an API token (with BITBUCKET_USERNAME set to " +
				"your Atlassian account email) or a repository access token instead.\n" +
				"If it holds a repository, project or workspace access token: unset BITBUCKET_USERNAME, so it is sent as Bearer.\n"},
		{"401 bearer", gitlabEnv(), unauthorized,
			"Bitbucket rejected the credential (401 Unauthorized).\n" +
				"It was sent as a Bearer token (BITBUCKET_USERNAME is unset), which is right for a repository, project or workspace access token: " +
				"check that BITBUCKET_ACCESS_TOKEN holds one that has access to this repository and is not revoked or expired.\n" +
				"If it holds an API token: set BITBUCKET_USERNAME to your Atlassian account email, so it is sent with HTTP Basic.\n" +
				"If it holds an app password: app passwords stopped working on 28 Jul 2026; create an API token (with BITBUCKET_USERNAME set to " +
				"your Atlassian account email) or a repository access token instead.\n"},
		{"403", gitlabEnv(), httpmock.NewStringResponder(403, `{"type":"error","error":{"message":"Your credentials lack one or more required privilege scopes."}}`),
			"Bitbucket refused the request (403 Forbidden): Your credentials lack one or more required privilege scopes.\n" +
				"The credential works but may not do this on acme/widgets. It may lack the scope: give BITBUCKET_ACCESS_TOKEN an access token with " +
				"the repository scope (Repositories: Read), or an API token with read:repository:bitbucket.\n" +
				"Or the status key \"gitlab/acme/widgets\" was first posted by another identity: only the account that created a status " +
				"(or a repository admin) may overwrite it. Post with that credential again, or set BITBUCKET_STATUS_KEY to a new key.\n"},
		{"404", gitlabEnv(), httpmock.NewStringResponder(404, `{"type":"error","error":{"message":"Repository acme/widgets not found"}}`),
			"Bitbucket found no repository acme/widgets or no commit " + sha + " in it (404 Not Found): Repository acme/widgets not found.\n" +
				"The workspace came from CI_PROJECT_NAMESPACE and the slug from CI_PROJECT_NAME: set BITBUCKET_NAMESPACE and BITBUCKET_REPOSITORY " +
				"(or BITBUCKET_REPO_URL) to the Bitbucket workspace and repository slug.\n" +
				"If they are right: the commit (from CI_COMMIT_SHA) may not be on Bitbucket yet, or the credential cannot see this private repository.\n"},
		{"400", gitlabEnv(), httpmock.NewStringResponder(400, `{"type":"error","error":{"message":"key: Ensure this value has at most 40 characters (it has 48).",`+
			`"fields":{"key":["Ensure this value has at most 40 characters (it has 48)."]}}}`),
			"Bitbucket rejected the status (400 Bad Request): key: Ensure this value has at most 40 characters (it has 48). — " +
				"fields: key: Ensure this value has at most 40 characters (it has 48).\nChange BITBUCKET_STATUS_KEY.\n"},
		{"400 without fields", gitlabEnv(), httpmock.NewStringResponder(400, `{"type":"error","error":{"message":"url: Enter a valid URL."}}`),
			"Bitbucket rejected the status (400 Bad Request): url: Enter a valid URL.\nChange BITBUCKET_STATUS_URL.\n"},
		{"429", gitlabEnv("BITBUCKET_STATUS_TIMEOUT", "1s"), httpmock.NewStringResponder(429, ""),
			"Bitbucket answered 429 Too Many Requests.\nThe credential's rate limit is used up (N attempts; Bitbucket Cloud allows 1,000 requests an hour " +
				"per token, user or OAuth consumer). Wait and retry the job, raise BITBUCKET_STATUS_TIMEOUT (now 1s) to retry for longer, or give this project a token of its own.\n"},
		{"503", gitlabEnv("BITBUCKET_STATUS_TIMEOUT", "1s"), httpmock.NewStringResponder(503, "upstream connect error"),
			"Bitbucket answered 503 Service Unavailable: upstream connect error.\nBitbucket kept failing (N attempts within BITBUCKET_STATUS_TIMEOUT, 1s): " +
				"it may be down (https://bitbucket.status.atlassian.com for Cloud). Retry the job later, or raise BITBUCKET_STATUS_TIMEOUT to wait longer.\n"},
		{"unknown CA", gitlabEnv(), httpmock.NewErrorResponder(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}),
			"The certificate of api.bitbucket.org is signed by an unknown authority.\nIf the server uses a private CA, set SSL_CERT_FILE to a PEM " +
				"file with its CA certificate (or SSL_CERT_DIR to a directory of them); otherwise check BITBUCKET_API_URL: something between the " +
				"runner and Bitbucket may be intercepting TLS.\n"},
		{"redirect", gitlabEnv(), httpmock.NewStringResponder(301, "").HeaderSet(http.Header{"Location": {"https://elsewhere/"}}),
			"Bitbucket answered 301 Moved Permanently.\nCheck BITBUCKET_API_URL and the repository settings; this answer was not expected.\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			mock := httpmock.NewMockTransport()
			answer(mock, "POST", statusURL, c.reply)
			r := run(t, c.env, mock, "success")
			r.stderr = attempts.ReplaceAllString(r.stderr, "(N attempts")
			r.stderr = retryLines.ReplaceAllString(r.stderr, "")
			want(t, r, 1, "", failedPrefix+c.stderr)
		})
	}
}

func TestOAuthFailureExplained(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	answer(mock, "POST", "https://bitbucket.org/site/oauth2/access_token",
		httpmock.NewStringResponder(400, `{"error_description": "Invalid OAuth client credentials", "error": "unauthorized_client"}`))
	env := gitlabEnv("BITBUCKET_ACCESS_TOKEN", "<unset>", "BITBUCKET_OAUTH_CLIENT_ID", "consumer-key", "BITBUCKET_OAUTH_CLIENT_SECRET", secret)
	want(t, run(t, env, mock, "success"), 1, "", failedPrefix+
		"Bitbucket gave no OAuth access token (400 Bad Request): unauthorized_client: Invalid OAuth client credentials.\n"+
		"Check BITBUCKET_OAUTH_CLIENT_ID and BITBUCKET_OAUTH_CLIENT_SECRET: they are the consumer's Key and Secret, and the consumer must be "+
		"private (\"This is a private consumer\"), which the client-credentials grant requires.\n")
}

func TestOAuthAccessTokenNeverShown(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	answer(mock, "POST", "https://bitbucket.org/site/oauth2/access_token",
		httpmock.NewStringResponder(200, `{"access_token":"oauth-access-7781","expires_in":7200}`))
	// A server that echoes the credential back must not get it printed.
	mock.RegisterResponder("POST", statusURL, func(r *http.Request) (*http.Response, error) {
		return httpmock.NewStringResponse(400, `{"type":"error","error":{"message":"bad header `+r.Header.Get("Authorization")+`"}}`), nil
	})
	env := gitlabEnv("BITBUCKET_ACCESS_TOKEN", "<unset>", "BITBUCKET_OAUTH_CLIENT_ID", "consumer-key", "BITBUCKET_OAUTH_CLIENT_SECRET", secret)
	r := run(t, env, mock, "success")
	if r.code != 1 || !strings.Contains(r.stderr, "bad header Bearer [REDACTED]") {
		t.Fatalf("%+v", r)
	}
}

func TestEchoedSecretIsRedacted(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder("POST", statusURL, func(r *http.Request) (*http.Response, error) {
		return httpmock.NewStringResponse(400, `{"type":"error","error":{"message":"`+r.Header.Get("Authorization")+` is bad"}}`), nil
	})
	for _, env := range []map[string]string{gitlabEnv(), gitlabEnv("BITBUCKET_USERNAME", "jdoe@example.com")} {
		r := run(t, env, mock, "success")
		if r.code != 1 || !strings.Contains(r.stderr, "[REDACTED] is bad") {
			t.Fatalf("%+v", r)
		}
	}
}

func TestDataCenterFailuresNameProjectAndSlug(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	answer(mock, "POST", dcURL, httpmock.NewStringResponder(404,
		`{"errors":[{"context":null,"message":"Repository PROJ/widgets does not exist.","exceptionName":"com.atlassian.bitbucket.repository.NoSuchRepositoryException"}]}`))
	env := gitlabEnv("BITBUCKET_SERVER_URL", "https://git.example.com/bitbucket", "BITBUCKET_PROJECT", "PROJ")
	want(t, run(t, env, mock, "failed"), 1, "",
		"bitbucket-status: could not post FAILED for commit "+sha+" to PROJ/widgets at https://git.example.com/bitbucket: "+
			"Bitbucket Data Center at https://git.example.com/bitbucket found no project \"PROJ\", repository \"widgets\" or commit "+sha+
			" (404 Not Found): Repository PROJ/widgets does not exist.\n"+
			"The project key came from BITBUCKET_PROJECT and the slug from CI_PROJECT_NAME: set BITBUCKET_PROJECT and BITBUCKET_REPOSITORY "+
			"(or BITBUCKET_REPO_URL) to the project key and repository slug; the server URL came from BITBUCKET_SERVER_URL.\n"+
			"If they are right: the commit (from CI_COMMIT_SHA) may not be on Bitbucket yet, or the credential cannot see this private repository.\n")

	answer(mock, "POST", dcURL, httpmock.NewStringResponder(401, `{"errors":[{"message":"Authentication failed. Please check your credentials and try again."}]}`))
	want(t, run(t, env, mock, "running"), 1, "",
		"bitbucket-status: could not post INPROGRESS for commit "+sha+" to PROJ/widgets at https://git.example.com/bitbucket: "+
			"Bitbucket rejected the credential (401 Unauthorized): Authentication failed. Please check your credentials and try again.\n"+
			"It was sent as a Bearer token (BITBUCKET_USERNAME is unset), as HTTP access tokens are: check that BITBUCKET_ACCESS_TOKEN is an "+
			"HTTP access token of project PROJ or repository widgets (or a personal one) and has not expired. For a password, set BITBUCKET_USERNAME to the user name.\n")
}

func TestDataCenterLegacyFallbackIsSaidOnce(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	answer(mock, "POST", dcURL, httpmock.NewStringResponder(404, ""))
	answer(mock, "POST", "https://git.example.com/bitbucket/rest/build-status/1.0/commits/"+sha, httpmock.NewStringResponder(204, ""))
	env := gitlabEnv("BITBUCKET_SERVER_URL", "https://git.example.com/bitbucket", "BITBUCKET_PROJECT", "PROJ")
	want(t, run(t, env, mock, "passed"), 0,
		"Posted SUCCESSFUL for commit "+sha+" to PROJ/widgets at https://git.example.com/bitbucket (key \"gitlab/acme/widgets\", posted)\n",
		"bitbucket-status: notice: this server has no repository-scoped builds API (Bitbucket Server before 7.4): posted to the legacy /rest/build-status/1.0 API instead\n")
}

func TestCheck(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	commitURL := "https://api.bitbucket.org/2.0/repositories/acme/widgets/commit/" + sha
	answer(mock, "GET", commitURL, httpmock.NewStringResponder(200, `{"hash":"`+sha+`"}`))
	want(t, run(t, gitlabEnv(), mock, "check"), 0,
		"OK: Bearer [REDACTED] can read commit "+sha+" in bitbucket.org/acme/widgets (reading cannot prove the right to post; the first post will)\n", "")
	if mock.GetCallCountInfo()["POST "+statusURL] != 0 {
		t.Error("check posted a status")
	}
	answer(mock, "GET", commitURL, httpmock.NewStringResponder(403, ""))
	want(t, run(t, gitlabEnv(), mock, "check"), 1, "",
		"bitbucket-status: check failed for bitbucket.org/acme/widgets: Bitbucket refused the request (403 Forbidden).\n"+
			"The credential works but may not do this on acme/widgets. It may lack the scope: give BITBUCKET_ACCESS_TOKEN an access token with "+
			"the repository scope (Repositories: Read), or an API token with read:repository:bitbucket.\n")
}

func TestHangEndsWithinBudget(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder("POST", statusURL, hang)
	start := time.Now()
	r := run(t, gitlabEnv("BITBUCKET_STATUS_TIMEOUT", "300ms"), mock, "success")
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("took %s with a 300ms budget", elapsed)
	}
	want(t, r, 1, "", failedPrefix+"No answer from api.bitbucket.org within BITBUCKET_STATUS_TIMEOUT (300ms; 1 attempt).\n"+
		"Check BITBUCKET_API_URL and the runner's network or proxy (HTTPS_PROXY), or raise BITBUCKET_STATUS_TIMEOUT.\n")
}

func TestPanicIsReportedWithoutSecret(t *testing.T) {
	t.Parallel()
	var stdout, stderr strings.Builder
	p := &Program{Version: "1.2.3", Env: gitlabEnv(), Stdout: &stdout, Stderr: &stderr, Transport: httpmock.NewMockTransport(),
		Now: func() time.Time { panic("boom with " + secret) }}
	code := p.Run(context.Background(), []string{"success"})
	if code != 3 || stdout.String() != "" || stderr.String() != "bitbucket-status: internal error (a bug; please report it): boom with [REDACTED]\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

func dcEnv(kv ...string) map[string]string {
	return gitlabEnv(append([]string{"BITBUCKET_SERVER_URL", "https://git.example.com/bitbucket", "BITBUCKET_PROJECT", "PROJ"}, kv...)...)
}

const dcPrefix = "bitbucket-status: could not post SUCCESSFUL for commit " + sha + " to PROJ/widgets at https://git.example.com/bitbucket: "

func TestDataCenterDryRunAndCheck(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	r := run(t, dcEnv("CI_PIPELINE_CREATED_AT", "2026-11-25T09:58:30Z"), mock, "--dry-run", "canceled")
	want(t, r, 0, "(first GET https://git.example.com/bitbucket/rest/capabilities and the build capabilities it names: "+
		"a server without \"cancelledStatus\" (before 8.0) gets FAILED with a description that says canceled)\n"+
		"POST "+dcURL+"\nAuthorization: Bearer [REDACTED]\nAccept: application/json\nContent-Type: application/json\n"+
		"User-Agent: bitbucket-status/1.2.3\n\n{\n  \"key\": \"gitlab/acme/widgets\",\n  \"state\": \"CANCELLED\",\n"+
		"  \"url\": \"https://gitlab.example.com/acme/widgets/-/pipelines/1234\",\n  \"name\": \"GitLab: acme/widgets #7\",\n"+
		"  \"description\": \"Pipeline #7 on main was canceled\",\n  \"ref\": \"refs/heads/main\",\n  \"buildNumber\": \"7\",\n"+
		"  \"duration\": 90000\n}\n\n(if the server answers 404 without naming a missing project, repository or commit, it predates this API, "+
		"and this is sent instead: POST https://git.example.com/bitbucket/rest/build-status/1.0/commits/"+sha+")\n(dry run: nothing was sent)\n", "")

	commitURL := "https://git.example.com/bitbucket/rest/api/latest/projects/PROJ/repos/widgets/commits/" + sha
	answer(mock, "GET", commitURL, httpmock.NewStringResponder(200, `{"id":"`+sha+`"}`))
	want(t, run(t, dcEnv("BITBUCKET_USERNAME", "jdoe"), mock, "check"), 0,
		"OK: Basic [REDACTED] (user \"jdoe\") can read commit "+sha+" in PROJ/widgets at https://git.example.com/bitbucket "+
			"(reading cannot prove the right to post; the first post will)\n", "")
	if mock.GetTotalCallCount() != 1 {
		t.Errorf("%d requests, want the one GET", mock.GetTotalCallCount())
	}
}

func TestDataCenterForbiddenAndRetryAfterBeyondBudget(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	answer(mock, "POST", dcURL, httpmock.NewStringResponder(403,
		`{"errors":[{"context":null,"message":"You are not permitted to access this resource","exceptionName":"com.atlassian.bitbucket.AuthorisationException"}]}`))
	want(t, run(t, dcEnv(), mock, "success"), 1, "", dcPrefix+
		"Bitbucket refused the request (403 Forbidden): You are not permitted to access this resource.\n"+
		"The credential works but may not do this on PROJ/widgets: give BITBUCKET_ACCESS_TOKEN a token (or user) with at least Repository read permission on it.\n"+
		"Or the status key \"gitlab/acme/widgets\" was first posted by another identity: only the account that created a status "+
		"(or a repository admin) may overwrite it. Post with that credential again, or set BITBUCKET_STATUS_KEY to a new key.\n")

	answer(mock, "POST", dcURL, httpmock.NewStringResponder(429, `{"errors":[{"message":"Rate limit exceeded"}]}`).
		HeaderSet(http.Header{"Retry-After": {"300"}}))
	start := time.Now()
	r := run(t, dcEnv("BITBUCKET_STATUS_TIMEOUT", "30s"), mock, "success")
	if time.Since(start) > 5*time.Second {
		t.Errorf("waited %s although the budget could not hold Retry-After", time.Since(start))
	}
	want(t, r, 1, "", dcPrefix+"Bitbucket answered 429 Too Many Requests: Rate limit exceeded.\n"+
		"Bitbucket asked to wait 5m0s before retrying, more than is left of BITBUCKET_STATUS_TIMEOUT (30s).\n"+
		"The credential's rate limit is used up (1 attempt; the server's administrators set Data Center's limits). "+
		"Wait and retry the job, raise BITBUCKET_STATUS_TIMEOUT (now 30s) to retry for longer, or give this project a token of its own.\n")
}

func TestInterruptedRunSaysSo(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder("POST", statusURL, hang)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel) // as SIGTERM does through signal.NotifyContext
	var stdout, stderr strings.Builder
	p := &Program{Version: "1.2.3", Env: gitlabEnv(), Stdout: &stdout, Stderr: &stderr, Transport: mock}
	code := p.Run(ctx, []string{"success"})
	if code != 1 || stderr.String() != failedPrefix+"Interrupted (the job was canceled or stopped) before api.bitbucket.org answered; "+
		"the status may not have been posted.\n" {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}
