package connect

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/fakebitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/fakegitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/redact"
)

const (
	gitlabToken = "glpat-connect-0123456789"
	bbToken     = "ATCTT3xConnectAccessToken0123"
	pushSecret  = "relay-push-secret-0123456789"
	head        = "9fec847784abb10b2fa567ee63b85bd238955d0e"
)

// rig is a stand-in GitLab (group acme takes new projects; the upstream
// takes the access token as x-token-auth) and a stand-in Bitbucket.
type rig struct {
	gl           *fakegitlab.Server
	bb           *fakebitbucket.Server
	glURL, bbURL string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{gl: &fakegitlab.Server{Token: gitlabToken, Interval: 100 * time.Millisecond, UpdateTakes: 30 * time.Millisecond,
		Upstream: fakegitlab.Upstream{User: "x-token-auth", Password: bbToken, Commit: head}},
		bb: &fakebitbucket.Server{Token: bbToken}}
	r.gl.AddGroup("acme", true)
	gs := httptest.NewServer(r.gl)
	bs := httptest.NewServer(r.bb)
	t.Cleanup(gs.Close)
	t.Cleanup(bs.Close)
	r.glURL, r.bbURL = gs.URL, bs.URL
	return r
}

// options are a run's, with the access token for everything; change
// adjusts them.
func (r *rig) options(change func(o *Options)) *Options {
	secrets := &redact.Set{}
	for _, s := range []string{gitlabToken, bbToken, pushSecret} {
		secrets.Add(s)
	}
	tok := Token{Token: bbToken}
	o := &Options{
		GitLab:    &gitlab.Client{BaseURL: r.glURL, Token: gitlabToken},
		Bitbucket: &bitbucket.Client{Auth: bitbucket.Auth{Kind: bitbucket.Bearer, Token: bbToken}, MaxAttempts: 2, BaseDelay: 10 * time.Millisecond},
		CloudAPI:  r.bbURL + "/2.0", Mirror: tok, CI: tok, MirrorToken: "BITBUCKET_ACCESS_TOKEN", MirrorUser: "BITBUCKET_USERNAME",
		PushSecret: pushSecret, RelayURL: "https://relay.example.com", Wait: 5 * time.Second, Poll: 20 * time.Millisecond, Secrets: secrets,
	}
	if change != nil {
		change(o)
	}
	return o
}

func target(t *testing.T, raw, path string) Target {
	t.Helper()
	tg, err := NewTarget(raw, path, "")
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// mark is how many requests each stand-in had received.
type mark struct{ gl, bb int }

func (r *rig) mark() mark { return mark{len(r.gl.Requests()), len(r.bb.Requests())} }

// requests lists what GitLab and Bitbucket were sent: "METHOD path" and
// the JSON body when there is one.
func (r *rig) requests() []string { return r.since(mark{}) }

// since lists the requests after m: GitLab's, then Bitbucket's.
func (r *rig) since(m mark) []string {
	var out []string
	for _, q := range r.gl.Requests()[m.gl:] {
		line := q.Method + " " + q.Path
		if q.Query != "" {
			line += "?" + q.Query
		}
		if len(q.Body) > 0 {
			line += " " + string(q.Body)
		}
		out = append(out, line)
	}
	for _, q := range r.bb.Requests()[m.bb:] {
		line := q.Method + " " + q.Path
		if len(q.Body) > 0 {
			line += " " + string(q.Body)
		}
		out = append(out, line)
	}
	return out
}

func writesIn(lines []string) []string {
	var out []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "GET ") {
			out = append(out, l)
		}
	}
	return out
}

func check(t *testing.T, res Result) {
	t.Helper()
	if res.Err != nil {
		t.Fatalf("failed at %s: %v\n%s", res.FailedStep, res.Err, strings.Join(res.Lines, "\n"))
	}
}

