package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver: no cgo, a static binary
)

// SQLite is the embedded store: one file in a directory, WAL journal, every
// commit fsynced (synchronous=FULL), so a webhook answered 202 survives
// SIGKILL and power loss alike.
type SQLite struct {
	db       *sql.DB
	batch    *batcher
	projects projectCache
	// Statements prepared once: SQLite parsing a statement costs more than
	// running it (half the CPU of an accept, measured).
	get, upsert, project, claim, finishDone, finishRetry *sql.Stmt
}

const schema = `
CREATE TABLE IF NOT EXISTS statuses (
	id TEXT PRIMARY KEY,
	credential TEXT NOT NULL,
	pipeline_id INTEGER NOT NULL,
	state TEXT NOT NULL,
	final INTEGER NOT NULL,
	finished_at INTEGER NOT NULL,
	body BLOB NOT NULL,
	project_id INTEGER NOT NULL,
	version INTEGER NOT NULL,
	pending INTEGER NOT NULL,
	accepted_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	next_attempt_at INTEGER NOT NULL DEFAULT 0,
	lease_owner TEXT NOT NULL DEFAULT '',
	lease_until INTEGER NOT NULL DEFAULT 0,
	posted_state TEXT NOT NULL DEFAULT '',
	posted_pipeline INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS statuses_due ON statuses (next_attempt_at, accepted_at) WHERE pending = 1;
CREATE TABLE IF NOT EXISTS projects (
	id INTEGER PRIMARY KEY,
	path TEXT NOT NULL,
	swept_at INTEGER NOT NULL DEFAULT 0
);`

// OpenSQLite opens (or creates) the store in dir. Leases left by a
// process that died are released: one process owns the directory.
func OpenSQLite(ctx context.Context, dir string) (*SQLite, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the data directory: %w", err)
	}
	path := filepath.Join(dir, "relay.db")
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=cache_size(-16000)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	// SQLite has one writer at a time: one connection makes the order of
	// writes this process's own, and the batcher fills each transaction.
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE statuses SET lease_owner = '', lease_until = 0 WHERE lease_owner <> ''`); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	s := &SQLite{db: db}
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&s.get, `SELECT ` + rowColumns + ` FROM statuses WHERE id = ?`},
		{&s.upsert, upsertSQL}, {&s.project, projectSQL}, {&s.claim, claimSQL},
		{&s.finishDone, finishDoneSQL}, {&s.finishRetry, finishRetrySQL},
	} {
		if *p.stmt, err = db.PrepareContext(ctx, p.sql); err != nil {
			db.Close()
			return nil, fmt.Errorf("preparing %q: %w", p.sql, err)
		}
	}
	s.batch = newBatcher(db, 1, true, nil)
	return s, nil
}

const (
	upsertSQL = `
INSERT INTO statuses (id, credential, pipeline_id, state, final, finished_at, body, project_id, version, pending, accepted_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 1, ?, ?)
ON CONFLICT (id) DO UPDATE SET credential = excluded.credential, pipeline_id = excluded.pipeline_id, state = excluded.state,
	final = excluded.final, finished_at = excluded.finished_at, body = excluded.body, project_id = excluded.project_id,
	version = statuses.version + 1, accepted_at = CASE WHEN statuses.pending = 1 THEN statuses.accepted_at ELSE excluded.accepted_at END,
	pending = 1, attempts = 0, next_attempt_at = 0, updated_at = excluded.updated_at`
	projectSQL = `INSERT INTO projects (id, path) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET path = excluded.path`
	claimSQL   = `
UPDATE statuses SET lease_owner = ?, lease_until = ? WHERE id IN (
	SELECT id FROM statuses WHERE pending = 1 AND next_attempt_at <= ? AND lease_until <= ? ORDER BY next_attempt_at, accepted_at LIMIT ?)
RETURNING ` + rowColumns
	finishDoneSQL = `
UPDATE statuses SET pending = CASE WHEN version = ? THEN 0 ELSE 1 END, attempts = 0, next_attempt_at = 0,
	lease_owner = '', lease_until = 0, last_error = ?, updated_at = ?,
	posted_state = CASE WHEN ? <> '' THEN ? ELSE posted_state END,
	posted_pipeline = CASE WHEN CAST(? AS BIGINT) <> 0 THEN CAST(? AS BIGINT) ELSE posted_pipeline END
WHERE id = ? AND lease_owner = ?`
	finishRetrySQL = `
UPDATE statuses SET attempts = attempts + 1, next_attempt_at = CASE WHEN version = ? THEN CAST(? AS BIGINT) ELSE 0 END,
	lease_owner = '', lease_until = 0, last_error = ?, updated_at = ?
