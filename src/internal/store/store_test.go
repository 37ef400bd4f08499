package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backends are the stores every test runs against: one suite, so a
// backend that passes behaves as the relay expects.
var backends = map[string]func(t *testing.T) Store{
	"sqlite": func(t *testing.T) Store {
		s, err := OpenSQLite(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	},
	"postgres": openTestPostgres,
}

// openTestPostgres gives each test a database of its own on the server
// BITBUCKET_RELAY_TEST_DATABASE_URL names (.ci/run starts one). Without it
// the PostgreSQL half is skipped on a developer's machine, and fails in CI.
func openTestPostgres(t *testing.T) Store {
	t.Helper()
	url := os.Getenv("BITBUCKET_RELAY_TEST_DATABASE_URL")
	if url == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("BITBUCKET_RELAY_TEST_DATABASE_URL is not set: .ci/run starts a PostgreSQL server for the store's tests")
		}
		t.Skip("BITBUCKET_RELAY_TEST_DATABASE_URL is not set: run bash .ci/run, which starts PostgreSQL")
	}
	ctx := context.Background()
	admin, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := fmt.Sprintf("store_test_%d_%d", os.Getpid(), testDB.Add(1))
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	s, err := OpenPostgres(ctx, WithDatabase(url, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		a, _ := sql.Open("pgx", url)
		defer a.Close()
		_, _ = a.ExecContext(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)")
	})
	return s
}

var testDB atomic.Int64

func each(t *testing.T, test func(t *testing.T, s Store)) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, open(t))
		})
	}
}

func always(*Row, Report) bool { return true }

func report(id string, pipeline int64, state string) Report {
	return Report{StatusID: id, Credential: "default", PipelineID: pipeline, State: state, Body: []byte(`{"p":` + fmt.Sprint(pipeline) + `}`),
		ProjectID: 42, ProjectPath: "acme/widgets"}
}

func TestAcceptAndKeep(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		changed, err := s.Accept(ctx, []Report{report("a", 1, "INPROGRESS"), report("b", 1, "INPROGRESS")}, always)
		if err != nil || len(changed) != 2 || !changed[0] || !changed[1] {
			t.Fatalf("%v %v", changed, err)
		}
		var seen *Row
		changed, err = s.Accept(ctx, []Report{report("a", 2, "SUCCESSFUL")}, func(cur *Row, in Report) bool {
			seen = cur
			return false
		})
		if err != nil || changed[0] || seen == nil || seen.PipelineID != 1 || seen.State != "INPROGRESS" || seen.Version != 1 || !seen.Pending {
			t.Fatalf("keep saw %+v; %v %v", seen, changed, err)
		}
		if _, err := s.Accept(ctx, []Report{report("a", 2, "SUCCESSFUL")}, always); err != nil {
			t.Fatal(err)
		}
		r, err := s.Get(ctx, "a")
		if err != nil || r.PipelineID != 2 || r.State != "SUCCESSFUL" || r.Version != 2 || !r.Pending || string(r.Body) != `{"p":2}` {
			t.Fatalf("%+v %v", r, err)
		}
		if r, err := s.Get(ctx, "missing"); r != nil || err != nil {
			t.Fatalf("%+v %v", r, err)
		}
		projects, err := s.Projects(ctx)
		if err != nil || len(projects) != 1 || projects[0] != (Project{ID: 42, Path: "acme/widgets"}) {
			t.Fatalf("%+v %v", projects, err)
		}
	})
}

