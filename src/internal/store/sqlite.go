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
	get, upsert, rearm, project, claim *sql.Stmt
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
CREATE TABLE IF NOT EXISTS projects (
	id INTEGER PRIMARY KEY,
	path TEXT NOT NULL,
	swept_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, checked_at INTEGER NOT NULL);
INSERT INTO health (id, checked_at) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS history (
	id INTEGER PRIMARY KEY,
	status_id TEXT NOT NULL,
	at INTEGER NOT NULL,
	kind TEXT NOT NULL,
	pipeline_id INTEGER NOT NULL,
	state TEXT NOT NULL,
	source TEXT NOT NULL,
	code INTEGER NOT NULL,
	detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_status ON history (status_id, id);
CREATE INDEX IF NOT EXISTS history_at ON history (at);
CREATE TABLE IF NOT EXISTS server_minutes (server TEXT NOT NULL, minute INTEGER NOT NULL, posts INTEGER NOT NULL, failures INTEGER NOT NULL,
	PRIMARY KEY (server, minute));
CREATE TABLE IF NOT EXISTS server_failures (server TEXT PRIMARY KEY, at INTEGER NOT NULL, status_id TEXT NOT NULL, code INTEGER NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sweeps (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, projects INTEGER NOT NULL, queued INTEGER NOT NULL,
	verified INTEGER NOT NULL, reposted INTEGER NOT NULL, replica TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS skips (commit_sha TEXT NOT NULL, project_path TEXT NOT NULL, pipeline_id INTEGER NOT NULL, iid INTEGER NOT NULL,
	source TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, at INTEGER NOT NULL, count INTEGER NOT NULL,
	PRIMARY KEY (commit_sha, project_path, pipeline_id));
CREATE INDEX IF NOT EXISTS skips_at ON skips (at);
CREATE TABLE IF NOT EXISTS pushes (
	project_path TEXT PRIMARY KEY,
	repository TEXT NOT NULL,
	project_id INTEGER NOT NULL DEFAULT 0,
	refs BLOB NOT NULL,
	pushed_at INTEGER NOT NULL,
	first_pushed_at INTEGER NOT NULL,
	version INTEGER NOT NULL,
	pending INTEGER NOT NULL,
	next_attempt_at INTEGER NOT NULL DEFAULT 0,
	attempts INTEGER NOT NULL DEFAULT 0,
	baseline INTEGER NOT NULL DEFAULT 0,
	baseline_version INTEGER NOT NULL DEFAULT 0,
	triggered_at INTEGER NOT NULL DEFAULT 0,
	triggered_seen INTEGER NOT NULL DEFAULT 0,
	lease_owner TEXT NOT NULL DEFAULT '',
	lease_until INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS push_events (id INTEGER PRIMARY KEY, commit_sha TEXT NOT NULL, project_path TEXT NOT NULL, at INTEGER NOT NULL,
	kind TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS push_events_at ON push_events (at);
CREATE INDEX IF NOT EXISTS pushes_due ON pushes (next_attempt_at) WHERE pending = 1;
CREATE INDEX IF NOT EXISTS push_events_commit ON push_events (commit_sha, id);`

// sqliteIndexes need the columns added after the first release.
const sqliteIndexes = `
DROP INDEX IF EXISTS statuses_due;
CREATE INDEX IF NOT EXISTS statuses_server_due ON statuses (server, next_attempt_at, accepted_at) WHERE pending = 1;
CREATE INDEX IF NOT EXISTS statuses_commit ON statuses (commit_sha);
DROP INDEX IF EXISTS statuses_project;
CREATE INDEX IF NOT EXISTS statuses_project_lower ON statuses (lower(project_path), updated_at);`

// sqliteColumns came after the first release.
var sqliteColumns = []column{
	{"statuses", "server", "TEXT NOT NULL DEFAULT ''"},
	{"statuses", "post_seq", "INTEGER NOT NULL DEFAULT 0"},
	{"statuses", "uncertain", "INTEGER NOT NULL DEFAULT 0"},
	{"projects", "seen_at", "INTEGER NOT NULL DEFAULT 0"},
	{"statuses", "commit_sha", "TEXT NOT NULL DEFAULT ''"},
	{"statuses", "project_path", "TEXT NOT NULL DEFAULT ''"},
	{"statuses", "gitlab_status", "TEXT NOT NULL DEFAULT ''"},
	{"statuses", "description", "TEXT NOT NULL DEFAULT ''"},
	{"statuses", "iid", "INTEGER NOT NULL DEFAULT 0"},
	{"statuses", "waiting", "TEXT NOT NULL DEFAULT ''"},
	{"history", "iid", "INTEGER NOT NULL DEFAULT 0"},
	{"history", "state_change", "INTEGER NOT NULL DEFAULT 0"},
}

// OpenSQLite opens (or creates) the store in dir. Leases left by a
// process that died are released: one process owns the directory.
func OpenSQLite(ctx context.Context, dir string) (*SQLite, error) {
	return openSQLite(ctx, dir, "sqlite")
}

// openSQLite opens the store with a database/sql driver of that name (tests
// give one that fails on demand).
func openSQLite(ctx context.Context, dir, driverName string) (*SQLite, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the data directory: %w", err)
	}
	path := filepath.Join(dir, "relay.db")
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=cache_size(-16000)"
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		return nil, err
	}
	// SQLite has one writer at a time: one connection makes the order of
	// writes this process's own, and the batcher fills each transaction.
	db.SetMaxOpenConns(1)
	fail := func(err error) (*SQLite, error) {
		db.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fail(err)
	}
	for _, c := range sqliteColumns {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`, c.table, c.name).Scan(&n); err != nil {
			return fail(err)
		}
		if n == 0 {
			if _, err := db.ExecContext(ctx, "ALTER TABLE "+c.table+" ADD COLUMN "+c.name+" "+c.definition); err != nil {
				return fail(err)
			}
		}
	}
	if _, err := db.ExecContext(ctx, sqliteIndexes); err != nil {
		return fail(err)
	}
	for _, table := range []string{"statuses", "pushes"} {
		if _, err := db.ExecContext(ctx, `UPDATE `+table+` SET lease_owner = '', lease_until = 0 WHERE lease_owner <> ''`); err != nil {
			return fail(err)
		}
	}
	s := &SQLite{db: db}
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&s.get, getSQL}, {&s.upsert, upsertSQL}, {&s.rearm, rearmSQL}, {&s.project, projectSQL}, {&s.claim, sqliteClaimSQL},
	} {
		if *p.stmt, err = db.PrepareContext(ctx, sqliteSQL.sql(p.sql)); err != nil {
			return fail(fmt.Errorf("preparing %q: %w", p.sql, err))
		}
	}
	s.batch = newBatcher(db, 1, true, nil)
	return s, nil
}