// TestANewRepositoryEveryStep: a Cloud repository with no GitLab project:
// the exact writes to GitLab and Bitbucket, in order, and what it says.
func TestANewRepositoryEveryStep(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	res := One(context.Background(), r.options(nil), target(t, "https://bitbucket.org/acme/webapp.git", ""), nil)
	check(t, res)
	fp := fingerprint(bbToken)
	want := []string{
		`POST /api/v4/projects {"description":"CI/CD for https://bitbucket.org/acme/webapp.git (set up by bitbucket-status-relay connect)","issues_access_level":"disabled","merge_requests_access_level":"disabled","name":"webapp","namespace_id":501,"path":"webapp","snippets_access_level":"disabled","visibility":"private","wiki_access_level":"disabled"}`,
		`PUT /api/v4/projects/102/mirror/pull {"auth_password":"` + bbToken + `","auth_user":"x-token-auth","enabled":true,"mirror_overwrites_diverged_branches":true,"mirror_trigger_builds":true,"only_mirror_protected_branches":false,"url":"https://x-token-auth@bitbucket.org/acme/webapp.git"}`,
		`POST /api/v4/projects/102/variables {"description":"Set by bitbucket-status-relay connect (fingerprint ` + fp + `)","key":"BITBUCKET_ACCESS_TOKEN","masked":true,"masked_and_hidden":true,"protected":false,"raw":true,"value":"` + bbToken + `"}`,
		`POST /api/v4/projects/102/mirror/pull`,
		`POST /2.0/repositories/acme/webapp/hooks {"active":true,"description":"bitbucket-status relay: starts GitLab's mirror on push (secret ` + fingerprint(pushSecret) + `)","events":["repo:push"],"secret":"` + pushSecret + `","url":"https://relay.example.com/bitbucket"}`,
	}
	got := writesIn(r.requests())
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("writes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.Changes != 5 {
		t.Errorf("%d changes, want 5", res.Changes)
	}
	p := r.gl.Project("acme/webapp")
	var m fakegitlab.Mirror
	r.gl.Lock(func() { m = *p.Mirror })
	if !m.Enabled || !m.TriggerBuilds || !m.OverwriteDiverged || m.OnlyProtected || m.UpdateStatus != "finished" || p.Branches["main"] != head {
		t.Errorf("mirror %s, branches %v", m.String(), p.Branches)
	}
	hooks := r.bb.Hooks("acme/webapp")
	if len(hooks) != 1 || hooks[0].Secret != pushSecret {
		t.Errorf("hooks %+v", hooks)
	}
	for i, want := range []string{
		"project: created acme/webapp: private; issues, merge requests, wiki and snippets off, as GitLab's \"Run CI/CD for external repository\" makes it",
		"mirror: set (no mirror yet): pulls https://x-token-auth@bitbucket.org/acme/webapp.git with a Bitbucket Cloud access token, pipelines for mirror updates on, diverged branches overwritten",
		"variables: BITBUCKET_ACCESS_TOKEN created (masked and hidden)",
		"webhook: created: repo:push to https://relay.example.com/bitbucket, signed with BITBUCKET_RELAY_PUSH_SECRET",
		"verify: GitLab fetched main at 9fec847784ab (update started ",
	} {
		if i >= len(res.Lines) || !strings.HasPrefix(res.Lines[i], strings.Split(want, " (update started ")[0]) {
			t.Errorf("line %d: %q\nwant %q", i, at(res.Lines, i), want)
		}
	}
	// Nothing secret in what it says.
	for _, l := range res.Lines {
		if strings.Contains(l, bbToken) || strings.Contains(l, pushSecret) || strings.Contains(l, gitlabToken) {
			t.Errorf("a secret in %q", l)
		}
	}
}

func at(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(none)"
}

// TestASecondRunOnlyReads: everything in place, a second run sends no
// write and says nothing to change; a third with --verify starts one
// update and nothing else.
func TestASecondRunOnlyReads(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	tg := target(t, "https://bitbucket.org/acme/webapp.git", "")
	check(t, One(context.Background(), r.options(nil), tg, nil))
	before := r.mark()
	res := One(context.Background(), r.options(nil), tg, nil)
	check(t, res)
	second := r.since(before)
	if w := writesIn(second); len(w) != 0 || res.Changes != 0 {
		t.Errorf("the second run wrote %v (%d changes)", w, res.Changes)
	}
	for _, want := range []string{"project: found acme/webapp (id 102)", "mirror: unchanged: pulls https://x-token-auth@bitbucket.org/acme/webapp.git",
		"variables: BITBUCKET_ACCESS_TOKEN unchanged", "webhook: unchanged: repo:push to https://relay.example.com/bitbucket, signed",
		"verify: unchanged: the mirror's last update finished at "} {
		if !strings.Contains(strings.Join(res.Lines, "\n"), want) {
			t.Errorf("the second run does not say %q:\n%s", want, strings.Join(res.Lines, "\n"))
		}
	}
	before = r.mark()
	check(t, One(context.Background(), r.options(func(o *Options) { o.Verify = true }), tg, nil))
	if w := writesIn(r.since(before)); len(w) != 1 || w[0] != "POST /api/v4/projects/102/mirror/pull" {
		t.Errorf("--verify wrote %v", w)
	}
}