func TestClaimLeaseFinish(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		now := time.Now()
		if _, err := s.Accept(ctx, []Report{report("a", 1, "INPROGRESS"), report("b", 1, "FAILED")}, always); err != nil {
			t.Fatal(err)
		}
		rows, err := s.Claim(ctx, "w1", now, time.Minute, 10)
		if err != nil || len(rows) != 2 {
			t.Fatalf("%+v %v", rows, err)
		}
		if again, _ := s.Claim(ctx, "w2", now, time.Minute, 10); len(again) != 0 {
			t.Fatalf("leased rows claimed twice: %+v", again)
		}
		if later, _ := s.Claim(ctx, "w2", now.Add(61*time.Second), time.Minute, 10); len(later) != 2 {
			t.Fatalf("an expired lease was not taken over: %+v", later)
		}
		var a, b Row
		for _, r := range rows {
			if r.StatusID == "a" {
				a = r
			} else {
				b = r
			}
		}
		// w2 holds the leases now: w1's late finish changes nothing.
		if err := s.Finish(ctx, "w1", a, Outcome{Done: true, PostedState: "INPROGRESS", PostedPipeline: 1}); err != nil {
			t.Fatal(err)
		}
		if r, _ := s.Get(ctx, "a"); !r.Pending {
			t.Fatal("a finish by a worker whose lease expired was taken")
		}
		if err := s.Finish(ctx, "w2", a, Outcome{Done: true, PostedState: "INPROGRESS", PostedPipeline: 1}); err != nil {
			t.Fatal(err)
		}
		if r, _ := s.Get(ctx, "a"); r.Pending || r.PostedState != "INPROGRESS" || r.PostedPipeline != 1 {
			t.Fatalf("%+v", r)
		}
		// b fails for now, and a newer event arrives during the attempt:
		// the new version is due at once.
		if _, err := s.Accept(ctx, []Report{report("b", 2, "SUCCESSFUL")}, always); err != nil {
			t.Fatal(err)
		}
		if err := s.Finish(ctx, "w2", b, Outcome{RetryAt: now.Add(time.Hour), Error: "503"}); err != nil {
			t.Fatal(err)
		}
		r, _ := s.Get(ctx, "b")
		if !r.Pending || !r.NextAttempt.IsZero() || r.Attempts != 1 || r.LastError != "503" {
			t.Fatalf("%+v", r)
		}
		rows, _ = s.Claim(ctx, "w3", now.Add(2*time.Minute), time.Minute, 10)
		if len(rows) != 1 || rows[0].Version != 2 {
			t.Fatalf("%+v", rows)
		}
		// A retry of the current version waits until RetryAt.
		if err := s.Finish(ctx, "w3", rows[0], Outcome{RetryAt: now.Add(time.Hour), Error: "503"}); err != nil {
			t.Fatal(err)
		}
		if due, _ := s.Claim(ctx, "w3", now.Add(59*time.Minute), time.Minute, 10); len(due) != 0 {
			t.Fatalf("claimed before RetryAt: %+v", due)
		}
		if due, _ := s.Claim(ctx, "w3", now.Add(61*time.Minute), time.Minute, 10); len(due) != 1 || due[0].Attempts != 2 {
			t.Fatalf("%+v", due)
		}
	})
}

func TestDoneForAnOlderVersionKeepsTheNewerPending(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		_, _ = s.Accept(ctx, []Report{report("a", 1, "INPROGRESS")}, always)
		rows, _ := s.Claim(ctx, "w", time.Now(), time.Minute, 1)
		_, _ = s.Accept(ctx, []Report{report("a", 1, "SUCCESSFUL")}, always)
		if err := s.Finish(ctx, "w", rows[0], Outcome{Done: true, PostedState: "INPROGRESS", PostedPipeline: 1}); err != nil {
			t.Fatal(err)
		}
		r, _ := s.Get(ctx, "a")
		if !r.Pending || r.State != "SUCCESSFUL" || r.PostedState != "INPROGRESS" {
			t.Fatalf("%+v", r)
		}
	})
}

