package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

const parentKey = "gitlab/acme/widgets"

// permutations lists every order of n events.
func permutations(n int) [][]int {
	if n == 1 {
		return [][]int{{0}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

// TestChildPipelinesNeverChangeTheirParent: a parent pipeline triggers a
// child (trigger: include:) on the same commit; the child has a higher id
// and succeeds, the parent fails. In every order of their four events,
// Bitbucket ends showing the parent's FAILED, and by default the child
// posts nothing at all.
func TestChildPipelinesNeverChangeTheirParent(t *testing.T) {
	t.Parallel()
	bb := newTestBitbucket(t)
	tr := startRelay(t, map[string]string{"BITBUCKET_API_URL": bb.url + "/2.0"}, nil, nil)
	orders := permutations(4)
	skipped := 0
	for n, order := range orders {
		commit := fmt.Sprintf("%040x", 0xc0de00+n)
		parent := pipelineEvent(2000+int64(n)*10, "running", commit)
		events := []gitlab.Pipeline{parent, child(parent, parent.ID+1, "running", "docs"), child(parent, parent.ID+1, "success", "docs"),
			pipelineEvent(parent.ID, "failed", commit)}
		for _, i := range order {
			if tr.event(t, events[i]) == "child_pipeline" {
				skipped++
			}
		}
	}
	idle(t, tr.store, tr.log.String)
	for n, order := range orders {
		commit := fmt.Sprintf("%040x", 0xc0de00+n)
		if got := bb.shown(commit, parentKey); got != "FAILED" {
			t.Errorf("order %v: Bitbucket shows %q for the parent, want FAILED", order, got)
		}
	}
	for _, r := range bb.Requests() {
		var st struct{ Key string }
		if err := json.Unmarshal(r.Body, &st); r.Method == "POST" && (err != nil || st.Key != parentKey) {
			t.Errorf("a child pipeline posted under %q (%v)", st.Key, err)
		}
	}
	if skipped != 2*len(orders) {
		t.Errorf("child pipeline events skipped: %d, want %d", skipped, 2*len(orders))
	}
}

// TestChildPipelinesOwnStatus: with child_pipelines: own_status, a child
// posts under the parent's key and its trigger job's name, the same on
// every rerun; its parent's status is still the parent's alone. The name
// comes from the pipeline's own name, else from GitLab (the parent's trigger
// jobs); without either nothing is posted.
func TestChildPipelinesOwnStatus(t *testing.T) {
	t.Parallel()
	bb := newTestBitbucket(t)
	var bridgeCalls sync.Map
	gl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bridgeCalls.Store(r.URL.Path, true)
		switch r.URL.Path {
		case "/api/v4/projects/42/pipelines/3000/bridges":
			fmt.Fprint(w, `[{"name":"deploy:review","downstream_pipeline":{"id":3001}}]`)
		case "/api/v4/projects/42/pipelines/3010/bridges":
			fmt.Fprint(w, `[]`)
		default:
			// Re-reads: as the webhook said (404 falls back to it).
			w.WriteHeader(404)
			fmt.Fprint(w, `{"message":"404 Not found"}`)
		}
	}))
	t.Cleanup(gl.Close)
	routes := filepath.Join(t.TempDir(), "routes.yml")
	if err := os.WriteFile(routes, []byte("routes:\n  - project: acme/*\n    cloud: acme/{1}\n    child_pipelines: own_status\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := startRelay(t, map[string]string{"BITBUCKET_API_URL": bb.url + "/2.0", "BITBUCKET_RELAY_ROUTES": routes, "GITLAB_URL": gl.URL,
		"GITLAB_TOKEN": "glpat-harness", "BITBUCKET_RELAY_SWEEP_INTERVAL": "0"}, nil, nil)
	commit := fmt.Sprintf("%040x", 0xabc)
	parent := pipelineEvent(3000, "running", commit)
	tr.event(t, parent)
	tr.event(t, child(parent, 3001, "success", ""))    // named by its trigger job, from GitLab
	tr.event(t, child(parent, 3002, "failed", "docs")) // named by workflow:name
	tr.event(t, pipelineEvent(3000, "failed", commit)) // the parent fails
	if why := tr.event(t, child(pipelineEvent(3010, "running", commit), 3011, "success", "")); why != "child_unnamed" {
		t.Errorf("a child with no name anywhere: %q, want child_unnamed", why)
	}
	idle(t, tr.store, tr.log.String)
	for key, want := range map[string]string{parentKey: "FAILED", parentKey + "/deploy:review": "SUCCESSFUL", parentKey + "/docs": "FAILED"} {
		if got := bb.shown(commit, key); got != want {
			t.Errorf("%s: Bitbucket shows %q, want %s\n%s", key, got, want, tr.log.String())
		}
	}
	// A rerun of the parent triggers a new child of the same trigger job:
	// same key, replaced.
	rerun := pipelineEvent(3020, "running", commit)
	tr.event(t, rerun)
	tr.event(t, child(rerun, 3021, "running", "docs"))
	idle(t, tr.store, tr.log.String)
	if got := bb.shown(commit, parentKey+"/docs"); got != "INPROGRESS" {
		t.Errorf("a rerun's child did not replace the child's status: %q", got)
	}
}

