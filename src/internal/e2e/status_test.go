package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const statusToken = "E2E-STATUS-TOKEN-6a1f55e0"

// get with HTTP Basic.
func (p *relayProc) getAs(path, user, password string) (*http.Response, string) {
	p.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+p.addr+path, nil)
	if password != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestStatusPageIsOffUnlessConfigured: without BITBUCKET_RELAY_STATUS_TOKEN
// the page does not exist; the webhook's token does not open it.
func TestStatusPageIsOffUnlessConfigured(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	r := startRelay(t, t.TempDir(), "BITBUCKET_API_URL="+bb.url+"/2.0")
	for _, path := range []string{"/status", "/status?q=" + sha, "/status/style.css"} {
		if resp, _ := r.getAs(path, "admin", webhookToken); resp.StatusCode != 404 {
			t.Errorf("%s without a status token: %d", path, resp.StatusCode)
		}
	}
}

// TestStatusPage: who may see it, what it shows, and that what came from a
// webhook is text.
func TestStatusPage(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	data := t.TempDir()
	r := startRelay(t, data, "BITBUCKET_API_URL="+bb.url+"/2.0", "BITBUCKET_RELAY_STATUS_TOKEN="+statusToken)
	for _, body := range [][]byte{
		hook("acme/widgets", 42, 2045, 7, "success", sha, "main", "2026-11-25T10:04:00Z"),
		hook("acme/forbidden", 43, 2046, 8, "failed", sha, "main", "2026-11-25T10:04:00Z"),
		hook("acme/<img src=x onerror=alert(1)>", 44, 2047, 9, "running", sha, "main", ""),
	} {
		if code, text := r.send("Pipeline Hook", body); code != 202 {
			t.Fatalf("%d %s", code, text)
		}
	}
	eventually(t, "the three posted", func() bool {
		_, page := r.getAs("/status?q="+sha[:8], "x", statusToken)
		return strings.Count(page, `<tr class="post">`) == 3
	}, r.log)
	for _, c := range []struct{ user, password string }{{"", ""}, {"admin", "wrong"}, {"admin", webhookToken}, {"admin", token}} {
		resp, _ := r.getAs("/status", c.user, c.password)
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Basic realm="bitbucket-status-relay"`) {
			t.Errorf("%q/%q: %d %v", c.user, c.password, resp.StatusCode, resp.Header)
		}
	}
	// Three wrong passwords (the first request carried none): counted, and
	// logged without what was tried.
	if n := r.metric(`bitbucket_relay_status_logins_total{outcome="refused"}`); n != 3 {
		t.Errorf("refused logins counted: %v, want 3", n)
	}
	if !strings.Contains(r.log(), `"msg":"status page login refused: wrong password"`) || strings.Contains(r.log(), `"wrong"`) {
		t.Errorf("a refused login is not logged, or its password is:\n%s", r.log())
	}
	resp, page := r.getAs("/status?q="+sha[:8], "anyone", statusToken)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'" ||
		resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	if strings.Contains(page, "<img") || strings.Contains(page, "<script") || !strings.Contains(page, "acme/&lt;img src=x onerror=alert(1)&gt;") {
		t.Fatalf("markup from a webhook reached the page:\n%s", page)
	}
	for _, want := range []string{"3 statuses for commit", "Bitbucket refused the request (403 Forbidden)", "only the account that created a status",
		`<strong>0</strong> statuses pending`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, secret := range []string{token, webhookToken, statusToken} {
		if strings.Contains(page, secret) {
			t.Errorf("the page shows a secret")
		}
	}
	if resp, css := r.getAs("/status/style.css", "x", statusToken); resp.StatusCode != 200 || !strings.Contains(css, "article.status") {
		t.Errorf("style.css: %d", resp.StatusCode)
	}
	// The terminal: the same store, read directly.
	cmd := exec.Command(relayBinary, "status", "--commit", sha[:10])
	cmd.Env = []string{"PATH=/usr/bin:/bin", "BITBUCKET_RELAY_DATA=" + data}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "3 status(es) for commit "+sha[:10]) ||
		!strings.Contains(string(out), "post   pipeline 2046 (#8) FAILED: 403: Bitbucket refused the request (403 Forbidden)") {
		t.Fatalf("status --commit: %v\n%s", err, out)
	}
	cmd = exec.Command(relayBinary, "status", "--project", "acme/widgets", "--json")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "BITBUCKET_RELAY_DATA=" + data}
	out, err = cmd.Output()
	var result struct {
		Total    int
		Statuses []struct {
			PostedState string `json:"posted_state"`
		}
	}
	if err != nil || json.Unmarshal(out, &result) != nil || result.Total != 1 || result.Statuses[0].PostedState != "SUCCESSFUL" {
		t.Fatalf("status --project --json: %v\n%s", err, out)
	}
	cmd = exec.Command(relayBinary, "status")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "BITBUCKET_RELAY_DATA=" + data}
	out, err = cmd.Output()
	if err != nil || !strings.Contains(string(out), "Backlog:     0 pending") || !strings.Contains(string(out), "3 posts  1 failed") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	cmd = exec.Command(relayBinary, "status", "--commit", "main")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "BITBUCKET_RELAY_DATA=" + data}
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 2 || string(out) != "bitbucket-status-relay: --commit \"main\" is not a commit hash: give 7 to 64 hex digits, or a GitLab or Bitbucket commit URL\n" {
		t.Fatalf("exit %d: %s", cmd.ProcessState.ExitCode(), out)
	}
	cmd = exec.Command(relayBinary, "status")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "BITBUCKET_RELAY_DATA=" + t.TempDir()}
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "no relay store in ") {
		t.Fatalf("exit %d: %s", cmd.ProcessState.ExitCode(), out)
	}
	// As scripts and people use it: help exits 0, a wrong flag or value 2
	// with the usage error, nothing found 0 with "No status" (JSON: total 0).
	quiet := strings.Repeat("c", 40)
	child, err := os.ReadFile("../gitlab/testdata/pipeline-child.json")
	if err != nil {
		t.Fatal(err)
	}
	if code, text := r.send("Pipeline Hook", []byte(strings.ReplaceAll(string(child), sha, quiet))); code != 200 {
		t.Fatalf("a child pipeline: %d %s", code, text)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"status", "--help"}, 0, "bitbucket-status-relay status: what the relay holds and did"},
		{[]string{"status", "-h"}, 0, "Exit codes: 0 read (also when nothing is found"},
		{[]string{"status", "--bogus"}, 2, "bitbucket-status-relay: flag provided but not defined: -bogus (see bitbucket-status-relay --help)\n"},
		{[]string{"status", "--project", "widgets"}, 2, "bitbucket-status-relay: --project \"widgets\" is not a GitLab project path: give group/project, or the project's URL\n"},
		{[]string{"status", "--commit", strings.Repeat("e", 40)}, 0, "No status for commit " + strings.Repeat("e", 40) + ": the relay received nothing for it"},
		{[]string{"status", "--commit", strings.Repeat("e", 40), "--json"}, 0, `"total": 0,`},
		{[]string{"status", "--commit", "https://gitlab.example.com/acme/widgets/-/commit/" + quiet}, 0,
			"No status for commit " + quiet + ": every pipeline received for it was not reported, for the reasons below."},
		{[]string{"status", "--project", "ACME/Widgets", "--page", "1"}, 0, "1 status(es) for project ACME/Widgets"},
	} {
		cmd := exec.Command(relayBinary, c.args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "BITBUCKET_RELAY_DATA=" + data}
		out, _ := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != c.code || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", c.args, cmd.ProcessState.ExitCode(), c.code, c.want, out)
		}
	}
}
