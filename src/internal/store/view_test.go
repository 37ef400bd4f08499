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
		// The newest 20, and the event that created the status (the newest
		// state change is among the 20).
		found, _, _ = s.Find(ctx, Find{Commit: sha, Limit: 10, History: 100})
		h = found[0].History
		if len(h) != HistoryLength+1 || h[0].PipelineID != 39 || h[len(h)-1].Detail != "taken" || h[len(h)-1].PipelineID != 1 {
			t.Fatalf("%d entries, newest %+v, oldest %+v", len(h), h[0], h[len(h)-1])
		}
		var n int
		if err := dbOf(s).QueryRow(`SELECT count(*) FROM history`).Scan(&n); err != nil || n != HistoryLength+1 {
			t.Fatalf("%d history rows kept, want %d", n, HistoryLength+1)
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

// TestHistoryKeepsItsStart: twenty-five failed posts after two events
// leave the newest twenty posts, and still the event that created the
// status and the last one that changed it, not only post lines.
func TestHistoryKeepsItsStart(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		sha := "0123456789abcdef0123456789abcdef01234567"
		r := report("cloud|x|acme/widgets|"+sha+"|gitlab/acme/widgets", 1, "INPROGRESS")
		r.Commit = sha
		if _, err := s.Accept(ctx, []Report{r}, always); err != nil {
			t.Fatal(err)
		}
		r.State = "FAILED"
		if _, err := s.Accept(ctx, []Report{r}, always); err != nil {
			t.Fatal(err)
		}
		// An ignored duplicate is not a change.
		if _, err := s.Accept(ctx, []Report{r}, func(*Row, Report) (Decision, string) { return Ignore, "a duplicate" }); err != nil {
			t.Fatal(err)
		}
		for range 25 {
			row := claim(t, s, "w", 1)[0]
			finishOK(t, s, "w", row, Outcome{RetryAt: time.Now(), Error: "Bitbucket answered 502", Attempt: &Attempt{State: "FAILED", PipelineID: 1, Code: 502}})
		}
		found, _, err := s.Find(ctx, Find{Commit: sha, Limit: 1, History: HistoryKept})
		if err != nil || len(found) != 1 {
			t.Fatal(found, err)
		}
		h := found[0].History
		if len(h) != HistoryKept {
			t.Fatalf("%d entries, want %d", len(h), HistoryKept)
		}
		for _, e := range h[:HistoryLength] {
			if e.Kind != "post" || e.Code != 502 {
				t.Errorf("the newest 20 should be the posts: %+v", e)
			}
		}
		if last := h[HistoryLength]; last.Kind != "event" || last.State != "FAILED" || !last.Change {
			t.Errorf("the last state change was not kept: %+v", last)
		}
		if first := h[HistoryLength+1]; first.Kind != "event" || first.State != "INPROGRESS" || !first.Change {
			t.Errorf("the event that created the status was not kept: %+v", first)
		}
	})
}

// TestSkipsAreKeptPerCommit: what was received for a commit and not
// reported, one line per pipeline, found by a commit's prefix, pruned
// with the retention.
func TestSkipsAreKeptPerCommit(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		sha := "0123456789abcdef0123456789abcdef01234567"
		child := Skip{Commit: sha, ProjectPath: "acme/widgets", PipelineID: 2046, IID: 8, Source: "parent_pipeline", Reason: "child_pipeline",
			Detail: "pipeline 2046 is a child pipeline of pipeline 2045"}
		for range 3 {
			if err := s.NoteSkip(ctx, child); err != nil {
				t.Fatal(err)
			}
		}
		sub := Skip{Commit: sha, ProjectPath: "acme/platform/api", PipelineID: 3000, IID: 1, Source: "push", Reason: "subgroup",
			Detail: "acme/platform/api is in a subgroup"}
		if err := s.NoteSkip(ctx, sub); err != nil {
			t.Fatal(err)
		}
		if err := s.NoteSkip(ctx, Skip{Commit: fmt.Sprintf("%040x", 1), ProjectPath: "other/x", PipelineID: 1, Reason: "skip_route"}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Skips(ctx, sha[:9], 10)
		if err != nil || len(got) != 2 {
			t.Fatalf("%+v %v", got, err)
		}
		byPipeline := map[int64]Skip{got[0].PipelineID: got[0], got[1].PipelineID: got[1]}
		if c := byPipeline[2046]; c.Count != 3 || c.Reason != "child_pipeline" || c.IID != 8 || c.Source != "parent_pipeline" || c.At.IsZero() {
			t.Errorf("the child's line: %+v", c)
		}
		if c := byPipeline[3000]; c.Count != 1 || c.Detail != "acme/platform/api is in a subgroup" {
			t.Errorf("the subgroup's line: %+v", c)
		}
		later(t, s, 48*time.Hour)
		if _, err := s.Prune(ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Skips(ctx, sha, 10); err != nil || len(got) != 0 {
			t.Errorf("after the retention: %+v %v", got, err)
		}
	})
}