WHERE id = ? AND lease_owner = ?`
)

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// Accept implements Store.
func (s *SQLite) Accept(ctx context.Context, reports []Report, keep Keep) ([]bool, error) {
	changed := make([]bool, len(reports))
	err := s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		get, upsert, project := tx.StmtContext(ctx, s.get), tx.StmtContext(ctx, s.upsert), tx.StmtContext(ctx, s.project)
		return merge(ctx, statements{
			get: func(ctx context.Context, id string) *sql.Row { return get.QueryRowContext(ctx, id) },
			upsert: func(ctx context.Context, r Report, now int64) error {
				_, err := upsert.ExecContext(ctx, r.StatusID, r.Credential, r.PipelineID, r.State, r.Final, ms(r.FinishedAt), r.Body, r.ProjectID, now, now)
				return err
			},
			project: func(ctx context.Context, r Report) error {
				_, err := project.ExecContext(ctx, r.ProjectID, r.ProjectPath)
				return err
			},
		}, reports, keep, &s.projects, changed)
	})
	if err != nil {
		return nil, err
	}
	return changed, nil
}

const rowColumns = `id, credential, pipeline_id, state, final, finished_at, body, project_id, version, pending, accepted_at,
	attempts, next_attempt_at, posted_state, posted_pipeline, last_error`

type scanner interface{ Scan(...any) error }

func scanRow(sc scanner) (*Row, error) {
	var r Row
	var finished, accepted, next int64
	if err := sc.Scan(&r.StatusID, &r.Credential, &r.PipelineID, &r.State, &r.Final, &finished, &r.Body, &r.ProjectID,
		&r.Version, &r.Pending, &accepted, &r.Attempts, &next, &r.PostedState, &r.PostedPipeline, &r.LastError); err != nil {
		return nil, err
	}
	r.FinishedAt, r.AcceptedAt, r.NextAttempt = fromMS(finished), fromMS(accepted), fromMS(next)
	return &r, nil
}

// Get implements Store.
func (s *SQLite) Get(ctx context.Context, id string) (*Row, error) {
	r, err := scanRow(s.get.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return r, err
}

// Claim implements Store.
func (s *SQLite) Claim(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Row, error) {
	var out []Row
	err := s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		out, err = collectRows(tx.StmtContext(ctx, s.claim).QueryContext(ctx, owner, ms(now.Add(lease)), ms(now), ms(now), limit))
		return err
	})
	return out, err
}

// collectRows reads every row of a query's answer.
func collectRows(rows *sql.Rows, err error) ([]Row, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, rows.Err()
}

// Finish implements Store. A row that a newer event changed meanwhile stays
// pending and due at once, whatever this attempt's outcome.
func (s *SQLite) Finish(ctx context.Context, owner string, row Row, o Outcome) error {
	return s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		now := ms(time.Now())
		var err error
		if o.Done {
			_, err = tx.StmtContext(ctx, s.finishDone).ExecContext(ctx, row.Version, o.Error, now, o.PostedState, o.PostedState,
				o.PostedPipeline, o.PostedPipeline, row.StatusID, owner)
		} else {
			_, err = tx.StmtContext(ctx, s.finishRetry).ExecContext(ctx, row.Version, ms(o.RetryAt), o.Error, now, row.StatusID, owner)
		}
		return err
	})
}

// Stats implements Store.
func (s *SQLite) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	var oldest sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT count(*), min(accepted_at) FROM statuses WHERE pending = 1`).Scan(&st.Pending, &oldest)
	st.OldestPending = fromMS(oldest.Int64)
	return st, err
}

// Projects implements Store.
func (s *SQLite) Projects(ctx context.Context) ([]Project, error) { return queryProjects(ctx, s.db) }

func queryProjects(ctx context.Context, db *sql.DB) ([]Project, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, path, swept_at FROM projects ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Project
	for rows.Next() {
		var p Project
		var swept int64
		if err := rows.Scan(&p.ID, &p.Path, &swept); err != nil {
			return nil, err
		}
		p.SweptAt = fromMS(swept)
		out = append(out, p)
	}
	return out, rows.Err()
}

// RememberProject implements Store.
func (s *SQLite) RememberProject(ctx context.Context, id int64, path string) error {
	_, err := s.db.ExecContext(ctx, projectSQL, id, path)
	return err
}

// Lead implements Store: one process owns an embedded store.
func (s *SQLite) Lead(context.Context) (bool, error) { return true, nil }

// MarkSwept implements Store.
func (s *SQLite) MarkSwept(ctx context.Context, projectID int64, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE projects SET swept_at = ? WHERE id = ?`, ms(at), projectID)
	return err
}

// Prune implements Store.
func (s *SQLite) Prune(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM statuses WHERE pending = 0 AND updated_at < ?`, ms(before))
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Ping implements Store: the database answers a read.
func (s *SQLite) Ping(ctx context.Context) error {
	var one int
	return s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

// Close implements Store.
func (s *SQLite) Close() error {
	s.batch.close()
	return s.db.Close()
}
