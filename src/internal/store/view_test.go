package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestHistoryIsKeptBoundedAndFound: events and posts go into a status's
// history, newest first, at most HistoryLength of them; statuses are found
// by a full or short commit hash or by project, and a prune takes the
// history of what it deletes.
func TestHistoryIsKeptBoundedAndFound(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		sha := "0123456789abcdef0123456789abcdef01234567"
		r := report("cloud|x|acme/widgets|"+sha+"|gitlab/acme/widgets", 1, "INPROGRESS")
		r.Commit = sha
		if _, err := s.Accept(ctx, []Report{r}, always); err != nil {
			t.Fatal(err)
		}
		row := claim(t, s, "w", 1)[0]
		finishOK(t, s, "w", row, Outcome{RetryAt: time.Now(), Error: "Bitbucket answered 503", Attempt: &Attempt{State: "INPROGRESS", PipelineID: 1, Code: 503}})
		older := r
		older.PipelineID, older.State = 0, "FAILED"
		if _, err := s.Accept(ctx, []Report{older}, newer); err != nil {
			t.Fatal(err)
		}
		found, total, err := s.Find(ctx, Find{Commit: sha[:7], Limit: 10, History: 20})
		if err != nil || total != 1 || len(found) != 1 {
			t.Fatalf("%+v %d %v", found, total, err)
		}
		h := found[0].History
		if len(h) != 3 || h[0].Kind != "event" || h[0].Detail != "older" || h[0].State != "FAILED" ||
			h[1].Kind != "post" || h[1].Code != 503 || h[1].Detail != "Bitbucket answered 503" ||
			h[2].Kind != "event" || h[2].Detail != "taken" || h[2].Source != "push" || found[0].Commit != sha || found[0].ProjectPath != "acme/widgets" {
			t.Fatalf("%+v", h)
		}
		for i := range 30 {
			r.PipelineID = int64(10 + i)
			_, _ = s.Accept(ctx, []Report{r}, newer)
		}
		found, _, _ = s.Find(ctx, Find{Commit: sha, Limit: 10, History: 100})
		if len(found[0].History) != HistoryLength || found[0].History[0].PipelineID != 39 {
			t.Fatalf("%d entries, newest %+v", len(found[0].History), found[0].History[0])
		}
		var n int
		if err := dbOf(s).QueryRow(`SELECT count(*) FROM history`).Scan(&n); err != nil || n != HistoryLength {
			t.Fatalf("%d history rows kept, want %d", n, HistoryLength)
		}
		// Another status of the project, another commit.
		other := report("cloud|x|acme/widgets|"+fmt.Sprintf("%040x", 9)+"|gitlab/acme/widgets", 50, "SUCCESSFUL")
		other.Commit = fmt.Sprintf("%040x", 9)
		_, _ = s.Accept(ctx, []Report{other}, always)
		if found, total, _ := s.Find(ctx, Find{Project: "acme/widgets", Limit: 1, History: 1}); total != 2 || len(found) != 1 || found[0].Commit != other.Commit {
			t.Fatalf("by project: %d, %+v", total, found)
		}
		if found, total, _ := s.Find(ctx, Find{Commit: "0123456f", Limit: 10}); total != 0 || len(found) != 0 {
			t.Fatalf("a prefix that matches nothing: %+v", found)
		}
		// The overview: backlog, posts and failures per minute, the last
		// failure, the last sweep.
		if err := s.RecordSweep(ctx, Sweep{Projects: 3, Queued: 2, Verified: 1, Reposted: 1, Replica: "r1"}); err != nil {
			t.Fatal(err)
		}
		o, err := s.Overview(ctx, time.Now().Add(-time.Hour))
		if err != nil || o.Pending != 2 || o.LastSweep == nil || o.LastSweep.Projects != 3 || len(o.Minutes) != 1 || o.Minutes[0].Failures != 1 ||
			len(o.Failures) != 1 || o.Failures[0].Code != 503 || o.Failures[0].Server != "https://api.bitbucket.org/2.0" {
			t.Fatalf("%+v %v", o, err)
		}
		// Pruned with the status.
		rows := claim(t, s, "w", 10)
		for _, row := range rows {
			finishOK(t, s, "w", row, Outcome{Done: true, PostedState: row.State, PostedPipeline: row.PipelineID, Attempt: &Attempt{State: row.State, Code: 201}})
		}
		later(t, s, 48*time.Hour)
		if _, err := s.Prune(ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
		for table, want := range map[string]int{"history": 0, "server_minutes": 0, "statuses": 0} {
			if err := dbOf(s).QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil || n != want {
				t.Errorf("%s: %d rows after the prune, want %d (%v)", table, n, want, err)
			}
		}
	})
}

