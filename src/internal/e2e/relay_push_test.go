package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/fakegitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/pushhook"
)

const (
	pushSecret = "E2E-PUSH-SECRET-7f3a9c21"
	// mirrorSecret is the Bitbucket credential in the mirror's URL, which
	// GitLab's last_error may repeat.
	mirrorSecret = "ATCTT3xE2EMIRRORSECRET77"
)

// pushRelay is the relay binary with POST /bitbucket on, before a stand-in
// GitLab that keeps pull mirrors as GitLab does (here with a 1 s interval
// standing for its 5 minutes).
func pushRelay(t *testing.T, data string, bb *bitbucket, gl *fakegitlab.Server) (r *relayProc, env []string, gitlabURL string) {
	t.Helper()
	ts := httptest.NewServer(gl)
	t.Cleanup(ts.Close)
	env = []string{"BITBUCKET_API_URL=" + bb.url + "/2.0", "GITLAB_URL=" + ts.URL, "GITLAB_TOKEN=" + gitlabToken,
		"BITBUCKET_RELAY_PUSH_SECRET=" + pushSecret, "BITBUCKET_RELAY_MIRROR_INTERVAL=" + gl.Interval.String(),
		"BITBUCKET_RELAY_SWEEP_INTERVAL=0", "BITBUCKET_RELAY_TEST_REPORTS=false"}
	return startRelay(t, data, env...), env, ts.URL
}

// pushBody is Cloud's repo:push (as documented) moving main of repo to commit.
func pushBody(t *testing.T, repo, commit string) []byte {
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
	r["full_name"], r["name"] = repo, slug
	r["workspace"].(map[string]any)["slug"] = ws
	changes := doc["push"].(map[string]any)["changes"].([]any)
	main := changes[0].(map[string]any)
	main["new"].(map[string]any)["target"].(map[string]any)["hash"] = commit
	doc["push"].(map[string]any)["changes"] = []any{main}
	out, _ := json.Marshal(doc)
	return out
}

