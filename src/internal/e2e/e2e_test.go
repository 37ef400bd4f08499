// Package e2e drives the built binaries as processes against local servers
// that behave like Bitbucket (fakebitbucket) and GitLab's API: the job binary
// as a GitLab job runs it (environment in, exit code and output out), and the
// relay as an operator runs it (webhooks in, signals, restarts).
package e2e

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/fakebitbucket"
)

const (
	sha   = "0123456789abcdef0123456789abcdef01234567"
	token = "E2E-SECRET-TOKEN-93b1"
)

var binary, relayBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bitbucket-status-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "bitbucket-status")
	// The tags of the release build (Dockerfile, .ci/lib.sh): test what ships.
	build := exec.Command("go", "build", "-tags", "urfave_cli_no_docs,nethttpomithttp2", "-ldflags", "-X main.version=9.9.9-e2e", "-o", binary, "../../cmd/bitbucket-status")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binary:", err)
		os.Exit(1)
	}
	relayBinary = filepath.Join(dir, "bitbucket-status-relay")
	build = exec.Command("go", "build", "-ldflags", "-X main.version=9.9.9-e2e", "-o", relayBinary, "../../cmd/bitbucket-status-relay")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the relay:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type outcome struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// gitlabJob is what GitLab gives a job of pipeline #7 in project acme/widgets.
func gitlabJob(api string, kv ...string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(),
		"BITBUCKET_API_URL=" + api, "BITBUCKET_ACCESS_TOKEN=" + token,
		"CI_COMMIT_SHA=" + sha, "CI_COMMIT_REF_NAME=main", "CI_COMMIT_BRANCH=main",
		"CI_PROJECT_PATH=acme/widgets", "CI_PROJECT_NAMESPACE=acme", "CI_PROJECT_NAME=widgets",
		"CI_PROJECT_URL=https://gitlab.example.com/acme/widgets", "CI_PIPELINE_ID=1234", "CI_PIPELINE_IID=7",
		"CI_PIPELINE_URL=https://gitlab.example.com/acme/widgets/-/pipelines/1234", "CI_JOB_NAME=status",
	}
	return append(env, kv...)
}

func run(t *testing.T, env []string, args ...string) outcome {
	t.Helper()
	return runIn(t, "", env, args...)
}