// TestADryRunWritesNothing: the plan has every write, secrets redacted,
// and nothing is written.
func TestADryRunWritesNothing(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	res := One(context.Background(), r.options(func(o *Options) { o.DryRun = true }), target(t, "https://bitbucket.org/acme/webapp.git", ""), nil)
	check(t, res)
	if w := writesIn(r.requests()); len(w) != 0 {
		t.Fatalf("a dry run wrote %v", w)
	}
	var plan []string
	for _, p := range res.Plan {
		plan = append(plan, p.Method+" "+strings.TrimPrefix(strings.TrimPrefix(p.URL, r.glURL), r.bbURL)+" "+p.Body)
	}
	text := strings.Join(plan, "\n")
	for _, want := range []string{
		"POST /api/v4/projects {",
		`PUT /api/v4/projects/acme%2Fwebapp/mirror/pull {"auth_password":"[REDACTED]","auth_user":"x-token-auth",`,
		`POST /api/v4/projects/acme%2Fwebapp/variables {"description":"Set by bitbucket-status-relay connect (fingerprint ` + fingerprint(bbToken) + `)","key":"BITBUCKET_ACCESS_TOKEN","masked":true,"masked_and_hidden":true,"protected":false,"raw":true,"value":"[REDACTED]"}`,
		`POST /2.0/repositories/acme/webapp/hooks {"active":true,`, `"secret":"[REDACTED]"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the plan lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, bbToken) || strings.Contains(text, pushSecret) || res.Changes != 4 {
		t.Errorf("%d planned changes; plan:\n%s", res.Changes, text)
	}
	if !strings.Contains(strings.Join(res.Lines, "\n"), "verify: would start a mirror update and wait for it") {
		t.Errorf("%s", strings.Join(res.Lines, "\n"))
	}
}

// TestAFailureMidwayIsFinishedByTheNextRun: GitLab fails creating the
// variable; the run names the step, what was done and what was not; the
// next run does only what was left.
func TestAFailureMidwayIsFinishedByTheNextRun(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	tg := target(t, "https://bitbucket.org/acme/webapp.git", "")
	r.gl.FailNextOn("POST /api/v4/projects/102/variables", 1, http.StatusInternalServerError)
	res := One(context.Background(), r.options(nil), tg, nil)
	if res.FailedStep != "variables" || res.Err == nil ||
		res.Err.Error() != "creating variable BITBUCKET_ACCESS_TOKEN: GitLab answered POST "+r.glURL+"/api/v4/projects/102/variables with 500 Internal Server Error: Internal Server Error" ||
		strings.Join(res.Done(), ",") != "project,mirror" || strings.Join(res.NotDone(), ",") != "variables,webhook,verify" {
		t.Fatalf("%s: %v; done %v", res.FailedStep, res.Err, res.Done())
	}
	if len(r.bb.Requests()) != 0 {
		t.Errorf("Bitbucket was sent %v after the failure", r.bb.Requests())
	}
	before := r.mark()
	res = One(context.Background(), r.options(nil), tg, nil)
	check(t, res)
	got := writesIn(r.since(before))
	if len(got) != 3 || !strings.HasPrefix(got[0], "POST /api/v4/projects/102/variables ") || got[1] != "POST /api/v4/projects/102/mirror/pull" ||
		!strings.HasPrefix(got[2], "POST /2.0/repositories/acme/webapp/hooks ") {
		t.Errorf("the rerun wrote:\n%s", strings.Join(got, "\n"))
	}
}

// TestRefusals: each refusal says what to do, and writes nothing after it.
func TestRefusals(t *testing.T) {
	t.Parallel()
	t.Run("no permission in the group", func(t *testing.T) {
		r := newRig(t)
		r.gl.AddGroup("platform", false)
		res := One(context.Background(), r.options(nil), target(t, "https://bitbucket.org/acme/webapp.git", "platform/webapp"), nil)
		if res.FailedStep != "project" || !strings.Contains(fmt.Sprint(res.Err), "GitLab refused to create platform/webapp (400 namespace is not valid): "+
			"GITLAB_TOKEN's user may not create projects in group platform; give it a role that may") {
			t.Errorf("%s: %v", res.FailedStep, res.Err)
		}
	})
	t.Run("no such group", func(t *testing.T) {
		r := newRig(t)
		res := One(context.Background(), r.options(nil), target(t, "https://bitbucket.org/acme/webapp.git", "nowhere/webapp"), nil)
		if res.FailedStep != "project" || !strings.Contains(fmt.Sprint(res.Err), "GitLab has no group nowhere that GITLAB_TOKEN can see") {
			t.Errorf("%s: %v", res.FailedStep, res.Err)
		}
	})
	t.Run("the mirror's credential refused", func(t *testing.T) {
		r := newRig(t)
		r.gl.Upstream.Password = "the token Bitbucket knows"
		res := One(context.Background(), r.options(nil), target(t, "https://bitbucket.org/acme/webapp.git", ""), nil)
		if res.FailedStep != "verify" || fmt.Sprint(res.Err) != "GitLab could not fetch https://bitbucket.org/acme/webapp.git: remote: Invalid credentials "+
			"fatal: Authentication failed for 'https://bitbucket.org/': the mirror's Bitbucket credential was refused: update it in GitLab, "+
			"Settings > Repository > Mirroring repositories (app passwords stopped working on 28 Jul 2026)" {
			t.Errorf("%s: %v", res.FailedStep, res.Err)
		}
		// The next run sends the credentials again (the last update failed).
		r.gl.Upstream.Password = bbToken
		before := r.mark()
		res = One(context.Background(), r.options(nil), target(t, "https://bitbucket.org/acme/webapp.git", ""), nil)
		check(t, res)
		if w := writesIn(r.since(before)); len(w) != 2 || !strings.Contains(w[0], `"auth_password":"`+bbToken+`"`) {
			t.Errorf("the rerun wrote %v", w)
		}
	})
	t.Run("a project mirroring another repository", func(t *testing.T) {
		r := newRig(t)
		r.gl.AddProject("acme/webapp", true, &fakegitlab.Mirror{URL: "https://bitbucket.org/other/thing.git", Enabled: true})
		res := One(context.Background(), r.options(nil), target(t, "https://bitbucket.org/acme/webapp.git", ""), nil)
		if res.FailedStep != "mirror" || !strings.Contains(fmt.Sprint(res.Err), "GitLab project acme/webapp mirrors https://bitbucket.org/other/thing.git, "+
			"not https://bitbucket.org/acme/webapp.git: connect changes another repository's mirror only with --force") || len(writesIn(r.requests())) != 0 {
			t.Errorf("%s: %v; %v", res.FailedStep, res.Err, writesIn(r.requests()))
		}
		check(t, One(context.Background(), r.options(func(o *Options) { o.Force = true }), target(t, "https://bitbucket.org/acme/webapp.git", ""), nil))
	})
	t.Run("a project with its own commits", func(t *testing.T) {
		r := newRig(t)
		p := r.gl.AddProject("acme/webapp", true, nil)
		r.gl.Lock(func() { p.Branches = map[string]string{"main": strings.Repeat("1", 40)} })
		res := One(context.Background(), r.options(nil), target(t, "https://bitbucket.org/acme/webapp.git", ""), nil)
		if res.FailedStep != "mirror" || !strings.Contains(fmt.Sprint(res.Err), "has commits of its own and is no mirror") {
			t.Errorf("%s: %v", res.FailedStep, res.Err)
		}
	})
	t.Run("no Maintainer role", func(t *testing.T) {
		r := newRig(t)
		r.gl.AddProject("acme/webapp", false, nil)
		res := One(context.Background(), r.options(nil), target(t, "https://bitbucket.org/acme/webapp.git", ""), nil)
		if res.FailedStep != "mirror" || !strings.Contains(fmt.Sprint(res.Err), "needs the Maintainer role on the project") {
			t.Errorf("%s: %v", res.FailedStep, res.Err)
		}
	})
	t.Run("a credential without the webhook scope", func(t *testing.T) {
		r := newRig(t)
		res := One(context.Background(), r.options(nil), target(t, "https://bitbucket.org/acme/no-webhooks.git", ""), nil)
		if res.FailedStep != "webhook" || !strings.Contains(fmt.Sprint(res.Err), "an access token needs the webhook scope") {
			t.Errorf("%s: %v", res.FailedStep, res.Err)
		}
	})
}

// TestMaskingIsCheckedBeforeAnything: a token GitLab cannot mask stops the
// run before a request is sent.
func TestMaskingIsCheckedBeforeAnything(t *testing.T) {
	t.Parallel()
	tg := target(t, "https://bitbucket.org/acme/webapp.git", "")
	e := Env{GitLabURL: "https://gitlab.example.com", GitLabToken: gitlabToken, APIURL: "https://api.bitbucket.org/2.0", AccessToken: "short"}
	if _, err := Resolve(e, "", []Target{tg}); err == nil || err.Error() != "BITBUCKET_ACCESS_TOKEN cannot be masked in GitLab: it is shorter than 8 "+
		"characters (GitLab masks single-line values of 8 or more without spaces); nothing was written" {
		t.Errorf("%v", err)
	}
	e.AccessToken, e.CIToken = bbToken, "has a space in it"
	if _, err := Resolve(e, "", []Target{tg}); err == nil || !strings.HasPrefix(err.Error(), "BITBUCKET_CI_TOKEN cannot be masked in GitLab: it contains a space") {
		t.Errorf("%v", err)
	}
	// A Data Center repository's mirror needs a user.
	dc, err := NewTarget("https://git.example.com/scm/PLAT/api.git", "platform/api", "https://git.example.com")
	if err != nil {
		t.Fatal(err)
	}
	e.CIToken = ""
	if _, err := Resolve(e, "", []Target{dc}); err == nil || !strings.Contains(err.Error(), "set BITBUCKET_ACCESS_TOKEN to a user's HTTP access token") {
		t.Errorf("%v", err)
	}
	if _, err := Resolve(e, "https://relay.example.com", []Target{tg}); err == nil || !strings.Contains(err.Error(), "--relay-url needs BITBUCKET_RELAY_PUSH_SECRET") {
		t.Errorf("%v", err)
	}
}

// TestTokenWebhooks: the guide's webhook, which holds a GitLab token, is
// reported with the token redacted, and deleted when asked.
func TestTokenWebhooks(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	guide := r.bb.AddHook("acme/webapp", fakebitbucket.Hook{URL: "https://gitlab.example.com/api/v4/projects/102/mirror/pull?private_token=glpat-guide-token-123",
		Description: "GitLab", Active: true, Events: []string{"repo:push"}})
	tg := target(t, "https://bitbucket.org/acme/webapp.git", "")
	res := One(context.Background(), r.options(func(o *Options) { o.RelayURL = "" }), tg, nil)
	check(t, res)
	text := strings.Join(res.Lines, "\n")
	if !strings.Contains(text, "webhook: none made (no --relay-url): GitLab fetches the repository on its own schedule, every 30 minutes") ||
		!strings.Contains(text, "webhook {00000000-0000-4000-8000-00000000000"+guide.ID+"} (https://gitlab.example.com/api/v4/projects/102/mirror/pull?private_token=[REDACTED]) holds a GitLab token") ||
		strings.Contains(text, "glpat-guide-token-123") {
		t.Errorf("%s", text)
	}
	check(t, One(context.Background(), r.options(func(o *Options) { o.RemoveTokenWebhook = true }), tg, nil))
	hooks := r.bb.Hooks("acme/webapp")
	if len(hooks) != 1 || hooks[0].URL != "https://relay.example.com/bitbucket" {
		t.Errorf("hooks %+v", hooks)
	}
}

// TestDataCenter: a user's HTTP access token; the mirror sends that user,
// the webhook is repo:refs_changed with its secret in configuration, and
// the component is told the repository.
func TestDataCenter(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.bb.User = "svc-ci"
	r.gl.Upstream.User = "svc-ci"
	r.gl.AddGroup("platform", true)
	if _, err := NewTarget("https://git.example.com/scm/plat/api.git", "platform/api", r.bbURL); err == nil {
		t.Fatal("a repository not on BITBUCKET_SERVER_URL was taken")
	}
	tg, err := NewTarget(r.bbURL+"/scm/plat/api.git", "platform/api", r.bbURL)
	if err != nil {
		t.Fatal(err)
	}
	tok := Token{Token: bbToken, Username: "svc-ci"}
	res := One(context.Background(), r.options(func(o *Options) {
		o.Bitbucket.Auth = bitbucket.Auth{Kind: bitbucket.Basic, Username: "svc-ci", Token: bbToken}
		o.Mirror, o.CI = tok, tok
	}), tg, nil)
	check(t, res)
	w := strings.Join(writesIn(r.requests()), "\n")
	for _, want := range []string{
		`"auth_user":"svc-ci"`, `"url":"http://svc-ci@127.0.0.1`,
		`"key":"BITBUCKET_USERNAME","masked":false,"protected":false,"raw":true,"value":"svc-ci"`,
		`"key":"BITBUCKET_REPO_URL","masked":false,"protected":false,"raw":true,"value":"` + r.bbURL + `/scm/plat/api.git"`,
		`POST /rest/api/latest/projects/PLAT/repos/api/webhooks {"active":true,"configuration":{"secret":"` + pushSecret + `"},"events":["repo:refs_changed"],"name":"bitbucket-status relay`,
	} {
		if !strings.Contains(w, want) {
			t.Errorf("writes lack %q:\n%s", want, w)
		}
	}
	before := r.mark()
	check(t, One(context.Background(), r.options(func(o *Options) {
		o.Bitbucket.Auth = bitbucket.Auth{Kind: bitbucket.Basic, Username: "svc-ci", Token: bbToken}
		o.Mirror, o.CI = tok, tok
	}), tg, nil))
	if w := writesIn(r.since(before)); len(w) != 0 {
		t.Errorf("the second run wrote %v", w)
	}
}