// TestWaitingKeepsTheLastError: a status handed back without an attempt
// (its credential paused) says why it waits, and keeps the error of the
// attempt before; a status that never failed has no error.
func TestWaitingKeepsTheLastError(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		r := report("waiting", 1, "SUCCESSFUL")
		if _, err := s.Accept(ctx, []Report{r}, always); err != nil {
			t.Fatal(err)
		}
		row := claim(t, s, "w", 1)[0]
		finishOK(t, s, "w", row, Outcome{RetryAt: time.Now(), NotAttempted: true, Error: "waiting: the credential is paused"})
		if got := get(t, s, "waiting"); got.LastError != "" || got.Waiting != "waiting: the credential is paused" {
			t.Errorf("never failed: last error %q, waiting %q", got.LastError, got.Waiting)
		}
		row = claim(t, s, "w", 1)[0]
		finishOK(t, s, "w", row, Outcome{RetryAt: time.Now(), Error: "Bitbucket answered 502 Bad Gateway", Attempt: &Attempt{State: "SUCCESSFUL", Code: 502}})
		row = claim(t, s, "w", 1)[0]
		finishOK(t, s, "w", row, Outcome{RetryAt: time.Now(), NotAttempted: true, Error: "waiting: the credential is paused"})
		if got := get(t, s, "waiting"); got.LastError != "Bitbucket answered 502 Bad Gateway" || got.Waiting != "waiting: the credential is paused" {
			t.Errorf("paused after a 502: last error %q, waiting %q", got.LastError, got.Waiting)
		}
		row = claim(t, s, "w", 1)[0]
		finishOK(t, s, "w", row, Outcome{Done: true, PostedState: "SUCCESSFUL", PostedPipeline: 1, Attempt: &Attempt{State: "SUCCESSFUL", Code: 201}})
		if got := get(t, s, "waiting"); got.LastError != "" || got.Waiting != "" {
			t.Errorf("posted: last error %q, waiting %q", got.LastError, got.Waiting)
		}
	})
}

// TestSearchesPageAndIgnoreCase: a commit's statuses, the failing first; a
// project's, in any letter case, page by page.
func TestSearchesPageAndIgnoreCase(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		sha := "0123456789abcdef0123456789abcdef01234567"
		var reports []Report
		for i := range 9 {
			r := report(fmt.Sprintf("cloud|x|acme/widgets|%s|key-%d", sha, i), int64(i+1), "SUCCESSFUL")
			r.Commit, r.ProjectPath = sha, "Acme/Widgets"
			reports = append(reports, r)
		}
		if _, err := s.Accept(ctx, reports, always); err != nil {
			t.Fatal(err)
		}
		for _, row := range claim(t, s, "w", 9) {
			o := Outcome{Done: true, PostedState: "SUCCESSFUL", PostedPipeline: row.PipelineID}
			if row.StatusID == reports[2].StatusID || row.StatusID == reports[7].StatusID {
				o = Outcome{Done: true, Error: "Bitbucket refused the request (403 Forbidden)"}
			}
			finishOK(t, s, "w", row, o)
		}
		found, total, err := s.Find(ctx, Find{Commit: sha, Limit: 100, History: 1})
		if err != nil || total != 9 || len(found) != 9 {
			t.Fatalf("%d of %d, %v", len(found), total, err)
		}
		for i, f := range found {
			if refused := f.LastError != ""; refused != (i < 2) {
				t.Errorf("position %d: %s refused=%v; the refused ones come first", i, f.StatusID, refused)
			}
		}
		seen := map[string]bool{}
		for page := range 3 {
			found, total, err := s.Find(ctx, Find{Project: "acme/WIDGETS", Limit: 4, Offset: page * 4})
			if err != nil || total != 9 || len(found) != []int{4, 4, 1}[page] {
				t.Fatalf("page %d: %d of %d, %v", page+1, len(found), total, err)
			}
			for _, f := range found {
				if seen[f.StatusID] {
					t.Errorf("%s on two pages", f.StatusID)
				}
				seen[f.StatusID] = true
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
			{Find{Project: "Acme/Widgets"}, "statuses_project_lower"},
		} {
			where, args := findWhere(d, c.find.Commit, c.find.Project)
			if text := queryPlan(t, conn, d.sql(explain+`SELECT 1 FROM statuses WHERE `+where), args...); !strings.Contains(text, c.index) || !strings.Contains(text, lookup) {
				t.Errorf("%+v: the plan does not look up %s (%q): %s", c.find, c.index, lookup, text)
			}
		}
		// What a commit received and did not report.
		skipLookup := "SEARCH skips USING"
		if _, ok := s.(*Postgres); ok {
			skipLookup = "Index Cond"
		}
		for _, commit := range []string{"0123456789abcdef0123456789abcdef01234567", "0123456"} {
			where, args := commitWhere(d, "commit_sha", commit)
			if text := queryPlan(t, conn, d.sql(explain+`SELECT 1 FROM skips WHERE `+where), args...); !strings.Contains(text, skipLookup) {
				t.Errorf("skips of %s: the plan does not use an index: %s", commit, text)
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
