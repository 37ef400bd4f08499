package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPushesJoinTheirProjectsJob: pushes to one project's repository join
// one mirror job (refs merged, the newest commit per ref), each pushed
// commit keeps its history; a push during a lease keeps the job pending
// after it, so an update always follows the last push; a finished job is
// pruned with the retention.
func TestPushesJoinTheirProjectsJob(t *testing.T) {
	each(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		c1, c2, c3 := strings.Repeat("a", 40), strings.Repeat("b", 40), strings.Repeat("c", 40)
		for _, p := range []Push{
			{ProjectPath: "acme/webapp", Repository: "bitbucket.org/acme/webapp", Refs: []PushedRef{{Ref: "refs/heads/main", Commit: c1}}},
			{ProjectPath: "acme/webapp", Repository: "bitbucket.org/acme/webapp", Refs: []PushedRef{{Ref: "refs/heads/main", Commit: c2},
				{Ref: "refs/heads/feature", Commit: c3}}},
		} {
			fresh, err := s.AcceptPush(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			// The first push begins the job; the second joins it.
			if want := p.Refs[0].Commit == c1; fresh != want {
				t.Errorf("push of %s: fresh %v, want %v", p.Refs[0].Commit[:4], fresh, want)
			}
		}
		if st, err := s.Stats(ctx); err != nil || st.PendingPushes != 1 {
			t.Fatalf("stats %+v %v", st, err)
		}
		jobs, err := s.ClaimPushes(ctx, Claim{Owner: "w", Lease: time.Minute, Limit: 10})
		if err != nil || len(jobs) != 1 {
			t.Fatalf("%+v %v", jobs, err)
		}
		job := jobs[0]
		if job.Version != 2 || fmt.Sprint(job.Refs) != fmt.Sprintf("[{refs/heads/main %s} {refs/heads/feature %s}]", c2, c3) ||
			job.PushedAt.IsZero() || job.FirstPushedAt.After(job.PushedAt) || job.LeaseLeft <= 0 || job.Repository != "bitbucket.org/acme/webapp" {
			t.Fatalf("job %+v", job)
		}
		if again, _ := s.ClaimPushes(ctx, Claim{Owner: "x", Lease: time.Minute, Limit: 10}); len(again) != 0 {
			t.Fatalf("a leased job claimed twice: %+v", again)
		}
		// A push while the job is leased: the job stays pending after it.
		if _, err := s.AcceptPush(ctx, Push{ProjectPath: "acme/webapp", Repository: "bitbucket.org/acme/webapp",
			Refs: []PushedRef{{Ref: "refs/heads/main", Commit: c1}}}); err != nil {
			t.Fatal(err)
		}
		baseline := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
		if err := s.FinishPush(ctx, "w", job, PushOutcome{Done: true, ProjectID: 42, Baseline: baseline, BaselineVersion: 2,
			Events: []PushEvent{{Kind: "update", Detail: "GitLab's mirror update ran"}}}); err != nil {
			t.Fatal(err)
		}
		jobs, _ = s.ClaimPushes(ctx, Claim{Owner: "w", Lease: time.Minute, Limit: 10})
		if len(jobs) != 1 || jobs[0].Version != 3 || jobs[0].ProjectID != 42 || !jobs[0].Baseline.Equal(baseline) || jobs[0].BaselineVersion != 2 {
			t.Fatalf("after a push during the lease: %+v", jobs)
		}
		// Not done: due again after the wait asked.
		if err := s.FinishPush(ctx, "w", jobs[0], PushOutcome{RetryAt: time.Now().Add(time.Hour), ProjectID: 42, Triggered: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if jobs, _ := s.ClaimPushes(ctx, Claim{Owner: "w", Lease: time.Minute, Limit: 10}); len(jobs) != 0 {
			t.Fatalf("claimed before its time: %+v", jobs)
		}
		events, err := s.PushEvents(ctx, c2[:10], 10)
		if err != nil || len(events) != 2 || events[0].Kind != "update" || events[1].Kind != "push" ||
			events[1].Detail != "pushed refs/heads/main to bitbucket.org/acme/webapp; the mirror of acme/webapp is to fetch it" {
			t.Fatalf("events %+v %v", events, err)
		}
		// Finished and old: pruned, with its events.
		later(t, s, time.Hour)
		if _, err := dbOf(s).Exec(`UPDATE pushes SET pending = ` + map[bool]string{true: "false", false: "0"}[isPostgres(s)] +
			`, updated_at = updated_at - 172800000`); err != nil {
			t.Fatal(err)
		}
		if _, err := dbOf(s).Exec(`UPDATE push_events SET at = at - 172800000`); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Prune(ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
		for _, table := range []string{"pushes", "push_events"} {
			var n int
			if err := dbOf(s).QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil || n != 0 {
				t.Errorf("%s: %d rows after the prune (%v)", table, n, err)
			}
		}
	})
}

func isPostgres(s Store) bool {
	_, ok := s.(*Postgres)
	return ok
}
