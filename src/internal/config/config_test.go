package config

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitcheckout"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

// gitlabEnv is what GitLab gives a job in project acme/widgets, pipeline #7.
func gitlabEnv() map[string]string {
	return map[string]string{
		"BITBUCKET_ACCESS_TOKEN": "tok-0123456789",
		"CI_COMMIT_SHA":          sha, "CI_COMMIT_REF_NAME": "main", "CI_COMMIT_BRANCH": "main",
		"CI_PROJECT_PATH": "acme/widgets", "CI_PROJECT_NAMESPACE": "acme", "CI_PROJECT_NAME": "widgets",
		"CI_PROJECT_URL": "https://gitlab.example.com/acme/widgets", "CI_PIPELINE_ID": "1234", "CI_PIPELINE_IID": "7",
		"CI_PIPELINE_URL": "https://gitlab.example.com/acme/widgets/-/pipelines/1234", "CI_JOB_ID": "555",
		"CI_JOB_NAME": "bitbucket-status-running", "CI_JOB_URL": "https://gitlab.example.com/acme/widgets/-/jobs/555",
		"CI_PIPELINE_CREATED_AT": "2026-11-25T10:00:00Z",
	}
}

var now = time.Date(2026, 11, 25, 10, 1, 30, 500_000_000, time.UTC)

func resolve(t *testing.T, env map[string]string, s state.State) (*Run, error) {
	t.Helper()
	e, err := Load(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	return Resolve(e, Options{State: s, Now: now, Checkout: func() (gitcheckout.Checkout, error) {
		return gitcheckout.Checkout{}, errors.New("not a git repository")
	}})
}

func with(env map[string]string, kv ...string) map[string]string {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "<unset>" {
			delete(env, kv[i])
		} else {
			env[kv[i]] = kv[i+1]
		}
	}
	return env
}

func TestGitLabDefaults(t *testing.T) {
	t.Parallel()
	run, err := resolve(t, gitlabEnv(), state.InProgress)
	if err != nil {
		t.Fatal(err)
	}
	want := &Run{
		Cloud:  &bitbucket.Cloud{API: "https://api.bitbucket.org/2.0", Workspace: "acme", Slug: "widgets"},
		Commit: sha,
		Status: bitbucket.Status{Key: "gitlab/acme/widgets", State: state.InProgress, Name: "GitLab: acme/widgets #7",
			Description: "Pipeline #7 on main is running", URL: "https://gitlab.example.com/acme/widgets/-/pipelines/1234",
			Branch: "main", BuildNumber: "7"},
		Auth:    bitbucket.Auth{Kind: bitbucket.Bearer, Token: "tok-0123456789"},
		Timeout: 60 * time.Second,
		From:    Origins{Owner: "CI_PROJECT_NAMESPACE", Slug: "CI_PROJECT_NAME", Commit: "CI_COMMIT_SHA", Server: "BITBUCKET_API_URL"},
	}
	if !reflect.DeepEqual(run, want) {
		t.Errorf("got  %+v\nwant %+v\nstatus %+v", run, want, run.Status)
	}
}

func TestStatusTexts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env        []string
		state      state.State
		name, desc string
	}{
		{nil, state.Successful, "GitLab: acme/widgets #7", "Pipeline #7 on main passed"},
		{nil, state.Failed, "GitLab: acme/widgets #7", "Pipeline #7 on main failed"},
		{nil, state.Stopped, "GitLab: acme/widgets #7", "Pipeline #7 on main was canceled or skipped"},
		{[]string{"CI_COMMIT_TAG", "v1.2.3", "CI_COMMIT_BRANCH", "<unset>", "CI_COMMIT_REF_NAME", "v1.2.3"}, state.Successful,
			"GitLab: acme/widgets #7", "Pipeline #7 for tag v1.2.3 passed"},
		{[]string{"CI_PIPELINE_IID", "<unset>"}, state.Successful, "GitLab: acme/widgets", "The build on main passed"},
		{[]string{"BITBUCKET_STATUS_NAME", "Deploy", "BITBUCKET_STATUS_DESCRIPTION", `"quoted" & <b>`}, state.Successful, "Deploy", `"quoted" & <b>`},
		{[]string{"BITBUCKET_STATUS_NAME", strings.Repeat("é", 200)}, state.Successful, strings.Repeat("é", 126) + "...", "Pipeline #7 on main passed"},
	}
	for _, c := range cases {
		run, err := resolve(t, with(gitlabEnv(), c.env...), c.state)
		if err != nil {
			t.Fatal(err)
		}
		if run.Status.Name != c.name || run.Status.Description != c.desc {
			t.Errorf("%v %s: name %q, description %q; want %q, %q", c.env, c.state, run.Status.Name, run.Status.Description, c.name, c.desc)
		}
		if len(run.Status.Name) > 255 {
			t.Errorf("name is %d bytes", len(run.Status.Name))
		}
	}
}

