package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/fakebitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
)

const (
	webhookToken = "E2E-WEBHOOK-TOKEN-51c7"
	gitlabToken  = "E2E-GITLAB-TOKEN-0d2e"
)

// bitbucket is the stand-in for Bitbucket with a switch: "up", "down"
// (503 for everything), "429" (Cloud's plain-text rate limit) or "hang" (no
// answer).
type bitbucket struct {
	*fakebitbucket.Server
	url  string
	mode atomic.Value
	hits atomic.Int64
}

func newBitbucket(t *testing.T) *bitbucket {
	t.Helper()
	b := &bitbucket{Server: &fakebitbucket.Server{Token: token}}
	b.mode.Store("up")
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		switch b.mode.Load() {
		case "hang":
			// Until the client gives up or the test ends the hang.
			for b.mode.Load() == "hang" && r.Context().Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
			w.WriteHeader(http.StatusServiceUnavailable)
		case "down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "429":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, "Rate limit for this resource has been exceeded")
		default:
			b.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(ts.Close)
	b.url = ts.URL
	return b
}

// posted returns, per status path and key, the states Bitbucket took, in order.
func (b *bitbucket) posted() map[string][]string {
	out := map[string][]string{}
	for _, r := range b.Requests() {
		if r.Method != "POST" || r.Code >= 300 {
			continue
		}
		var st struct{ Key, State string }
		_ = json.Unmarshal(r.Body, &st)
		k := r.Path + " " + st.Key
		out[k] = append(out[k], st.State)
	}
	return out
}

// relayProc is a running bitbucket-status-relay.
type relayProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
	code int
}

func startRelay(t *testing.T, dataDir string, env ...string) *relayProc {
	t.Helper()
	p := &relayProc{t: t, done: make(chan struct{})}
	p.cmd = exec.Command(relayBinary, "serve")
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "BITBUCKET_RELAY_LISTEN=127.0.0.1:0",
		"BITBUCKET_RELAY_DATA=" + dataDir, "BITBUCKET_RELAY_WEBHOOK_TOKEN=" + webhookToken, "BITBUCKET_ACCESS_TOKEN=" + token,
		"BITBUCKET_RELAY_RETRY_BASE=200ms", "BITBUCKET_RELAY_PAUSE_BASE=400ms"}, env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			var l struct{ Msg, Address string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" {
				listening <- l.Address
			}
		}
	}()
	go func() {
		err := p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		_ = err
		close(p.done)
	}()
	t.Cleanup(func() { p.kill(); p.checkNoSecret() })
	select {
	case p.addr = <-listening:
	case <-p.done:
		t.Fatalf("the relay exited (%d) before listening:\n%s", p.code, p.log())
	case <-time.After(10 * time.Second):
		t.Fatalf("the relay did not listen within 10s:\n%s", p.log())
	}
	return p
}

func (p *relayProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *relayProc) checkNoSecret() {
	for _, s := range []string{token, webhookToken, gitlabToken} {
		if strings.Contains(p.log(), s) {
			p.t.Errorf("the relay logged a secret %q", s)
		}
	}
}

func (p *relayProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends sig and returns the exit code.
func (p *relayProc) stop(sig syscall.Signal) int {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("the relay did not exit within 30s of %s", sig)
	}
	return p.code
}

// send delivers a webhook and returns the answer's code and text.
func (p *relayProc) send(event string, body []byte, headers ...string) (int, string) {
	p.t.Helper()
	req, _ := http.NewRequest("POST", "http://"+p.addr+"/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gitlab-Event", event)
	req.Header.Set("X-Gitlab-Token", webhookToken)
	for i := 0; i < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(text))
}

