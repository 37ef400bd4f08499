package relaystatus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

func taken(*store.Row, store.Report) (store.Decision, string) { return store.Replace, "a new status" }

// fixture is a store with: a status posted, one refused with an
// explanation, one waiting for a retry, and a project whose name carries
// markup.
func fixture(t *testing.T) store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	report := func(project, commit string, pipeline int64, state string) store.Report {
		return store.Report{StatusID: "cloud|https://api.bitbucket.org/2.0|" + project + "|" + commit + "|gitlab/" + project, Credential: "default",
			Server: "https://api.bitbucket.org/2.0", PipelineID: pipeline, State: state, Body: []byte(`{}`), ProjectID: 42, ProjectPath: project,
			Commit: commit, Source: "push, webhook"}
	}
	for _, r := range []store.Report{report("acme/widgets", sha, 2045, "SUCCESSFUL"), report("acme/forbidden", sha, 2046, "FAILED"),
		report("acme/flaky", sha, 2047, "INPROGRESS"), report("acme/<img src=x onerror=alert(1)>", sha, 2048, "INPROGRESS")} {
		if _, err := st.Accept(ctx, []store.Report{r}, taken); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := st.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		o := store.Outcome{Done: true, PostedState: row.State, PostedPipeline: row.PipelineID, Attempt: &store.Attempt{State: row.State, PipelineID: row.PipelineID, Code: 201}}
		switch row.ProjectPath {
		case "acme/forbidden":
			o = store.Outcome{Done: true, Error: "Bitbucket refused the request (403 Forbidden): the key was first posted by another identity",
				Attempt: &store.Attempt{State: row.State, PipelineID: row.PipelineID, Code: 403}}
		case "acme/flaky":
			o = store.Outcome{RetryAt: time.Now().Add(time.Hour), Error: "Bitbucket answered 503",
				Attempt: &store.Attempt{State: row.State, PipelineID: row.PipelineID, Code: 503}}
		}
		if _, err := st.Finish(ctx, "w", row, o); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func TestSearchSaysWhatEachStatusWaitsFor(t *testing.T) {
	t.Parallel()
	st := fixture(t)
	now := time.Now()
	r, err := Search(context.Background(), st, sha[:9], 1, now, &Local{Replica: "r1", Pauses: []CredentialPause{}})
	if err != nil || r.Kind != "commit" || r.Total != 4 || len(r.Statuses) != 4 {
		t.Fatalf("%+v %v", r, err)
	}
	waits := map[string]string{}
	for _, s := range r.Statuses {
		waits[s.Project] = s.Waiting
		if s.Repository != s.Project || s.Key != "gitlab/"+s.Project || s.Commit != sha {
			t.Errorf("%+v", s)
		}
	}
	want := map[string]string{
		"acme/widgets":   "nothing: Bitbucket was given SUCCESSFUL for pipeline 2045",
		"acme/forbidden": "for the next event of this status: Bitbucket refused the last post, and a refusal is not retried on its own (the last error says why, and what to change)",
	}
	for project, w := range want {
		if waits[project] != w {
			t.Errorf("%s waits %q, want %q", project, waits[project], w)
		}
	}
	if !strings.HasPrefix(waits["acme/flaky"], "to try again at ") || !strings.HasSuffix(waits["acme/flaky"], ", after 1 attempt(s)") {
		t.Errorf("flaky waits %q", waits["acme/flaky"])
	}
	// A pause of this replica's is said to be this replica's.
	local := &Local{Replica: "r1", Pauses: []CredentialPause{{Credential: "default", Until: now.Add(time.Minute)}}}
	r, _ = Search(context.Background(), st, "acme/flaky", 1, now, local)
	if r.Kind != "project" || len(r.Statuses) != 1 || !strings.HasPrefix(r.Statuses[0].Waiting, `for its credential "default", paused by Bitbucket's rate limit (429) until `) ||
		!strings.HasSuffix(r.Statuses[0].Waiting, "(this replica's pause)") {
		t.Errorf("%+v", r.Statuses)
	}
	for _, q := range []string{"", "abc", "main", "a b/c", "0123456"[:6], "https://gitlab.example.com/", "ftp://x/y/z"} {
		if _, err := Search(context.Background(), st, q, 1, now, nil); err != ErrQuery {
			t.Errorf("query %q: %v", q, err)
		}
	}
}

func TestPageEscapesWhatCameFromWebhooks(t *testing.T) {
	t.Parallel()
	st := fixture(t)
	now := time.Now()
	o, err := ReadOverview(context.Background(), st, now, &Local{Replica: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Search(context.Background(), st, sha, 1, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, o, sha, &r, nil); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	if strings.Contains(html, "<img") || strings.Contains(html, "<script") || !strings.Contains(html, "acme/&lt;img src=x onerror=alert(1)&gt;") {
		t.Fatalf("markup from a project name reached the page:\n%s", html)
	}
	for _, want := range []string{`<p id="backlog"><strong>1</strong> status pending`, "403", "the key was first posted by another identity",
		"<svg class=\"plot\"", "<title>", "r1"} {
		if !strings.Contains(html, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if o.Servers[0].Posts != 4 || o.Servers[0].Failures != 2 || o.Servers[0].LastFailure == nil {
		t.Errorf("%+v", o.Servers)
	}
}

func TestTextAndJSON(t *testing.T) {
	t.Parallel()
	st := fixture(t)
	now := time.Now()
	o, _ := ReadOverview(context.Background(), st, now, nil)
	var text bytes.Buffer
	if err := o.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Backlog:     1 pending, the oldest accepted ", "Last sweep:  none (the sweep needs GITLAB_TOKEN)",
		"https://api.bitbucket.org/2.0  4 posts  2 failed"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("overview text lacks %q:\n%s", want, text.String())
		}
	}
	r, _ := Search(context.Background(), st, "acme/forbidden", 1, now, nil)
	text.Reset()
	_ = r.WriteText(&text, now)
	for _, want := range []string{"1 status(es) for project acme/forbidden\n", "acme/forbidden on https://api.bitbucket.org/2.0, commit " + sha,
		"  shows: nothing posted yet\n", "post   pipeline 2046 FAILED: 403: Bitbucket refused the request (403 Forbidden)",
		"event  pipeline 2046 FAILED (push, webhook): a new status"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("search text lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	_ = WriteJSON(&js, r)
	var back Result
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Total != 1 || back.Statuses[0].History[0].Code != 403 {
		t.Fatalf("%v %s", err, js.String())
	}
}

// TestPageWeight: a project's search (20 statuses with their last 3
// entries) and a commit's (5 statuses with 20 entries each), all with long
// explanations, stay under 60 KB.
func TestPageWeight(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	long := strings.Repeat("Bitbucket refused the request (403 Forbidden): a long explanation of what to change. ", 24)[:2000]
	for i := range 40 {
		commit := fmt.Sprintf("%040x", i%7)
		r := store.Report{StatusID: fmt.Sprintf("cloud|api|acme/widgets|%s|gitlab/acme/widgets/%d", commit, i), Server: "api", PipelineID: int64(i), State: "FAILED",
			Body: []byte(`{}`), ProjectPath: "acme/widgets", Commit: commit, Source: "push, webhook"}
		for range 12 {
			_, _ = st.Accept(ctx, []store.Report{r}, taken)
			rows, _ := st.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 1})
			for _, row := range rows {
				_, _ = st.Finish(ctx, "w", row, store.Outcome{Done: true, Error: long, Attempt: &store.Attempt{State: "FAILED", Code: 403}})
			}
		}
	}
	now := time.Now()
	o, _ := ReadOverview(ctx, st, now, &Local{Replica: "r1"})
	res, _ := Search(ctx, st, "acme/widgets", 1, now, nil)
	var page bytes.Buffer
	if err := WriteHTML(&page, o, "acme/widgets", &res, nil); err != nil {
		t.Fatal(err)
	}
	if res.Total != 40 || len(res.Statuses) != 20 || page.Len() > 60<<10 {
		t.Fatalf("%d of %d statuses, %d bytes", len(res.Statuses), res.Total, page.Len())
	}
	t.Logf("a project's page with 20 statuses shown: %d bytes", page.Len())
	// Six statuses on one commit (i%7 puts 0, 7, ... 35 on commit 0): every
	// one is shown, with less of its history.
	res, _ = Search(ctx, st, fmt.Sprintf("%040x", 0), 1, now, nil)
	page.Reset()
	if err := WriteHTML(&page, o, res.Query, &res, nil); err != nil {
		t.Fatal(err)
	}
	// Twelve events and twelve posts each: the newest 20 entries, and the
	// event that created the status.
	if res.Total != 6 || len(res.Statuses) != 6 || len(res.Statuses[0].History) != store.HistoryLength+1 || page.Len() > 60<<10 {
		t.Fatalf("%d of %d statuses, %d bytes", len(res.Statuses), res.Total, page.Len())
	}
	t.Logf("a commit's page with 6 statuses: %d bytes", page.Len())
	// Five statuses: each with its whole history.
	res.Statuses = res.Statuses[:5]
	page.Reset()
	if err := WriteHTML(&page, o, res.Query, &res, nil); err != nil {
		t.Fatal(err)
	}
	if strings.Count(page.String(), `<tr class="post`)+strings.Count(page.String(), `<tr class="event`) != 5*(store.HistoryLength+1) || page.Len() > 60<<10 {
		t.Fatalf("5 statuses' whole histories: %d bytes\n%s", page.Len(), page.String())
	}
	t.Logf("a commit's page with 5 statuses and their whole history: %d bytes", page.Len())
}

// TestReadWhatOperatorsPaste: a hash, a path in any case, and the URLs a
// browser shows on GitLab and Bitbucket name what they name.
func TestReadWhatOperatorsPaste(t *testing.T) {
	t.Parallel()
	for q, want := range map[string]string{
		"0123ABC":               "commit 0123abc",
		" acme/widgets/ ":       "project acme/widgets",
		"Acme/Platform/Widgets": "project Acme/Platform/Widgets",
		"https://gitlab.example.com/acme/platform/widgets":                             "project acme/platform/widgets",
		"https://gitlab.example.com/acme/widgets.git":                                  "project acme/widgets",
		"https://gitlab.example.com/acme/widgets/-/pipelines/2045":                     "project acme/widgets",
		"https://gitlab.example.com/acme/widgets/-/merge_requests/12/pipelines":        "project acme/widgets",
		"https://gitlab.example.com/acme/widgets/-/commit/" + sha:                      "commit " + sha,
		"https://gitlab.example.com/acme/widgets/-/commit/" + sha + "?view=inline":     "commit " + sha,
		"https://bitbucket.org/acme/widgets/commits/" + sha[:12]:                       "commit " + sha[:12],
		"https://git.example.com/bitbucket/projects/PROJ/repos/widgets/commits/" + sha: "commit " + sha,
		"https://bitbucket.org/":             "",
		"main":                               "",
		"0123ab":                             "",
		"javascript:alert(1)//a/b":           "",
		"https://gitlab.example.com/widgets": "",
	} {
		kind, value := Read(q)
		if got := strings.TrimSpace(kind + " " + value); got != want {
			t.Errorf("Read(%q) = %q, want %q", q, got, want)
		}
	}
}

// TestWhyNothingAtAll: a commit whose pipelines were all skipped shows no
// status, and says what was received for it and why it was not reported.
func TestWhyNothingAtAll(t *testing.T) {
	t.Parallel()
	st := fixture(t)
	ctx := context.Background()
	quiet := strings.Repeat("c", 40)
	for _, sk := range []store.Skip{
		{Commit: quiet, ProjectPath: "acme/platform/api", PipelineID: 3001, IID: 4, Source: "push", Reason: "subgroup",
			Detail: "acme/platform/api is in a subgroup, which cannot be a Bitbucket workspace: add a route for it (BITBUCKET_RELAY_ROUTES)"},
		{Commit: quiet, ProjectPath: "acme/widgets", PipelineID: 3002, IID: 9, Source: "parent_pipeline", Reason: "child_pipeline",
			Detail: "pipeline 3002 is a child pipeline of pipeline 3000: its parent's status covers it"},
	} {
		if err := st.NoteSkip(ctx, sk); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	r, err := Search(ctx, st, quiet[:8], 1, now, nil)
	if err != nil || r.Total != 0 || len(r.Statuses) != 0 || len(r.Skipped) != 2 {
		t.Fatalf("%+v %v", r, err)
	}
	var text bytes.Buffer
	_ = r.WriteText(&text, now)
	for _, want := range []string{"No status for commit cccccccc: every pipeline received for it was not reported, for the reasons below.",
		"Received and not reported:", "acme/platform/api pipeline 3001 (#4) (push), 1 event(s): subgroup: acme/platform/api is in a subgroup",
		"acme/widgets pipeline 3002 (#9) (parent_pipeline), 1 event(s): child_pipeline: pipeline 3002 is a child pipeline"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	o, _ := ReadOverview(ctx, st, now, nil)
	var page bytes.Buffer
	if err := WriteHTML(&page, o, quiet[:8], &r, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"No status for commit <code>cccccccc</code>", "The relay received pipelines for it and reported none of them",
		"Received and not reported", "<code>subgroup</code>: acme/platform/api is in a subgroup", "3002 (#9)"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// Nothing received at all.
	r, _ = Search(ctx, st, strings.Repeat("d", 40), 1, now, nil)
	text.Reset()
	_ = r.WriteText(&text, now)
	if !strings.Contains(text.String(), "the relay received nothing for it that it reports, or the status was pruned") {
		t.Errorf("%s", text.String())
	}
}

// TestAWaitShowsTheErrorBehindIt: a status paused after a 502 says it
// waits for the pause and still shows the 502; one that never failed is
// not drawn as failed.
func TestAWaitShowsTheErrorBehindIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for i, project := range []string{"acme/after-502", "acme/never-failed"} {
		r := store.Report{StatusID: "cloud|api|" + project + "|" + sha + "|gitlab/" + project, Server: "api", PipelineID: int64(10 + i),
			State: "SUCCESSFUL", Body: []byte(`{}`), ProjectPath: project, Commit: sha}
		if _, err := st.Accept(ctx, []store.Report{r}, taken); err != nil {
			t.Fatal(err)
		}
	}
	rows, _ := st.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 2})
	for _, row := range rows {
		if row.ProjectPath == "acme/after-502" {
			_, _ = st.Finish(ctx, "w", row, store.Outcome{RetryAt: time.Now(), Error: "Bitbucket answered 502 Bad Gateway",
				Attempt: &store.Attempt{State: "SUCCESSFUL", Code: 502}})
		} else {
			_, _ = st.Finish(ctx, "w", row, store.Outcome{RetryAt: time.Now().Add(time.Minute), NotAttempted: true,
				Error: "waiting: the credential is paused by a rate limit"})
		}
	}
	rows, _ = st.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 2})
	for _, row := range rows {
		_, _ = st.Finish(ctx, "w", row, store.Outcome{RetryAt: time.Now().Add(time.Minute), NotAttempted: true,
			Error: "waiting: the credential is paused by a rate limit"})
	}
	res, err := Search(ctx, st, sha, 1, time.Now(), nil)
	if err != nil || len(res.Statuses) != 2 {
		t.Fatalf("%+v %v", res, err)
	}
	// The failing one first.
	after, never := res.Statuses[0], res.Statuses[1]
	if after.Project != "acme/after-502" || !after.Failed || after.LastError != "Bitbucket answered 502 Bad Gateway" ||
		!strings.HasPrefix(after.Waiting, "the credential is paused by a rate limit, until ") {
		t.Errorf("after a 502: %+v", after)
	}
	if never.Failed || never.LastError != "" || !strings.HasPrefix(never.Waiting, "the credential is paused by a rate limit, until ") {
		t.Errorf("never failed: %+v", never)
	}
	o, _ := ReadOverview(ctx, st, time.Now(), nil)
	var page bytes.Buffer
	_ = WriteHTML(&page, o, sha, &res, nil)
	if n := strings.Count(page.String(), `<article class="status pending failed">`); n != 1 {
		t.Errorf("%d statuses drawn as failed, want 1", n)
	}
}

// TestJSONShape: the keys of status --json, snake_case, lists never null,
// times in UTC. Scripts read them: a key that changes fails this test.
func TestJSONShape(t *testing.T) {
	t.Parallel()
	st := fixture(t)
	ctx := context.Background()
	if err := st.RecordSweep(ctx, store.Sweep{Projects: 1, Replica: "r1"}); err != nil {
		t.Fatal(err)
	}
	if err := st.NoteSkip(ctx, store.Skip{Commit: sha, ProjectPath: "acme/widgets", PipelineID: 9, Reason: "child_pipeline"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AcceptPush(ctx, store.Push{ProjectPath: "acme/widgets", Repository: "bitbucket.org/acme/widgets",
		Refs: []store.PushedRef{{Ref: "refs/heads/main", Commit: sha}}}); err != nil {
		t.Fatal(err)
	}
	berlin := time.FixedZone("CET", 3600)
	now := time.Now().In(berlin)
	o, _ := ReadOverview(ctx, st, now, nil)
	r, _ := Search(ctx, st, sha, 1, now, nil)
	empty, _ := Search(ctx, st, strings.Repeat("e", 40), 1, now, nil)
	keys := func(v any) string {
		b, _ := json.Marshal(v)
		var doc any
		_ = json.Unmarshal(b, &doc)
		set := map[string]bool{}
		var walk func(prefix string, v any)
		walk = func(prefix string, v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, x := range v {
					set[prefix+k] = true
					walk(prefix+k+".", x)
				}
			case []any:
				for _, x := range v {
					walk(prefix+"[].", x)
				}
			case string:
				if t, err := time.Parse(time.RFC3339Nano, v); err == nil && !strings.HasSuffix(v, "Z") {
					set["NOT UTC: "+prefix+" "+t.String()] = true
				}
			}
		}
		walk("", doc)
		var out []string
		for k := range set {
			out = append(out, k)
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	const overviewKeys = "last_sweep last_sweep.at last_sweep.posted_again last_sweep.projects last_sweep.queued last_sweep.replica " +
		"last_sweep.verified minutes minutes.[].at minutes.[].failures minutes.[].posts now oldest_pending pending servers " +
		"servers.[].failures_last_hour servers.[].last_failure servers.[].last_failure.at servers.[].last_failure.code " +
		"servers.[].last_failure.detail servers.[].last_failure.status servers.[].posts_last_hour servers.[].server"
	if got := keys(o); got != overviewKeys {
		t.Errorf("overview keys:\n got %s\nwant %s", got, overviewKeys)
	}
	const resultKeys = "kind page pages pushes pushes.[].at pushes.[].detail pushes.[].kind pushes.[].project query skipped skipped.[].at skipped.[].detail skipped.[].events skipped.[].pipeline " +
		"skipped.[].pipeline_iid skipped.[].project skipped.[].reason skipped.[].source statuses statuses.[].attempts statuses.[].commit " +
		"statuses.[].credential statuses.[].description statuses.[].failed statuses.[].gitlab_status statuses.[].history " +
		"statuses.[].history.[].at statuses.[].history.[].code statuses.[].history.[].detail statuses.[].history.[].kind " +
		"statuses.[].history.[].pipeline statuses.[].history.[].pipeline_iid statuses.[].history.[].source statuses.[].history.[].state " +
		"statuses.[].history.[].state_change statuses.[].id statuses.[].key statuses.[].last_error statuses.[].pending " +
		"statuses.[].pipeline statuses.[].pipeline_iid statuses.[].posted_pipeline statuses.[].posted_state statuses.[].project " +
		"statuses.[].repository statuses.[].server statuses.[].state statuses.[].updated_at statuses.[].waiting total value"
	if got := keys(r); got != resultKeys {
		t.Errorf("search keys:\n got %s\nwant %s", got, resultKeys)
	}
	var js bytes.Buffer
	_ = WriteJSON(&js, empty)
	if !strings.Contains(js.String(), `"statuses": []`) || !strings.Contains(js.String(), `"skipped": []`) ||
		!strings.Contains(js.String(), `"pushes": []`) || strings.Contains(js.String(), "null") {
		t.Errorf("an empty answer has null lists:\n%s", js.String())
	}
	js.Reset()
	_ = WriteJSON(&js, o)
	if strings.Contains(js.String(), "+01:00") {
		t.Errorf("a time not in UTC:\n%s", js.String())
	}
}

// TestAPushBeforeItsPipeline: a commit whose push reached the relay and
// whose mirror failed, with no pipeline yet, says so in words on the page
// and in the text: push received, mirror started, mirror failed.
func TestAPushBeforeItsPipeline(t *testing.T) {
	t.Parallel()
	st := fixture(t)
	ctx := context.Background()
	pushed := strings.Repeat("e", 40)
	if _, err := st.AcceptPush(ctx, store.Push{ProjectPath: "acme/widgets", Repository: "bitbucket.org/acme/widgets",
		Refs: []store.PushedRef{{Ref: "refs/heads/main", Commit: pushed}}}); err != nil {
		t.Fatal(err)
	}
	jobs, err := st.ClaimPushes(ctx, store.Claim{Owner: "r1", Lease: time.Minute, Limit: 1})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("%v %v", jobs, err)
	}
	for _, o := range []store.PushOutcome{
		{ProjectID: 7, Events: []store.PushEvent{{Kind: "mirror", Detail: "asked GitLab to update the pull mirror of acme/widgets"}}},
		{ProjectID: 7, Done: true, Events: []store.PushEvent{{Kind: "failed", Detail: "the mirror's Bitbucket credential was refused"}}},
	} {
		if err := st.FinishPush(ctx, "r1", jobs[0], o); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	r, err := Search(ctx, st, pushed, 1, now, nil)
	if err != nil || len(r.Pushes) != 3 {
		t.Fatalf("%+v %v", r, err)
	}
	var text bytes.Buffer
	_ = r.WriteText(&text, now)
	for _, want := range []string{"No status for commit " + pushed + ": no pipeline of it reached the relay yet; its push did (below).",
		"From push to pipeline:",
		"push received (acme/widgets): pushed refs/heads/main to bitbucket.org/acme/widgets; the mirror of acme/widgets is to fetch it",
		"mirror started (acme/widgets): asked GitLab to update the pull mirror of acme/widgets",
		"mirror failed (acme/widgets): the mirror's Bitbucket credential was refused"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	if i, j := strings.Index(text.String(), "push received"), strings.Index(text.String(), "mirror failed"); i > j {
		t.Errorf("the push is not first:\n%s", text.String())
	}
	o, _ := ReadOverview(ctx, st, now, nil)
	var page bytes.Buffer
	if err := WriteHTML(&page, o, pushed, &r, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"No pipeline of it reached the relay yet; its push did (below).", "From push to pipeline",
		`<td data-label="What">push received</td>`, `<td data-label="What">mirror failed</td>`} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}
