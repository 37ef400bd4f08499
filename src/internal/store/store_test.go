package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
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
	url := testPostgresURL(t)
	if url == "" {
		t.Skip("BITBUCKET_RELAY_TEST_DATABASE_URL is not set: run bash .ci/run, which starts PostgreSQL")
	}
	ctx := context.Background()
	admin, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := fmt.Sprintf("store_test_%d_%d", os.Getpid(), testDB.Add(1))
	// A libc collation, as production databases have (en_US.UTF-8 and the
	// like), not the test server's default "C", under which a query that
	// forgets the commit index's COLLATE "C" would still find the index.
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"); err != nil {
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

// testPostgresURL is the test server's URL; empty on a developer's machine
// without one; in CI its absence fails the test.
func testPostgresURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("BITBUCKET_RELAY_TEST_DATABASE_URL")
	if url == "" && os.Getenv("CI") != "" {
		t.Fatal("BITBUCKET_RELAY_TEST_DATABASE_URL is not set: .ci/run starts a PostgreSQL server for the store's tests")
	}
	return url
}

func each(t *testing.T, test func(t *testing.T, s Store)) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, open(t))
		})
	}
}

func always(*Row, Report) (Decision, string) { return Replace, "taken" }

// newer keeps the newest pipeline, as the relay's rule does.
func newer(cur *Row, in Report) (Decision, string) {
	if cur == nil || in.PipelineID > cur.PipelineID {
		return Replace, "newer"
	}
	return Ignore, "older"
}

func report(id string, pipeline int64, state string) Report {
	return Report{StatusID: id, Credential: "default", Server: "https://api.bitbucket.org/2.0", PipelineID: pipeline, State: state,
		Body: []byte(`{"p":` + fmt.Sprint(pipeline) + `}`), ProjectID: 42, ProjectPath: "acme/widgets", Commit: fmt.Sprintf("%040x", len(id)), Source: "push"}
}

// queryPlan is the plan the database gives for an EXPLAIN query, a line a
// step: each row's last column (SQLite's detail, PostgreSQL's only one).
func queryPlan(t *testing.T, conn *sql.Conn, query string, args ...any) string {
	t.Helper()
	rows, err := conn.QueryContext(context.Background(), query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var plan []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, fmt.Sprint(vals[len(vals)-1]))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}

// dbOf is a store's database, for tests that look behind the interface.
func dbOf(s Store) *sql.DB {
	if p, ok := s.(*Postgres); ok {
		return p.db
	}
	return s.(*SQLite).db
}

// later moves every time the store holds back by d, as if d had passed on
// the store's clock (leases, retries and retention are the store's).
func later(t *testing.T, s Store, d time.Duration) {
	t.Helper()
	back := func(col string) string {
		return col + " = CASE WHEN " + col + " > 0 THEN " + col + " - " + fmt.Sprint(d.Milliseconds()) + " ELSE 0 END"
	}
	for _, q := range []string{
		"UPDATE statuses SET " + strings.Join([]string{back("lease_until"), back("next_attempt_at"), back("accepted_at"), back("updated_at")}, ", "),
		"UPDATE projects SET " + back("seen_at"),
		"UPDATE history SET " + back("at"),
		"UPDATE skips SET " + back("at"),
		"UPDATE server_minutes SET minute = minute - " + fmt.Sprint(d.Milliseconds()/60000),
	} {
		if _, err := dbOf(s).Exec(q); err != nil {
			t.Fatal(err)
		}
	}
}