// runIn runs the binary in dir, as a job runs in its checkout.
func runIn(t *testing.T, dir string, env []string, args ...string) outcome {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env, cmd.Dir = env, dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	o := outcome{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		o.code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	if strings.Contains(o.stdout+o.stderr, token) {
		t.Errorf("the secret appears in the output:\n%s%s", o.stdout, o.stderr)
	}
	return o
}

func server(t *testing.T, s *fakebitbucket.Server) (*fakebitbucket.Server, string) {
	t.Helper()
	if s.Token == "" && s.ClientID == "" {
		s.Token = token
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL
}

func body(r fakebitbucket.Record) string { return string(r.Body) }

func TestRunningThenSuccessUpdatesOneStatus(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	env := gitlabJob(url + "/2.0")
	o := run(t, env, "running")
	if o.code != 0 || o.stdout != "Posted INPROGRESS for commit "+sha+" to acme/widgets at "+url+"/2.0 (key \"gitlab/acme/widgets\", created)\n" || o.stderr != "" {
		t.Fatalf("%+v", o)
	}
	o = run(t, append(env, "CI_JOB_NAME=other-job"), "success")
	if o.code != 0 || !strings.HasSuffix(o.stdout, "(key \"gitlab/acme/widgets\", updated)\n") {
		t.Fatalf("%+v", o)
	}
	reqs := s.Requests()
	path := "/2.0/repositories/acme/widgets/commit/" + sha + "/statuses/build"
	want := []fakebitbucket.Record{
		{Method: "POST", Path: path, Auth: "Bearer", Code: 201, Body: json.RawMessage(`{"key":"gitlab/acme/widgets","state":"INPROGRESS","name":"GitLab: acme/widgets #7","description":"Pipeline #7 on main is running","url":"https://gitlab.example.com/acme/widgets/-/pipelines/1234","refname":"main"}`)},
		{Method: "POST", Path: path, Auth: "Bearer", Code: 200, Body: json.RawMessage(`{"key":"gitlab/acme/widgets","state":"SUCCESSFUL","name":"GitLab: acme/widgets #7","description":"Pipeline #7 on main passed","url":"https://gitlab.example.com/acme/widgets/-/pipelines/1234","refname":"main"}`)},
	}
	if len(reqs) != 2 || !sameRecord(reqs[0], want[0]) || !sameRecord(reqs[1], want[1]) {
		t.Fatalf("requests:\n%+v\nwant\n%+v", reqs, want)
	}
}

func sameRecord(a, b fakebitbucket.Record) bool {
	return a.Method == b.Method && a.Path == b.Path && a.Auth == b.Auth && a.Code == b.Code && string(a.Body) == string(b.Body)
}

func TestBasicAndOAuth(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{User: "jdoe@example.com", Token: token})
	if o := run(t, gitlabJob(url+"/2.0", "BITBUCKET_USERNAME=jdoe@example.com"), "failed"); o.code != 0 {
		t.Fatalf("basic: %+v", o)
	}
	if got := s.Requests(); len(got) != 1 || got[0].Auth != "Basic jdoe@example.com" || got[0].Code != 201 {
		t.Fatalf("basic: %+v", got)
	}

	s, url = server(t, &fakebitbucket.Server{ClientID: "consumer", ClientSecret: token})
	o := run(t, gitlabJob(url+"/2.0", "BITBUCKET_ACCESS_TOKEN=", "BITBUCKET_OAUTH_CLIENT_ID=consumer",
		"BITBUCKET_OAUTH_CLIENT_SECRET="+token, "BITBUCKET_OAUTH_TOKEN_URL="+url+"/site/oauth2/access_token"), "success")
	if o.code != 0 || strings.Contains(o.stdout+o.stderr, fakebitbucket.OAuthAccessToken) {
		t.Fatalf("oauth: %+v", o)
	}
	got := s.Requests()
	if len(got) != 2 || got[0].Path != "/site/oauth2/access_token" || got[0].Auth != "Basic consumer" || got[1].Auth != "Bearer" || got[1].Code != 201 {
		t.Fatalf("oauth: %+v", got)
	}
}

func TestLongKeyIsShortenedNotRejected(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	key := "deploy/production/eu-west-1/cluster-a/web" // 41 characters: the server rejects it as Bitbucket does
	o := run(t, gitlabJob(url+"/2.0", "BITBUCKET_STATUS_KEY="+key), "success")
	if o.code != 0 || o.stderr != "bitbucket-status: notice: BITBUCKET_STATUS_KEY is 41 bytes, over Bitbucket Cloud's limit of 40: using \"deploy/../cluster-a/web-f7d9b022\"\n" {
		t.Fatalf("%+v", o)
	}
	if got := s.Requests(); len(got) != 1 || got[0].Code != 201 || !strings.Contains(body(got[0]), `"key":"deploy/../cluster-a/web-f7d9b022"`) {
		t.Fatalf("%+v", got)
	}
	// The stand-in does reject a 41-character key, as Bitbucket does, so
	// the test above could fail.
	req, _ := http.NewRequest("POST", url+"/2.0/repositories/acme/widgets/commit/"+sha+"/statuses/build",
		strings.NewReader(`{"key":"`+key+`","state":"SUCCESSFUL"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := s.Requests(); resp.StatusCode != 400 || !strings.Contains(body(got[len(got)-1]), key) {
		t.Fatalf("the stand-in accepted a 41-character key: %d", resp.StatusCode)
	}
}

func TestFailuresExitOneWithExplanation(t *testing.T) {
	t.Parallel()
	_, url := server(t, &fakebitbucket.Server{})
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"401", []string{"BITBUCKET_ACCESS_TOKEN=wrong-token-value"}, "Bitbucket rejected the credential (401 Unauthorized).\nIt was sent as a Bearer token"},
		{"404", []string{"BITBUCKET_REPOSITORY=missing"}, "Bitbucket found no repository acme/missing or no commit " + sha + " in it (404 Not Found): Repository acme/missing not found.\n" +
			"The workspace came from CI_PROJECT_NAMESPACE and the slug from BITBUCKET_REPOSITORY"},
		{"403", []string{"BITBUCKET_REPOSITORY=forbidden"}, "Bitbucket refused the request (403 Forbidden): Your credentials lack one or more required privilege scopes"},
		{"400", []string{"BITBUCKET_REPOSITORY=reject"}, "Bitbucket rejected the status (400 Bad Request): Bad request — fields: state: Rejected by the test server.\n"},
		{"503", []string{"BITBUCKET_REPOSITORY=down", "BITBUCKET_STATUS_TIMEOUT=2s"}, "Bitbucket answered 503 Service Unavailable: Service unavailable.\nBitbucket kept failing ("},
		{"429", []string{"BITBUCKET_REPOSITORY=rate-limited", "BITBUCKET_STATUS_TIMEOUT=2s"}, "Bitbucket answered 429 Too Many Requests: Rate limit for this resource has been exceeded.\nThe credential's rate limit is used up ("},
		{"hang", []string{"BITBUCKET_REPOSITORY=hang", "BITBUCKET_STATUS_TIMEOUT=2s"}, "No answer from " + strings.TrimPrefix(url, "http://") + " within BITBUCKET_STATUS_TIMEOUT (2s; 1 attempt).\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			o := run(t, gitlabJob(url+"/2.0", c.env...), "success")
			if o.code != 1 || o.stdout != "" || !strings.Contains(o.stderr, c.want) {
				t.Fatalf("exit %d\nstdout %q\nstderr %s\nwant it to contain %q", o.code, o.stdout, o.stderr, c.want)
			}
			if o.elapsed > 6*time.Second {
				t.Errorf("took %s", o.elapsed)
			}
		})
	}
}

func TestRetriesRecover(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	o := run(t, gitlabJob(url+"/2.0", "BITBUCKET_REPOSITORY=flaky"), "success")
	if o.code != 0 || strings.Count(o.stderr, "502 Bad Gateway (attempt ") != 2 {
		t.Fatalf("%+v", o)
	}
	codes := []int{}
	for _, r := range s.Requests() {
		codes = append(codes, r.Code)
	}
	if fmt.Sprint(codes) != "[502 502 201]" {
		t.Fatalf("codes %v", codes)
	}
}

func TestUsageErrorSendsNothing(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	for _, args := range [][]string{{"bogus"}, {}, {"--nope", "running"}} {
		if o := run(t, gitlabJob(url+"/2.0"), args...); o.code != 2 || o.stdout != "" || o.stderr == "" {
			t.Errorf("%v: %+v", args, o)
		}
	}
	if o := run(t, gitlabJob("http://example.com/2.0"), "running"); o.code != 2 ||
		!strings.Contains(o.stderr, `BITBUCKET_API_URL is "http://example.com/2.0", plain http`) {
		t.Errorf("%+v", o)
	}
	if n := len(s.Requests()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

func TestDataCenter(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	base := url + "/bitbucket"
	env := gitlabJob("", "BITBUCKET_SERVER_URL="+base, "BITBUCKET_PROJECT=PROJ", "CI_PIPELINE_CREATED_AT=2026-01-01T00:00:00Z")
	if o := run(t, env, "running"); o.code != 0 || o.stdout != "Posted INPROGRESS for commit "+sha+" to PROJ/widgets at "+base+" (key \"gitlab/acme/widgets\", posted)\n" {
		t.Fatalf("%+v", o)
	}
	got := s.Requests()
	if len(got) != 1 || got[0].Path != "/bitbucket/rest/api/latest/projects/PROJ/repos/widgets/commits/"+sha+"/builds" || got[0].Code != 204 ||
		body(got[0]) != `{"key":"gitlab/acme/widgets","state":"INPROGRESS","url":"https://gitlab.example.com/acme/widgets/-/pipelines/1234","name":"GitLab: acme/widgets #7","description":"Pipeline #7 on main is running","ref":"refs/heads/main","buildNumber":"7"}` {
		t.Fatalf("%+v", got)
	}

	o := run(t, append(env, "BITBUCKET_REPOSITORY=missing"), "success")
	if o.code != 1 || !strings.Contains(o.stderr, "Repository PROJ/missing does not exist.") || len(s.Requests()) != 2 {
		t.Fatalf("missing: %+v, %d requests", o, len(s.Requests()))
	}

	// Data Center sends Retry-After: 1 on 429; with a 2.5s budget the tool
	// waits the second it is asked to, twice at most.
	o = run(t, append(env, "BITBUCKET_REPOSITORY=rate-limited", "BITBUCKET_STATUS_TIMEOUT=2500ms"), "success")
	if o.code != 1 || !strings.Contains(o.stderr, "429 Too Many Requests (attempt 1); retrying in 1s") || o.elapsed < time.Second {
		t.Fatalf("rate-limited: %+v", o)
	}
}

// TestDataCenterVersions posts a running and a canceled status to servers
// that answer as each Data Center version does, and checks every request.
func TestDataCenterVersions(t *testing.T) {
	t.Parallel()
	const (
		builds = "POST /bitbucket/rest/api/latest/projects/PROJ/repos/widgets/commits/" + sha + "/builds"
		legacy = "POST /bitbucket/rest/build-status/1.0/commits/" + sha
		caps   = "GET /bitbucket/rest/capabilities"
		build  = "GET /bitbucket/rest/api/latest/build/capabilities"
	)
	for _, c := range []struct {
		version, shape string
		want           []string // method path code state, of the running then the canceled post
		notice         string
	}{
		{"9.4", "", []string{builds + " 204 INPROGRESS", caps + " 200", build + " 200", builds + " 204 CANCELLED"}, ""},
		{"10.1", "", []string{builds + " 204 INPROGRESS", caps + " 200", build + " 200", builds + " 204 CANCELLED"}, ""},
		{"7.21", "", []string{builds + " 204 INPROGRESS", caps + " 200", build + " 200", builds + " 204 FAILED"},
			"this server has no CANCELLED build state (Bitbucket before 8.0): posted FAILED with a description that says canceled"},
		{"7.3", "", []string{builds + " 404 INPROGRESS", legacy + " 204 INPROGRESS", caps + " 200", legacy + " 204 FAILED"},
			"this server has no repository-scoped builds API (Bitbucket Server before 7.4): posted to the legacy /rest/build-status/1.0 API instead"},
		{"6.10", "", []string{builds + " 404 INPROGRESS", legacy + " 204 INPROGRESS", caps + " 404", builds + " 404 FAILED", legacy + " 204 FAILED"},
			"this server has no repository-scoped builds API (Bitbucket Server before 7.4): posted to the legacy /rest/build-status/1.0 API instead"},
		{"7.3", "http-404", []string{builds + " 404 INPROGRESS", legacy + " 204 INPROGRESS", caps + " 200", legacy + " 204 FAILED"},
			"this server has no repository-scoped builds API (Bitbucket Server before 7.4): posted to the legacy /rest/build-status/1.0 API instead"},
		{"6.10", "xml", []string{builds + " 404 INPROGRESS", legacy + " 204 INPROGRESS", caps + " 404", builds + " 404 FAILED", legacy + " 204 FAILED"},
			"this server has no repository-scoped builds API (Bitbucket Server before 7.4): posted to the legacy /rest/build-status/1.0 API instead"},
	} {
		name := c.version + " " + c.shape
		s, url := server(t, &fakebitbucket.Server{DataCenterVersion: c.version, NotFoundShape: c.shape})
		env := gitlabJob("", "BITBUCKET_SERVER_URL="+url+"/bitbucket", "BITBUCKET_PROJECT=PROJ")
		if o := run(t, env, "running"); o.code != 0 {
			t.Fatalf("%s: running: %+v", name, o)
		}
		o := run(t, env, "canceled")
		if o.code != 0 || o.stderr != noticeLine(c.notice) {
			t.Errorf("%s: canceled: %+v", name, o)
		}
		var got []string
		for _, r := range s.Requests() {
			line := fmt.Sprintf("%s %s %d", r.Method, r.Path, r.Code)
			var st struct{ State string }
			if json.Unmarshal(r.Body, &st) == nil && st.State != "" {
				line += " " + st.State
			}
			got = append(got, line)
		}
		if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%s: requests:\n%s\nwant:\n%s", name, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
		}
	}
}

func noticeLine(notice string) string {
	if notice == "" {
		return ""
	}
	return "bitbucket-status: notice: " + notice + "\n"
}

// TestDataCenterMissingThingsAreNotHiddenByTheLegacyAPI: a 404 that names a
// missing project, repository or commit is an error, not a reason to post to
// the legacy API, which checks none of them.
func TestDataCenterMissingThingsAreNotHiddenByTheLegacyAPI(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{DataCenterVersion: "8.19"})
	for _, c := range []struct{ env, said string }{
		{"BITBUCKET_PROJECT=MISSING", "Project MISSING does not exist."},
		{"BITBUCKET_REPOSITORY=missing", "Repository PROJ/missing does not exist."},
		{"CI_COMMIT_SHA=badc0de0123456789abcdef0123456789abcdef0", "Commit 'badc0de0123456789abcdef0123456789abcdef0' does not exist in repository 'widgets'."},
	} {
		env := gitlabJob("", "BITBUCKET_SERVER_URL="+url+"/bitbucket", "BITBUCKET_PROJECT=PROJ", c.env)
		o := run(t, env, "success")
		if o.code != 1 || !strings.Contains(o.stderr, "(404 Not Found): "+c.said+"\n") {
			t.Errorf("%s: %+v", c.env, o)
		}
	}
	for _, r := range s.Requests() {
		if strings.Contains(r.Path, "build-status") {
			t.Errorf("the legacy API was called: %+v", r)
		}
	}
}

// TestManualStoppedPost is the README's recipe for a canceled pipeline, run
// from a terminal: the status keeps its key and name, and links to the
// commit on Bitbucket, which Data Center requires.
func TestManualStoppedPost(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	manual := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "BITBUCKET_ACCESS_TOKEN=" + token,
		"CI_COMMIT_SHA=" + sha, "BITBUCKET_STATUS_KEY=gitlab/acme/widgets"}
	cloud := append(manual, "BITBUCKET_API_URL="+url+"/2.0", "BITBUCKET_REPO_URL=https://bitbucket.org/acme/widgets.git")
	if o := run(t, cloud, "stopped"); o.code != 0 {
		t.Fatalf("cloud: %+v", o)
	}
	dc := append(manual, "BITBUCKET_SERVER_URL="+url+"/bitbucket", "BITBUCKET_PROJECT=PROJ", "BITBUCKET_REPOSITORY=widgets")
	if o := run(t, dc, "stopped"); o.code != 0 {
		t.Fatalf("data center: %+v", o)
	}
	reqs := s.Requests()
	if len(reqs) != 4 ||
		body(reqs[0]) != `{"key":"gitlab/acme/widgets","state":"STOPPED","name":"GitLab: acme/widgets","description":"The build was canceled or skipped",`+
			`"url":"https://bitbucket.org/acme/widgets/commits/`+sha+`"}` ||
		body(reqs[3]) != `{"key":"gitlab/acme/widgets","state":"CANCELLED","url":"`+url+`/bitbucket/projects/PROJ/repos/widgets/commits/`+sha+`",`+
			`"name":"GitLab: acme/widgets","description":"The build was canceled or skipped"}` || reqs[3].Code != 204 {
		t.Fatalf("%+v", reqs)
	}
}

// TestSingleLabelHostStopsBeforeAnyRequest: Bitbucket Cloud refuses a link
// to http://gitlab:8080/...; the tool says so and sends nothing.
func TestSingleLabelHostStopsBeforeAnyRequest(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	o := run(t, gitlabJob(url+"/2.0", "CI_PIPELINE_URL=http://gitlab:8080/acme/widgets/-/pipelines/1234"), "running")
	if o.code != 2 || o.stderr != `bitbucket-status: CI_PIPELINE_URL is "http://gitlab:8080/acme/widgets/-/pipelines/1234", whose host "gitlab" is a single-label name, `+
		`which Bitbucket Cloud rejects (400 url: Enter a valid URL.): set BITBUCKET_STATUS_URL to a link with a fully qualified host name, `+
		`or give GitLab a fully qualified external URL (external_url in /etc/gitlab/gitlab.rb), from which it makes CI_PIPELINE_URL`+"\n" {
		t.Fatalf("%+v", o)
	}
	if n := len(s.Requests()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

// TestRateLimitNoticeAndPlainText429: Cloud warns before the limit with a
// header, then answers 429 in plain text without Retry-After.
func TestRateLimitNoticeAndPlainText429(t *testing.T) {
	t.Parallel()
	_, url := server(t, &fakebitbucket.Server{})
	o := run(t, gitlabJob(url+"/2.0", "BITBUCKET_REPOSITORY=near-limit"), "running")
	if o.code != 0 || o.stderr != "bitbucket-status: notice: Bitbucket says this credential is near its limit of 1000 requests an hour (X-RateLimit-NearLimit): "+
		"once it is used up, every post with it is refused (429) until older requests leave the hour; give this project a token of its own, or post less often with it\n" {
		t.Fatalf("near limit: %+v", o)
	}
	o = run(t, gitlabJob(url+"/2.0", "BITBUCKET_REPOSITORY=rate-limited", "BITBUCKET_STATUS_TIMEOUT=1500ms"), "running")
	last := o.stderr[strings.LastIndex(o.stderr, "bitbucket-status: could not post"):]
	want := "bitbucket-status: could not post INPROGRESS for commit " + sha + " to acme/rate-limited at " + url + "/2.0: " +
		"Bitbucket answered 429 Too Many Requests: Rate limit for this resource has been exceeded.\n" +
		"The credential's rate limit is used up (N attempts; Bitbucket Cloud allows 1,000 requests an hour per token, user or OAuth consumer). " +
		"Wait and retry the job, raise BITBUCKET_STATUS_TIMEOUT (now 1.5s) to retry for longer, or give this project a token of its own.\n"
	if o.code != 1 || attempts.ReplaceAllString(last, "N attempts") != want || !strings.Contains(o.stderr, ": 429 Too Many Requests (attempt 1); retrying in ") {
		t.Fatalf("429: %+v\nwant last lines:\n%s", o, want)
	}
}

var attempts = regexp.MustCompile(`\d+ attempts?`)

func TestHTTPSWithTestCA(t *testing.T) {
	t.Parallel()
	s := &fakebitbucket.Server{Token: token}
	ts := httptest.NewTLSServer(s)
	t.Cleanup(ts.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	env := gitlabJob(ts.URL + "/2.0")
	o := run(t, env, "success")
	if o.code != 1 || !strings.Contains(o.stderr, "is signed by an unknown authority.\nIf the server uses a private CA, set SSL_CERT_FILE") {
		t.Fatalf("without the CA: %+v", o)
	}
	if o := run(t, append(env, "SSL_CERT_FILE="+caFile), "success"); o.code != 0 {
		t.Fatalf("with SSL_CERT_FILE: %+v", o)
	}
	dcEnv := gitlabJob("", "BITBUCKET_SERVER_URL="+ts.URL, "BITBUCKET_PROJECT=PROJ", "SSL_CERT_DIR="+filepath.Dir(caFile))
	if o := run(t, dcEnv, "success"); o.code != 0 {
		t.Fatalf("Data Center with SSL_CERT_DIR: %+v", o)
	}
}

func TestCheckCommand(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	o := run(t, gitlabJob(url+"/2.0"), "check")
	if o.code != 0 || !strings.HasPrefix(o.stdout, "OK: Bearer [REDACTED] can read commit "+sha) {
		t.Fatalf("%+v", o)
	}
	if got := s.Requests(); len(got) != 1 || got[0].Method != "GET" || got[0].Path != "/2.0/repositories/acme/widgets/commit/"+sha {
		t.Fatalf("%+v", got)
	}
	if o := run(t, gitlabJob(url+"/2.0", "BITBUCKET_ACCESS_TOKEN=nope-nope"), "check"); o.code != 1 || !strings.Contains(o.stderr, "401 Unauthorized") {
		t.Fatalf("%+v", o)
	}
}

func TestDryRunInABitbucketClone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, args := range [][]string{{"init", "-q", "-b", "feature/login"}, {"commit", "-q", "--allow-empty", "-m", "x"},
		{"remote", "add", "origin", "git@bitbucket.org:acme/widgets.git"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	head, _ := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	cmd := exec.Command(binary, "--dry-run", "passed")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	out, err := cmd.CombinedOutput()
	want := "POST https://api.bitbucket.org/2.0/repositories/acme/widgets/commit/" + strings.TrimSpace(string(head)) + "/statuses/build\n" +
		"Authorization: (none: no credential is set)\nAccept: application/json\nContent-Type: application/json\nUser-Agent: bitbucket-status/9.9.9-e2e\n\n" +
		"{\n  \"key\": \"bitbucket-status\",\n  \"state\": \"SUCCESSFUL\",\n  \"name\": \"bitbucket-status\",\n  \"description\": \"The build on feature/login passed\",\n" +
		"  \"url\": \"https://bitbucket.org/acme/widgets/commits/" + strings.TrimSpace(string(head)) + "\",\n" +
		"  \"refname\": \"feature/login\"\n}\n(dry run: nothing was sent)\n"
	if err != nil || string(out) != want {
		t.Fatalf("%v\n%s\nwant\n%s", err, out, want)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if o := run(t, []string{}, args...); o.code != 0 || o.stdout != "bitbucket-status 9.9.9-e2e\n" {
			t.Errorf("%v: %+v", args, o)
		}
	}
}