// TestMultiProjectDownstreamKeepsItsRoute: a pipeline another project's
// trigger job started (source: pipeline) is its own project's pipeline and
// posts under its own project's key.
func TestMultiProjectDownstreamKeepsItsRoute(t *testing.T) {
	t.Parallel()
	bb := newTestBitbucket(t)
	tr := startRelay(t, map[string]string{"BITBUCKET_API_URL": bb.url + "/2.0"}, nil, nil)
	commit := fmt.Sprintf("%040x", 0xd0)
	up := pipelineEvent(4000, "running", commit)
	down := pipelineEvent(4001, "success", commit)
	down.ProjectID, down.ProjectPath, down.Source, down.ParentProjectID, down.ParentPipelineID = 43, "acme/gadgets", "pipeline", 42, up.ID
	tr.event(t, up)
	tr.event(t, down)
	idle(t, tr.store, tr.log.String)
	want := map[string]bool{
		"/2.0/repositories/acme/widgets/commit/" + commit + "/statuses/build INPROGRESS gitlab/acme/widgets": true,
		"/2.0/repositories/acme/gadgets/commit/" + commit + "/statuses/build SUCCESSFUL gitlab/acme/gadgets": true,
	}
	for _, r := range bb.Requests() {
		var st struct{ Key, State string }
		_ = json.Unmarshal(r.Body, &st)
		if got := r.Path + " " + st.State + " " + st.Key; !want[got] {
			t.Errorf("unexpected %s", got)
		}
	}
	if len(bb.Requests()) != 2 {
		t.Errorf("%+v", bb.Requests())
	}
}