// TestGitLabBefore17Point6: the mirror goes in import_url (its credentials
// in it) and is checked after; variables are masked, not hidden.
func TestGitLabBefore17Point6(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.gl.Version = "17.2.3-ee"
	res := One(context.Background(), r.options(nil), target(t, "https://bitbucket.org/acme/webapp.git", ""), nil)
	check(t, res)
	w := strings.Join(writesIn(r.requests()), "\n")
	if !strings.Contains(w, `PUT /api/v4/projects/102 {"import_url":"https://x-token-auth:`+bbToken+`@bitbucket.org/acme/webapp.git","mirror":true,`) ||
		strings.Contains(w, "masked_and_hidden") || strings.Contains(w, "/mirror/pull {") {
		t.Errorf("writes:\n%s", w)
	}
	if !strings.Contains(strings.Join(res.Lines, "\n"), "BITBUCKET_ACCESS_TOKEN created (masked)") {
		t.Errorf("%s", strings.Join(res.Lines, "\n"))
	}
}

// TestStaleVariablesAndAnAdoptedProject: a project set up by the guide
// (its app password refused, BITBUCKET_USERNAME beside it) is fixed: new
// credentials, the token variable updated in place and masked, the user
// name deleted.
func TestStaleVariablesAndAnAdoptedProject(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := r.gl.AddProject("acme/webapp", true, &fakegitlab.Mirror{URL: "https://ann@bitbucket.org/acme/webapp.git", Enabled: true,
		AuthUser: "ann", AuthPassword: "app-password-dead", UpdateStatus: "failed", LastError: "fatal: Authentication failed", TriggerBuilds: true})
	r.gl.Lock(func() {
		p.Variables = map[string]*fakegitlab.Variable{
			"BITBUCKET_ACCESS_TOKEN": {Key: "BITBUCKET_ACCESS_TOKEN", Value: "app-password-dead", Raw: true},
			"BITBUCKET_USERNAME":     {Key: "BITBUCKET_USERNAME", Value: "ann", Raw: true},
		}
	})
	res := One(context.Background(), r.options(nil), target(t, "https://bitbucket.org/acme/webapp.git", ""), nil)
	check(t, res)
	text := strings.Join(res.Lines, "\n")
	for _, want := range []string{
		"mirror: set (its last update failed (fatal: Authentication failed): credentials sent again; diverged branches were not overwritten)",
		"BITBUCKET_ACCESS_TOKEN updated (masked; GitLab cannot hide an existing variable",
		"BITBUCKET_USERNAME deleted (an access token takes no user name: with one, the component sends Basic auth, which Bitbucket refuses)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("lacks %q:\n%s", want, text)
		}
	}
	var vars map[string]fakegitlab.Variable
	r.gl.Lock(func() {
		vars = map[string]fakegitlab.Variable{}
		for k, v := range p.Variables {
			vars[k] = *v
		}
	})
	if v := vars["BITBUCKET_ACCESS_TOKEN"]; v.Value != bbToken || !v.Masked || len(vars) != 1 {
		t.Errorf("variables %+v", vars)
	}
}

