package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/fakegitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/pushhook"
)

// The first mile's load: signed Bitbucket Cloud pushes to POST /bitbucket,
// and a GitLab stand-in keeping the pull mirrors they start.

// pushGenerator makes repo:push bodies from Bitbucket's documented shape,
// each a new commit on main of one of repos repositories (bench/repo-N).
type pushGenerator struct {
	mu    sync.Mutex
	doc   map[string]any
	repos int
	next  int64
}

func newPushGenerator(file string, repos int) *pushGenerator {
	data, err := os.ReadFile(file)
	if err != nil {
		log.Fatal(err)
	}
	g := &pushGenerator{repos: max(repos, 1)}
	if err := json.Unmarshal(data, &g.doc); err != nil {
		log.Fatal(err)
	}
	changes := g.doc["push"].(map[string]any)["changes"].([]any)
	g.doc["push"].(map[string]any)["changes"] = changes[:1]
	return g
}

func (g *pushGenerator) body() []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.next++
	slug := fmt.Sprintf("repo-%d", g.next%int64(g.repos))
	r := g.doc["repository"].(map[string]any)
	r["full_name"], r["name"] = "bench/"+slug, slug
	r["workspace"].(map[string]any)["slug"] = "bench"
	change := g.doc["push"].(map[string]any)["changes"].([]any)[0].(map[string]any)
	change["new"].(map[string]any)["target"].(map[string]any)["hash"] = fmt.Sprintf("%040x", g.next)
	out, _ := json.Marshal(g.doc)
	return out
}

// pushes sends signed pushes at rate for d, as Bitbucket Cloud delivers them.
func (c *client) pushes(g *pushGenerator, secret string, rate int, d time.Duration) result {
	return steady("pushes", rate, d, func() func() (int, time.Duration) {
		body := g.body()
		return func() (int, time.Duration) { return c.push(secret, body) }
	})
}

// push sends one signed push.
func (c *client) push(secret string, body []byte) (int, time.Duration) {
	target := c.urls[int(c.next.Add(1))%len(c.urls)]
	req, _ := http.NewRequest(http.MethodPost, target, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Bitbucket-Webhooks/2.0")
	req.Header.Set("X-Event-Key", pushhook.CloudPush)
	req.Header.Set("X-Hub-Signature", pushhook.Sign(secret, body))
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, time.Since(start)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// serveGitLab serves the GitLab stand-in with repos mirrored projects
// (bench/repo-N) and GitLab's interval; GET /_requests counts what it was
// asked, by method.
func serveGitLab(listen, addrFile, token string, repos int, interval time.Duration) {
	gl := &fakegitlab.Server{Token: token, Scopes: []string{"api"}, Interval: interval, UpdateTakes: 2 * time.Second}
	for i := range max(repos, 1) {
		gl.AddProject(fmt.Sprintf("bench/repo-%d", i), true, &fakegitlab.Mirror{URL: fmt.Sprintf("https://bitbucket.org/bench/repo-%d.git", i), Enabled: true})
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		log.Fatal(err)
	}
	if addrFile != "" {
		_ = os.WriteFile(addrFile, []byte(ln.Addr().String()), 0o644)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v4/", gl)
	mux.HandleFunc("GET /_requests", func(w http.ResponseWriter, _ *http.Request) {
		counts := map[string]int{}
		for _, r := range gl.Requests() {
			counts[r.Method]++
		}
		_ = json.NewEncoder(w).Encode(counts)
	})
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: mux}
	log.Fatal(srv.Serve(ln))
}