// TestALatePostCannotPutAnOlderStateBack: relay A posts INPROGRESS, and
// Bitbucket holds that request past A's lease, then applies it last. Relay
// B (another replica, one store) takes the status over and posts the newer
// SUCCESSFUL meanwhile. A's request is cut before its lease ends, so the
// relay knows it may still land; once it has, SUCCESSFUL is posted again.
// Bitbucket ends showing SUCCESSFUL, and stays so.
func TestALatePostCannotPutAnOlderStateBack(t *testing.T) {
	t.Parallel()
	bb := newTestBitbucket(t)
	arrived, held, landed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var once sync.Once
	bb.handle = func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		if r.Method != "POST" || !bytes.Contains(body, []byte(`"state":"INPROGRESS"`)) {
			return false
		}
		first := false
		once.Do(func() { first = true })
		if !first {
			return false
		}
		// Held past the lease, then applied, whether A still waits or not.
		close(arrived)
		<-held
		bb.apply(httptest.NewRecorder(), r, body)
		close(landed)
		return true
	}
	st, err := store.OpenSQLite(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	short := func(c *Config) {
		c.lease, c.confirmAfter, c.RetryBase = time.Second, 1500*time.Millisecond, 5*time.Second
	}
	env := map[string]string{"BITBUCKET_API_URL": bb.url + "/2.0"}
	a := startRelay(t, env, st, short)
	b := startRelay(t, env, st, short)
	logs := func() string { return fmt.Sprintf("%+v\nA:\n%sB:\n%s", bb.Requests(), a.log.String(), b.log.String()) }
	commit := fmt.Sprintf("%040x", 0x1a7e)
	a.event(t, pipelineEvent(5000, "running", commit))
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatalf("INPROGRESS never reached Bitbucket\n%s", logs())
	}
	b.event(t, pipelineEvent(5000, "success", commit))
	waitFor(t, "SUCCESSFUL posted", func() bool { return bb.shown(commit, parentKey) == "SUCCESSFUL" }, logs)
	time.Sleep(300 * time.Millisecond)
	close(held) // the INPROGRESS held since before lands last, well after
	<-landed
	waitFor(t, "SUCCESSFUL posted again after the late INPROGRESS", func() bool { return bb.shown(commit, parentKey) == "SUCCESSFUL" }, logs)
	idle(t, st, logs)
	time.Sleep(time.Second)
	if got := bb.shown(commit, parentKey); got != "SUCCESSFUL" {
		t.Fatalf("Bitbucket shows %q\n%s", got, logs())
	}
}

// TestRetentionWithoutGitLab: with no GITLAB_TOKEN (no sweep) the store is
// still pruned: a posted status older than the retention goes.
func TestRetentionWithoutGitLab(t *testing.T) {
	t.Parallel()
	bb := newTestBitbucket(t)
	tr := startRelay(t, map[string]string{"BITBUCKET_API_URL": bb.url + "/2.0"}, nil, func(c *Config) { c.Retention = 200 * time.Millisecond })
	commit := fmt.Sprintf("%040x", 0x7e7)
	tr.event(t, pipelineEvent(6000, "success", commit))
	idle(t, tr.store, tr.log.String)
	id := statusID(Destination{Cloud: &bitbucket.Cloud{API: bb.url + "/2.0", Workspace: "acme", Slug: "widgets"}}, commit, parentKey)
	if row, err := tr.store.Get(context.Background(), id); err != nil || row == nil {
		t.Fatalf("%+v %v", row, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tr.Maintain(ctx)
	waitFor(t, "the status pruned, and said so", func() bool {
		row, err := tr.store.Get(context.Background(), id)
		return err == nil && row == nil && logHas(tr.log, `"msg":"pruned old statuses","statuses":1`)
	}, tr.log.String)
}

// TestStoredWorkWithoutARepositoryIsDropped: a stored row whose work names
// no repository (written by an older or broken writer) is dropped with a
// reason, not a crash of the worker.
func TestStoredWorkWithoutARepositoryIsDropped(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, map[string]string{}, nil, nil)
	rep := store.Report{StatusID: "cloud|x|acme/widgets|" + fmt.Sprintf("%040x", 1) + "|k", Credential: "default", Server: "x", PipelineID: 1,
		State: "SUCCESSFUL", Body: []byte(`{"pipeline":{"ID":1},"destination":{}}`)}
	if _, err := tr.store.Accept(context.Background(), []store.Report{rep}, func(*store.Row, store.Report) (store.Decision, string) { return store.Replace, "" }); err != nil {
		t.Fatal(err)
	}
	tr.nudge()
	idle(t, tr.store, tr.log.String)
	if row, _ := tr.store.Get(context.Background(), rep.StatusID); row == nil || row.LastError != "unreadable stored work: it names no repository" {
		t.Fatalf("%+v\n%s", row, tr.log.String())
	}
}