// sqliteClaimSQL leases due rows; the last column is the lease left. The
// time is a parameter, read from this process's clock (SQLite's clock is
// the same one): a time function in the WHERE clause would keep SQLite from
// using the index of due rows.
//
// Due rows are looked up server by server (the servers found by skipping
// through the index, one step each), the oldest of each, so that a server
// whose breaker is open, with a backlog of any size, costs one step: a
// single walk of all due rows in order went through its whole backlog at
// every claim. The correlated IN is SQLite's way of a LATERAL join.
const sqliteClaimSQL = `
UPDATE statuses SET lease_owner = ?2, lease_until = ?1 + ?3 WHERE id IN (
	WITH RECURSIVE pending_servers(server) AS (
		SELECT (SELECT server FROM statuses WHERE pending = 1 ORDER BY server LIMIT 1)
		UNION ALL
		SELECT (SELECT s.server FROM statuses s WHERE s.pending = 1 AND s.server > pending_servers.server ORDER BY s.server LIMIT 1)
		FROM pending_servers WHERE pending_servers.server IS NOT NULL
	)
	SELECT d.id FROM pending_servers JOIN statuses d ON d.id IN (
		SELECT x.id FROM statuses x WHERE x.pending = 1 AND x.server = pending_servers.server AND x.next_attempt_at <= ?1 AND x.lease_until <= ?1
		ORDER BY x.next_attempt_at, x.accepted_at LIMIT ?5)
	WHERE pending_servers.server IS NOT NULL AND instr(?4, '|' || pending_servers.server || '|') = 0
	ORDER BY d.next_attempt_at, d.accepted_at LIMIT ?5)
RETURNING ` + rowColumns + `, lease_until - ?1`

// Accept implements Store.
func (s *SQLite) Accept(ctx context.Context, reports []Report, keep Keep) ([]bool, error) {
	changed := make([]bool, len(reports))
	err := s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		get, upsert, rearm, project := tx.StmtContext(ctx, s.get), tx.StmtContext(ctx, s.upsert), tx.StmtContext(ctx, s.rearm), tx.StmtContext(ctx, s.project)
		return merge(ctx, statements{
			get: func(ctx context.Context, id string) *sql.Row { return get.QueryRowContext(ctx, id) },
			upsert: func(ctx context.Context, r Report) error {
				_, err := upsert.ExecContext(ctx, r.StatusID, r.Credential, r.Server, r.PipelineID, r.State, r.Final, ms(r.FinishedAt), r.Body, r.ProjectID,
					r.Commit, r.ProjectPath, r.GitLabStatus, r.Description, r.IID)
				return err
			},
			rearm: func(ctx context.Context, id string) error {
				_, err := rearm.ExecContext(ctx, false, id)
				return err
			},
			project: func(ctx context.Context, r Report) error {
				_, err := project.ExecContext(ctx, r.ProjectID, r.ProjectPath)
				return err
			},
			exec: tx.ExecContext, dialect: sqliteSQL,
		}, reports, keep, &s.projects, changed)
	})
	if err != nil {
		return nil, err
	}
	return changed, nil
}