// deliverPush posts a push as Bitbucket Cloud does: its headers, the body
// signed with the secret.
func (p *relayProc) deliverPush(body []byte) (int, string) {
	p.t.Helper()
	req, _ := http.NewRequest("POST", "http://"+p.addr+"/bitbucket", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Bitbucket-Webhooks/2.0")
	req.Header.Set("X-Event-Key", pushhook.CloudPush)
	req.Header.Set("X-Request-UUID", "3f1e1cfb-58a2-4a8f-9a6a-6c8e3cbb5d0e")
	req.Header.Set("X-Hub-Signature", pushhook.Sign(pushSecret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(text))
}

func relayStatus(t *testing.T, data string, args ...string) string {
	t.Helper()
	cmd := exec.Command(relayBinary, append([]string{"status"}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "BITBUCKET_RELAY_DATA=" + data}
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// TestRelayPushOutlivesSIGKILLAndAGitLabOutage: a push answered 202 while
// GitLab answers 503 is kept; the relay killed (SIGKILL) and started again
// asks GitLab to update the mirror once GitLab is back, and the update
// that fetched the push started after it.
func TestRelayPushOutlivesSIGKILLAndAGitLabOutage(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	gl := &fakegitlab.Server{Token: gitlabToken, Scopes: []string{"api"}, Interval: time.Second, UpdateTakes: 200 * time.Millisecond}
	mirror := &fakegitlab.Mirror{URL: "https://x-token-auth:" + mirrorSecret + "@bitbucket.org/acme/widgets.git", Enabled: true}
	gl.AddProject("acme/widgets", true, mirror)
	gl.FailNext(1<<30, http.StatusServiceUnavailable)
	data := t.TempDir()
	r, env, _ := pushRelay(t, data, bb, gl)
	pushedAt := time.Now()
	if code, text := r.deliverPush(pushBody(t, "acme/widgets", sha)); code != 202 || text != "accepted: the pull mirror of acme/widgets is to fetch it" {
		t.Fatalf("%d %s", code, text)
	}
	eventually(t, "the relay trying the unavailable GitLab", func() bool { return len(gl.Requests()) >= 2 }, r.log)
	if !strings.Contains(r.log(), `"msg":"mirror job waits for GitLab"`) {
		t.Errorf("the wait is not logged:\n%s", r.log())
	}
	r.kill()
	gl.FailNext(0, 0)
	r = startRelay(t, data, env...)
	eventually(t, "the mirror updated after the push", func() bool {
		var s fakegitlab.Mirror
		gl.Lock(func() { s = *mirror })
		return s.UpdateStatus == "finished" && s.LastUpdateStartedAt.After(pushedAt)
	}, func() string { return mirror.String() + r.log() })
	eventually(t, "the job done", func() bool {
		return r.metric(`bitbucket_relay_mirror_updates_total{result="finished"}`) == 1
	}, r.log)
	if n := r.metric(`bitbucket_relay_mirror_starts_total{result="started"}`); n != 1 {
		t.Errorf("%v starts after the restart, want 1", n)
	}
	if n := r.metric(`bitbucket_relay_push_to_start_seconds_count`); n != 1 {
		t.Errorf("push_to_start_seconds_count %v", n)
	}
	out := relayStatus(t, data, "--commit", sha)
	for _, want := range []string{"From push to pipeline:", "push received (acme/widgets): pushed refs/heads/main to bitbucket.org/acme/widgets",
		"mirror started (acme/widgets): asked GitLab to update the pull mirror of acme/widgets", "mirror updated (acme/widgets): GitLab's mirror of acme/widgets fetched it"} {
		if !strings.Contains(out, want) {
			t.Errorf("status --commit lacks %q:\n%s", want, out)
		}
	}
	if len(bb.Requests()) != 0 {
		t.Errorf("Bitbucket was sent %v: a mirror that fetched posts nothing, the pipeline does", bb.Requests())
	}
	if strings.Contains(r.log(), mirrorSecret) || strings.Contains(r.log(), pushSecret) {
		t.Errorf("a secret in the log:\n%s", r.log())
	}
}

// TestRelayMirrorFailureShowsOnThePushedCommit: the mirror's Bitbucket
// credential is refused; the pushed commit shows FAILED under the key its
// pipeline posts under, with the fix and a link to the mirror settings, no
// secret. When the credential is fixed and the pipeline runs, its status
// replaces the failure.
func TestRelayMirrorFailureShowsOnThePushedCommit(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	gl := &fakegitlab.Server{Token: gitlabToken, Scopes: []string{"api"}, Interval: time.Second, UpdateTakes: 100 * time.Millisecond}
	mirror := &fakegitlab.Mirror{URL: "https://x-token-auth:" + mirrorSecret + "@bitbucket.org/acme/widgets.git", Enabled: true,
		FetchError: "fatal: Authentication failed for 'https://x-token-auth:" + mirrorSecret + "@bitbucket.org/acme/widgets.git/'"}
	gl.AddProject("acme/widgets", true, mirror)
	data := t.TempDir()
	r, _, glURL := pushRelay(t, data, bb, gl)
	if code, _ := r.deliverPush(pushBody(t, "acme/widgets", sha)); code != 202 {
		t.Fatal(code)
	}
	eventually(t, "FAILED on the pushed commit", func() bool {
		s := bb.posted()[statusPath]
		return len(s) == 1 && s[0] == "FAILED"
	}, func() string { return fmt.Sprint(bb.posted()) + r.log() })
	var posted struct{ Key, State, Name, Description, URL string }
	for _, req := range bb.Requests() {
		if req.Method == "POST" {
			_ = json.Unmarshal(req.Body, &posted)
		}
	}
	if posted.Key != "gitlab/acme/widgets" || posted.Name != "GitLab: acme/widgets" ||
		posted.URL != glURL+"/acme/widgets/-/settings/repository#js-push-remote-settings" {
		t.Errorf("posted %+v", posted)
	}
	const fix = "the mirror's Bitbucket credential was refused: update it in GitLab, Settings > Repository > Mirroring repositories"
	if !strings.HasPrefix(posted.Description, "GitLab could not fetch this commit: fatal: Authentication failed for 'https://x-token-auth:[REDACTED]@bitbucket.org/acme/widgets.git/': "+fix[:40]) {
		t.Errorf("description %q", posted.Description)
	}
	if n := r.metric(`bitbucket_relay_mirror_updates_total{result="failed"}`); n != 1 {
		t.Errorf("mirror_updates_total failed %v", n)
	}
	if out := relayStatus(t, data, "--commit", sha); !strings.Contains(out, "mirror failed (acme/widgets): fatal: Authentication failed") ||
		strings.Contains(out, mirrorSecret) {
		t.Errorf("status --commit:\n%s", out)
	}
	// Fixed in GitLab; the next update fetches, the pipeline runs.
	gl.Lock(func() { mirror.FetchError = "" })
	if code, _ := r.send("Pipeline Hook", hook("acme/widgets", 101, 2045, 7, "success", sha, "main", "2026-12-04T10:00:00Z")); code != 202 {
		t.Fatal(code)
	}
	eventually(t, "the pipeline's status over the failure", func() bool {
		s := bb.posted()[statusPath]
		return len(s) == 2 && s[1] == "SUCCESSFUL"
	}, func() string { return fmt.Sprint(bb.posted()) + r.log() })
	for _, req := range bb.Requests() {
		if strings.Contains(string(req.Body), mirrorSecret) {
			t.Errorf("Bitbucket was sent the mirror's credential: %s", req.Body)
		}
	}
	if strings.Contains(r.log(), mirrorSecret) {
		t.Errorf("the mirror's credential in the log:\n%s", r.log())
	}
}
