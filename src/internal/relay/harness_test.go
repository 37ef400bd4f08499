package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/fakebitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

const bitbucketToken = "HARNESS-BITBUCKET-TOKEN"

// syncLog is the relay's log, read while it runs.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testBitbucket is the Bitbucket stand-in behind a real HTTP server; handle,
// when set, sees each request first and may answer it itself.
type testBitbucket struct {
	*fakebitbucket.Server
	url    string
	mu     sync.Mutex
	handle func(w http.ResponseWriter, r *http.Request, body []byte) bool
}

func newTestBitbucket(t *testing.T) *testBitbucket {
	t.Helper()
	b := &testBitbucket{Server: &fakebitbucket.Server{Token: bitbucketToken}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := new(bytes.Buffer)
		_, _ = body.ReadFrom(r.Body)
		b.mu.Lock()
		handle := b.handle
		b.mu.Unlock()
		if handle != nil && handle(w, r, body.Bytes()) {
			return
		}
		r.Body = http.NoBody
		b.apply(w, r, body.Bytes())
	}))
	t.Cleanup(ts.Close)
	b.url = ts.URL
	return b
}

// apply hands a request to the stand-in: what Bitbucket does with it.
func (b *testBitbucket) apply(w http.ResponseWriter, r *http.Request, body []byte) {
	r2 := r.Clone(context.Background())
	r2.Body = readCloser{bytes.NewReader(body)}
	b.ServeHTTP(w, r2)
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// shown is the state Bitbucket shows for a commit and key, or "".
func (b *testBitbucket) shown(commit, key string) string {
	var st struct{ State string }
	_ = json.Unmarshal(b.Shown(commit, key), &st)
	return st.State
}

// testRelay is a relay working in this process, over its own store.
type testRelay struct {
	*Relay
	log    *syncLog
	cancel context.CancelFunc
	done   chan struct{}
}

// startRelay resolves env as the relay's main does, opens st (a new
// embedded store when nil) and starts the worker; adjust changes the
// configuration first.
func startRelay(t *testing.T, env map[string]string, st store.Store, adjust func(*Config)) *testRelay {
	t.Helper()
	full := map[string]string{"BITBUCKET_RELAY_WEBHOOK_TOKEN": "harness-webhook-token", "BITBUCKET_ACCESS_TOKEN": bitbucketToken,
		"BITBUCKET_RELAY_RETRY_BASE": "200ms", "BITBUCKET_RELAY_PAUSE_BASE": "400ms"}
	for k, v := range env {
		full[k] = v
	}
	e, err := LoadEnv(context.Background(), full)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Resolve(e, func(name string) string { return full[name] })
	if err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(cfg)
	}
	if st == nil {
		s, err := store.OpenSQLite(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		st = s
	}
	log := &syncLog{}
	tr := &testRelay{Relay: New(cfg, st, Options{Version: "test", Log: log}), log: log, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	tr.cancel = cancel
	go func() {
		defer close(tr.done)
		var mirrors sync.WaitGroup
		if cfg.PushSecret != "" {
			mirrors.Add(1)
			go func() { defer mirrors.Done(); tr.MirrorWork(ctx) }()
		}
		tr.Work(ctx)
		mirrors.Wait()
	}()
	t.Cleanup(tr.stop)
	return tr
}

func (tr *testRelay) stop() {
	tr.cancel()
	<-tr.done
}

// event accepts a pipeline event as a webhook would; it returns the
// reason it was not reported, if it was not.
func (tr *testRelay) event(t *testing.T, p gitlab.Pipeline) string {
	t.Helper()
	_, _, err := tr.accept(context.WithValue(context.Background(), webhookContext{}, true), p)
	if skip, ok := err.(*skipError); ok {
		return skip.reason
	}
	if err != nil {
		t.Fatalf("pipeline %d %s: %v", p.ID, p.Status, err)
	}
	return ""
}

// pipelineEvent is a pipeline of acme/widgets (project 42) on commit.
func pipelineEvent(id int64, status, commit string) gitlab.Pipeline {
	p := gitlab.Pipeline{ID: id, IID: id - 1000, ProjectID: 42, ProjectPath: "acme/widgets", Ref: "main", SHA: commit, Status: status,
		Source: "push", URL: fmt.Sprintf("https://gitlab.example.com/acme/widgets/-/pipelines/%d", id),
		CreatedAt: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	switch status {
	case "success", "failed", "canceled", "skipped":
		p.FinishedAt = p.CreatedAt.Add(time.Duration(id%100+1) * time.Minute)
	}
	return p
}

// child is a child pipeline (trigger: include:) of parent.
func child(parent gitlab.Pipeline, id int64, status, name string) gitlab.Pipeline {
	c := pipelineEvent(id, status, parent.SHA)
	c.Source, c.Name, c.ParentProjectID, c.ParentPipelineID = gitlab.ChildPipeline, name, parent.ProjectID, parent.ID
	return c
}

// waitFor waits up to 15 s for cond.
func waitFor(t *testing.T, what string, cond func() bool, diag func() string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15 s\n%s", what, diag())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// idle waits until nothing is pending in st.
func idle(t *testing.T, st store.Store, diag func() string) {
	t.Helper()
	waitFor(t, "nothing pending", func() bool {
		s, err := st.Stats(context.Background())
		return err == nil && s.Pending == 0
	}, diag)
}

func logHas(l *syncLog, msg string) bool { return strings.Contains(l.String(), msg) }
