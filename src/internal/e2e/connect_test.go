package e2e

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/fakebitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/fakegitlab"
)

// connectRig is a GitLab stand-in (group acme; the upstream takes the
// access token as x-token-auth) and a Bitbucket stand-in, for the relay
// binary's connect.
type connectRig struct {
	gl    *fakegitlab.Server
	bb    *fakebitbucket.Server
	env   []string
	glURL string
}

func newConnectRig(t *testing.T) *connectRig {
	t.Helper()
	r := &connectRig{gl: &fakegitlab.Server{Token: gitlabToken, Interval: 100 * time.Millisecond, UpdateTakes: 30 * time.Millisecond,
		Upstream: fakegitlab.Upstream{User: "x-token-auth", Password: token, Commit: sha}}, bb: &fakebitbucket.Server{Token: token}}
	r.gl.AddGroup("acme", true)
	gs, bs := httptest.NewServer(r.gl), httptest.NewServer(r.bb)
	t.Cleanup(gs.Close)
	t.Cleanup(bs.Close)
	r.glURL = gs.URL
	r.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "GITLAB_URL=" + gs.URL, "GITLAB_TOKEN=" + gitlabToken,
		"BITBUCKET_ACCESS_TOKEN=" + token, "BITBUCKET_API_URL=" + bs.URL + "/2.0", "BITBUCKET_RELAY_PUSH_SECRET=" + pushSecret}
	return r
}

// connect runs the relay binary's connect with stdin.
func (r *connectRig) connect(t *testing.T, stdin string, args ...string) outcome {
	t.Helper()
	cmd := exec.Command(relayBinary, append([]string{"connect"}, args...)...)
	cmd.Env = r.env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	o := outcome{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		o.code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	for _, s := range []string{token, gitlabToken, pushSecret} {
		if strings.Contains(o.stdout+o.stderr, s) {
			t.Errorf("a secret in the output:\n%s%s", o.stdout, o.stderr)
		}
	}
	return o
}

func (r *connectRig) writes() int {
	n := 0
	for _, q := range r.gl.Requests() {
		if q.Method != "GET" {
			n++
		}
	}
	for _, q := range r.bb.Requests() {
		if q.Method != "GET" {
			n++
		}
	}
	return n
}

// TestConnectSetsUpThenChangesNothing: the binary sets a repository up,
// every step said; run again, it writes nothing and says so; exit 0.
func TestConnectSetsUpThenChangesNothing(t *testing.T) {
	t.Parallel()
	r := newConnectRig(t)
	o := r.connect(t, "", "https://bitbucket.org/acme/webapp.git", "--relay-url", "https://relay.example.com")
	if o.code != 0 {
		t.Fatalf("exit %d\n%s%s", o.code, o.stdout, o.stderr)
	}
	for _, want := range []string{
		"connect https://bitbucket.org/acme/webapp.git → GitLab acme/webapp (" + r.glURL + ")\n",
		"  project    created acme/webapp: private; issues, merge requests, wiki and snippets off",
		"  mirror     set (no mirror yet): pulls https://x-token-auth@bitbucket.org/acme/webapp.git with a Bitbucket Cloud access token",
		"  variables  BITBUCKET_ACCESS_TOKEN created (masked and hidden)\n",
		"  webhook    created: repo:push to https://relay.example.com/bitbucket, signed with BITBUCKET_RELAY_PUSH_SECRET\n",
		"  verify     GitLab fetched main at " + sha[:12] + " (update started ",
		"done: 5 change(s).\n",
	} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("the output lacks %q:\n%s", want, o.stdout)
		}
	}
	before := r.writes()
	o = r.connect(t, "", "https://bitbucket.org/acme/webapp.git", "--relay-url", "https://relay.example.com")
	if o.code != 0 || !strings.HasSuffix(o.stdout, "nothing to change.\n") || r.writes() != before {
		t.Errorf("second run: exit %d, %d writes\n%s%s", o.code, r.writes()-before, o.stdout, o.stderr)
	}
}

