package relay

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store/storetest"
)

// standInGitLab keeps each pipeline's record as GitLab does, and answers
// the relay's re-reads (GET /api/v4/projects/:id/pipelines/:id) with it as
// it is now.
type standInGitLab struct {
	url       string
	mu        sync.Mutex
	pipelines map[int64]gitlab.Pipeline
}

func newStandInGitLab(t *testing.T) *standInGitLab {
	t.Helper()
	g := &standInGitLab{pipelines: map[int64]gitlab.Pipeline{}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v4/"), "/")
		if len(parts) == 4 && parts[0] == "projects" && parts[2] == "pipelines" {
			id, _ := strconv.ParseInt(parts[3], 10, 64)
			g.mu.Lock()
			p, ok := g.pipelines[id]
			g.mu.Unlock()
			if ok {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(apiRecord(p))
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"message":"404 Not found"}`)
	}))
	t.Cleanup(ts.Close)
	g.url = ts.URL
	return g
}

// set makes p the pipeline's record now.
func (g *standInGitLab) set(p gitlab.Pipeline) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pipelines[p.ID] = p
}

// apiRecord is a pipeline as GitLab's API shows it.
func apiRecord(p gitlab.Pipeline) map[string]any {
	rec := map[string]any{"id": p.ID, "iid": p.IID, "project_id": p.ProjectID, "sha": p.SHA, "ref": p.Ref, "tag": p.Tag,
		"status": p.Status, "source": p.Source, "web_url": p.URL, "created_at": p.CreatedAt.Format(time.RFC3339Nano), "finished_at": nil}
	if !p.FinishedAt.IsZero() {
		rec["finished_at"] = p.FinishedAt.Format(time.RFC3339Nano)
	}
	return rec
}

// A history is what GitLab did to one commit's pipelines, one change a
// step, and the webhooks it sent: each change is delivered by its own job,
// which reads the pipeline's record when it runs (so it may carry a later
// state), and deliveries arrive late, twice, in any order.
type history struct {
	commit string
	steps  []gitlab.Pipeline // the record after each change
	// deliveries by the step at which they arrive; past the last step:
	// after everything, in any order.
	deliveries map[int][]gitlab.Pipeline
}

// finals are GitLab's words for a pipeline that ended.
var finals = []string{"success", "failed", "canceled"}

// randomHistory makes one commit's history: pipeline 1 runs, ends, and may
// be retried (a job retried, a manual job played) and end again, as often
// as twice; a second, newer pipeline may follow, which may be skipped ([ci
// skip], only optional manual jobs). With final, the last change leaves
// every pipeline ended (without GitLab to ask, a retry still running after
// a final state cannot be told from a late event).
func randomHistory(rng *rand.Rand, n int, final bool) history {
	h := history{commit: fmt.Sprintf("%040x", 0x5eed0000+n), deliveries: map[int][]gitlab.Pipeline{}}
	clock := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	tick := func() time.Time { clock = clock.Add(time.Minute); return clock }
	first := pipelineEvent(int64(10000+n*10), "created", h.commit)
	first.IID = int64(n)
	change := func(p *gitlab.Pipeline, status string) {
		p.Status = status
		p.FinishedAt = time.Time{}
		if status == "skipped" || status == "success" || status == "failed" || status == "canceled" {
			p.FinishedAt = tick()
		}
		h.steps = append(h.steps, *p)
	}
	p := first
	change(&p, "created")
	change(&p, []string{"pending", "running"}[rng.IntN(2)])
	if rng.IntN(4) == 0 {
		change(&p, "manual") // blocked on a manual job, then played
		change(&p, "running")
	}
	change(&p, finals[rng.IntN(3)])
	for range rng.IntN(3) {
		change(&p, "running") // a job retried, or a manual job played
		if !final && rng.IntN(3) == 0 {
			break // still running at the end
		}
		change(&p, finals[rng.IntN(3)])
	}
	if rng.IntN(3) == 0 {
		second := pipelineEvent(first.ID+1, "created", h.commit)
		second.IID = first.IID + 1
		second.Source = []string{"push", "schedule", "web"}[rng.IntN(3)]
		if rng.IntN(2) == 0 {
			change(&second, "skipped")
		} else {
			change(&second, "running")
			change(&second, finals[rng.IntN(3)])
		}
	}
	// Each change is one delivery job, which reads the record when it runs:
	// at its own step or up to two later. It arrives up to three steps
	// later, or after everything; one in five is delivered twice.
	for i, st := range h.steps {
		built := min(i+rng.IntN(3), len(h.steps)-1)
		payload := h.steps[built]
		for i := built; i >= 0; i-- {
			// The record of the same pipeline at build time.
			if h.steps[i].ID == st.ID {
				payload = h.steps[i]
				break
			}
		}
		copies := 1 + min(rng.IntN(5), 1)
		for range copies {
			at := built + rng.IntN(4)
			if rng.IntN(6) == 0 {
				at = len(h.steps) + 1
			}
			h.deliveries[at] = append(h.deliveries[at], payload)
		}
	}
	return h
}

// expected is what Bitbucket must show at the end: GitLab's newest
// pipeline of the commit, unless it was skipped and an older one ran.
func (h history) expected() string {
	last := map[int64]gitlab.Pipeline{}
	var newest int64
	for _, p := range h.steps {
		last[p.ID] = p
		newest = max(newest, p.ID)
	}
	show := last[newest]
	if show.Status == "skipped" {
		for id, p := range last {
			if id != newest {
				show = p
			}
		}
	}
	st, _ := state.Parse(show.Status)
	return string(st)
}

// TestRandomHistoriesEndAsGitLab: for random histories of retried,
// re-run, blocked, skipped and superseded pipelines, delivered late,
// twice and out of order, Bitbucket ends showing what GitLab shows, on
// both stores, with GITLAB_TOKEN (the relay re-reads) and without (then
// only histories whose last change leaves every pipeline ended: without
// GitLab a retry running after a final state cannot be told from a late
// event). BITBUCKET_RELAY_TEST_SEED repeats a run.
func TestRandomHistoriesEndAsGitLab(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BITBUCKET_RELAY_TEST_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (BITBUCKET_RELAY_TEST_SEED=%d repeats it)", seed, seed)
	for _, kind := range storetest.Kinds {
		for _, withGitLab := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/gitlab=%v", kind, withGitLab), func(t *testing.T) {
				t.Parallel()
				rng := rand.New(rand.NewPCG(seed, uint64(len(kind))*2+map[bool]uint64{true: 1}[withGitLab]))
				bb := newTestBitbucket(t)
				env := map[string]string{"BITBUCKET_API_URL": bb.url + "/2.0"}
				gl := newStandInGitLab(t)
				if withGitLab {
					env["GITLAB_URL"], env["GITLAB_TOKEN"], env["BITBUCKET_RELAY_SWEEP_INTERVAL"] = gl.url, "glpat-history", "0"
					env["BITBUCKET_RELAY_TEST_REPORTS"] = "false"
				}
				tr := startRelay(t, env, storetest.Open(t, kind), nil)
				histories := make([]history, 60)
				steps := 0
				for i := range histories {
					histories[i] = randomHistory(rng, i, !withGitLab)
					steps = max(steps, len(histories[i].steps)+2)
				}
				for step := 0; step < steps; step++ {
					for _, h := range histories {
						if step < len(h.steps) {
							gl.set(h.steps[step])
						} else if step == len(h.steps) {
							for _, p := range h.steps {
								// Every pipeline's last record.
								gl.set(p)
							}
						}
						arriving := h.deliveries[step]
						if step == steps-1 {
							for at, d := range h.deliveries {
								if at >= steps-1 {
									arriving = append(arriving, d...)
								}
							}
						}
						rng.Shuffle(len(arriving), func(i, j int) { arriving[i], arriving[j] = arriving[j], arriving[i] })
						for _, p := range arriving {
							tr.event(t, p)
						}
					}
					if rng.IntN(2) == 0 {
						// Let the posts of this step happen before GitLab moves on.
						idle(t, tr.store, tr.log.String)
					}
				}
				idle(t, tr.store, tr.log.String)
				for i, h := range histories {
					want := h.expected()
					if got := bb.shown(h.commit, parentKey); got != want {
						var story []string
						for _, p := range h.steps {
							story = append(story, fmt.Sprintf("%d:%s", p.ID, p.Status))
						}
						t.Errorf("history %d: Bitbucket shows %q, GitLab %q\nGitLab: %s\n%s", i, got, want, strings.Join(story, " → "),
							historyOf(t, tr, h.commit))
					}
				}
			})
		}
	}
}

// historyOf is what the relay's store says of a commit's statuses.
func historyOf(t *testing.T, tr *testRelay, commit string) string {
	t.Helper()
	found, _, err := tr.store.Find(t.Context(), store.Find{Commit: commit, Limit: 5, History: store.HistoryLength})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, f := range found {
		fmt.Fprintf(&b, "stored pipeline %d %s, posted %s for %d, pending %v, error %q\n", f.PipelineID, f.State, f.PostedState,
			f.PostedPipeline, f.Pending, f.LastError)
		for i := len(f.History) - 1; i >= 0; i-- {
			e := f.History[i]
			fmt.Fprintf(&b, "  %s %d %s (%s) %d: %s\n", e.Kind, e.PipelineID, e.State, e.Source, e.Code, e.Detail)
		}
	}
	return b.String()
}

// postedStates are the states posted for a commit, in order, and the
// description of the last.
func postedStates(bb *testBitbucket, commit string) ([]string, string) {
	var states []string
	last := ""
	for _, r := range bb.Requests() {
		if r.Method != "POST" || !strings.Contains(r.Path, commit) || r.Code >= 300 {
			continue
		}
		var st struct{ State, Description string }
		_ = json.Unmarshal(r.Body, &st)
		states, last = append(states, st.State), st.Description
	}
	return states, last
}

// TestARerunThatEndsAsBefore: with GITLAB_TOKEN, a pipeline that ends,
// is run again (a job retried, a manual deploy job played) and ends as
// before is posted again when it ends: the re-read had posted INPROGRESS,
// and the last webhook must not be taken for a duplicate of the stored
// event. Each step waits for its post, as a real pipeline's minutes do.
func TestARerunThatEndsAsBefore(t *testing.T) {
	t.Parallel()
	for _, kind := range storetest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			bb := newTestBitbucket(t)
			gl := newStandInGitLab(t)
			tr := startRelay(t, map[string]string{"BITBUCKET_API_URL": bb.url + "/2.0", "GITLAB_URL": gl.url, "GITLAB_TOKEN": "glpat-rerun",
				"BITBUCKET_RELAY_SWEEP_INTERVAL": "0", "BITBUCKET_RELAY_TEST_REPORTS": "false"}, storetest.Open(t, kind), nil)
			for i, final := range []string{"failed", "success", "canceled"} {
				commit := fmt.Sprintf("%040x", 0xe0e0+i)
				p := pipelineEvent(int64(5000+i), "running", commit)
				step := func(status string, finished time.Time) {
					p.Status, p.FinishedAt = status, finished
					gl.set(p)
					tr.event(t, p)
					idle(t, tr.store, tr.log.String)
				}
				t1 := p.CreatedAt.Add(5 * time.Minute)
				step("running", time.Time{})
				step(final, t1)
				step("running", time.Time{})
				step(final, t1.Add(10*time.Minute))
				st, _ := state.Parse(final)
				want := []string{"INPROGRESS", string(st), "INPROGRESS", string(st)}
				if got, _ := postedStates(bb, commit); strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("%s, rerun, %s again: posted %v, want %v\n%s", final, final, got, want, historyOf(t, tr, commit))
				}
			}
		})
	}
}

// TestASkippedPipelineNeverErasesAResult: a newer pipeline of the same
// commit that was skipped ([ci skip], git push -o ci.skip, only optional
// manual jobs) ran nothing: it never replaces another pipeline's state, in
// either order of arrival; alone it says skipped, and is never FAILED on
// any server (Data Center 7.x, which has no CANCELLED, gets SUCCESSFUL
// "Skipped: ...").
func TestASkippedPipelineNeverErasesAResult(t *testing.T) {
	t.Parallel()
	for _, kind := range storetest.Kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			bb := newTestBitbucket(t)
			tr := startRelay(t, map[string]string{"BITBUCKET_API_URL": bb.url + "/2.0"}, storetest.Open(t, kind), nil)
			skippedOf := func(p gitlab.Pipeline) gitlab.Pipeline {
				s := pipelineEvent(p.ID+1, "skipped", p.SHA)
				s.IID = p.IID + 1
				return s
			}
			// The earlier pipeline passed; the skipped one comes after.
			passed := pipelineEvent(6000, "success", fmt.Sprintf("%040x", 0x5c1))
			tr.event(t, passed)
			idle(t, tr.store, tr.log.String)
			tr.event(t, skippedOf(passed))
			idle(t, tr.store, tr.log.String)
			if got, _ := postedStates(bb, passed.SHA); strings.Join(got, ",") != "SUCCESSFUL" {
				t.Errorf("a skipped pipeline after a passed one: posted %v, want only SUCCESSFUL\n%s", got, historyOf(t, tr, passed.SHA))
			}
			// The skipped one arrives first, the earlier one's events after.
			failed := pipelineEvent(6010, "running", fmt.Sprintf("%040x", 0x5c2))
			tr.event(t, skippedOf(failed))
			idle(t, tr.store, tr.log.String)
			tr.event(t, failed)
			failed.Status, failed.FinishedAt = "failed", failed.CreatedAt.Add(time.Minute)
			tr.event(t, failed)
			idle(t, tr.store, tr.log.String)
			if got := bb.shown(failed.SHA, parentKey); got != "FAILED" {
				t.Errorf("an earlier pipeline's events after a skipped one: Bitbucket shows %q, want FAILED\n%s", got, historyOf(t, tr, failed.SHA))
			}
			// Alone: skipped, never failed.
			alone := pipelineEvent(6020, "skipped", fmt.Sprintf("%040x", 0x5c3))
			tr.event(t, alone)
			idle(t, tr.store, tr.log.String)
			if got, desc := postedStates(bb, alone.SHA); strings.Join(got, ",") != "STOPPED" || desc != "Pipeline #5020 on main was skipped" {
				t.Errorf("a skipped pipeline alone: posted %v %q, want STOPPED \"Pipeline #5020 on main was skipped\"", got, desc)
			}
		})
	}
}

// TestASkippedPipelineOnDataCenter7: Data Center before 8.0 has no
// CANCELLED: a skipped pipeline alone is SUCCESSFUL "Skipped: ...", not
// FAILED as a canceled one is.
func TestASkippedPipelineOnDataCenter7(t *testing.T) {
	t.Parallel()
	bb := newTestBitbucket(t)
	bb.DataCenterVersion = "7.21"
	tr := startRelay(t, map[string]string{"BITBUCKET_SERVER_URL": bb.url, "BITBUCKET_PROJECT": "PROJ"}, nil, nil)
	alone := pipelineEvent(6030, "skipped", fmt.Sprintf("%040x", 0x5c4))
	tr.event(t, alone)
	canceled := pipelineEvent(6040, "canceled", fmt.Sprintf("%040x", 0x5c5))
	tr.event(t, canceled)
	idle(t, tr.store, tr.log.String)
	if got, desc := postedStates(bb, alone.SHA); strings.Join(got, ",") != "SUCCESSFUL" || desc != "Skipped: Pipeline #5030 on main was skipped" {
		t.Errorf("skipped on 7.21: posted %v %q, want SUCCESSFUL \"Skipped: Pipeline #5030 on main was skipped\"\n%s", got, desc, tr.log.String())
	}
	if got, desc := postedStates(bb, canceled.SHA); strings.Join(got, ",") != "FAILED" || desc != "Canceled: Pipeline #5040 on main was canceled" {
		t.Errorf("canceled on 7.21: posted %v %q, want FAILED \"Canceled: Pipeline #5040 on main was canceled\"", got, desc)
	}
}

// TestABlockedPipelineSaysWhatItWaitsFor: a pipeline waiting on a manual
// job is not "running": its status and the store say which job it waits
// for.
func TestABlockedPipelineSaysWhatItWaitsFor(t *testing.T) {
	t.Parallel()
	bb := newTestBitbucket(t)
	tr := startRelay(t, map[string]string{"BITBUCKET_API_URL": bb.url + "/2.0"}, nil, nil)
	body, err := os.ReadFile("../gitlab/testdata/pipeline-manual.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := gitlab.ParsePipelineHook(body)
	if err != nil {
		t.Fatal(err)
	}
	tr.event(t, p)
	idle(t, tr.store, tr.log.String)
	const want = "Pipeline #7 on main waits for a manual action: deploy-production, stop-review"
	if got, desc := postedStates(bb, p.SHA); strings.Join(got, ",") != "INPROGRESS" || desc != want {
		t.Errorf("posted %v %q, want INPROGRESS %q", got, desc, want)
	}
	found, _, err := tr.store.Find(t.Context(), store.Find{Commit: p.SHA, Limit: 5})
	if err != nil || len(found) != 1 || found[0].GitLabStatus != "manual" || found[0].Description != want {
		t.Errorf("stored %+v, %v; want GitLab's status manual and the description", found, err)
	}
}

// TestALinkBitbucketWouldRefuseIsReplaced: a pipeline's web_url that is not
// http(s), not on GITLAB_URL's host, or a single-label host Bitbucket Cloud
// refuses, is not sent: the pipeline's page on GITLAB_URL is, else the
// commit's page on Bitbucket. The status is posted either way.
func TestALinkBitbucketWouldRefuseIsReplaced(t *testing.T) {
	t.Parallel()
	bb := newTestBitbucket(t)
	gl := newStandInGitLab(t)
	without := startRelay(t, map[string]string{"BITBUCKET_API_URL": bb.url + "/2.0"}, nil, nil)
	with := startRelay(t, map[string]string{"BITBUCKET_API_URL": bb.url + "/2.0", "GITLAB_URL": gl.url, "GITLAB_TOKEN": "glpat-links",
		"BITBUCKET_RELAY_SWEEP_INTERVAL": "0", "BITBUCKET_RELAY_TEST_REPORTS": "false"}, nil, nil)
	for i, c := range []struct {
		relay *testRelay
		link  string
		want  string // %s: the commit; %d: the pipeline
	}{
		{without, "javascript:alert(document.cookie)", "https://bitbucket.org/acme/widgets/commits/%s"},
		{without, "http://gitlab:8080/acme/widgets/-/pipelines/%d", "https://bitbucket.org/acme/widgets/commits/%s"},
		{without, "https://gitlab.example.com/acme/widgets/-/pipelines/%d", "https://gitlab.example.com/acme/widgets/-/pipelines/%d"},
		{with, "javascript:alert(1)", gl.url + "/acme/widgets/-/pipelines/%d"},
		{with, "https://phish.example.net/acme/widgets/-/pipelines/%d", gl.url + "/acme/widgets/-/pipelines/%d"},
		{with, gl.url + "/acme/widgets/-/pipelines/%d", gl.url + "/acme/widgets/-/pipelines/%d"},
	} {
		commit := fmt.Sprintf("%040x", 0x11c0+i)
		p := pipelineEvent(int64(7000+i), "success", commit)
		fill := func(s string) string {
			s = strings.Replace(s, "%s", commit, 1)
			return strings.Replace(s, "%d", strconv.FormatInt(p.ID, 10), 1)
		}
		p.URL = fill(c.link)
		gl.set(p)
		c.relay.event(t, p)
		idle(t, c.relay.store, c.relay.log.String)
		var shown struct{ State, URL string }
		_ = json.Unmarshal(bb.Shown(commit, parentKey), &shown)
		if shown.State != "SUCCESSFUL" || shown.URL != fill(c.want) {
			t.Errorf("web_url %s: Bitbucket shows %s %q, want SUCCESSFUL %q\n%s", p.URL, shown.State, shown.URL, fill(c.want), c.relay.log.String())
		}
	}
}
