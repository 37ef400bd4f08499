package relaystatus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	r, err := Search(context.Background(), st, sha[:9], now, &Local{Replica: "r1", Pauses: []CredentialPause{}})
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
		"acme/forbidden": "for the next event of this status: Bitbucket refused the last post, and a refusal is not retried on its own (the post below says why, and what to change)",
	}
	for project, w := range want {
		if waits[project] != w {
			t.Errorf("%s waits %q, want %q", project, waits[project], w)
		}
	}
	if !strings.HasPrefix(waits["acme/flaky"], "to try again at ") || !strings.HasSuffix(waits["acme/flaky"], ", after 1 attempt(s). Last: Bitbucket answered 503") {
		t.Errorf("flaky waits %q", waits["acme/flaky"])
	}
	// A pause of this replica's is said to be this replica's.
	local := &Local{Replica: "r1", Pauses: []CredentialPause{{Credential: "default", Until: now.Add(time.Minute)}}}
	r, _ = Search(context.Background(), st, "acme/flaky", now, local)
	if r.Kind != "project" || len(r.Statuses) != 1 || !strings.HasPrefix(r.Statuses[0].Waiting, `for its credential "default", paused by Bitbucket's rate limit (429) until `) ||
		!strings.HasSuffix(r.Statuses[0].Waiting, "(this replica's pause)") {
		t.Errorf("%+v", r.Statuses)
	}
	for _, q := range []string{"", "abc", "main", "a b/c", "0123456"[:6]} {
		if _, err := Search(context.Background(), st, q, now, nil); err != ErrQuery {
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
	r, err := Search(context.Background(), st, sha, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, o, &r, nil); err != nil {
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
	r, _ := Search(context.Background(), st, "acme/forbidden", now, nil)
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
	res, _ := Search(ctx, st, "acme/widgets", now, nil)
	var page bytes.Buffer
	if err := WriteHTML(&page, o, &res, nil); err != nil {
		t.Fatal(err)
	}
	if res.Total != 40 || len(res.Statuses) != 20 || page.Len() > 60<<10 {
		t.Fatalf("%d of %d statuses, %d bytes", len(res.Statuses), res.Total, page.Len())
	}
	t.Logf("a project's page with 20 statuses shown: %d bytes", page.Len())
	// Six statuses on one commit (i%7 puts 0, 7, ... 35 on commit 0).
	res, _ = Search(ctx, st, fmt.Sprintf("%040x", 0), now, nil)
	page.Reset()
	if err := WriteHTML(&page, o, &res, nil); err != nil {
		t.Fatal(err)
	}
	if res.Total != 6 || len(res.Statuses) != 5 || len(res.Statuses[0].History) != store.HistoryLength || page.Len() > 60<<10 {
		t.Fatalf("%d of %d statuses, %d bytes", len(res.Statuses), res.Total, page.Len())
	}
	t.Logf("a commit's page with 5 statuses and their whole history: %d bytes", page.Len())
}