func TestStatsSweepPrune(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		before := time.Now().Add(-time.Millisecond)
		_, _ = s.Accept(ctx, []Report{report("a", 1, "INPROGRESS"), report("b", 1, "INPROGRESS")}, always)
		st, err := s.Stats(ctx)
		if err != nil || st.Pending != 2 || st.OldestPending.Before(before.Truncate(time.Millisecond)) || st.OldestPending.After(time.Now()) {
			t.Fatalf("%+v %v", st, err)
		}
		rows, _ := s.Claim(ctx, "w", time.Now(), time.Minute, 1)
		_ = s.Finish(ctx, "w", rows[0], Outcome{Done: true})
		if st, _ := s.Stats(ctx); st.Pending != 1 {
			t.Fatalf("%+v", st)
		}
		if err := s.RememberProject(ctx, 7, "acme/gadgets"); err != nil {
			t.Fatal(err)
		}
		if p, _ := s.Projects(ctx); len(p) != 2 || p[0] != (Project{ID: 7, Path: "acme/gadgets"}) {
			t.Fatalf("a remembered project is not listed: %+v", p)
		}
		swept := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
		if err := s.MarkSwept(ctx, 42, swept); err != nil {
			t.Fatal(err)
		}
		if p, _ := s.Projects(ctx); len(p) != 2 || !p[1].SweptAt.Equal(swept) {
			t.Fatalf("%+v", p)
		}
		if n, err := s.Prune(ctx, time.Now().Add(time.Second)); err != nil || n != 1 {
			t.Fatalf("pruned %d, %v: only the row with nothing pending goes", n, err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestConcurrentAcceptsAllStored(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		var wg sync.WaitGroup
		for i := range 300 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Accept(ctx, []Report{report(fmt.Sprint("s", i%100), int64(i), "INPROGRESS")}, func(cur *Row, in Report) bool {
					return cur == nil || in.PipelineID > cur.PipelineID
				}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		st, _ := s.Stats(ctx)
		if st.Pending != 100 {
			t.Fatalf("%d pending, want 100", st.Pending)
		}
		for i := range 100 {
			r, _ := s.Get(ctx, fmt.Sprint("s", i))
			if r == nil || r.PipelineID != int64(200+i) {
				t.Fatalf("s%d: %+v, want the newest pipeline %d", i, r, 200+i)
			}
		}
	})
}

// TestReplicasShareWithoutDoubleWork: two stores on one database (two
// replicas) claim concurrently and never both get a row; accepts for one
// status from both keep the ordering rule.
func TestReplicasShareWithoutDoubleWork(t *testing.T) {
	t.Parallel()
	a := openTestPostgres(t).(*Postgres)
	b, err := OpenPostgres(context.Background(), a.url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	newer := func(cur *Row, in Report) bool { return cur == nil || in.PipelineID > cur.PipelineID }
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := Store(a)
			if i%2 == 1 {
				s = b
			}
			if _, err := s.Accept(ctx, []Report{report(fmt.Sprint("s", i%20), int64(i), "INPROGRESS"), report(fmt.Sprint("t", (i+7)%20), int64(i), "INPROGRESS")}, newer); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := range 20 {
		r, _ := a.Get(ctx, fmt.Sprint("s", i))
		if r == nil || r.PipelineID != int64(180+i) {
			t.Fatalf("s%d: %+v, want the newest pipeline %d", i, r, 180+i)
		}
	}
	claimed := map[string]string{}
	var mu sync.Mutex
	for _, s := range []struct {
		store Store
		owner string
	}{{a, "a1"}, {a, "a2"}, {b, "b1"}, {b, "b2"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				rows, err := s.store.Claim(ctx, s.owner, time.Now(), time.Minute, 3)
				if err != nil {
					t.Error(err)
					return
				}
				if len(rows) == 0 {
					return
				}
				mu.Lock()
				for _, r := range rows {
					if other, ok := claimed[r.StatusID]; ok {
						t.Errorf("%s claimed by %s and %s", r.StatusID, other, s.owner)
					}
					claimed[r.StatusID] = s.owner
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(claimed) != 40 {
		t.Fatalf("%d rows claimed, want 40", len(claimed))
	}
	// One leader at a time; the next takes over when it goes.
	if ok, err := a.Lead(ctx); !ok || err != nil {
		t.Fatalf("a: %v %v", ok, err)
	}
	if ok, _ := b.Lead(ctx); ok {
		t.Fatal("two leaders")
	}
	if ok, _ := a.Lead(ctx); !ok {
		t.Fatal("the leader lost its lock")
	}
	a.Close()
	if ok, err := b.Lead(ctx); !ok || err != nil {
		t.Fatalf("b did not take over when a closed: %v %v", ok, err)
	}
	// A leader whose connection dies (a replica killed) also lets go.
	c, err := OpenPostgres(ctx, b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Lead(ctx); ok {
		t.Fatal("two leaders")
	}
	var pid int
	if err := b.leader.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := c.db.ExecContext(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ok, _ := c.Lead(ctx); !ok; ok, _ = c.Lead(ctx) {
		if time.Now().After(deadline) {
			t.Fatal("c did not take over from a leader whose connection died")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ok, _ := b.Lead(ctx); ok {
		t.Fatal("b still believes it leads after losing its connection")
	}
}

func TestSQLiteSurvivesReopenAndReleasesLeases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = s.Accept(ctx, []Report{report("a", 1, "FAILED")}, always)
	if rows, _ := s.Claim(ctx, "dead-process", time.Now(), time.Hour, 1); len(rows) != 1 {
		t.Fatal("no claim")
	}
	s.Close()
	s, err = OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.Claim(ctx, "new-process", time.Now(), time.Minute, 1)
	if err != nil || len(rows) != 1 || rows[0].State != "FAILED" {
		t.Fatalf("after reopening: %+v %v", rows, err)
	}
}
