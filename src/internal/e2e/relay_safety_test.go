package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// routeToken is a routes file's credential, read from a file: the relay
// knows it only from there.
const routeToken = "E2E-ROUTE-TOKEN-file-7c0ffee1"

// TestNoCredentialShownOrStored: a proxy in front of Bitbucket whose error
// body echoes the request (its Authorization header, a URL with a
// password) and carries terminal escapes. The credential comes from a
// routes file (token_file). Nothing of it reaches the store's file, the
// status page, status (text and JSON) or the log, and no control
// character reaches a terminal.
func TestNoCredentialShownOrStored(t *testing.T) {
	t.Parallel()
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		msg := fmt.Sprintf("proxy: bad upstream request %s %s with Authorization: %s via https://relay:hunter2pw99@proxy.internal/ \x1b[2J\x1b]0;owned\x07ALL GREEN",
			r.Method, r.URL.Path, r.Header.Get("Authorization"))
		body, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]string{"message": msg}})
		_, _ = w.Write(body)
	}))
	t.Cleanup(echo.Close)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "route-token")
	routes := filepath.Join(dir, "routes.yml")
	if err := os.WriteFile(tokenFile, []byte(routeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(routes, []byte("credentials:\n  platform:\n    token_file: "+tokenFile+
		"\nroutes:\n  - project: acme/*\n    cloud: acme/{1}\n    credential: platform\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	r := startRelay(t, data, "BITBUCKET_API_URL="+echo.URL+"/2.0", "BITBUCKET_RELAY_ROUTES="+routes,
		"BITBUCKET_RELAY_STATUS_TOKEN="+statusToken)
	if code, text := r.send("Pipeline Hook", hook("acme/widgets", 42, 2045, 7, "failed", sha, "main", "2026-11-25T10:04:00Z")); code != 202 {
		t.Fatalf("%d %s", code, text)
	}
	eventually(t, "the refusal recorded", func() bool {
		_, page := r.getAs("/status?q="+sha, "x", statusToken)
		return strings.Contains(page, "proxy: bad upstream request")
	}, r.log)
	_, page := r.getAs("/status?q="+sha, "x", statusToken)
	statusOut := func(args ...string) string {
		cmd := exec.Command(relayBinary, append([]string{"status"}, args...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "BITBUCKET_RELAY_DATA=" + data}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("status %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	text, jsonOut, overview := statusOut("--commit", sha), statusOut("--commit", sha, "--json"), statusOut()
	stored := ""
	for _, name := range []string{"relay.db", "relay.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(data, name))
		stored += string(b)
	}
	for where, got := range map[string]string{"the page": page, "status --commit": text, "status --json": jsonOut, "status": overview,
		"the store's file": stored, "the log": r.log()} {
		for _, secret := range []string{routeToken, "hunter2pw99"} {
			if strings.Contains(got, secret) {
				t.Errorf("%s holds a credential (%s)", where, secret)
			}
		}
	}
	for where, got := range map[string]string{"status --commit": text, "status --json": jsonOut, "status": overview} {
		if strings.ContainsAny(got, "\x1b\x07\r") {
			t.Errorf("%s sends control characters to the terminal:\n%q", where, got)
		}
	}
	if !strings.Contains(text, `Authorization: Bearer [REDACTED] via https://relay:[REDACTED]@proxy.internal/ \x1b[2J\x1b]0;owned\x07ALL GREEN`) {
		t.Errorf("status --commit does not show the scrubbed error as it was:\n%s", text)
	}
}