// Get implements Store.
func (s *SQLite) Get(ctx context.Context, id string) (*Row, error) {
	r, err := scanRow(s.get.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return r, err
}

// Claim implements Store. Its rows are handed out only once the lease is
// committed: a claim on a full disk posts nothing.
func (s *SQLite) Claim(ctx context.Context, c Claim) ([]Row, error) {
	var out []Row
	err := s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		out, err = collectRows(tx.StmtContext(ctx, s.claim).QueryContext(ctx, time.Now().UnixMilli(), c.Owner, c.Lease.Milliseconds(), skipList(c.Skip), c.Limit))
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Finish implements Store. A row that a newer event changed meanwhile stays
// pending and due at once, whatever this attempt's outcome.
func (s *SQLite) Finish(ctx context.Context, owner string, row Row, o Outcome) (Finished, error) {
	var f Finished
	err := s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		f, err = finish(ctx, tx.ExecContext, sqliteSQL, owner, row, o)
		return err
	})
	if err != nil {
		return Finished{}, err
	}
	return f, nil
}

// Stats implements Store.
func (s *SQLite) Stats(ctx context.Context) (Stats, error) { return queryStats(ctx, s.db, sqliteSQL) }

// Projects implements Store.
func (s *SQLite) Projects(ctx context.Context) ([]Project, error) { return queryProjects(ctx, s.db) }

// RememberProject implements Store.
func (s *SQLite) RememberProject(ctx context.Context, id int64, path string) error {
	return s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.StmtContext(ctx, s.project).ExecContext(ctx, id, path)
		return err
	})
}

// Note implements Store, in the batcher's transaction (one writer).
func (s *SQLite) Note(ctx context.Context, statusID string, e Entry) error {
	return s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM statuses WHERE id = ?`, statusID).Scan(&n); err != nil || n == 0 {
			return err
		}
		return addHistory(ctx, tx.ExecContext, sqliteSQL, statusID, e)
	})
}

// Lead implements Store: one process owns an embedded store.
func (s *SQLite) Lead(context.Context) (bool, error) { return true, nil }

// MarkSwept implements Store.
func (s *SQLite) MarkSwept(ctx context.Context, projectID int64, at time.Time) error {
	return s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, markSweptSQL, ms(at), projectID)
		return err
	})
}

// Prune implements Store.
func (s *SQLite) Prune(ctx context.Context, retention time.Duration) (Pruned, error) {
	var p Pruned
	err := s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		p, err = prune(ctx, tx.ExecContext, sqliteSQL, retention)
		return err
	})
	return p, err
}

// Ping implements Store: a write committed (and fsynced) like any other,
// so a full disk makes it fail.
func (s *SQLite) Ping(ctx context.Context) error {
	return s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, sqliteSQL.sql(pingSQL))
		return err
	})
}

// Reachable implements Store.
func (s *SQLite) Reachable(ctx context.Context) error {
	var one int
	return s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

// RecordSweep implements Store.
func (s *SQLite) RecordSweep(ctx context.Context, sw Sweep) error {
	return s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, sqliteSQL.sql(sweepSQL), sweepArgs(sw)...)
		return err
	})
}

// Overview implements Store.
func (s *SQLite) Overview(ctx context.Context, since time.Time) (Overview, error) {
	return overview(ctx, s.db, sqliteSQL, since)
}

// Find implements Store.
func (s *SQLite) Find(ctx context.Context, f Find) ([]Found, int, error) {
	return find(ctx, s.db, sqliteSQL, f)
}

// NoteSkip implements Store.
func (s *SQLite) NoteSkip(ctx context.Context, sk Skip) error {
	return s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		return noteSkip(ctx, tx.ExecContext, sqliteSQL, sk)
	})
}

// Skips implements Store.
func (s *SQLite) Skips(ctx context.Context, commit string, limit int) ([]Skip, error) {
	return skips(ctx, s.db, sqliteSQL, commit, limit)
}

// OpenSQLiteReader opens the store in dir to read it only, beside a relay
// that runs on it (bitbucket-status-relay status): nothing is created,
// migrated or released.
func OpenSQLiteReader(ctx context.Context, dir string) (*SQLite, error) {
	path := filepath.Join(dir, "relay.db")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no relay store in %s: %w", dir, err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return &SQLite{db: db}, nil
}

// Close implements Store.
func (s *SQLite) Close() error {
	if s.batch != nil {
		s.batch.close()
	}
	return s.db.Close()
}