func TestTagPipelineHasNoBranch(t *testing.T) {
	t.Parallel()
	run, err := resolve(t, with(gitlabEnv(), "CI_COMMIT_TAG", "v1.0.0", "CI_COMMIT_BRANCH", "<unset>", "CI_COMMIT_REF_NAME", "v1.0.0"), state.Successful)
	if err != nil || run.Status.Branch != "" || run.Status.Tag != "v1.0.0" {
		t.Fatalf("run = %+v, %v", run, err)
	}
}

func TestSameKeyForEveryStateAndJob(t *testing.T) {
	t.Parallel()
	keys := map[string]bool{}
	for _, s := range []state.State{state.InProgress, state.Successful, state.Failed} {
		for _, job := range []string{"bitbucket-status-running", "bitbucket-status-success", "other"} {
			run, err := resolve(t, with(gitlabEnv(), "CI_JOB_NAME", job), s)
			if err != nil {
				t.Fatal(err)
			}
			keys[run.Status.Key] = true
		}
	}
	if len(keys) != 1 {
		t.Fatalf("keys = %v, want one", keys)
	}
	other, _ := resolve(t, with(gitlabEnv(), "CI_PROJECT_PATH", "acme/widgets-mirror"), state.InProgress)
	if keys[other.Status.Key] {
		t.Fatal("two GitLab projects share a key")
	}
}

func TestLongKeyOverrideIsShortenedWithNotice(t *testing.T) {
	t.Parallel()
	run, err := resolve(t, with(gitlabEnv(), "BITBUCKET_STATUS_KEY", "deploy/production/eu-west-1/cluster-a/web"), state.Successful)
	if err != nil {
		t.Fatal(err)
	}
	want := `BITBUCKET_STATUS_KEY is 41 bytes, over Bitbucket Cloud's limit of 40: using "deploy/../cluster-a/web-f7d9b022"`
	if run.Status.Key != "deploy/../cluster-a/web-f7d9b022" || len(run.Notices) != 1 || run.Notices[0] != want {
		t.Fatalf("key %q, notices %q", run.Status.Key, run.Notices)
	}
}

func TestRepositoryFromURL(t *testing.T) {
	t.Parallel()
	run, err := resolve(t, with(gitlabEnv(), "BITBUCKET_REPO_URL", "git@bitbucket.org:other-ws/other-repo.git"), state.Successful)
	if err != nil || *run.Cloud != (bitbucket.Cloud{API: bitbucket.DefaultCloudAPI, Workspace: "other-ws", Slug: "other-repo"}) ||
		run.From.Owner != "BITBUCKET_REPO_URL" || run.From.Slug != "BITBUCKET_REPO_URL" {
		t.Fatalf("run = %+v, %v", run, err)
	}
	// A variable for one part wins over the URL's part.
	run, err = resolve(t, with(gitlabEnv(), "BITBUCKET_REPO_URL", "https://bitbucket.org/other-ws/other-repo.git", "BITBUCKET_REPOSITORY", "third"), state.Successful)
	if err != nil || run.Cloud.Workspace != "other-ws" || run.Cloud.Slug != "third" || run.From.Slug != "BITBUCKET_REPOSITORY" {
		t.Fatalf("run = %+v, %v", run, err)
	}
}

func TestSubgroupNeedsWorkspaceButExplicitOneWorks(t *testing.T) {
	t.Parallel()
	env := with(gitlabEnv(), "CI_PROJECT_NAMESPACE", "acme/platform", "CI_PROJECT_PATH", "acme/platform/widgets")
	if run, err := resolve(t, with(env, "BITBUCKET_NAMESPACE", "acme"), state.Successful); err != nil || run.Cloud.Workspace != "acme" {
		t.Fatalf("run = %+v, %v", run, err)
	}
}