func claim(t *testing.T, s Store, owner string, limit int) []Row {
	t.Helper()
	rows, err := s.Claim(context.Background(), Claim{Owner: owner, Lease: time.Minute, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func finishOK(t *testing.T, s Store, owner string, row Row, o Outcome) Finished {
	t.Helper()
	f, err := s.Finish(context.Background(), owner, row, o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func get(t *testing.T, s Store, id string) *Row {
	t.Helper()
	r, err := s.Get(context.Background(), id)
	if err != nil || r == nil {
		t.Fatalf("%s: %+v %v", id, r, err)
	}
	return r
}

func TestAcceptAndKeep(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		changed, err := s.Accept(ctx, []Report{report("a", 1, "INPROGRESS"), report("b", 1, "INPROGRESS")}, always)
		if err != nil || len(changed) != 2 || !changed[0] || !changed[1] {
			t.Fatalf("%v %v", changed, err)
		}
		var seen *Row
		changed, err = s.Accept(ctx, []Report{report("a", 2, "SUCCESSFUL")}, func(cur *Row, in Report) (Decision, string) {
			seen = cur
			return Ignore, "ignored"
		})
		if err != nil || changed[0] || seen == nil || seen.PipelineID != 1 || seen.State != "INPROGRESS" || seen.Version != 1 || !seen.Pending ||
			seen.Server != "https://api.bitbucket.org/2.0" {
			t.Fatalf("keep saw %+v; %v %v", seen, changed, err)
		}
		if _, err := s.Accept(ctx, []Report{report("a", 2, "SUCCESSFUL")}, always); err != nil {
			t.Fatal(err)
		}
		r := get(t, s, "a")
		if r.PipelineID != 2 || r.State != "SUCCESSFUL" || r.Version != 2 || !r.Pending || string(r.Body) != `{"p":2}` {
			t.Fatalf("%+v", r)
		}
		// Wake: the stored report stays, the row is due again as a new version.
		rows := claim(t, s, "w", 10)
		for _, row := range rows {
			finishOK(t, s, "w", row, Outcome{Done: true, PostedState: row.State, PostedPipeline: row.PipelineID})
		}
		if r := get(t, s, "a"); r.Pending {
			t.Fatalf("%+v", r)
		}
		wake := func(*Row, Report) (Decision, string) { return Wake, "woken" }
		if changed, err := s.Accept(ctx, []Report{report("a", 2, "INPROGRESS")}, wake); err != nil || !changed[0] {
			t.Fatalf("%v %v", changed, err)
		}
		if r := get(t, s, "a"); !r.Pending || r.State != "SUCCESSFUL" || r.Version != 3 || string(r.Body) != `{"p":2}` {
			t.Fatalf("woken: %+v", r)
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
		if _, err := s.Accept(ctx, []Report{report("a", 1, "INPROGRESS"), report("b", 1, "FAILED")}, always); err != nil {
			t.Fatal(err)
		}
		rows := claim(t, s, "w1", 10)
		if len(rows) != 2 {
			t.Fatalf("%+v", rows)
		}
		for _, r := range rows {
			// The lease as the store's clock sees it, from the claim.
			if r.LeaseLeft > time.Minute || r.LeaseLeft < 59*time.Second {
				t.Fatalf("lease left %s, want about 1m", r.LeaseLeft)
			}
		}
		if again := claim(t, s, "w2", 10); len(again) != 0 {
			t.Fatalf("leased rows claimed twice: %+v", again)
		}
		later(t, s, 61*time.Second)
		if taken := claim(t, s, "w2", 10); len(taken) != 2 {
			t.Fatalf("an expired lease was not taken over: %+v", taken)
		}
		var a, b Row
		for _, r := range rows {
			if r.StatusID == "a" {
				a = r
			} else {
				b = r
			}
		}
		// w2 holds the leases now: w1's late refusal changes nothing.
		if f := finishOK(t, s, "w1", a, Outcome{Done: true, Error: "403"}); f.Rearmed {
			t.Fatal("a refusal, which changed nothing on Bitbucket, rearmed the row")
		}
		if r := get(t, s, "a"); !r.Pending || r.LastError != "" {
			t.Fatalf("a finish by a worker whose lease expired was taken: %+v", r)
		}
		if f := finishOK(t, s, "w2", a, Outcome{Done: true, PostedState: "INPROGRESS", PostedPipeline: 1}); f.Rearmed {
			t.Fatal("rearmed")
		}
		if r := get(t, s, "a"); r.Pending || r.PostedState != "INPROGRESS" || r.PostedPipeline != 1 || r.PostSeq != 1 {
			t.Fatalf("%+v", r)
		}
		// b fails for now, and a newer event arrives during the attempt:
		// the new version is due at once.
		if _, err := s.Accept(ctx, []Report{report("b", 2, "SUCCESSFUL")}, always); err != nil {
			t.Fatal(err)
		}
		finishOK(t, s, "w2", b, Outcome{RetryAt: time.Now().Add(time.Hour), Error: "503"})
		r := get(t, s, "b")
		if !r.Pending || !r.NextAttempt.IsZero() || r.Attempts != 1 || r.LastError != "503" {
			t.Fatalf("%+v", r)
		}
		rows = claim(t, s, "w3", 10)
		if len(rows) != 1 || rows[0].Version != 2 {
			t.Fatalf("%+v", rows)
		}
		// A retry of the current version waits until RetryAt; a row handed
		// back unattempted does not count an attempt.
		finishOK(t, s, "w3", rows[0], Outcome{RetryAt: time.Now().Add(time.Hour), Error: "503"})
		later(t, s, 59*time.Minute)
		if due := claim(t, s, "w3", 10); len(due) != 0 {
			t.Fatalf("claimed before RetryAt: %+v", due)
		}
		later(t, s, 2*time.Minute)
		due := claim(t, s, "w3", 10)
		if len(due) != 1 || due[0].Attempts != 2 {
			t.Fatalf("%+v", due)
		}
		finishOK(t, s, "w3", due[0], Outcome{RetryAt: time.Now(), NotAttempted: true, Error: "waiting"})
		if due := claim(t, s, "w3", 10); len(due) != 1 || due[0].Attempts != 2 {
			t.Fatalf("%+v", due)
		}
	})
}

func TestClaimSkipsServers(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		dc := report("dc", 1, "INPROGRESS")
		dc.Server = "https://git.example.com"
		if _, err := s.Accept(context.Background(), []Report{dc, report("cloud", 1, "INPROGRESS")}, always); err != nil {
			t.Fatal(err)
		}
		rows, err := s.Claim(context.Background(), Claim{Owner: "w", Lease: time.Minute, Limit: 10, Skip: []string{"https://git.example.com", "x"}})
		if err != nil || len(rows) != 1 || rows[0].StatusID != "cloud" {
			t.Fatalf("%+v %v", rows, err)
		}
	})
}

func TestDoneForAnOlderVersionKeepsTheNewerPending(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		_, _ = s.Accept(ctx, []Report{report("a", 1, "INPROGRESS")}, always)
		rows := claim(t, s, "w", 1)
		_, _ = s.Accept(ctx, []Report{report("a", 1, "SUCCESSFUL")}, always)
		finishOK(t, s, "w", rows[0], Outcome{Done: true, PostedState: "INPROGRESS", PostedPipeline: 1})
		r := get(t, s, "a")
		if !r.Pending || r.State != "SUCCESSFUL" || r.PostedState != "INPROGRESS" {
			t.Fatalf("%+v", r)
		}
	})
}