// TestManyShareGitLabsRateLimit: a 429 pauses every worker until its
// Retry-After; all repositories end set up.
func TestManyShareGitLabsRateLimit(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.gl.RetryAfter = 1
	var targets []Target
	for i := range 6 {
		targets = append(targets, target(t, fmt.Sprintf("https://bitbucket.org/acme/repo-%d.git", i), ""))
	}
	r.gl.FailNextOn("POST /api/v4/projects", 1, http.StatusTooManyRequests)
	start := time.Now()
	var order []string
	results := Many(context.Background(), r.options(nil), targets, 3, func(res Result) { order = append(order, res.Summary(false)) })
	for _, res := range results {
		check(t, res)
	}
	if len(order) != 6 || !strings.HasPrefix(order[0], "done   acme/repo-") || time.Since(start) < time.Second {
		t.Errorf("%v in %s", order, time.Since(start))
	}
	// No request to GitLab during the pause: after the 429, the next
	// request came a second later.
	var codes []int
	for _, q := range r.gl.Requests() {
		codes = append(codes, q.Code)
	}
	if n := strings.Count(fmt.Sprint(codes), "429"); n != 1 {
		t.Errorf("%d 429s: %v", n, codes)
	}
}

func TestNewTarget(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"https://bitbucket.org/acme/webapp.git":                 "acme/webapp https://bitbucket.org/acme/webapp.git",
		"git@bitbucket.org:acme/webapp.git":                     "acme/webapp https://bitbucket.org/acme/webapp.git",
		"https://ann@bitbucket.org/acme/webapp":                 "acme/webapp https://bitbucket.org/acme/webapp.git",
		"https://bitbucket.org/acme/webapp/src/main/":           "acme/webapp https://bitbucket.org/acme/webapp.git",
		"https://git.example.com/ctx/scm/PLAT/api.git plat/api": "plat/api https://git.example.com/ctx/scm/plat/api.git",
	} {
		url, path, _ := strings.Cut(raw, " ")
		tg, err := NewTarget(url, path, "https://git.example.com/ctx")
		if got := tg.GitLabPath + " " + tg.CloneURL; err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", raw, got, err, want)
		}
	}
	if _, err := NewTarget("https://bitbucket.org/acme/webapp.git", "webapp", ""); err == nil ||
		err.Error() != `GitLab project "webapp": give GROUP/PROJECT (a project belongs to a group or a user)` {
		t.Errorf("%v", err)
	}
	list := "# repositories\nhttps://bitbucket.org/acme/a.git\n\nhttps://bitbucket.org/acme/b.git platform/b\n"
	ts, err := ReadTargets(strings.NewReader(list), "")
	if err != nil || len(ts) != 2 || ts[1].GitLabPath != "platform/b" {
		t.Errorf("%+v %v", ts, err)
	}
	if _, err := ReadTargets(strings.NewReader("https://bitbucket.org/acme/a.git x/y z\n"), ""); err == nil ||
		err.Error() != "line 1: 3 words: give the repository URL and, after a space, the GitLab project path" {
		t.Errorf("%v", err)
	}
	_ = json.Valid
}
