package relay

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/config"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

// TestSameStatusAsTheJobs: for the same pipeline, the relay computes exactly
// the status the component's jobs post, on Cloud and Data Center, for a
// branch and a tag, so switching or running both shows one status.
func TestSameStatusAsTheJobs(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	finished := created.Add(95 * time.Second)
	for _, c := range []struct {
		name       string
		gitlabWord string
		tag        bool
		dataCenter bool
	}{
		{"cloud, branch, running", "running", false, false},
		{"cloud, branch, success", "success", false, false},
		{"cloud, tag, failed", "failed", true, false},
		{"cloud, canceling", "canceling", false, false},
		{"data center, branch, canceled", "canceled", false, true},
		{"data center, tag, success", "success", true, true},
		{"data center, manual", "manual", false, true},
		{"cloud, skipped", "skipped", false, false},
		{"data center, skipped", "skipped", false, true},
	} {
		p := gitlab.Pipeline{ID: 2045, IID: 7, ProjectID: 42, ProjectPath: "acme/platform/widgets", Ref: "main", Tag: c.tag, SHA: sha,
			Status: c.gitlabWord, URL: "https://gitlab.example.com/acme/platform/widgets/-/pipelines/2045", CreatedAt: created}
		env := map[string]string{"CI_COMMIT_SHA": sha, "CI_PROJECT_PATH": "acme/platform/widgets", "CI_PIPELINE_IID": "7",
			"CI_PIPELINE_URL": p.URL, "CI_PIPELINE_CREATED_AT": created.Format(time.RFC3339), "BITBUCKET_NAMESPACE": "acme",
			"BITBUCKET_REPOSITORY": "widgets", "CI_COMMIT_REF_NAME": "main"}
		if c.tag {
			env["CI_COMMIT_TAG"] = "main"
		} else {
			env["CI_COMMIT_BRANCH"] = "main"
		}
		d := Destination{Cloud: &bitbucket.Cloud{API: bitbucket.DefaultCloudAPI, Workspace: "acme", Slug: "widgets"}}
		if c.dataCenter {
			d = Destination{DataCenter: &bitbucket.DataCenter{Server: "https://git.example.com", Project: "PROJ", Slug: "widgets"}}
			env["BITBUCKET_SERVER_URL"], env["BITBUCKET_PROJECT"] = "https://git.example.com", "PROJ"
			delete(env, "BITBUCKET_NAMESPACE")
		}
		st, _ := state.Parse(c.gitlabWord)
		if st.Final() {
			p.FinishedAt = finished
		}
		e, err := config.Load(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		// The job posts when the pipeline ends: its clock reads finished_at.
		run, err := config.Resolve(e, config.Options{State: st, Word: c.gitlabWord, Now: finished})
		if err != nil {
			t.Fatal(err)
		}
		got, err := statusOf(p, d)
		if err != nil || !reflect.DeepEqual(got, run.Status) {
			t.Errorf("%s:\nrelay %+v (%v)\n job  %+v", c.name, got, err, run.Status)
		}
	}
}

func row(pipeline int64, st string, final bool, finished time.Time) *store.Row {
	return &store.Row{Report: store.Report{PipelineID: pipeline, State: st, Final: final, FinishedAt: finished}}
}

func TestOrderingRule(t *testing.T) {
	t.Parallel()
	t1 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Minute)
	in := func(pipeline int64, st string, final bool, finished time.Time) store.Report {
		return store.Report{PipelineID: pipeline, State: st, Final: final, FinishedAt: finished}
	}
	posted := func(r *store.Row) *store.Row { r.PostedPipeline, r.PostedState = r.PipelineID, r.State; return r }
	refused := func(r *store.Row) *store.Row { r.LastError = "403"; return r }
	pending := func(r *store.Row) *store.Row { r.Pending = true; return r }
	shows := func(r *store.Row, pipeline int64, st string) *store.Row {
		r.PostedPipeline, r.PostedState = pipeline, st
		return r
	}
	skippedIn := func(pipeline int64) store.Report {
		r := in(pipeline, "STOPPED", true, t2)
		r.GitLabStatus = "skipped"
		return r
	}
	skippedRow := func(pipeline int64) *store.Row {
		r := row(pipeline, "STOPPED", true, t2)
		r.GitLabStatus = "skipped"
		return r
	}
	const (
		ignore  = store.Ignore
		replace = store.Replace
		wake    = store.Wake
	)
	for _, c := range []struct {
		name          string
		cur           *store.Row
		in            store.Report
		withoutGitLab store.Decision
		withGitLab    store.Decision
	}{
		{"first event", nil, in(1, "INPROGRESS", false, time.Time{}), replace, replace},
		{"a newer pipeline supersedes", posted(row(1, "SUCCESSFUL", true, t1)), in(2, "INPROGRESS", false, time.Time{}), replace, replace},
		{"a late event of an older pipeline is ignored", pending(row(2, "INPROGRESS", false, time.Time{})), in(1, "FAILED", true, t2), ignore, ignore},
		{"a duplicate while pending", pending(row(1, "INPROGRESS", false, time.Time{})), in(1, "INPROGRESS", false, time.Time{}), ignore, ignore},
		{"a duplicate of what was posted", posted(row(1, "SUCCESSFUL", true, t1)), in(1, "SUCCESSFUL", true, t1), ignore, ignore},
		{"the same state after a refusal tries again", refused(row(1, "SUCCESSFUL", true, t1)), in(1, "SUCCESSFUL", true, t1), replace, replace},
		// A retry started: without GitLab the final state stays; with it,
		// the worker asks GitLab, and the stored state stays the fallback.
		{"final then running", posted(row(1, "FAILED", true, t1)), in(1, "INPROGRESS", false, time.Time{}), ignore, wake},
		{"running then final", pending(row(1, "INPROGRESS", false, time.Time{})), in(1, "SUCCESSFUL", true, t1), replace, replace},
		{"final then a later final (the retry's result)", posted(row(1, "FAILED", true, t1)), in(1, "SUCCESSFUL", true, t2), replace, replace},
		{"final then an earlier final (out of order)", posted(row(1, "SUCCESSFUL", true, t2)), in(1, "FAILED", true, t1), ignore, wake},
		// The same final state, later: a rerun that ended as before; its
		// time is what a late event of an earlier run is weighed against.
		{"the same final state, later", posted(row(1, "FAILED", true, t1)), in(1, "FAILED", true, t2), replace, replace},
		{"the same final state, later, while pending", pending(row(1, "FAILED", true, t1)), in(1, "FAILED", true, t2), replace, replace},
		// A skipped pipeline ran nothing: it never takes another's place,
		// and any other pipeline's event takes the place of a skipped one.
		{"a newer skipped pipeline after a final one", posted(row(1, "SUCCESSFUL", true, t1)), skippedIn(2), ignore, ignore},
		{"a newer skipped pipeline while one runs", pending(row(1, "INPROGRESS", false, time.Time{})), skippedIn(2), ignore, ignore},
		{"an older pipeline after a skipped one", posted(skippedRow(2)), in(1, "FAILED", true, t1), replace, replace},
		{"an older pipeline's running after a skipped one", posted(skippedRow(2)), in(1, "INPROGRESS", false, time.Time{}), replace, replace},
		{"a newer skipped pipeline after a skipped one", posted(skippedRow(2)), skippedIn(3), replace, replace},
		{"a skipped pipeline's manual job played", posted(skippedRow(2)), in(2, "INPROGRESS", false, time.Time{}), ignore, wake},
		// A rerun that ends as before: the re-read after the retry's running
		// event posted INPROGRESS, so the same final state again is new.
		{"a rerun ends as before", shows(row(1, "FAILED", true, t1), 1, "INPROGRESS"), in(1, "FAILED", true, t2), replace, replace},
		{"a late copy of the final state while the rerun shows", shows(row(1, "FAILED", true, t1), 1, "INPROGRESS"), in(1, "FAILED", true, t1), replace, replace},
		{"the final state Bitbucket already shows, from another pipeline's post", shows(row(2, "FAILED", true, t1), 1, "FAILED"), in(2, "FAILED", true, t1), replace, replace},
	} {
		without := &Relay{cfg: &Config{}}
		with := &Relay{cfg: &Config{GitLab: &gitlab.Client{}}}
		if got, _ := without.keep(c.cur, c.in); got != c.withoutGitLab {
			t.Errorf("%s, without GITLAB_TOKEN: keep = %v, want %v", c.name, got, c.withoutGitLab)
		}
		if got, _ := with.keep(c.cur, c.in); got != c.withGitLab {
			t.Errorf("%s, with GITLAB_TOKEN: keep = %v, want %v", c.name, got, c.withGitLab)
		}
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	f, err := ParseRoutes([]byte(`
credentials:
  platform: {token_env: PLATFORM_TOKEN}
routes:
  - project: acme/platform/*
    cloud: acme/pf-{1}
    credential: platform
    name: "Platform {name} #{iid}"
  - project: legacy/**
    data_center: https://git.example.com/bitbucket/
    repository: LEG/{name}
    key: ci/{path}
  - project: Sandbox/**
    skip: true
  - project: ops/*
    cloud: ops/{1}
    key: gitlab/{path}/{source}/{ref}
`))
	if err != nil {
		t.Fatal(err)
	}
	routes, err := checkRoutes(f)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{routes: routes, defaultCloudAPI: bitbucket.DefaultCloudAPI,
		Credentials: map[string]bitbucket.Auth{DefaultCredential: {Kind: bitbucket.Bearer, Token: "t"}, "platform": {Kind: bitbucket.Bearer, Token: "p"}}}
	r := &Relay{cfg: cfg}
	for _, c := range []struct {
		path, want string
	}{
		{"acme/platform/widgets", "cloud acme/pf-widgets credential=platform key= name=Platform widgets #7 via=route 1 (acme/platform/*)"},
		{"legacy/a/b/gadgets", "dc https://git.example.com/bitbucket LEG/gadgets credential=default key=ci/legacy/a/b/gadgets name= via=route 2 (legacy/**)"},
		{"sandbox/toys", "skip: route 3 (Sandbox/**) says skip"},
		{"acme/platform/deep/widgets", "skip: acme/platform/deep/widgets is in a subgroup, which cannot be a Bitbucket workspace: add a route for it (BITBUCKET_RELAY_ROUTES)"},
		{"acme/widgets", "cloud acme/widgets credential=default key= name= via=the default route (group/project)"},
		// A key per source and branch: a scheduled pipeline that passes no
		// longer hides a push pipeline's failure on the same commit.
		{"ops/infra", "cloud ops/infra credential=default key=gitlab/ops/infra/schedule/main name= via=route 4 (ops/*)"},
	} {
		d, err := r.destination(context.Background(), gitlab.Pipeline{ProjectPath: c.path, IID: 7, Source: "schedule", Ref: "main"})
		var got string
		switch {
		case err != nil:
			got = "skip: " + err.Error()
		case d.Cloud != nil:
			got = "cloud " + d.Cloud.Workspace + "/" + d.Cloud.Slug
		default:
			got = "dc " + d.DataCenter.Server + " " + d.DataCenter.Project + "/" + d.DataCenter.Slug
		}
		if err == nil {
			got += " credential=" + d.Credential + " key=" + d.Key + " name=" + d.Name + " via=" + d.Via
		}
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.path, got, c.want)
		}
	}
}

