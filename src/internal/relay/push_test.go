package relay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/fakegitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/pushhook"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

const pushSecret = "harness-push-secret-0123456789"

// pushRig is a relay with POST /bitbucket, a stand-in GitLab keeping pull
// mirrors as GitLab does, and the Bitbucket stand-in.
type pushRig struct {
	*testRelay
	gl *fakegitlab.Server
	bb *testBitbucket
	h  http.Handler
}

func newPushRig(t *testing.T, env map[string]string, gl *fakegitlab.Server) *pushRig {
	t.Helper()
	return newPushRigOn(t, env, gl, nil)
}

// newPushRigOn is newPushRig over a store that holds what an earlier run
// left (nil: a new one).
func newPushRigOn(t *testing.T, env map[string]string, gl *fakegitlab.Server, st store.Store) *pushRig {
	t.Helper()
	bb := newTestBitbucket(t)
	ts := httptest.NewServer(gl)
	t.Cleanup(ts.Close)
	full := map[string]string{"BITBUCKET_API_URL": bb.url + "/2.0", "GITLAB_URL": ts.URL, "GITLAB_TOKEN": gl.Token,
		"BITBUCKET_RELAY_PUSH_SECRET": pushSecret, "BITBUCKET_RELAY_SWEEP_INTERVAL": "0", "BITBUCKET_RELAY_TEST_REPORTS": "false",
		"BITBUCKET_RELAY_MIRROR_INTERVAL": gl.Interval.String()}
	for k, v := range env {
		full[k] = v
	}
	tr := startRelay(t, full, st, func(c *Config) { c.mirrorPoll = 50 * time.Millisecond })
	return &pushRig{testRelay: tr, gl: gl, bb: bb, h: tr.Handler()}
}

