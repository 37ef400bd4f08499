package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store/storetest"
)

// TestRelayReplicasUnderFaults: three relays share one PostgreSQL; a stream
// of real-shaped webhooks is spread over them while one replica is killed
// with SIGKILL and started again, and PostgreSQL is stopped and started. A
// webhook not answered 202 is sent again (as an operator resends a failed
// delivery). At the end every status on Bitbucket is the last state sent,
// and no status took more requests than coalescing allows.
func TestRelayReplicasUnderFaults(t *testing.T) {
	url, control := storetest.Database(t, true)
	bb := newBitbucket(t)
	env := []string{"BITBUCKET_API_URL=" + bb.url + "/2.0", "BITBUCKET_RELAY_DATABASE_URL=" + url}
	replicas := make([]*relayProc, 3)
	for i := range replicas {
		replicas[i] = startRelay(t, t.TempDir(), env...)
	}
	var mu sync.Mutex
	pick := func(n int) *relayProc { mu.Lock(); defer mu.Unlock(); return replicas[n%3] }

	const statuses = 30
	type event struct {
		commit   string
		pipeline int64
		state    string // GitLab's word
	}
	var events []event
	want := map[string]string{}    // commit -> Bitbucket state last sent
	sentStates := map[string]int{} // commit -> distinct states sent
	for i := range statuses {
		commit := fmt.Sprintf("%040x", 0xfa17+i)
		pipeline := int64(7000 + i)
		for _, st := range []string{"pending", "running"} {
			events = append(events, event{commit, pipeline, st})
		}
		final := []string{"success", "failed", "canceled"}[rand.N(3)]
		events = append(events, event{commit, pipeline, final})
		want[commit] = map[string]string{"success": "SUCCESSFUL", "failed": "FAILED", "canceled": "STOPPED"}[final]
		sentStates[commit] = 2
		if i%5 == 0 { // a retry as a new pipeline on the same commit
			events = append(events, event{commit, pipeline + 1000, "running"}, event{commit, pipeline + 1000, "success"})
			want[commit] = "SUCCESSFUL"
			sentStates[commit] += 2
		}
	}
	// Events of one commit stay in order; commits interleave.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var sendWG sync.WaitGroup
	var answered503 int
	perCommit := map[string][]event{}
	for _, e := range events {
		perCommit[e.commit] = append(perCommit[e.commit], e)
	}
	n := 0
	for _, evs := range perCommit {
		sendWG.Add(1)
		start := time.Duration(rand.N(8000)) * time.Millisecond
		go func() {
			defer sendWG.Done()
			time.Sleep(start)
			for _, e := range evs {
				for try := 0; ; try++ {
					mu.Lock()
					n++
					i := n
					mu.Unlock()
					finished := ""
					if e.state != "pending" && e.state != "running" {
						finished = time.Now().UTC().Format(time.RFC3339Nano)
					}
					code, _ := pick(i).sendQuiet(hook("acme/widgets", 42, e.pipeline, e.pipeline-6990, e.state, e.commit, "main", finished))
					if code == 202 {
						break
					}
					mu.Lock()
					answered503++
					mu.Unlock()
					if ctx.Err() != nil {
						t.Errorf("%s %s never accepted", e.commit, e.state)
						return
					}
					time.Sleep(300 * time.Millisecond)
				}
				time.Sleep(time.Duration(50+rand.N(200)) * time.Millisecond)
			}
		}()
	}

	// The faults, while the stream runs.
	time.Sleep(2 * time.Second)
	replicas[1].kill()
	time.Sleep(2 * time.Second)
	mu.Lock()
	replicas[1] = startRelay(t, t.TempDir(), env...)
	mu.Unlock()
	time.Sleep(time.Second)
	if out, err := exec.Command(control, "stop").CombinedOutput(); err != nil {
		t.Fatalf("stopping PostgreSQL: %v %s", err, out)
	}
	time.Sleep(500 * time.Millisecond)
	if code, text := replicas[0].get("/readyz"); code != 503 ||
		text != "not ready: the store is unreachable or cannot write (the relay's log says why)\n" {
		// Anyone may ask: the database's user, host, port and name are for
		// the log only.
		t.Errorf("readyz with PostgreSQL down: %d %q", code, text)
	}
	time.Sleep(1500 * time.Millisecond)
	if out, err := exec.Command(control, "start").CombinedOutput(); err != nil {
		t.Fatalf("starting PostgreSQL: %v %s", err, out)
	}
	sendWG.Wait()

	latest := func() map[string]string {
		got := map[string]string{}
		for k, states := range bb.posted() {
			got[k[len("/2.0/repositories/acme/widgets/commit/"):][:40]] = states[len(states)-1]
		}
		return got
	}
	eventually(t, "every status is the last state sent", func() bool {
		got := latest()
		for commit, st := range want {
			if got[commit] != st {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("got %v\nwant %v\n%s", latest(), want, replicas[0].log()) })
	// Coalescing: at most one post per distinct state sent, plus one for a
	// post repeated after its replica died or its outcome was not stored.
	for k, states := range bb.posted() {
		commit := k[len("/2.0/repositories/acme/widgets/commit/"):][:40]
		if len(states) > sentStates[commit]+1 {
			t.Errorf("%s: %d posts %v for %d states sent", commit, len(states), states, sentStates[commit])
		}
	}
	for _, r := range replicas {
		if code, _ := r.get("/readyz"); code != 200 {
			t.Errorf("a replica is not ready after PostgreSQL came back: %d", code)
		}
	}
	t.Logf("%d events, %d answered 503 and sent again, %d requests to Bitbucket for %d statuses", len(events), answered503, bb.hits.Load(), statuses)
}

// TestRelayReplicaDiesMidPost: a replica killed while its post hangs holds a
// lease on the status; another replica takes the work over when the lease
// ends, within 30 seconds.
func TestRelayReplicaDiesMidPost(t *testing.T) {
	t.Parallel()
	url, _ := storetest.Database(t, false)
	bb := newBitbucket(t)
	bb.mode.Store("hang")
	env := []string{"BITBUCKET_API_URL=" + bb.url + "/2.0", "BITBUCKET_RELAY_DATABASE_URL=" + url}
	a := startRelay(t, t.TempDir(), env...)
	if code, _ := a.send("Pipeline Hook", hook("acme/widgets", 42, 2045, 7, "success", sha, "main", "2026-11-25T10:00:00Z")); code != 202 {
		t.Fatal(code)
	}
	eventually(t, "replica A posting", func() bool { return bb.hits.Load() == 1 }, a.log)
	b := startRelay(t, t.TempDir(), env...)
	a.kill()
	killed := time.Now()
	bb.mode.Store("up")
	deadline := time.Now().Add(35 * time.Second)
	for len(bb.posted()[statusPath]) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("replica B did not take the status over within 35 s\n%s", b.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if took := time.Since(killed); took > 30*time.Second {
		t.Errorf("taken over after %s, want within 30 s", took)
	} else {
		t.Logf("taken over %s after the kill", took.Round(100*time.Millisecond))
	}
}

// TestRelayDatabasePasswordNeverLogged: PostgreSQL unreachable at start:
// the relay waits for it and says so, without the password.
func TestRelayDatabasePasswordNeverLogged(t *testing.T) {
	t.Parallel()
	const password = "S3CRET-PG-PASS-77e1"
	cmd := exec.Command(relayBinary, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "BITBUCKET_RELAY_LISTEN=127.0.0.1:0", "BITBUCKET_RELAY_WEBHOOK_TOKEN=" + webhookToken,
		"BITBUCKET_ACCESS_TOKEN=" + token, "BITBUCKET_RELAY_DATABASE_URL=postgres://relay:" + password + "@127.0.0.1:1/relay?sslmode=disable"}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a warning that PostgreSQL is not reachable", func() bool {
		return strings.Contains(stderr.String(), `"msg":"PostgreSQL not reachable yet; retrying"`)
	}, stderr.String)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if strings.Contains(stderr.String(), password) || !strings.Contains(stderr.String(), "127.0.0.1") {
		t.Fatalf("%s", stderr.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