// TestAPostThatMayHaveLandedLateIsRepeated: w1's post outlives its lease;
// w2 takes the row over and posts the newer state; w1's answer comes last.
// Bitbucket may now show w1's older state, so the row is due again and the
// newest state is posted once more.
func TestAPostThatMayHaveLandedLateIsRepeated(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		_, _ = s.Accept(ctx, []Report{report("a", 1, "INPROGRESS")}, always)
		first := claim(t, s, "w1", 1)[0]
		_, _ = s.Accept(ctx, []Report{report("a", 1, "SUCCESSFUL")}, always)
		later(t, s, 61*time.Second)
		second := claim(t, s, "w2", 1)[0]
		if f := finishOK(t, s, "w2", second, Outcome{Done: true, PostedState: "SUCCESSFUL", PostedPipeline: 1}); f.Rearmed {
			t.Fatal("w2's post rearmed")
		}
		if r := get(t, s, "a"); r.Pending || r.PostSeq != 1 {
			t.Fatalf("%+v", r)
		}
		if f := finishOK(t, s, "w1", first, Outcome{Done: true, PostedState: "INPROGRESS", PostedPipeline: 1}); !f.Rearmed {
			t.Fatal("w1's late post was not caught")
		}
		r := get(t, s, "a")
		if !r.Pending || r.State != "SUCCESSFUL" || r.PostedState != "SUCCESSFUL" || r.Version != 3 {
			t.Fatalf("%+v", r)
		}
		if again := claim(t, s, "w2", 1); len(again) != 1 || again[0].State != "SUCCESSFUL" {
			t.Fatalf("%+v", again)
		}
		// The same when another post was recorded while w1 still held a
		// lease it then lost and got back (post_seq moved).
		_, _ = s.Accept(ctx, []Report{report("b", 1, "INPROGRESS")}, always)
		b := claim(t, s, "w1", 5)
		for _, row := range b {
			if row.StatusID == "b" {
				finishOK(t, s, "w1", row, Outcome{Done: true, PostedState: "INPROGRESS", PostedPipeline: 1})
				if f := finishOK(t, s, "w1", row, Outcome{Done: true, PostedState: "INPROGRESS", PostedPipeline: 1}); !f.Rearmed {
					t.Fatal("a second post recorded over the same claim was not caught")
				}
			}
		}
	})
}