func TestDataCenterSelection(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  []string
		want bitbucket.DataCenter
		from string
	}{
		{[]string{"BITBUCKET_SERVER_URL", "https://git.example.com/bitbucket/", "BITBUCKET_PROJECT", "PROJ"},
			bitbucket.DataCenter{Server: "https://git.example.com/bitbucket", Project: "PROJ", Slug: "widgets"}, "BITBUCKET_SERVER_URL"},
		{[]string{"BITBUCKET_REPO_URL", "https://git.example.com/ctx/scm/proj/repo.git"},
			bitbucket.DataCenter{Server: "https://git.example.com/ctx", Project: "PROJ", Slug: "repo"}, "BITBUCKET_REPO_URL"},
		{[]string{"BITBUCKET_REPO_URL", "ssh://git@git.example.com:7999/proj/repo.git", "BITBUCKET_SERVER_URL", "https://git.example.com/ctx"},
			bitbucket.DataCenter{Server: "https://git.example.com/ctx", Project: "PROJ", Slug: "repo"}, "BITBUCKET_SERVER_URL"},
	}
	for _, c := range cases {
		run, err := resolve(t, with(gitlabEnv(), c.env...), state.Stopped)
		if err != nil || run.DataCenter == nil || *run.DataCenter != c.want || run.From.Server != c.from || run.Cloud != nil {
			t.Fatalf("%v: run = %+v, %v", c.env, run, err)
		}
		if run.Status.Duration != 90500*time.Millisecond || run.Status.BuildNumber != "7" {
			t.Errorf("duration %s, build number %q", run.Status.Duration, run.Status.BuildNumber)
		}
	}
	run, err := resolve(t, with(gitlabEnv(), "BITBUCKET_REPO_URL", "ssh://git@git.example.com:7999/proj/repo.git"), state.InProgress)
	want := "assuming the Data Center server is https://git.example.com (an ssh URL does not give its web address): " +
		"set BITBUCKET_SERVER_URL if it differs, e.g. has a context path"
	if err != nil || len(run.Notices) != 1 || run.Notices[0] != want || run.Status.Duration != 0 {
		t.Fatalf("run = %+v, %v", run, err)
	}
}