// TestConnectDryRunAndExitCodes: a dry run prints the plan with secrets
// redacted and writes nothing; a failure is exit 1 and names the step; a
// usage or configuration error is exit 2 before any request.
func TestConnectDryRunAndExitCodes(t *testing.T) {
	t.Parallel()
	r := newConnectRig(t)
	o := r.connect(t, "", "git@bitbucket.org:acme/webapp.git", "--gitlab-project", "acme/webapp", "--relay-url", "https://relay.example.com", "--dry-run")
	if o.code != 0 || r.writes() != 0 || !strings.Contains(o.stdout, "The requests a run would send (secrets redacted):\n  POST "+r.glURL+"/api/v4/projects\n") ||
		!strings.Contains(o.stdout, `"auth_password":"[REDACTED]"`) || !strings.HasSuffix(o.stdout, "dry run: 4 change(s) to make; nothing was written.\n") {
		t.Errorf("exit %d, %d writes:\n%s%s", o.code, r.writes(), o.stdout, o.stderr)
	}
	r.gl.AddGroup("locked", false)
	o = r.connect(t, "", "https://bitbucket.org/acme/webapp.git", "--gitlab-project", "locked/webapp")
	if o.code != 1 || !strings.Contains(o.stdout, "  project    FAILED: GitLab refused to create locked/webapp (400 namespace is not valid)") ||
		!strings.Contains(o.stdout, "FAILED at project. Done: none. Not done: project, mirror, variables, webhook, verify. Run the same command again") {
		t.Errorf("exit %d:\n%s%s", o.code, o.stdout, o.stderr)
	}
	requests := len(r.gl.Requests())
	for _, args := range [][]string{
		{},
		{"https://bitbucket.org/acme/webapp.git", "--relay-url", "http://relay.example.com"},
		{"https://bitbucket.org/acme/webapp.git", "--concurrency", "0"},
		{"ftp://bitbucket.org/acme/webapp.git"},
	} {
		if o := r.connect(t, "", args...); o.code != 2 || o.stderr == "" {
			t.Errorf("%v: exit %d\n%s%s", args, o.code, o.stdout, o.stderr)
		}
	}
	if len(r.gl.Requests()) != requests {
		t.Errorf("a usage error sent requests")
	}
}

// TestConnectMany: a list on standard input, one line per repository and
// a summary; a line GitLab refuses fails alone (exit 1).
func TestConnectMany(t *testing.T) {
	t.Parallel()
	r := newConnectRig(t)
	r.gl.AddGroup("locked", false)
	list := "# three repositories\nhttps://bitbucket.org/acme/one.git\nhttps://bitbucket.org/acme/two.git\nhttps://bitbucket.org/acme/three.git locked/three\n"
	o := r.connect(t, list, "--file", "-", "--concurrency", "2")
	lines := strings.Split(strings.TrimSpace(o.stdout), "\n")
	if o.code != 1 || len(lines) != 5 || lines[3] != "3 repositories: 2 set up, 0 unchanged, 1 failed" ||
		!strings.Contains(o.stdout, "done   acme/one ← https://bitbucket.org/acme/one.git: 4 change(s)") ||
		!strings.Contains(o.stdout, "FAILED locked/three ← https://bitbucket.org/acme/three.git: at project: GitLab refused to create locked/three") {
		t.Errorf("exit %d:\n%s%s", o.code, o.stdout, o.stderr)
	}
	o = r.connect(t, "https://bitbucket.org/acme/one.git\nhttps://bitbucket.org/acme/two.git\n", "--file", "-")
	if o.code != 0 || !strings.Contains(o.stdout, "2 repositories: 0 set up, 2 unchanged, 0 failed") {
		t.Errorf("exit %d:\n%s%s", o.code, o.stdout, o.stderr)
	}
}

// TestConnectKilledMidwayThenRunAgain: the process is killed (SIGKILL)
// while GitLab holds its request to create the variable; the same command
// run again finds the project and mirror made, and makes the rest.
func TestConnectKilledMidwayThenRunAgain(t *testing.T) {
	t.Parallel()
	r := newConnectRig(t)
	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	hold := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/variables") {
			select {
			case <-release:
			default:
				once.Do(func() { close(held) })
				<-release
				http.Error(w, "gone", http.StatusServiceUnavailable)
				return
			}
		}
		r.gl.ServeHTTP(w, req)
	})
	gs := httptest.NewServer(hold)
	t.Cleanup(gs.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	env := append([]string{}, r.env...)
	for i, kv := range env {
		if strings.HasPrefix(kv, "GITLAB_URL=") {
			env[i] = "GITLAB_URL=" + gs.URL
		}
	}
	cmd := exec.Command(relayBinary, "connect", "https://bitbucket.org/acme/webapp.git", "--relay-url", "https://relay.example.com")
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("connect never reached the variables:\n%s", out.String())
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	close(release)
	if p := r.gl.Project("acme/webapp"); p == nil || p.Mirror == nil || len(r.bb.Hooks("acme/webapp")) != 0 {
		t.Fatalf("before the kill: project %v", p)
	}
	o := r.connect(t, "", "https://bitbucket.org/acme/webapp.git", "--relay-url", "https://relay.example.com")
	for _, want := range []string{"  project    found acme/webapp (id ", "  mirror     unchanged: pulls https://x-token-auth@bitbucket.org/acme/webapp.git",
		"  variables  BITBUCKET_ACCESS_TOKEN created (masked and hidden)\n", "  webhook    created: repo:push to https://relay.example.com/bitbucket",
		"done: 3 change(s).\n"} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("the rerun lacks %q:\n%s", want, o.stdout)
		}
	}
	if o.code != 0 {
		t.Errorf("exit %d:\n%s%s", o.code, o.stdout, o.stderr)
	}
}
