package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestClaimTakesTheOldestDueRowsOfEveryServer: rows are looked up server by
// server, and the oldest due over all of them are handed out (in no set
// order: they are posted at once); a skipped server's rows and rows not yet
// due are left.
func TestClaimTakesTheOldestDueRowsOfEveryServer(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		var reports []Report
		for _, r := range []struct {
			id, server string
		}{{"a1", "a"}, {"a2", "a"}, {"b1", "b"}, {"b2", "b"}, {"c1", "c"}, {"c2", "c"}, {"c3", "c"}} {
			rep := report(r.id, 1, "INPROGRESS")
			rep.Server = r.server
			reports = append(reports, rep)
		}
		if _, err := s.Accept(ctx, reports, always); err != nil {
			t.Fatal(err)
		}
		// Due times (ms): c2 first, then a2, c1, a1; c3 is not due for an hour.
		for id, due := range map[string]string{"c2": "1", "a2": "2", "c1": "3", "a1": "4", "b1": "0", "b2": "0", "c3": "{now} + 3600000"} {
			d := sqliteSQL
			if _, ok := s.(*Postgres); ok {
				d = postgresSQL
			}
			if _, err := dbOf(s).Exec(d.sql(`UPDATE statuses SET next_attempt_at = `+due+` WHERE id = ?`), id); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := s.Claim(ctx, Claim{Owner: "w", Lease: time.Minute, Limit: 3, Skip: []string{"b"}})
		if err != nil {
			t.Fatal(err)
		}
		ids := func(rows []Row) string {
			var out []string
			for _, r := range rows {
				out = append(out, r.StatusID)
			}
			slices.Sort(out)
			return fmt.Sprint(out)
		}
		if got := ids(rows); got != "[a2 c1 c2]" {
			t.Errorf("claimed %v, want [a2 c1 c2]", got)
		}
		if got := ids(claim(t, s, "w", 10)); got != "[a1 b1 b2]" {
			t.Errorf("then %v, want [a1 b1 b2] (b's rows, now that b is not skipped, and a1; c3 is not due)", got)
		}
	})
}

// TestClaimPlanStaysOffTheBacklog: the claim looks rows up by server in
// the index of due rows, never walking the due rows of every server, so a
// server held back with a backlog of any size costs one index step.
func TestClaimPlanStaysOffTheBacklog(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		conn, err := dbOf(s).Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		query, args, want := "EXPLAIN QUERY PLAN "+sqliteClaimSQL, []any{int64(1), "w", int64(1000), "|held|", 10},
			"SEARCH x USING INDEX statuses_server_due (server=? AND next_attempt_at<?)"
		if _, ok := s.(*Postgres); ok {
			if _, err := conn.ExecContext(ctx, "SET enable_seqscan = off"); err != nil {
				t.Fatal(err)
			}
			query, args, want = "EXPLAIN "+pgClaimSQL, []any{"w", int64(1000), "|held|", 10, 10}, "Index Cond: ((server = pending_servers.server) AND (next_attempt_at <= "
		}
		text := queryPlan(t, conn, query, args...)
		if !strings.Contains(text, want) {
			t.Errorf("the claim does not look due rows up by server (%q):\n%s", want, text)
		}
		if strings.Contains(text, "statuses_due") {
			t.Errorf("the claim walks the old index of all due rows:\n%s", text)
		}
	})
}

// BenchmarkClaimBehindAHeldServer: a claim with a server held back (its
// breaker open) behind a backlog of 0 or 100,000 due rows, and one row due
// elsewhere: the backlog must not cost the claim.
func BenchmarkClaimBehindAHeldServer(b *testing.B) {
	for _, backlog := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("backlog=%d", backlog), func(b *testing.B) {
			ctx := context.Background()
			s, err := OpenSQLite(ctx, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if backlog > 0 {
				if _, err := s.db.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
					INSERT INTO statuses (id, credential, server, pipeline_id, state, final, finished_at, body, project_id, version, pending, accepted_at, updated_at)
					SELECT 'held-' || i, 'default', 'held', i, 'INPROGRESS', 0, 0, '{}', 1, 1, 1, i, i FROM n`, backlog); err != nil {
					b.Fatal(err)
				}
			}
			rep := report("other", 1, "INPROGRESS")
			if _, err := s.Accept(ctx, []Report{rep}, always); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				rows, err := s.Claim(ctx, Claim{Owner: "w", Lease: time.Millisecond, Limit: 8, Skip: []string{"held"}})
				if err != nil || len(rows) != 1 {
					b.Fatalf("%d rows, %v", len(rows), err)
				}
				// Due again at once: the next claim finds it.
				if _, err := s.db.Exec(`UPDATE statuses SET lease_until = 0 WHERE id = 'other'`); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