func TestOutsideGitLabUsesTheCheckout(t *testing.T) {
	t.Parallel()
	e, err := Load(context.Background(), map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	run, err := Resolve(e, Options{State: state.Successful, Now: now, Checkout: func() (gitcheckout.Checkout, error) {
		return gitcheckout.Checkout{Commit: sha, Branch: "feature/x", Origin: "git@bitbucket.org:acme/widgets.git"}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if run.Commit != sha || run.Status.Branch != "feature/x" || *run.Cloud != (bitbucket.Cloud{API: bitbucket.DefaultCloudAPI, Workspace: "acme", Slug: "widgets"}) ||
		run.Status.Key != "bitbucket-status" || run.Status.Name != "bitbucket-status" ||
		run.Status.URL != "https://bitbucket.org/acme/widgets/commits/"+sha || run.Auth.Kind != bitbucket.NoAuth {
		t.Fatalf("run = %+v", run)
	}
	if err := run.RequireCredential(); err == nil {
		t.Fatal("a run with no credential was allowed to send")
	}
}

func TestAuthKinds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  []string
		want bitbucket.Auth
	}{
		{nil, bitbucket.Auth{Kind: bitbucket.Bearer, Token: "tok-0123456789"}},
		{[]string{"BITBUCKET_ACCESS_TOKEN", " tok-with-newline\n"}, bitbucket.Auth{Kind: bitbucket.Bearer, Token: "tok-with-newline"}},
		{[]string{"BITBUCKET_USERNAME", "jdoe@example.com"}, bitbucket.Auth{Kind: bitbucket.Basic, Username: "jdoe@example.com", Token: "tok-0123456789"}},
		{[]string{"BITBUCKET_ACCESS_TOKEN", "<unset>", "BITBUCKET_OAUTH_CLIENT_ID", "key", "BITBUCKET_OAUTH_CLIENT_SECRET", "secret"},
			bitbucket.Auth{Kind: bitbucket.OAuth, ClientID: "key", ClientSecret: "secret", TokenURL: "https://bitbucket.org/site/oauth2/access_token"}},
		{[]string{"BITBUCKET_ACCESS_TOKEN", ""}, bitbucket.Auth{}},
	}
	for _, c := range cases {
		run, err := resolve(t, with(gitlabEnv(), c.env...), state.Successful)
		if err != nil || run.Auth != c.want {
			t.Errorf("%v: auth %#v, %v", c.env, run.Auth, err)
		}
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  []string
		want string
	}{
		{[]string{"BITBUCKET_STATUS_TIMEOUT", "soon"}, `BITBUCKET_STATUS_TIMEOUT is "soon", not a positive duration: use a Go duration such as 60s or 2m`},
		{[]string{"BITBUCKET_STATUS_TIMEOUT", "-5s"}, `BITBUCKET_STATUS_TIMEOUT is "-5s", not a positive duration: use a Go duration such as 60s or 2m`},
		{[]string{"BITBUCKET_STATUS_DRY_RUN", "yes"}, `BITBUCKET_STATUS_DRY_RUN is "yes": use true or false`},
		{[]string{"CI_COMMIT_SHA", "<unset>"}, "no commit: CI_COMMIT_SHA is not set (not in GitLab CI?) and the git checkout gave none (not a git repository): set CI_COMMIT_SHA to the commit, or run inside a clone of the repository"},
		{[]string{"CI_COMMIT_SHA", "main"}, `CI_COMMIT_SHA is "main", not a commit hash: set it to the full hexadecimal commit ID`},
		{[]string{"CI_PROJECT_NAMESPACE", "acme/platform"}, `CI_PROJECT_NAMESPACE is "acme/platform", a GitLab subgroup, which cannot be a Bitbucket workspace: set BITBUCKET_NAMESPACE to the workspace, or BITBUCKET_REPO_URL to the repository's clone URL`},
		{[]string{"CI_PROJECT_NAMESPACE", "<unset>"}, "no Bitbucket repository: set BITBUCKET_REPO_URL to its clone URL (https://bitbucket.org/WORKSPACE/REPO.git), or BITBUCKET_NAMESPACE and BITBUCKET_REPOSITORY"},
		{[]string{"BITBUCKET_REPO_URL", "https://user:hunter2@bitbucket.org/acme"}, `BITBUCKET_REPO_URL is "https://user:xxxxx@bitbucket.org/acme": a Bitbucket Cloud URL names WORKSPACE/REPO; this one has 1 path segment(s)`},
		{[]string{"BITBUCKET_API_URL", "http://bitbucket.example.com/2.0"}, `BITBUCKET_API_URL is "http://bitbucket.example.com/2.0", plain http, which would send the credential across the network in clear: use https (plain http is accepted only for a loopback host, as in tests)`},
		{[]string{"BITBUCKET_API_URL", "https://u:hunter2@api.bitbucket.org/2.0"}, `BITBUCKET_API_URL carries a user name or password in the URL (https://u:xxxxx@api.bitbucket.org/2.0): remove it; credentials go in BITBUCKET_USERNAME and BITBUCKET_ACCESS_TOKEN`},
		{[]string{"BITBUCKET_API_URL", "api.bitbucket.org"}, `BITBUCKET_API_URL is "api.bitbucket.org", not an absolute https URL: set it like https://bitbucket.example.com`},
		{[]string{"BITBUCKET_SERVER_URL", "http://git.example.com", "BITBUCKET_PROJECT", "P"}, `BITBUCKET_SERVER_URL is "http://git.example.com", plain http, which would send the credential across the network in clear: use https (plain http is accepted only for a loopback host, as in tests)`},
		{[]string{"BITBUCKET_SERVER_URL", "https://git.example.com"}, "no Bitbucket Data Center project key: set BITBUCKET_PROJECT (e.g. PROJ), or BITBUCKET_REPO_URL to the clone URL (https://HOST/scm/PROJ/REPO.git)"},
		{[]string{"BITBUCKET_SERVER_URL", "https://git.example.com", "BITBUCKET_REPO_URL", "https://bitbucket.org/a/b"}, "BITBUCKET_SERVER_URL selects Bitbucket Data Center, but BITBUCKET_REPO_URL is a Bitbucket Cloud URL (https://bitbucket.org/a/b): unset one of them"},
		{[]string{"BITBUCKET_SERVER_URL", "https://git.example.com", "BITBUCKET_NAMESPACE", "acme"}, "BITBUCKET_NAMESPACE is a Bitbucket Cloud workspace, but a Data Center server is set: set BITBUCKET_PROJECT to the Data Center project key instead"},
		{[]string{"BITBUCKET_PROJECT", "PROJ"}, "BITBUCKET_PROJECT is a Bitbucket Data Center project key, but no Data Center server is set: set BITBUCKET_SERVER_URL (or a Data Center BITBUCKET_REPO_URL), or for Bitbucket Cloud use BITBUCKET_NAMESPACE instead"},
		{[]string{"CI_PIPELINE_URL", "http://gitlab:8080/acme/widgets/-/pipelines/1234"}, `CI_PIPELINE_URL is "http://gitlab:8080/acme/widgets/-/pipelines/1234", ` +
			`whose host "gitlab" is a single-label name, which Bitbucket Cloud rejects (400 url: Enter a valid URL.): set BITBUCKET_STATUS_URL to a link with a fully qualified host name, ` +
			`or give GitLab a fully qualified external URL (external_url in /etc/gitlab/gitlab.rb), from which it makes CI_PIPELINE_URL`},
		{[]string{"CI_PIPELINE_URL", "<unset>", "CI_JOB_URL", "https://ci./acme/widgets/-/jobs/9"}, `CI_JOB_URL is "https://ci./acme/widgets/-/jobs/9", ` +
			`whose host "ci" is a single-label name, which Bitbucket Cloud rejects (400 url: Enter a valid URL.): set BITBUCKET_STATUS_URL to a link with a fully qualified host name, ` +
			`or give GitLab a fully qualified external URL (external_url in /etc/gitlab/gitlab.rb), from which it makes CI_JOB_URL`},
		{[]string{"BITBUCKET_STATUS_URL", "https://intranet/builds/7"}, `BITBUCKET_STATUS_URL is "https://intranet/builds/7", ` +
			`whose host "intranet" is a single-label name, which Bitbucket Cloud rejects (400 url: Enter a valid URL.): set BITBUCKET_STATUS_URL to a link with a fully qualified host name`},
		{[]string{"BITBUCKET_ACCESS_TOKEN", "tok\nen"}, "BITBUCKET_ACCESS_TOKEN contains a line break or another control character: set it to the token alone"},
		{[]string{"BITBUCKET_OAUTH_CLIENT_ID", "key"}, "both BITBUCKET_ACCESS_TOKEN and BITBUCKET_OAUTH_CLIENT_ID/BITBUCKET_OAUTH_CLIENT_SECRET are set: unset the credential you do not mean to use"},
		{[]string{"BITBUCKET_ACCESS_TOKEN", "<unset>", "BITBUCKET_OAUTH_CLIENT_ID", "key"}, "BITBUCKET_OAUTH_CLIENT_ID is set but BITBUCKET_OAUTH_CLIENT_SECRET is not: set the consumer's secret too"},
		{[]string{"BITBUCKET_ACCESS_TOKEN", "<unset>", "BITBUCKET_OAUTH_CLIENT_SECRET", "secret"}, "BITBUCKET_OAUTH_CLIENT_SECRET is set but BITBUCKET_OAUTH_CLIENT_ID is not: set the consumer's key too"},
		{[]string{"BITBUCKET_ACCESS_TOKEN", "<unset>", "BITBUCKET_USERNAME", "jdoe"}, "BITBUCKET_USERNAME is set but BITBUCKET_ACCESS_TOKEN is not: set the API token (or password) that goes with it"},
		{[]string{"BITBUCKET_ACCESS_TOKEN", "<unset>", "BITBUCKET_OAUTH_CLIENT_ID", "key", "BITBUCKET_OAUTH_CLIENT_SECRET", "secret", "BITBUCKET_SERVER_URL", "https://git.example.com", "BITBUCKET_PROJECT", "P"}, "BITBUCKET_OAUTH_CLIENT_ID is for Bitbucket Cloud's OAuth consumers: for Data Center, set BITBUCKET_ACCESS_TOKEN to an HTTP access token instead"},
		{[]string{"BITBUCKET_ACCESS_TOKEN", "<unset>", "BITBUCKET_OAUTH_CLIENT_ID", "key", "BITBUCKET_OAUTH_CLIENT_SECRET", "secret", "BITBUCKET_OAUTH_TOKEN_URL", "http://bitbucket.org/site/oauth2/access_token"}, `BITBUCKET_OAUTH_TOKEN_URL is "http://bitbucket.org/site/oauth2/access_token", plain http, which would send the credential across the network in clear: use https (plain http is accepted only for a loopback host, as in tests)`},
		{[]string{"BITBUCKET_STATUS_URL", "/relative"}, `BITBUCKET_STATUS_URL is "/relative", not an absolute http(s) URL, which Bitbucket rejects: set BITBUCKET_STATUS_URL to the page the status should link to`},
		{[]string{"BITBUCKET_STATUS_URL", "https://x/" + strings.Repeat("a", 441)}, "BITBUCKET_STATUS_URL is 451 bytes, over Bitbucket's limit of 450 for a status URL: set BITBUCKET_STATUS_URL to a shorter link"},
		{[]string{"CI_PIPELINE_URL", "not a url"}, `CI_PIPELINE_URL is "not a url", not an absolute http(s) URL, which Bitbucket rejects: set BITBUCKET_STATUS_URL to the page the status should link to`},
	}
	for _, c := range cases {
		_, err := resolve(t, with(gitlabEnv(), c.env...), state.Successful)
		if err == nil || err.Error() != c.want {
			t.Errorf("%v:\n got %v\nwant %s", c.env, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%v: the error shows a password", c.env)
		}
	}
}

func TestStatusURLHosts(t *testing.T) {
	t.Parallel()
	// Addresses and localhost are not single-label names; Data Center takes
	// single-label hosts (an internal GitLab) as they are.
	for _, c := range [][]string{
		{"CI_PIPELINE_URL", "http://10.0.0.5:8080/acme/widgets/-/pipelines/1234"},
		{"CI_PIPELINE_URL", "http://[fd00::5]/acme/widgets/-/pipelines/1234"},
		{"CI_PIPELINE_URL", "http://localhost:8080/acme/widgets/-/pipelines/1234"},
		{"CI_PIPELINE_URL", "https://gitlab.example.com./acme/widgets/-/pipelines/1234"},
		{"CI_PIPELINE_URL", "http://gitlab:8080/acme/widgets/-/pipelines/1234", "BITBUCKET_SERVER_URL", "https://git.example.com", "BITBUCKET_PROJECT", "P"},
	} {
		run, err := resolve(t, with(gitlabEnv(), c...), state.Successful)
		if err != nil || run.Status.URL != c[1] {
			t.Errorf("%v: %v", c, err)
		}
	}
}

// TestManualPost is the README's recipe for a canceled pipeline, from a
// terminal: only the commit, the key, the repository and a credential.
func TestManualPost(t *testing.T) {
	t.Parallel()
	manual := map[string]string{"CI_COMMIT_SHA": sha, "BITBUCKET_STATUS_KEY": "gitlab/acme/widgets",
		"BITBUCKET_REPO_URL": "https://bitbucket.org/acme/widgets.git", "BITBUCKET_ACCESS_TOKEN": "tok-0123456789"}
	cases := []struct {
		env            []string
		name, url, key string
	}{
		{nil, "GitLab: acme/widgets", "https://bitbucket.org/acme/widgets/commits/" + sha, "gitlab/acme/widgets"},
		{[]string{"CI_PIPELINE_IID", "7"}, "GitLab: acme/widgets #7", "https://bitbucket.org/acme/widgets/commits/" + sha, "gitlab/acme/widgets"},
		{[]string{"BITBUCKET_STATUS_KEY", "deploy/production"}, "deploy/production", "https://bitbucket.org/acme/widgets/commits/" + sha, "deploy/production"},
		// A long key is shortened as the jobs shorten it, and keeps their name.
		{[]string{"BITBUCKET_STATUS_KEY", "gitlab/platform-team/infrastructure/terraform-modules"}, "GitLab: platform-team/infrastructure/terraform-modules",
			"https://bitbucket.org/acme/widgets/commits/" + sha, "gitlab/../terraform-modules-db86cb41"},
		{[]string{"BITBUCKET_STATUS_URL", "https://ci.example.com/runs/5"}, "GitLab: acme/widgets", "https://ci.example.com/runs/5", "gitlab/acme/widgets"},
		{[]string{"BITBUCKET_REPO_URL", "https://git.example.com/bitbucket/scm/PROJ/my%20repo.git"}, "GitLab: acme/widgets",
			"https://git.example.com/bitbucket/projects/PROJ/repos/my%20repo/commits/" + sha, "gitlab/acme/widgets"},
	}
	for _, c := range cases {
		env := map[string]string{}
		for k, v := range manual {
			env[k] = v
		}
		run, err := resolve(t, with(env, c.env...), state.Stopped)
		if err != nil || run.Status.Name != c.name || run.Status.URL != c.url || run.Status.Key != c.key {
			t.Errorf("%v: name %q, url %q, key %q, %v\nwant %q, %q, %q", c.env, run.Status.Name, run.Status.URL, run.Status.Key, err, c.name, c.url, c.key)
		}
	}
}

func TestLoopbackHTTPAllowed(t *testing.T) {
	t.Parallel()
	for _, api := range []string{"http://127.0.0.1:8080/2.0", "http://localhost:1", "http://[::1]:2/x", "http://127.8.9.10"} {
		if _, err := resolve(t, with(gitlabEnv(), "BITBUCKET_API_URL", api), state.Successful); err != nil {
			t.Errorf("%s: %v", api, err)
		}
	}
}

func TestEmptyVariableMeansUnset(t *testing.T) {
	t.Parallel()
	run, err := resolve(t, with(gitlabEnv(), "BITBUCKET_API_URL", "", "BITBUCKET_STATUS_TIMEOUT", ""), state.Successful)
	if err != nil || run.Cloud.API != bitbucket.DefaultCloudAPI || run.Timeout != time.Minute {
		t.Fatalf("run = %+v, %v", run, err)
	}
}

func TestEveryVariableIsDocumented(t *testing.T) {
	t.Parallel()
	for _, v := range Variables() {
		if v.Name == "" || len(v.Help) < 20 {
			t.Errorf("variable %+v has no help", v)
		}
	}
	if got := len(Variables()); got != reflect.TypeOf(Env{}).NumField() {
		t.Errorf("%d variables documented for %d fields", got, reflect.TypeOf(Env{}).NumField())
	}
}

func TestOutsideGitLabWithADataCenterOrigin(t *testing.T) {
	t.Parallel()
	checkout := func(origin string) func() (gitcheckout.Checkout, error) {
		return func() (gitcheckout.Checkout, error) {
			return gitcheckout.Checkout{Commit: sha, Branch: "main", Origin: origin}, nil
		}
	}
	e, _ := Load(context.Background(), map[string]string{"BITBUCKET_STATUS_URL": "https://ci.example.com/1"})
	run, err := Resolve(e, Options{State: state.Successful, Now: now, Checkout: checkout("ssh://git@git.example.com:7999/proj/repo.git")})
	if err != nil || *run.DataCenter != (bitbucket.DataCenter{Server: "https://git.example.com", Project: "PROJ", Slug: "repo"}) ||
		run.From.Owner != "the git remote origin" || len(run.Notices) != 1 {
		t.Fatalf("run = %+v, %v", run, err)
	}
	// BITBUCKET_SERVER_URL wins over a Cloud origin, which then names nothing.
	e, _ = Load(context.Background(), map[string]string{"BITBUCKET_STATUS_URL": "https://ci.example.com/1",
		"BITBUCKET_SERVER_URL": "https://git.example.com", "BITBUCKET_PROJECT": "P", "BITBUCKET_REPOSITORY": "r"})
	run, err = Resolve(e, Options{State: state.Successful, Now: now, Checkout: checkout("git@bitbucket.org:acme/widgets.git")})
	if err != nil || *run.DataCenter != (bitbucket.DataCenter{Server: "https://git.example.com", Project: "P", Slug: "r"}) {
		t.Fatalf("run = %+v, %v", run, err)
	}
}