// TestSearchesFollowAnIndex: every search the status page makes looks its
// rows up in an index, whatever the table's size (PostgreSQL is told to
// avoid a scan it could make; one it must make shows in the plan). Reading
// a whole index is no better than reading the table: PostgreSQL shows an
// "Index Cond" only for a lookup, SQLite a SEARCH.
func TestSearchesFollowAnIndex(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		conn, err := dbOf(s).Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		d, explain, lookup := sqliteSQL, "EXPLAIN QUERY PLAN ", "SEARCH statuses USING "
		if _, ok := s.(*Postgres); ok {
			d, explain, lookup = postgresSQL, "EXPLAIN ", "Index Cond"
			if _, err := conn.ExecContext(ctx, "SET enable_seqscan = off"); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []struct {
			find  Find
			index string
		}{
			{Find{Commit: "0123456789abcdef0123456789abcdef01234567"}, "statuses_commit"},
			{Find{Commit: "0123456"}, "statuses_commit"},
			{Find{Project: "acme/widgets"}, "statuses_project"},
		} {
			where, args := findWhere(d, c.find)
			if text := queryPlan(t, conn, d.sql(explain+`SELECT 1 FROM statuses WHERE `+where), args...); !strings.Contains(text, c.index) || !strings.Contains(text, lookup) {
				t.Errorf("%+v: the plan does not look up %s (%q): %s", c.find, c.index, lookup, text)
			}
		}
	})
}

// TestPostgresQueriesAreNotCompiled: JIT compilation is off on the relay's
// connections, the status command's reader included.
func TestPostgresQueriesAreNotCompiled(t *testing.T) {
	s, ok := openTestPostgres(t).(*Postgres)
	if !ok {
		t.Fatal("not PostgreSQL")
	}
	reader, err := OpenPostgresReader(context.Background(), s.url)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	for name, db := range map[string]*sql.DB{"store": s.db, "writer": s.work, "reader": reader.db} {
		var jit string
		if err := db.QueryRow("SHOW jit").Scan(&jit); err != nil || jit != "off" {
			t.Errorf("%s: jit = %q, %v", name, jit, err)
		}
	}
}

// TestNoteAddsToTheHistory: a report's outcome joins its status's history,
// bounded like the rest; a status that does not exist takes nothing.
func TestNoteAddsToTheHistory(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		sha := "0123456789abcdef0123456789abcdef01234567"
		r := report("cloud|x|acme/widgets|"+sha+"|gitlab/acme/widgets", 1, "FAILED")
		r.Commit = sha
		if _, err := s.Accept(ctx, []Report{r}, always); err != nil {
			t.Fatal(err)
		}
		e := Entry{Kind: "report", PipelineID: 1, State: "FAILED", Code: 200, Detail: "test report published"}
		if err := s.Note(ctx, r.StatusID, e); err != nil {
			t.Fatal(err)
		}
		if err := s.Note(ctx, "no such status", e); err != nil {
			t.Fatal(err)
		}
		found, _, err := s.Find(ctx, Find{Commit: sha, Limit: 1, History: 5})
		if err != nil || len(found) != 1 {
			t.Fatal(found, err)
		}
		h := found[0].History
		if len(h) != 2 || h[0].Kind != "report" || h[0].State != "FAILED" || h[0].Code != 200 || h[0].Detail != "test report published" || h[1].Kind != "event" {
			t.Errorf("history %+v", h)
		}
		var n int
		if err := dbOf(s).QueryRow(`SELECT count(*) FROM history`).Scan(&n); err != nil || n != 2 {
			t.Errorf("%d history rows, want 2", n)
		}
	})
}