// TestAnUnansweredRequestIsConfirmedLater: an attempt that sent its request
// and got no answer may land at Bitbucket at any time; once a later post
// succeeds, it is repeated once after ConfirmDelay, so it lands last.
func TestAnUnansweredRequestIsConfirmedLater(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		_, _ = s.Accept(ctx, []Report{report("a", 1, "INPROGRESS")}, always)
		row := claim(t, s, "w", 1)[0]
		finishOK(t, s, "w", row, Outcome{RetryAt: time.Now(), Uncertain: true, Error: "no answer"})
		if r := get(t, s, "a"); !r.Uncertain || !r.Pending {
			t.Fatalf("%+v", r)
		}
		_, _ = s.Accept(ctx, []Report{report("a", 1, "SUCCESSFUL")}, always)
		row = claim(t, s, "w", 1)[0]
		const confirm = time.Minute
		finishOK(t, s, "w", row, Outcome{Done: true, PostedState: "SUCCESSFUL", PostedPipeline: 1, ConfirmAfter: confirm})
		r := get(t, s, "a")
		if !r.Pending || r.Uncertain || time.Until(r.NextAttempt) < confirm-5*time.Second || time.Until(r.NextAttempt) > confirm+5*time.Second {
			t.Fatalf("not scheduled for confirmation in %s: %+v (due in %s)", confirm, r, time.Until(r.NextAttempt))
		}
		if due := claim(t, s, "w", 1); len(due) != 0 {
			t.Fatal("confirmed at once")
		}
		later(t, s, confirm)
		row = claim(t, s, "w", 1)[0]
		finishOK(t, s, "w", row, Outcome{Done: true, PostedState: "SUCCESSFUL", PostedPipeline: 1, ConfirmAfter: confirm})
		if r := get(t, s, "a"); r.Pending || r.PostSeq != 2 {
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
		rows := claim(t, s, "w", 1)
		finishOK(t, s, "w", rows[0], Outcome{Done: true})
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
		if p, err := s.Prune(ctx, time.Hour); err != nil || p != (Pruned{}) {
			t.Fatalf("pruned %+v, %v: nothing is an hour old", p, err)
		}
		// A day later, with a retention of an hour: the posted row, the row
		// still pending (Bitbucket never took it) and the project with no
		// status go; the project with statuses stays until they go.
		later(t, s, 24*time.Hour)
		_, _ = s.Accept(ctx, []Report{report("c", 1, "INPROGRESS")}, always)
		if p, err := s.Prune(ctx, time.Hour); err != nil || p != (Pruned{Posted: 1, Abandoned: 1, Projects: 1}) {
			t.Fatalf("pruned %+v, %v", p, err)
		}
		if p, _ := s.Projects(ctx); len(p) != 1 || p[0].ID != 42 {
			t.Fatalf("%+v", p)
		}
		if r, _ := s.Get(ctx, "c"); r == nil {
			t.Fatal("a fresh status was pruned")
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
				if _, err := s.Accept(ctx, []Report{report(fmt.Sprint("s", i%100), int64(i), "INPROGRESS")}, newer); err != nil {
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
				rows, err := s.store.Claim(ctx, Claim{Owner: s.owner, Lease: time.Minute, Limit: 3})
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
	if rows, _ := s.Claim(ctx, Claim{Owner: "dead-process", Lease: time.Hour, Limit: 1}); len(rows) != 1 {
		t.Fatal("no claim")
	}
	_, _ = s.AcceptPush(ctx, Push{ProjectPath: "acme/widgets", Repository: "bitbucket.org/acme/widgets", Refs: []PushedRef{{Ref: "refs/heads/main", Commit: strings.Repeat("a", 40)}}})
	if jobs, _ := s.ClaimPushes(ctx, Claim{Owner: "dead-process", Lease: time.Hour, Limit: 1}); len(jobs) != 1 {
		t.Fatal("no mirror job claimed")
	}
	s.Close()
	s, err = OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.Claim(ctx, Claim{Owner: "new-process", Lease: time.Minute, Limit: 1})
	if err != nil || len(rows) != 1 || rows[0].State != "FAILED" {
		t.Fatalf("after reopening: %+v %v", rows, err)
	}
	// A mirror job the dead process held is released too, not a minute later.
	if jobs, err := s.ClaimPushes(ctx, Claim{Owner: "new-process", Lease: time.Minute, Limit: 1}); err != nil || len(jobs) != 1 {
		t.Fatalf("mirror jobs after reopening: %+v %v", jobs, err)
	}
}