// deliver sends a push webhook as Bitbucket does: its event key, and the
// signature of the body (signed with secret; "" for none).
func (rig *pushRig) deliver(event, secret string, body []byte, headers ...string) (int, string) {
	req := httptest.NewRequest(http.MethodPost, "/bitbucket", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Event-Key", event)
	if secret != "" {
		req.Header.Set("X-Hub-Signature", pushhook.Sign(secret, body))
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	rig.h.ServeHTTP(w, req)
	return w.Code, strings.TrimSpace(w.Body.String())
}

// cloudPush is Cloud's repo:push for workspace/slug moving main to commit.
func cloudPush(t *testing.T, repo, commit string) []byte {
	t.Helper()
	raw, err := os.ReadFile("../pushhook/testdata/cloud-repo-push.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	ws, slug, _ := strings.Cut(repo, "/")
	r := doc["repository"].(map[string]any)
	r["full_name"] = repo
	r["workspace"].(map[string]any)["slug"] = ws
	r["name"] = slug
	changes := doc["push"].(map[string]any)["changes"].([]any)
	main := changes[0].(map[string]any)
	main["new"].(map[string]any)["target"].(map[string]any)["hash"] = commit
	doc["push"].(map[string]any)["changes"] = []any{main}
	out, _ := json.Marshal(doc)
	return out
}

func pushEvents(t *testing.T, st store.Store, commit string) string {
	t.Helper()
	events, err := st.PushEvents(t.Context(), commit, 20)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for i := len(events) - 1; i >= 0; i-- {
		kinds = append(kinds, events[i].Kind)
	}
	return strings.Join(kinds, ",")
}

func starts(gl *fakegitlab.Server) int {
	n := 0
	for _, r := range gl.Requests() {
		if r.Method == http.MethodPost {
			n++
		}
	}
	return n
}

// TestAPushStartsTheMirror: a signed repo:push is answered 202 once stored;
// GitLab is asked to update the project's pull mirror at once, and the job
// ends when the update that started after the push has run. The pushed
// commit's history says so.
func TestAPushStartsTheMirror(t *testing.T) {
	t.Parallel()
	gl := &fakegitlab.Server{Token: "glpat-push", Scopes: []string{"api"}, Interval: time.Minute, UpdateTakes: 100 * time.Millisecond}
	mirror := &fakegitlab.Mirror{URL: "https://x-token-auth:secret@bitbucket.org/acme/webapp.git", Enabled: true}
	gl.AddProject("acme/webapp", true, mirror)
	rig := newPushRig(t, nil, gl)
	commit := strings.Repeat("a", 40)
	if code, text := rig.deliver(pushhook.CloudPush, pushSecret, cloudPush(t, "acme/webapp", commit)); code != 202 ||
		text != "accepted: the pull mirror of acme/webapp is to fetch it" {
		t.Fatalf("%d %s", code, text)
	}
	waitFor(t, "the job done", func() bool { return pushEvents(t, rig.store, commit) == "push,mirror,update" }, rig.log.String)
	var s fakegitlab.Mirror
	gl.Lock(func() { s = *mirror })
	if s.Starts != 1 || s.UpdateStatus != "finished" {
		t.Errorf("mirror: %s", s.String())
	}
	// GET the project (its ID), GET the mirror, POST (start), GETs until done.
	reqs := gl.Requests()
	if reqs[0].Method != "GET" || reqs[0].Path != "/api/v4/projects/acme%2Fwebapp" || reqs[1].Path != "/api/v4/projects/101/mirror/pull" ||
		reqs[2].Method != "POST" || reqs[2].Path != "/api/v4/projects/101/mirror/pull" || starts(gl) != 1 {
		t.Errorf("requests %+v", reqs)
	}
	if st, _ := rig.store.Stats(t.Context()); st.PendingPushes != 0 {
		t.Errorf("%d mirror jobs pending", st.PendingPushes)
	}
	if n := len(rig.bb.Requests()); n != 0 {
		t.Errorf("%d requests to Bitbucket for a mirror that fetched: the pipeline posts", n)
	}
}

// TestABurstOfPushesCostsFewRequests: twenty pushes in a row start one
// update (at most a couple), and one that started after the last push.
func TestABurstOfPushesCostsFewRequests(t *testing.T) {
	t.Parallel()
	// An interval of 2 s stands for GitLab's 5 minutes: the update that
	// covers the burst's last pushes is deferred by it.
	gl := &fakegitlab.Server{Token: "glpat-push", Interval: 2 * time.Second, UpdateTakes: 300 * time.Millisecond}
	mirror := &fakegitlab.Mirror{URL: "https://bitbucket.org/acme/webapp.git", Enabled: true}
	gl.AddProject("acme/webapp", true, mirror)
	rig := newPushRig(t, nil, gl)
	var last string
	for i := range 20 {
		last = fmt.Sprintf("%040x", 0xb0+i)
		if code, _ := rig.deliver(pushhook.CloudPush, pushSecret, cloudPush(t, "acme/webapp", last)); code != 202 {
			t.Fatal(code)
		}
	}
	pushedAt := time.Now()
	waitFor(t, "the last push's update", func() bool { return strings.HasSuffix(pushEvents(t, rig.store, last), "update") }, rig.log.String)
	var s fakegitlab.Mirror
	gl.Lock(func() { s = *mirror })
	if s.LastUpdateStartedAt.Before(pushedAt.Add(-50*time.Millisecond)) || s.Starts > 2 {
		t.Errorf("mirror %s; the last push at %v", s.String(), pushedAt)
	}
	// Twenty pushes make no more requests than one: the project looked up
	// once, at most two starts, and the looks at the updates in progress no
	// more often than the poll (50 ms here, 5 s by default).
	lookups, posts, gets := 0, 0, 0
	for _, r := range gl.Requests() {
		switch {
		case r.Path == "/api/v4/projects/acme%2Fwebapp":
			lookups++
		case r.Method == http.MethodPost:
			posts++
		default:
			gets++
		}
	}
	if most := int(time.Since(pushedAt)/(50*time.Millisecond)) + 4; lookups != 1 || posts > 2 || gets > most {
		t.Errorf("%d lookups, %d starts, %d looks (at most %d) for a burst of 20 pushes", lookups, posts, gets, most)
	}
}

// TestPushesWhileAnAskIsDeferredCostNoOther: GitLab defers an ask made
// within its interval and keeps it; pushes that arrive meanwhile are
// covered by the update it starts, and cost no further ask.
func TestPushesWhileAnAskIsDeferredCostNoOther(t *testing.T) {
	t.Parallel()
	// 5 s stands for GitLab's 5 minutes: longer than the burst below.
	gl := &fakegitlab.Server{Token: "glpat-push", Interval: 5 * time.Second, UpdateTakes: 100 * time.Millisecond}
	mirror := &fakegitlab.Mirror{URL: "https://bitbucket.org/acme/webapp.git", Enabled: true}
	gl.AddProject("acme/webapp", true, mirror)
	rig := newPushRig(t, nil, gl)
	first := strings.Repeat("1", 40)
	if code, _ := rig.deliver(pushhook.CloudPush, pushSecret, cloudPush(t, "acme/webapp", first)); code != 202 {
		t.Fatal(code)
	}
	waitFor(t, "the first push fetched", func() bool { return strings.HasSuffix(pushEvents(t, rig.store, first), "update") }, rig.log.String)
	// Within the interval of that update: the next ask is deferred to its
	// end; eight pushes follow it, 150 ms apart.
	var last string
	for i := range 8 {
		last = fmt.Sprintf("%040x", 0xd0+i)
		if code, _ := rig.deliver(pushhook.CloudPush, pushSecret, cloudPush(t, "acme/webapp", last)); code != 202 {
			t.Fatal(code)
		}
		time.Sleep(150 * time.Millisecond)
	}
	lastAt := time.Now()
	waitFor(t, "the last push fetched", func() bool { return strings.HasSuffix(pushEvents(t, rig.store, last), "update") }, rig.log.String)
	var s fakegitlab.Mirror
	gl.Lock(func() { s = *mirror })
	if n := starts(gl); n != 2 || s.Starts != 2 || !s.LastUpdateStartedAt.After(lastAt.Add(-150*time.Millisecond)) {
		t.Errorf("%d asks (want 2: the first push's, one deferred for the rest); mirror %s; last push at %v", n, s.String(), lastAt)
	}
}

// TestAPushDuringAnUpdateStartsAnother: an update that started before the
// push may not hold it, and a start asked while it runs does nothing
// (GitLab absorbs it): the relay waits for it to end, then starts one.
func TestAPushDuringAnUpdateStartsAnother(t *testing.T) {
	t.Parallel()
	gl := &fakegitlab.Server{Token: "glpat-push", Interval: 10 * time.Millisecond, UpdateTakes: 500 * time.Millisecond}
	mirror := &fakegitlab.Mirror{URL: "https://bitbucket.org/acme/webapp.git", Enabled: true}
	gl.AddProject("acme/webapp", true, mirror)
	rig := newPushRig(t, nil, gl)
	// GitLab's own schedule starts an update; the push comes while it runs.
	scheduled := time.Now()
	gl.StartNow(mirror)
	commit := strings.Repeat("c", 40)
	if code, _ := rig.deliver(pushhook.CloudPush, pushSecret, cloudPush(t, "acme/webapp", commit)); code != 202 {
		t.Fatal(code)
	}
	waitFor(t, "an update after the push", func() bool { return strings.HasSuffix(pushEvents(t, rig.store, commit), "update") }, rig.log.String)
	var s fakegitlab.Mirror
	gl.Lock(func() { s = *mirror })
	if s.Starts != 2 || !s.LastUpdateStartedAt.After(scheduled.Add(400*time.Millisecond)) {
		t.Errorf("mirror %s: want the scheduled update and one more after it", s.String())
	}
}

// TestAMirrorThatFailsShowsOnTheCommit: the update started for the push
// fails (the mirror's Bitbucket credential refused): FAILED on the pushed
// commit, under the key its pipeline would use, saying why and what to
// do, linked to the mirror's settings; the pipeline's own status replaces
// it once a later update works. A paused mirror (14 failures) says so; a
// project that is no mirror posts nothing.
func TestAMirrorThatFailsShowsOnTheCommit(t *testing.T) {
	t.Parallel()
	gl := &fakegitlab.Server{Token: "glpat-push", Interval: 10 * time.Millisecond, UpdateTakes: 50 * time.Millisecond}
	refused := &fakegitlab.Mirror{URL: "https://bitbucket.org/acme/webapp.git", Enabled: true,
		FetchError: "fatal: Authentication failed for 'https://x-token-auth:ATCTT3xFfGN0secret99@bitbucket.org/acme/webapp.git/'"}
	gl.AddProject("acme/webapp", true, refused)
	paused := &fakegitlab.Mirror{URL: "https://bitbucket.org/acme/api.git", Enabled: true, Failures: fakegitlab.MaxRetry + 1,
		LastError: "fatal: could not read Username for 'https://bitbucket.org': terminal prompts disabled", UpdateStatus: "failed"}
	gl.AddProject("acme/api", true, paused)
	gl.AddProject("acme/docs", true, nil)
	rig := newPushRig(t, nil, gl)
	for repo, c := range map[string]string{"acme/webapp": "d", "acme/api": "e", "acme/docs": "f"} {
		if code, text := rig.deliver(pushhook.CloudPush, pushSecret, cloudPush(t, repo, strings.Repeat(c, 40))); code != 202 {
			t.Fatalf("%s: %d %s", repo, code, text)
		}
	}
	for commit, want := range map[string]struct{ desc, events string }{
		strings.Repeat("d", 40): {"GitLab could not fetch this commit: fatal: Authentication failed for 'https://x-token-auth:[REDACTED]@bitbucket.org/acme/webapp.git/': " +
			"the mirror's Bitbucket credential was refused: update it in GitLab, Settings > Repository > Mirroring repositories (a...",
			"push,mirror,failed"},
		strings.Repeat("e", 40): {"GitLab could not fetch this commit: GitLab paused the mirror after 14 failed updates (fatal: could not read Username for " +
			"'https://bitbucket.org': terminal prompts disabled): the mirror's URL has no user name: set it again in GitLab, Settings > Reposito...", "push,failed"},
	} {
		waitFor(t, "the failure posted on "+commit[:4], func() bool {
			var st struct{ State, Description, URL string }
			_ = json.Unmarshal(rig.bb.Shown(commit, parentKeyOf(commit, rig)), &st)
			return st.State == "FAILED"
		}, rig.log.String)
		var st struct{ State, Key, Name, Description, URL, Refname string }
		_ = json.Unmarshal(rig.bb.Shown(commit, parentKeyOf(commit, rig)), &st)
		project := map[string]string{"d": "acme/webapp", "e": "acme/api"}[commit[:1]]
		if st.Description != want.desc || st.Name != "GitLab: "+project || st.Refname != "main" ||
			st.URL != rig.cfg.GitLab.BaseURL+"/"+project+"/-/settings/repository#js-push-remote-settings" {
			t.Errorf("%s: Bitbucket shows %+v\nwant description %q", project, st, want.desc)
		}
		if got := pushEvents(t, rig.store, commit); got != want.events {
			t.Errorf("%s: push history %s, want %s", project, got, want.events)
		}
		if strings.Contains(rig.log.String(), "ATCTT3xFfGN0secret99") {
			t.Error("the mirror URL's credential reached the log")
		}
	}
	// No mirror: nothing posted, the history says why.
	docs := strings.Repeat("f", 40)
	waitFor(t, "the job of a project that is no mirror ends", func() bool { return pushEvents(t, rig.store, docs) == "push,failed" }, rig.log.String)
	if got := rig.bb.shown(docs, "gitlab/acme/docs"); got != "" {
		t.Errorf("a project that is no mirror got a status: %s", got)
	}
	// The pipeline of a later, working update replaces the failure.
	webapp := strings.Repeat("d", 40)
	p := pipelineEvent(9001, "success", webapp)
	p.ProjectPath = "acme/webapp"
	rig.event(t, p)
	waitFor(t, "the pipeline's status", func() bool { return rig.bb.shown(webapp, "gitlab/acme/webapp") == "SUCCESSFUL" }, rig.log.String)
}

func parentKeyOf(commit string, rig *pushRig) string {
	return map[string]string{"d": "gitlab/acme/webapp", "e": "gitlab/acme/api"}[commit[:1]]
}

// TestPushesAreSignedOrRefused: nothing unsigned or wrongly signed is
// taken (401, the body unread); Data Center's unsigned "Test connection"
// is answered; other events are answered and ignored; a repository no
// project maps to is answered, counted and logged, never guessed.
func TestPushesAreSignedOrRefused(t *testing.T) {
	t.Parallel()
	gl := &fakegitlab.Server{Token: "glpat-push", Interval: time.Minute}
	gl.AddProject("acme/webapp", true, &fakegitlab.Mirror{URL: "https://bitbucket.org/acme/webapp.git", Enabled: true})
	routes := filepath.Join(t.TempDir(), "routes.yml")
	if err := os.WriteFile(routes, []byte("routes:\n  - project: shop/web-app\n    data_center: https://git.example.com/bitbucket\n    repository: SHOP/webapp\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gl.AddProject("shop/web-app", true, &fakegitlab.Mirror{URL: "https://git.example.com/bitbucket/scm/shop/webapp.git", Enabled: true})
	rig := newPushRig(t, map[string]string{"BITBUCKET_RELAY_ROUTES": routes}, gl)
	body := cloudPush(t, "acme/webapp", strings.Repeat("1", 40))
	dc, err := os.ReadFile("../pushhook/testdata/dc-repo-refs-changed.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, event, secret string
		body                []byte
		code                int
		text                string
	}{
		{"unsigned", pushhook.CloudPush, "", body, 401, "no X-Hub-Signature: give the Bitbucket webhook a secret, the value of BITBUCKET_RELAY_PUSH_SECRET"},
		{"wrong secret", pushhook.CloudPush, "another-secret-0123456789", body, 401, "wrong X-Hub-Signature: the webhook's secret is not BITBUCKET_RELAY_PUSH_SECRET"},
		{"unsigned ping", pushhook.Ping, "", []byte(`{"test": true}`), 200, "pong: the relay's push endpoint answers (a ping does nothing; pushes must be signed)"},
		{"signed ping", pushhook.Ping, pushSecret, []byte(`{"test": true}`), 200, "pong"},
		{"another event", "pr:opened", pushSecret, []byte(`{}`), 200, `ignored: X-Event-Key "pr:opened" is not a push (subscribe the webhook to repo:push, or to repo:refs_changed on Data Center)`},
		{"not a push", pushhook.CloudPush, pushSecret, []byte(`{"repository":{}}`), 400, "not a push payload: no repository or push: not a repo:push payload"},
		{"unmapped", pushhook.DataCenterPush, pushSecret, []byte(strings.Replace(string(dc), `"key": "SHOP"`, `"key": "OTHER"`, 1)), 200,
			"not mapped: no route, default route or known pull mirror maps OTHER/webapp at https://git.example.com/bitbucket to a GitLab project (a wildcard route cannot be reversed: give the project a route of its own)"},
		{"cloud, the default route", pushhook.CloudPush, pushSecret, body, 202, "accepted: the pull mirror of acme/webapp is to fetch it"},
		{"data center, a route", pushhook.DataCenterPush, pushSecret, dc, 202, "accepted: the pull mirror of shop/web-app is to fetch it"},
	} {
		if code, text := rig.deliver(c.event, c.secret, c.body); code != c.code || text != c.text {
			t.Errorf("%s: %d %q\nwant %d %q", c.name, code, text, c.code, c.text)
		}
	}
	if !logHas(rig.log, `"msg":"push received for a repository no GitLab project maps to: nothing started"`) {
		t.Errorf("the unmapped push is not logged:\n%s", rig.log.String())
	}
	waitFor(t, "both mirrors asked", func() bool { return starts(gl) == 2 }, rig.log.String)
}

// TestCheckVerifiesPushesWithoutStarting: check says whether pushes can
// start the routed projects' mirrors (the api scope, the Maintainer role,
// a pull mirror) and starts nothing.
func TestCheckVerifiesPushesWithoutStarting(t *testing.T) {
	t.Parallel()
	gl := &fakegitlab.Server{Token: "glpat-check", Scopes: []string{"read_api"}, Interval: time.Minute}
	gl.AddProject("acme/webapp", true, &fakegitlab.Mirror{URL: "https://x-token-auth:tok@bitbucket.org/acme/webapp.git", Enabled: true})
	gl.AddProject("acme/docs", true, nil)
	gl.AddProject("acme/api", false, &fakegitlab.Mirror{URL: "https://bitbucket.org/acme/api.git", Enabled: true})
	routes := filepath.Join(t.TempDir(), "routes.yml")
	if err := os.WriteFile(routes, []byte("routes:\n  - project: acme/webapp\n    cloud: acme/webapp\n  - project: acme/docs\n    cloud: acme/docs\n"+
		"  - project: acme/api\n    cloud: acme/api\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rig := newPushRig(t, map[string]string{"BITBUCKET_RELAY_ROUTES": routes}, gl)
	var out bytes.Buffer
	rig.checkPushes(t.Context(), &out)
	want := "FAILED: GITLAB_TOKEN has the scopes read_api, not api: a push starts GitLab's pull mirror (POST /projects/:id/mirror/pull), which needs " +
		"the api scope: give the relay a token with api (and the Maintainer role on the projects)\n" +
		"ok: route 1 (acme/webapp): GITLAB_TOKEN can start the pull mirror of acme/webapp (from https://*****:*****@bitbucket.org/acme/webapp.git; last update none)\n" +
		"FAILED: route 2 (acme/docs): the project is not a pull mirror (The project is not mirrored): a push to its repository starts nothing; set it up (bitbucket-status-relay connect)\n" +
		"FAILED: route 3 (acme/api): GITLAB_TOKEN may not read the project's mirror (403): it needs the Maintainer role to start it\n"
	if out.String() != want {
		t.Errorf("check:\n%s\nwant\n%s", out.String(), want)
	}
	if starts(gl) != 0 {
		t.Errorf("check started a mirror")
	}
}

// TestAPushWaitsOutAGitLabOutage: GitLab answering 503 for a while delays
// the mirror's start (retried with backoff), never loses it.
func TestAPushWaitsOutAGitLabOutage(t *testing.T) {
	t.Parallel()
	gl := &fakegitlab.Server{Token: "glpat-push", Interval: time.Minute, UpdateTakes: 50 * time.Millisecond}
	mirror := &fakegitlab.Mirror{URL: "https://bitbucket.org/acme/webapp.git", Enabled: true}
	gl.AddProject("acme/webapp", true, mirror)
	rig := newPushRig(t, nil, gl)
	gl.FailNext(3, http.StatusServiceUnavailable)
	commit := strings.Repeat("9", 40)
	if code, _ := rig.deliver(pushhook.CloudPush, pushSecret, cloudPush(t, "acme/webapp", commit)); code != 202 {
		t.Fatal(code)
	}
	waitFor(t, "the update after the outage", func() bool { return pushEvents(t, rig.store, commit) == "push,mirror,update" }, rig.log.String)
	if n := rig.metrics.gitlabErrors.WithLabelValues("projects", "503"); n == nil {
		t.Fatal("no metric")
	}
	if !logHas(rig.log, `"msg":"mirror job waits for GitLab"`) {
		t.Errorf("the outage is not logged:\n%s", rig.log.String())
	}
}

// TestAPushFindsItsMirrorAfterARestart: a project in a subgroup that only
// its pull mirror maps to a repository (mirror following allowed) is
// found for a push as soon as the relay starts, before any pipeline of it
// arrives: the relay reads the mirrors of the projects it served.
func TestAPushFindsItsMirrorAfterARestart(t *testing.T) {
	t.Parallel()
	gl := &fakegitlab.Server{Token: "glpat-push", Interval: time.Minute, UpdateTakes: 100 * time.Millisecond}
	mirror := &fakegitlab.Mirror{URL: "https://x-token-auth:secret@bitbucket.org/bbws/webapp.git", Enabled: true}
	p := gl.AddProject("platform/deep/webapp", true, mirror)
	other := gl.AddProject("platform/deep/elsewhere", true, &fakegitlab.Mirror{URL: "https://bitbucket.org/strangers/webapp.git", Enabled: true})
	st, err := store.OpenSQLite(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// What an earlier run stored: a status of each project.
	for i, pr := range []*fakegitlab.Project{p, other} {
		if _, err := st.Accept(t.Context(), []store.Report{{StatusID: fmt.Sprint("s", i), Credential: "default", Server: "https://api.bitbucket.org/2.0",
			PipelineID: int64(i + 1), State: "SUCCESSFUL", Final: true, Body: []byte(`{}`), ProjectID: pr.ID, ProjectPath: pr.Path,
			Commit: strings.Repeat("9", 40), Source: "push"}}, func(*store.Row, store.Report) (store.Decision, string) { return store.Replace, "" }); err != nil {
			t.Fatal(err)
		}
	}
	rig := newPushRigOn(t, map[string]string{"BITBUCKET_RELAY_MIRROR_WORKSPACES": "bbws"}, gl, st)
	commit := strings.Repeat("f", 40)
	waitFor(t, "the mirrors read", func() bool {
		n := 0
		for _, r := range gl.Requests() {
			// The project's import_url, or its mirror's url.
			if r.Method == http.MethodGet && (r.Path == fmt.Sprintf("/api/v4/projects/%d", p.ID) || r.Path == fmt.Sprintf("/api/v4/projects/%d", other.ID)) {
				n++
			}
		}
		return n == 2
	}, rig.log.String)
	if code, text := rig.deliver(pushhook.CloudPush, pushSecret, cloudPush(t, "bbws/webapp", commit)); code != 202 ||
		text != "accepted: the pull mirror of platform/deep/webapp is to fetch it" {
		t.Fatalf("%d %s", code, text)
	}
	waitFor(t, "the job done", func() bool { return pushEvents(t, rig.store, commit) == "push,mirror,update" }, rig.log.String)
	// A mirror of a workspace no list allows is not followed: only the
	// default route's project of the same path is asked.
	if code, text := rig.deliver(pushhook.CloudPush, pushSecret, cloudPush(t, "strangers/webapp", commit)); code != 202 ||
		text != "accepted: the pull mirror of strangers/webapp is to fetch it" {
		t.Errorf("%d %s", code, text)
	}
}