// TestMirrorDestination: a pull mirror leads a credential only where the
// configuration names (any GitLab user who can create a project in the
// group can point its mirror at any repository), and only to Bitbucket
// Cloud or BITBUCKET_SERVER_URL.
func TestMirrorDestination(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	for id, importURL := range map[int]string{
		1: `"https://bitbucket.org/acme/Other-Repo.git"`,
		2: `"https://git.example.com/bitbucket/scm/proj/widgets.git"`,
		3: `"https://elsewhere.example.com/scm/PROJ/widgets.git"`,
		4: `null`,
		6: `"https://bitbucket.org/stranger/exfiltrate.git"`,
		7: `"https://bitbucket.org/partner/widgets.git"`,
		8: `"https://git.example.com/bitbucket/scm/SECRET/widgets.git"`,
	} {
		mock.RegisterResponder("GET", fmt.Sprintf("https://gitlab.example.com/api/v4/projects/%d", id),
			httpmock.NewStringResponder(200, `{"import_url":`+importURL+`}`))
	}
	mock.RegisterResponder("GET", "https://gitlab.example.com/api/v4/projects/4/mirror/pull", httpmock.NewStringResponder(403, `{"message":"403 Forbidden"}`))
	mock.RegisterResponder("GET", "https://gitlab.example.com/api/v4/projects/5", httpmock.NewStringResponder(503, `{"message":"down"}`))
	newRelay := func(allowed map[string]mirrorAllowList) *Relay {
		cfg := &Config{defaultCloudAPI: bitbucket.DefaultCloudAPI, defaultDataCenter: "https://git.example.com/bitbucket", mirrorAllowed: allowed,
			Credentials: map[string]bitbucket.Auth{DefaultCredential: {Kind: bitbucket.Bearer, Token: "t"}, "partners": {Kind: bitbucket.Bearer, Token: "p"}},
			GitLab:      &gitlab.Client{BaseURL: "https://gitlab.example.com", Token: "glpat", HTTP: &http.Client{Transport: mock}}}
		r := &Relay{cfg: cfg, mirrors: map[int64]mirrorEntry{}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		r.metrics = newMetrics(nil, newServerGates(1, time.Second, r.log))
		return r
	}
	where := func(r *Relay, id int64) string {
		d, err := r.destination(context.Background(), gitlab.Pipeline{ProjectID: id, ProjectPath: "acme/widgets"})
		if err != nil {
			return "skip: " + err.Error()
		}
		return d.Where() + " with " + d.Credential
	}
	// Nothing allowed (the default): mirrors are not even looked up.
	off := newRelay(map[string]mirrorAllowList{DefaultCredential: newMirrorAllowList(nil, nil)})
	if got := where(off, 6); got != "skip: no route matches acme/widgets: for Data Center set BITBUCKET_PROJECT or add a route" {
		t.Errorf("mirror following off: %s", got)
	}
	if n := mock.GetTotalCallCount(); n != 0 {
		t.Errorf("GitLab was asked %d times with mirror following off", n)
	}
	r := newRelay(map[string]mirrorAllowList{
		DefaultCredential: newMirrorAllowList([]string{"ACME"}, []string{"proj"}),
		"partners":        newMirrorAllowList([]string{"partner"}, nil),
	})
	for id, want := range map[int64]string{
		1: "bitbucket.org/acme/Other-Repo with default",
		2: "PROJ/widgets at https://git.example.com/bitbucket with default",
		3: "skip: project 3 mirrors https://elsewhere.example.com, which is not BITBUCKET_SERVER_URL: add a route for it",
		4: "skip: no route matches acme/widgets: for Data Center set BITBUCKET_PROJECT or add a route", // no mirror: the default route
		5: "skip: its destination waits for GitLab, which did not answer: GitLab answered GET https://gitlab.example.com/api/v4/projects/5 with 503 Service Unavailable: down",
		6: "skip: project 6 mirrors Bitbucket Cloud workspace stranger, which no credential's mirror list names: " +
			"add it to BITBUCKET_RELAY_MIRROR_WORKSPACES (or a credential's mirror_workspaces), or add a route",
		7: "bitbucket.org/partner/widgets with partners",
		8: "skip: project 8 mirrors Data Center project SECRET, which no credential's mirror list names: " +
			"add it to BITBUCKET_RELAY_MIRROR_PROJECTS (or a credential's mirror_projects), or add a route",
	} {
		if got := where(r, id); got != want {
			t.Errorf("project %d:\n got %s\nwant %s", id, got, want)
		}
	}
	// Asked once per project and hour.
	calls := mock.GetCallCountInfo()["GET https://gitlab.example.com/api/v4/projects/1"]
	if got := where(r, 1); got != "bitbucket.org/acme/Other-Repo with default" || calls != 1 ||
		mock.GetCallCountInfo()["GET https://gitlab.example.com/api/v4/projects/1"] != 1 {
		t.Errorf("the mirror URL was asked again: %v", mock.GetCallCountInfo())
	}
}

func TestRoutesFileErrors(t *testing.T) {
	t.Parallel()
	for file, want := range map[string]string{
		"routes:\n  - project: a/*\n    clod: a/b\n":                              "yaml: unmarshal errors:\n  line 3: field clod not found in type relay.RouteSpec",
		"routes:\n  - cloud: a/b\n":                                               "route 1: project is missing: give a GitLab project path pattern such as group/* or group/**",
		"routes:\n  - project: a/**/b\n    cloud: a/b\n":                          `route 1 (project "a/**/b"): a pattern segment is a name, * (one segment) or a final ** (the rest)`,
		"routes:\n  - project: a/*\n":                                             `route 1 (project "a/*"): set exactly one of cloud (workspace/slug), data_center (with repository) or skip`,
		"routes:\n  - project: a/*\n    data_center: https://x\n":                 `route 1 (project "a/*"): data_center needs repository: PROJECT/slug`,
		"routes:\n  - project: a/*\n    cloud: a/b\n    credential: nope\n":       `route 1 (project "a/*"): credential "nope" is not defined under credentials`,
		"routes:\n  - project: a/*\n    cloud: a/b\n    repository: P/b\n":        `route 1 (project "a/*"): repository is for data_center; for Bitbucket Cloud, cloud is workspace/slug`,
		"routes:\n  - project: a/*\n    cloud: a/b\n    data_center: https://x\n": `route 1 (project "a/*"): set exactly one of cloud (workspace/slug), data_center (with repository) or skip`,
	} {
		f, err := ParseRoutes([]byte(file))
		if err == nil {
			_, err = checkRoutes(f)
		}
		if err == nil || err.Error() != want {
			t.Errorf("%q:\n got %v\nwant %s", file, err, want)
		}
	}
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	env := func(name string) string {
		return map[string]string{"TOK": "  secret-token\n", "BAD": "tok\nen", "SEC": "oauth-secret"}[name]
	}
	for _, c := range []struct {
		spec CredentialSpec
		want string
	}{
		{CredentialSpec{TokenEnv: "TOK"}, "Bearer [REDACTED]"},
		{CredentialSpec{TokenEnv: "TOK", Username: "ci@example.com"}, `Basic [REDACTED] (user "ci@example.com")`},
		{CredentialSpec{ClientID: "key", ClientSecretEnv: "SEC"}, `Bearer [REDACTED] (an OAuth access token for client "key" from https://bitbucket.org/site/oauth2/access_token)`},
		{CredentialSpec{TokenEnv: "MISSING"}, `error: credential "c": token: the environment variable MISSING is not set`},
		{CredentialSpec{TokenEnv: "BAD"}, `error: credential "c": token contains a line break or another control character: keep only the secret`},
		{CredentialSpec{TokenEnv: "TOK", TokenFile: "/x"}, `error: credential "c": token: set token_env or token_file, not both`},
		{CredentialSpec{TokenFile: "/nonexistent/token"}, `error: credential "c": token: open /nonexistent/token: no such file or directory`},
		{CredentialSpec{Username: "u"}, `error: credential "c": set token_env or token_file (or client_id and a client secret)`},
		{CredentialSpec{ClientID: "key"}, `error: credential "c": client_id needs client_secret_env or client_secret_file`},
		{CredentialSpec{ClientID: "key", ClientSecretEnv: "SEC", TokenEnv: "TOK"}, `error: credential "c": give either a token or an OAuth client_id, not both`},
	} {
		a, err := credentialAuth("c", c.spec, env, "https://bitbucket.org/site/oauth2/access_token")
		got := a.String()
		if err != nil {
			got = "error: " + err.Error()
		}
		if got != c.want {
			t.Errorf("%+v:\n got %s\nwant %s", c.spec, got, c.want)
		}
		if strings.Contains(got, "secret-token") || strings.Contains(got, "oauth-secret") {
			t.Errorf("%+v: a secret in %q", c.spec, got)
		}
	}
	if a, _ := credentialAuth("c", CredentialSpec{TokenEnv: "TOK"}, env, ""); a.Token != "secret-token" {
		t.Errorf("the token is not trimmed: %q", a.Token)
	}
}

func TestBackoffAndPause(t *testing.T) {
	t.Parallel()
	r := &Relay{cfg: &Config{RetryBase: 2 * time.Second, PauseBase: 30 * time.Second}, pauses: map[string]pause{}}
	for attempts, want := range map[int]time.Duration{0: 2 * time.Second, 1: 4 * time.Second, 3: 16 * time.Second, 10: retryMax, 60: retryMax} {
		if got := r.backoff(attempts); got < want*8/10 || got > want*12/10 {
			t.Errorf("backoff(%d) = %s, want %s ± 20%%", attempts, got, want)
		}
	}
	// Cloud: no Retry-After; the pause doubles only once per pause, however
	// many posts were in flight.
	first := r.pauseCredential("cloud", 0)
	if d := time.Until(first); d < 23*time.Second || d > 37*time.Second {
		t.Errorf("first pause %s", d)
	}
	if again := r.pauseCredential("cloud", 0); !again.Equal(first) {
		t.Errorf("a 429 during the pause moved it: %s -> %s", first, again)
	}
	if r.pausedUntil("cloud").IsZero() || !r.pausedUntil("other").IsZero() {
		t.Error("the pause is not per credential")
	}
	r.pauses["cloud"] = pause{until: time.Now().Add(-time.Second), backoff: 30 * time.Second}
	if d := time.Until(r.pauseCredential("cloud", 0)); d < 47*time.Second || d > 73*time.Second {
		t.Errorf("second pause %s, want 60s ± 20%%", d)
	}
	// Data Center says how long.
	if d := time.Until(r.pauseCredential("dc", 7*time.Second)); d < 6*time.Second || d > 7*time.Second {
		t.Errorf("Retry-After pause %s", d)
	}
	r.resume("cloud")
	if !r.pausedUntil("cloud").IsZero() {
		t.Error("resume did not lift the pause")
	}
}
