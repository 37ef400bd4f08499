package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSQLiteFileStaysFlatUnderSteadyLoad: a steady load of new commits,
// each status posted, an hour of the store's clock passing per round, and
// a retention of three hours. After the retention fills, the database
// file (with its WAL) stops growing: deleted rows' pages are reused.
func TestSQLiteFileStaysFlatUnderSteadyLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	size := func() int64 {
		var n int64
		for _, f := range []string{"relay.db", "relay.db-wal"} {
			if fi, err := os.Stat(filepath.Join(dir, f)); err == nil {
				n += fi.Size()
			}
		}
		return n
	}
	const rounds, perRound = 16, 300
	var sizes []int64
	id := 0
	for round := range rounds {
		var reports []Report
		for range perRound {
			id++
			r := report(fmt.Sprintf("cloud|https://api.bitbucket.org/2.0|acme/widgets|%040x|gitlab/acme/widgets", id), int64(id), "SUCCESSFUL")
			r.Body = []byte(fmt.Sprintf(`{"pipeline":{"id":%d,"sha":"%040x","project_path":"acme/widgets","url":"https://gitlab.example.com/acme/widgets/-/pipelines/%d"}}`, id, id, id))
			reports = append(reports, r)
		}
		if _, err := s.Accept(ctx, reports, always); err != nil {
			t.Fatal(err)
		}
		for {
			rows, err := s.Claim(ctx, Claim{Owner: "w", Lease: time.Minute, Limit: 500})
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) == 0 {
				break
			}
			for _, row := range rows {
				finishOK(t, s, "w", row, Outcome{Done: true, PostedState: row.State, PostedPipeline: row.PipelineID})
			}
		}
		later(t, s, time.Hour)
		if _, err := s.Prune(ctx, 3*time.Hour); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, size())
		_ = round
	}
	t.Logf("file size per round (%d statuses accepted and posted each, 3 rounds kept): %v", perRound, sizes)
	// From round 6 on (the retention full for a while), no growth beyond
	// 10% of what it was then.
	settled := sizes[5]
	for i, n := range sizes[6:] {
		if n > settled*11/10 {
			t.Fatalf("round %d: %d bytes, over 110%% of %d at round 6: the store grows under a steady load (%v)", i+7, n, settled, sizes)
		}
	}
}