// sendQuiet delivers a Pipeline Hook; a connection error is code 0.
func (p *relayProc) sendQuiet(body []byte) (int, string) {
	req, _ := http.NewRequest("POST", "http://"+p.addr+"/webhook", bytes.NewReader(body))
	req.Header.Set("X-Gitlab-Event", "Pipeline Hook")
	req.Header.Set("X-Gitlab-Token", webhookToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(text)
}

func (p *relayProc) get(path string) (int, string) {
	p.t.Helper()
	resp, err := http.Get("http://" + p.addr + path)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(text)
}

// metric returns one sample's value from /metrics, or -1.
func (p *relayProc) metric(sample string) float64 {
	_, text := p.get("/metrics")
	for _, line := range strings.Split(text, "\n") {
		if name, value, ok := strings.Cut(line, " "); ok && name == sample {
			var v float64
			fmt.Sscan(value, &v)
			return v
		}
	}
	return -1
}

// hook is a Pipeline Hook body in GitLab 17+'s shape.
func hook(project string, projectID, id, iid int64, status, commit, ref, finishedAt string) []byte {
	var doc map[string]any
	data, err := os.ReadFile("../gitlab/testdata/pipeline-iso-format.json")
	if err != nil {
		panic(err)
	}
	_ = json.Unmarshal(data, &doc)
	a := doc["object_attributes"].(map[string]any)
	a["id"], a["iid"], a["status"], a["sha"], a["ref"] = id, iid, status, commit, ref
	a["url"] = fmt.Sprintf("https://gitlab.example.com/%s/-/pipelines/%d", project, id)
	if finishedAt != "" {
		a["finished_at"] = finishedAt
	}
	pr := doc["project"].(map[string]any)
	pr["id"], pr["path_with_namespace"] = projectID, project
	pr["web_url"] = "https://gitlab.example.com/" + project
	out, _ := json.Marshal(doc)
	return out
}

// eventually waits up to 15s for cond.
func eventually(t *testing.T, what string, cond func() bool, diag func() string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s\n%s", what, diag())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const statusPath = "/2.0/repositories/acme/widgets/commit/" + sha + "/statuses/build gitlab/acme/widgets"

func TestRelayPipelineLifecycle(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	r := startRelay(t, t.TempDir(), "BITBUCKET_API_URL="+bb.url+"/2.0")
	diag := func() string { return fmt.Sprintf("%+v\n%s", bb.Requests(), r.log()) }

	// running, then success; then the late "running" of the same pipeline,
	// a duplicate success, and a late event of an older pipeline: ignored.
	for _, c := range []struct {
		body []byte
		code int
		text string
	}{
		{hook("acme/widgets", 42, 2045, 7, "running", sha, "main", ""), 202, "accepted"},
		{hook("acme/widgets", 42, 2045, 7, "success", sha, "main", "2026-11-25T10:04:00.000Z"), 202, "accepted"},
		{hook("acme/widgets", 42, 2045, 7, "running", sha, "main", ""), 202, "accepted: nothing new for this status"},
		{hook("acme/widgets", 42, 2045, 7, "success", sha, "main", "2026-11-25T10:04:00.000Z"), 202, "accepted: nothing new for this status"},
		{hook("acme/widgets", 42, 2044, 6, "failed", sha, "main", "2026-11-25T10:05:00.000Z"), 202, "accepted: nothing new for this status"},
	} {
		if code, text := r.send("Pipeline Hook", c.body); code != c.code || text != c.text {
			t.Fatalf("got %d %q, want %d %q\n%s", code, text, c.code, c.text, r.log())
		}
	}
	eventually(t, "SUCCESSFUL posted", func() bool {
		s := bb.posted()[statusPath]
		return len(s) > 0 && s[len(s)-1] == "SUCCESSFUL"
	}, diag)
	// A newer pipeline on the same commit (a retry as a new pipeline) is
	// canceled: STOPPED, the same key, one status.
	if code, _ := r.send("Pipeline Hook", hook("acme/widgets", 42, 2046, 8, "canceled", sha, "main", "2026-11-25T10:06:00.000Z")); code != 202 {
		t.Fatal(code)
	}
	eventually(t, "STOPPED posted", func() bool {
		s := bb.posted()[statusPath]
		return len(s) > 0 && s[len(s)-1] == "STOPPED"
	}, diag)
	states := bb.posted()[statusPath]
	// Coalescing may skip INPROGRESS if success arrived before it was
	// posted; nothing else may appear, and nothing twice.
	if got := strings.Join(states, ","); got != "INPROGRESS,SUCCESSFUL,STOPPED" && got != "SUCCESSFUL,STOPPED" {
		t.Fatalf("posted %s\n%s", got, diag())
	}
	last := bb.Requests()[len(bb.Requests())-1]
	if string(last.Body) != `{"key":"gitlab/acme/widgets","state":"STOPPED","name":"GitLab: acme/widgets #8","description":"Pipeline #8 on main was canceled",`+
		`"url":"https://gitlab.example.com/acme/widgets/-/pipelines/2046","refname":"main"}` || last.Auth != "Bearer" {
		t.Fatalf("%+v", last)
	}

	// The Go client's example payload: old timestamp format, no url or iid.
	old, err := os.ReadFile("../gitlab/testdata/pipeline-old-format.json")
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := r.send("Pipeline Hook", old); code != 202 {
		t.Fatal(code)
	}
	eventually(t, "the old-format payload posted", func() bool {
		return len(bb.posted()["/2.0/repositories/gitlab-org/gitlab-test/commit/bcbb5ec396a2c0f828686f14fac9b80b780504f2/statuses/build gitlab/gitlab-org/gitlab-test"]) == 1
	}, diag)
	if r.metric(`bitbucket_relay_events_total{kind="pipeline",outcome="unchanged"}`) != 3 || r.metric(`bitbucket_relay_pending_statuses`) != 0 {
		t.Fatalf("metrics:\n%s", func() string { _, m := r.get("/metrics"); return m }())
	}
	if code := r.stop(syscall.SIGTERM); code != 0 || !strings.Contains(r.log(), `"msg":"stopped"`) {
		t.Fatalf("SIGTERM: exit %d\n%s", code, r.log())
	}
}

func TestRelayRefusesAndIgnores(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	r := startRelay(t, t.TempDir(), "BITBUCKET_API_URL="+bb.url+"/2.0", "BITBUCKET_RELAY_MAX_BODY=4096")
	running := hook("acme/widgets", 42, 2045, 7, "running", sha, "main", "")
	for _, c := range []struct {
		name    string
		event   string
		body    []byte
		headers []string
		code    int
		text    string
	}{
		{"no token", "Pipeline Hook", running, []string{"X-Gitlab-Token", ""}, 401, "no X-Gitlab-Token: set the webhook's secret token to BITBUCKET_RELAY_WEBHOOK_TOKEN"},
		{"wrong token", "Pipeline Hook", running, []string{"X-Gitlab-Token", "guess"}, 401, "wrong X-Gitlab-Token"},
		{"oversized", "Pipeline Hook", bytes.Repeat([]byte(" "), 5000), nil, 413, "body over 4096 bytes (BITBUCKET_RELAY_MAX_BODY)"},
		{"not a pipeline", "Pipeline Hook", []byte(`{"object_kind":"push"}`), nil, 400, `not a pipeline payload: object_kind is "push", not "pipeline"`},
		{"a push hook", "Push Hook", []byte(`{"object_kind":"push"}`), nil, 200, "ignored: not a Pipeline Hook"},
		{"a subgroup without a route", "Pipeline Hook", hook("acme/platform/widgets", 43, 3000, 1, "running", sha, "main", ""), nil, 200,
			"not reported: acme/platform/widgets is in a subgroup, which cannot be a Bitbucket workspace: add a route for it (BITBUCKET_RELAY_ROUTES)"},
	} {
		if code, text := r.send(c.event, c.body, c.headers...); code != c.code || text != c.text {
			t.Errorf("%s: got %d %q, want %d %q", c.name, code, text, c.code, c.text)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(bb.Requests()); n != 0 {
		t.Fatalf("%d requests reached Bitbucket: %+v", n, bb.Requests())
	}
	for sample, want := range map[string]float64{
		`bitbucket_relay_events_total{kind="pipeline",outcome="unauthorized"}`: 2,
		`bitbucket_relay_events_total{kind="pipeline",outcome="too_large"}`:    1,
		`bitbucket_relay_events_total{kind="pipeline",outcome="bad_request"}`:  1,
		`bitbucket_relay_events_total{kind="other",outcome="ignored"}`:         1,
		`bitbucket_relay_skipped_total{reason="subgroup"}`:                     1,
	} {
		if got := r.metric(sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
	if code, text := r.get("/healthz"); code != 200 || text != "ok\n" {
		t.Errorf("healthz: %d %q", code, text)
	}
	if code, text := r.get("/readyz"); code != 200 || text != "ready\n" {
		t.Errorf("readyz: %d %q", code, text)
	}
}

func TestRelaySignedWebhooks(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	const signing = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := gitlab.ParseSigningKey(signing)
	r := startRelay(t, t.TempDir(), "BITBUCKET_API_URL="+bb.url+"/2.0", "BITBUCKET_RELAY_WEBHOOK_TOKEN=", "BITBUCKET_RELAY_SIGNING_TOKEN="+signing)
	body := hook("acme/widgets", 42, 2045, 7, "running", sha, "main", "")
	signed := func(id string, at time.Time, b []byte) []string {
		return []string{"X-Gitlab-Token", "", "webhook-id", id, "webhook-timestamp", fmt.Sprint(at.Unix()), "webhook-signature", key.Sign(id, at.Unix(), b)}
	}
	if code, text := r.send("Pipeline Hook", body, signed("msg_1", time.Now(), body)...); code != 202 {
		t.Fatalf("valid signature: %d %s", code, text)
	}
	for _, c := range []struct {
		name    string
		headers []string
		text    string
	}{
		{"replayed ten minutes later", signed("msg_1", time.Now().Add(-10*time.Minute), body),
			"signature: webhook-timestamp is 10m0s old, more than 5m0s: a replay, or a clock off"},
		{"body changed", signed("msg_2", time.Now(), append([]byte(" "), body...)), "signature: no valid signature: the signing token differs, or the body was changed"},
		{"unsigned", []string{"X-Gitlab-Token", ""}, "signature: webhook-id, webhook-timestamp or webhook-signature is missing"},
	} {
		if code, text := r.send("Pipeline Hook", body, c.headers...); code != 401 || text != c.text {
			t.Errorf("%s: %d %q, want 401 %q", c.name, code, text, c.text)
		}
	}
	eventually(t, "one post", func() bool { return len(bb.posted()[statusPath]) == 1 }, func() string { return r.log() })
}

// TestRelayLosesNothingOnSIGKILL: a status answered 202 while Bitbucket was
// down is posted after the relay is killed and started again.
func TestRelayLosesNothingOnSIGKILL(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	bb.mode.Store("down")
	data := t.TempDir()
	env := []string{"BITBUCKET_API_URL=" + bb.url + "/2.0"}
	r := startRelay(t, data, env...)
	for i := range 5 {
		commit := fmt.Sprintf("%040x", i+1)
		if code, _ := r.send("Pipeline Hook", hook("acme/widgets", 42, int64(100+i), int64(i+1), "success", commit, "main", "2026-11-25T10:00:00Z")); code != 202 {
			t.Fatal(code)
		}
	}
	eventually(t, "attempts against the down Bitbucket", func() bool { return bb.hits.Load() >= 5 }, r.log)
	r.kill()
	bb.mode.Store("up")
	r = startRelay(t, data, env...)
	eventually(t, "all five posted after the restart", func() bool { return len(bb.posted()) == 5 }, func() string { return r.log() })
	for k, states := range bb.posted() {
		if len(states) != 1 || states[0] != "SUCCESSFUL" {
			t.Errorf("%s: %v", k, states)
		}
	}
}

// TestRelayRateLimitStorm: during Cloud 429s the credential pauses with a
// growing backoff instead of hammering Bitbucket; afterwards everything is
// posted, the newest state of each status once.
func TestRelayRateLimitStorm(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	bb.mode.Store("429")
	r := startRelay(t, t.TempDir(), "BITBUCKET_API_URL="+bb.url+"/2.0")
	for i := range 10 {
		commit := fmt.Sprintf("%040x", i+1)
		for _, st := range []string{"running", "success"} {
			finished := ""
			if st == "success" {
				finished = "2026-11-25T10:00:00Z"
			}
			if code, _ := r.send("Pipeline Hook", hook("acme/widgets", 42, int64(100+i), int64(i+1), st, commit, "main", finished)); code != 202 {
				t.Fatal(code)
			}
		}
	}
	time.Sleep(3 * time.Second)
	during := bb.hits.Load()
	// Pauses of 0.4, 0.8, 1.6 s (±20%) in 3 s: a few requests per pause (one
	// per worker in flight when the 429 came), not one per status per retry.
	if during > 40 {
		t.Errorf("%d requests during a 3 s storm", during)
	}
	bb.mode.Store("up")
	eventually(t, "all ten posted after the storm", func() bool { return len(bb.posted()) == 10 }, func() string { return r.log() })
	for k, states := range bb.posted() {
		if len(states) != 1 || states[0] != "SUCCESSFUL" {
			t.Errorf("%s: %v (coalesced: the newest state once)", k, states)
		}
	}
	if !strings.Contains(r.log(), `"error":"Bitbucket answered 429 Too Many Requests: Rate limit for this resource has been exceeded; `+
		`the credential's hourly rate limit is used up: every post with it waits, longer each time the limit is still reached. `+
		`Give busy projects a credential of their own (a route with its own credential)"`) {
		t.Errorf("the 429 is not explained in the log:\n%s", r.log())
	}
	t.Logf("%d requests during the storm, %d in all, for 10 statuses", during, bb.hits.Load())
}

// gitlabAPI is a stand-in for GitLab's pipelines API: what GitLab says now.
type gitlabAPI struct {
	mu        sync.Mutex
	pipelines map[int64]map[string]any // by pipeline id
	// summaries and testReports are the test_report_summary and
	// test_report answers, by pipeline id; a number is a status code.
	summaries, testReports map[int64]string
	// testDelay holds the test report answers back this long.
	testDelay time.Duration
	url       string
}

func newGitLabAPI(t *testing.T) *gitlabAPI {
	g := &gitlabAPI{pipelines: map[int64]map[string]any{}, summaries: map[int64]string{}, testReports: map[int64]string{}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("PRIVATE-TOKEN") != gitlabToken {
			w.WriteHeader(401)
			_, _ = io.WriteString(w, `{"message":"401 Unauthorized"}`)
			return
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		var id int64
		switch {
		case r.URL.Path == "/api/v4/projects/42/pipelines":
			var list []map[string]any
			for _, p := range g.pipelines {
				list = append(list, p)
			}
			_ = json.NewEncoder(w).Encode(list)
		case r.URL.Path == "/api/v4/version":
			_, _ = io.WriteString(w, `{"version":"18.6.0"}`)
		case r.URL.Path == "/api/v4/projects/42":
			_, _ = io.WriteString(w, `{"id":42,"path_with_namespace":"acme/widgets","import_url":null}`)
		case strings.HasSuffix(r.URL.Path, "/test_report_summary") || strings.HasSuffix(r.URL.Path, "/test_report"):
			if g.testDelay > 0 {
				g.mu.Unlock()
				time.Sleep(g.testDelay)
				g.mu.Lock()
			}
			answers := g.summaries
			if strings.HasSuffix(r.URL.Path, "/test_report") {
				answers = g.testReports
			}
			_, _ = fmt.Sscanf(r.URL.Path, "/api/v4/projects/42/pipelines/%d", &id)
			answer, ok := answers[id]
			if code, err := strconv.Atoi(answer); !ok || err == nil {
				w.WriteHeader(max(code, 404))
				_, _ = io.WriteString(w, `{"message":"error"}`)
				return
			}
			_, _ = io.WriteString(w, answer)
		default:
			if _, err := fmt.Sscanf(r.URL.Path, "/api/v4/projects/42/pipelines/%d", &id); err != nil || g.pipelines[id] == nil {
				w.WriteHeader(404)
				_, _ = io.WriteString(w, `{"message":"404 Not found"}`)
				return
			}
			_ = json.NewEncoder(w).Encode(g.pipelines[id])
		}
	}))
	t.Cleanup(ts.Close)
	g.url = ts.URL
	return g
}

func (g *gitlabAPI) set(id int64, status, commit string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pipelines[id] = map[string]any{"id": id, "iid": id - 2038, "project_id": 42, "sha": commit, "ref": "main", "tag": false, "status": status,
		"web_url": fmt.Sprintf("https://gitlab.example.com/acme/widgets/-/pipelines/%d", id), "created_at": "2026-11-25T10:00:00.000Z",
		"updated_at": time.Now().UTC().Format(time.RFC3339Nano)}
}

// TestRelayRereadsAndSweeps: with GITLAB_TOKEN the relay posts what GitLab
// says now, not what a late event said; and the sweep posts a pipeline
// whose webhook never arrived.
func TestRelayRereadsAndSweeps(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	gl := newGitLabAPI(t)
	r := startRelay(t, t.TempDir(), "BITBUCKET_API_URL="+bb.url+"/2.0", "GITLAB_URL="+gl.url, "GITLAB_TOKEN="+gitlabToken,
		"BITBUCKET_RELAY_SWEEP_INTERVAL=1s")
	gl.set(2045, "failed", sha)
	if code, _ := r.send("Pipeline Hook", hook("acme/widgets", 42, 2045, 7, "running", sha, "main", "")); code != 202 {
		t.Fatal(code)
	}
	eventually(t, "FAILED, as GitLab says now", func() bool {
		s := bb.posted()[statusPath]
		return len(s) == 1 && s[0] == "FAILED"
	}, func() string { return fmt.Sprint(bb.posted()) + r.log() })
	// A pipeline on another commit whose webhook GitLab never delivered.
	other := strings.Repeat("b", 40)
	gl.set(2050, "success", other)
	eventually(t, "the swept pipeline posted", func() bool {
		s := bb.posted()["/2.0/repositories/acme/widgets/commit/"+other+"/statuses/build gitlab/acme/widgets"]
		return len(s) == 1 && s[0] == "SUCCESSFUL"
	}, func() string { return fmt.Sprint(bb.posted()) + r.log() })
	// Sweeping again posts nothing new: it reads back what Bitbucket shows,
	// which is what was posted.
	time.Sleep(2500 * time.Millisecond)
	posts, reads := 0, 0
	for _, req := range bb.Requests() {
		switch {
		case req.Method == "POST":
			posts++
		case req.Method == "GET" && req.Code == 200:
			reads++
		default:
			t.Errorf("unexpected %s %s: %d", req.Method, req.Path, req.Code)
		}
	}
	if posts != 2 || reads == 0 {
		t.Errorf("%d posts (want 2), %d reads back: %+v", posts, reads, bb.Requests())
	}
}

// TestRelayRoutesFile: a subgroup routed to a Cloud repository with a
// credential read from a file, and a Data Center route.
func TestRelayRoutesFile(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	routes := filepath.Join(dir, "routes.yml")
	if err := os.WriteFile(routes, []byte(`
credentials:
  platform:
    token_file: `+tokenFile+`
routes:
  - project: acme/platform/*
    cloud: acme/platform-{1}
    credential: platform
  - project: legacy/**
    data_center: `+bb.url+`/bitbucket
    repository: LEG/{name}
    credential: platform
    key: gitlab/{path}
  - project: sandbox/**
    skip: true
`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startRelay(t, t.TempDir(), "BITBUCKET_API_URL="+bb.url+"/2.0", "BITBUCKET_ACCESS_TOKEN=", "BITBUCKET_RELAY_ROUTES="+routes)
	for _, project := range []string{"acme/platform/widgets", "legacy/a/b/gadgets"} {
		if code, text := r.send("Pipeline Hook", hook(project, 7, 9000, 1, "success", sha, "main", "2026-11-25T10:00:00Z")); code != 202 {
			t.Fatalf("%s: %d %s", project, code, text)
		}
	}
	if code, text := r.send("Pipeline Hook", hook("sandbox/x", 8, 9001, 1, "success", sha, "main", "")); code != 200 || !strings.Contains(text, "says skip") {
		t.Fatalf("sandbox: %d %s", code, text)
	}
	eventually(t, "both routes posted", func() bool { return len(bb.posted()) == 2 }, func() string { return fmt.Sprint(bb.Requests()) + r.log() })
	want := map[string][]string{
		"/2.0/repositories/acme/platform-widgets/commit/" + sha + "/statuses/build gitlab/acme/platform/widgets":     {"SUCCESSFUL"},
		"/bitbucket/rest/api/latest/projects/LEG/repos/gadgets/commits/" + sha + "/builds gitlab/legacy/a/b/gadgets": {"SUCCESSFUL"},
	}
	if got := bb.posted(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

func TestRelayConfigurationErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env  []string
		want string
	}{
		{nil, "bitbucket-status-relay: neither BITBUCKET_RELAY_WEBHOOK_TOKEN nor BITBUCKET_RELAY_SIGNING_TOKEN is set, so anyone could post statuses: " +
			"set BITBUCKET_RELAY_WEBHOOK_TOKEN to the webhook's secret token (or BITBUCKET_RELAY_SIGNING_TOKEN to its signing token, GitLab 19.0+)\n"},
		{[]string{"BITBUCKET_RELAY_WEBHOOK_TOKEN=" + webhookToken}, "bitbucket-status-relay: no Bitbucket credential: set BITBUCKET_ACCESS_TOKEN " +
			"(or BITBUCKET_OAUTH_CLIENT_ID and BITBUCKET_OAUTH_CLIENT_SECRET), or a routes file (BITBUCKET_RELAY_ROUTES) whose routes name credentials\n"},
		{[]string{"BITBUCKET_RELAY_WEBHOOK_TOKEN=" + webhookToken, "BITBUCKET_ACCESS_TOKEN=" + token, "GITLAB_TOKEN=" + gitlabToken},
			"bitbucket-status-relay: GITLAB_URL and GITLAB_TOKEN go together: set both (a read_api token and GitLab's base URL) or neither\n"},
		{[]string{"BITBUCKET_RELAY_WEBHOOK_TOKEN=" + webhookToken, "BITBUCKET_ACCESS_TOKEN=" + token, "BITBUCKET_RELAY_SWEEP_INTERVAL=often"},
			"bitbucket-status-relay: BITBUCKET_RELAY_SWEEP_INTERVAL is \"often\": use a duration such as 10m, or 0 to turn the sweep off\n"},
		{[]string{"BITBUCKET_RELAY_SIGNING_TOKEN=not-base64!", "BITBUCKET_ACCESS_TOKEN=" + token},
			"bitbucket-status-relay: BITBUCKET_RELAY_SIGNING_TOKEN is not a signing token: expected whsec_ followed by base64, as GitLab shows it\n"},
		{[]string{"BITBUCKET_RELAY_WEBHOOK_TOKEN=" + webhookToken, "BITBUCKET_ACCESS_TOKEN=" + token, "BITBUCKET_RELAY_STATUS_TOKEN=" + webhookToken},
			"bitbucket-status-relay: BITBUCKET_RELAY_STATUS_TOKEN is the webhook's token: give the status page a token of its own, so one cannot be used for the other\n"},
		{[]string{"BITBUCKET_RELAY_WEBHOOK_TOKEN=" + webhookToken, "BITBUCKET_ACCESS_TOKEN=" + token, "BITBUCKET_RELAY_STATUS_TOKEN=tiny-token"},
			"bitbucket-status-relay: BITBUCKET_RELAY_STATUS_TOKEN is shorter than 16 characters: use a long random one (openssl rand -hex 24)\n"},
		{[]string{"BITBUCKET_RELAY_WEBHOOK_TOKEN=" + webhookToken, "BITBUCKET_ACCESS_TOKEN=" + token, "BITBUCKET_RELAY_MIRROR_PROJECTS=PROJ"},
			"bitbucket-status-relay: BITBUCKET_RELAY_MIRROR_PROJECTS names Data Center project keys, but BITBUCKET_SERVER_URL is not set: set the server they are on\n"},
		{[]string{"BITBUCKET_RELAY_WEBHOOK_TOKEN=" + webhookToken, "BITBUCKET_ACCESS_TOKEN=" + token, "BITBUCKET_RELAY_RETENTION=5m"},
			"bitbucket-status-relay: BITBUCKET_RELAY_RETENTION is \"5m\": use a duration of at least 1h, such as 720h (30 days)\n"},
	} {
		cmd := exec.Command(relayBinary, "serve")
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, c.env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 2 || stderr.String() != c.want {
			t.Errorf("%v: exit %d (%v)\n got %q\nwant %q", c.env, code, err, stderr.String(), c.want)
		}
		for _, s := range []string{token, webhookToken, gitlabToken} {
			if strings.Contains(stderr.String(), s) {
				t.Errorf("%v: a secret in the error", c.env)
			}
		}
	}
}

func TestRelayCheckAndVersion(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	gl := newGitLabAPI(t)
	dir := t.TempDir()
	routes := filepath.Join(dir, "routes.yml")
	_ = os.WriteFile(routes, []byte("routes:\n  - project: acme/*\n    cloud: acme/widgets\n  - project: other/*\n    cloud: acme/missing\n"), 0o600)
	cmd := exec.Command(relayBinary, "check")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "BITBUCKET_RELAY_WEBHOOK_TOKEN=" + webhookToken, "BITBUCKET_ACCESS_TOKEN=" + token,
		"BITBUCKET_API_URL=" + bb.url + "/2.0", "BITBUCKET_RELAY_ROUTES=" + routes, "GITLAB_URL=" + gl.url, "GITLAB_TOKEN=" + gitlabToken}
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 ||
		!strings.Contains(string(out), "ok: GitLab at "+gl.url+" answers with GITLAB_TOKEN (version 18.6.0)\n") ||
		!strings.Contains(string(out), "ok: route 1 (acme/*): credential \"default\" can read acme/widgets at "+bb.url+"/2.0\n") ||
		!strings.Contains(string(out), "FAILED: route 2 (other/*): credential \"default\" can read acme/missing at "+bb.url+"/2.0: Bitbucket found no repository acme/missing") ||
		!strings.Contains(string(out), "bitbucket-status-relay: 1 check(s) failed\n") {
		t.Fatalf("exit %d:\n%s", cmd.ProcessState.ExitCode(), out)
	}
	for _, r := range bb.Requests() {
		if r.Method != "GET" {
			t.Errorf("check sent %s %s", r.Method, r.Path)
		}
	}
	out, err := exec.Command(relayBinary, "version").Output()
	if err != nil || string(out) != "bitbucket-status-relay 9.9.9-e2e\n" {
		t.Fatalf("%q %v", out, err)
	}
}

// TestRelayBitbucketDownThenBack: statuses accepted while Bitbucket is
// down are retried with backoff and posted, the newest of each once, when it
// is back, without a restart.
func TestRelayBitbucketDownThenBack(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	bb.mode.Store("down")
	r := startRelay(t, t.TempDir(), "BITBUCKET_API_URL="+bb.url+"/2.0")
	for i := range 10 {
		commit := fmt.Sprintf("%040x", i+100)
		for _, st := range []string{"running", "failed"} {
			if code, _ := r.send("Pipeline Hook", hook("acme/widgets", 42, int64(500+i), int64(i+1), st, commit, "main", "2026-11-25T10:00:00Z")); code != 202 {
				t.Fatal(code)
			}
		}
	}
	time.Sleep(2 * time.Second)
	during := bb.hits.Load()
	bb.mode.Store("up")
	eventually(t, "all ten posted when Bitbucket is back", func() bool { return len(bb.posted()) == 10 }, func() string { return r.log() })
	for k, states := range bb.posted() {
		if len(states) != 1 || states[0] != "FAILED" {
			t.Errorf("%s: %v", k, states)
		}
	}
	// Three failures in a row open the server's breaker: its statuses wait,
	// then one post at a time tries it, with a growing pause; not a retry
	// per status, and not a busy loop.
	if during > 20 {
		t.Errorf("%d requests in 2 s of outage for 10 statuses", during)
	}
	if r.metric(`bitbucket_relay_posts_total{code="503",outcome="retry"}`) < 3 {
		t.Errorf("retries not counted:\n%s", func() string { _, m := r.get("/metrics"); return m }())
	}
	if !strings.Contains(r.log(), `"msg":"Bitbucket server keeps failing: its breaker is open, its statuses wait","server":"`+bb.url+`/2.0"`) ||
		!strings.Contains(r.log(), `"msg":"Bitbucket server answers again: its breaker is closed"`) {
		t.Errorf("the breaker is not logged:\n%s", r.log())
	}
}

func TestRelayHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(relayBinary, "--help").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"BITBUCKET_RELAY_LISTEN (default :8080)", "BITBUCKET_RELAY_WEBHOOK_TOKEN", "BITBUCKET_RELAY_SIGNING_TOKEN",
		"BITBUCKET_RELAY_DATA (default ./relay-data)", "BITBUCKET_RELAY_ROUTES", "GITLAB_URL", "GITLAB_TOKEN",
		"BITBUCKET_RELAY_SWEEP_INTERVAL (default 10m)", "BITBUCKET_ACCESS_TOKEN", "BITBUCKET_SERVER_URL", "Exit codes: 0 ok; 1",
		"BITBUCKET_RELAY_STATUS_TOKEN", "BITBUCKET_RELAY_RETENTION (default 720h)", "BITBUCKET_RELAY_READ_BUDGET (default 33554432)",
		"BITBUCKET_RELAY_MIRROR_WORKSPACES", "BITBUCKET_RELAY_SERVER_WORKERS", "bitbucket-status-relay status [--commit SHA | --project PATH] [--json]"} {
		if !strings.Contains(string(out), v) {
			t.Errorf("--help lacks %q", v)
		}
	}
}

// TestRelayRefusalIsExplainedAndRetriedByTheNextEvent: a 403 is not retried
// on its own; it is logged with the job binary's explanation and counted, and
// the next event for the status tries again.
func TestRelayRefusalIsExplainedAndRetriedByTheNextEvent(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	r := startRelay(t, t.TempDir(), "BITBUCKET_API_URL="+bb.url+"/2.0")
	send := func(st string) {
		finished := ""
		if st != "running" {
			finished = "2026-11-25T10:04:00Z"
		}
		if code, _ := r.send("Pipeline Hook", hook("acme/forbidden", 43, 2045, 7, st, sha, "main", finished)); code != 202 {
			t.Fatal(code)
		}
	}
	send("success")
	refused := `bitbucket_relay_posts_total{code="403",outcome="refused"}`
	eventually(t, "the refusal counted", func() bool { return r.metric(refused) == 1 }, r.log)
	if !strings.Contains(r.log(), `Bitbucket refused the request (403 Forbidden): Your credentials lack one or more required privilege scopes.`) ||
		!strings.Contains(r.log(), `only the account that created a status (or a repository admin) may overwrite it`) {
		t.Fatalf("the 403 is not explained:\n%s", r.log())
	}
	time.Sleep(time.Second)
	if n := len(bb.Requests()); n != 1 {
		t.Fatalf("a refusal was retried on its own: %d requests", n)
	}
	send("success") // the same state again: the next event tries again
	eventually(t, "the next event tried again", func() bool { return r.metric(refused) == 2 }, r.log)
}

// TestRelaySweepsRoutedProjects: a project a route names by its exact path is
// swept before any webhook of its reaches the relay.
func TestRelaySweepsRoutedProjects(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	gl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("PRIVATE-TOKEN") != gitlabToken:
			w.WriteHeader(401)
		case r.URL.EscapedPath() == "/api/v4/projects/acme%2Fgadgets":
			_, _ = io.WriteString(w, `{"id":43}`)
		case r.URL.Path == "/api/v4/projects/43/pipelines":
			_, _ = io.WriteString(w, `[{"id":3001,"iid":3,"project_id":43,"sha":"`+sha+`","ref":"main","status":"failed","web_url":"https://gitlab.example.com/acme/gadgets/-/pipelines/3001"}]`)
		case r.URL.Path == "/api/v4/projects/43/pipelines/3001":
			_, _ = io.WriteString(w, `{"id":3001,"iid":3,"project_id":43,"sha":"`+sha+`","ref":"main","tag":false,"status":"failed","web_url":"https://gitlab.example.com/acme/gadgets/-/pipelines/3001"}`)
		default:
			w.WriteHeader(404)
			_, _ = io.WriteString(w, `{"message":"404 Not found"}`)
		}
	}))
	t.Cleanup(gl.Close)
	routes := filepath.Join(t.TempDir(), "routes.yml")
	_ = os.WriteFile(routes, []byte("routes:\n  - project: acme/gadgets\n    cloud: acme/gadgets\n"), 0o600)
	r := startRelay(t, t.TempDir(), "BITBUCKET_API_URL="+bb.url+"/2.0", "GITLAB_URL="+gl.URL, "GITLAB_TOKEN="+gitlabToken,
		"BITBUCKET_RELAY_ROUTES="+routes)
	eventually(t, "the routed project's pipeline posted by the sweep", func() bool {
		s := bb.posted()["/2.0/repositories/acme/gadgets/commit/"+sha+"/statuses/build gitlab/acme/gadgets"]
		return len(s) == 1 && s[0] == "FAILED"
	}, func() string { return fmt.Sprint(bb.Requests()) + r.log() })
}
