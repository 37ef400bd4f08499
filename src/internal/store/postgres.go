package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	neturl "net/url"
	"sort"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// Postgres is the store for several replicas: any number of relays share
// one database. Accepts are group-committed as in SQLite, with an advisory
// lock per status, all taken in one order at the start of a batch, so the
// ordering rule holds when two replicas accept events for one status at
// once and their batches never deadlock; claims skip rows another replica
// holds.
type Postgres struct {
	db *sql.DB
	// work is a second pool for claims and finishes, with
	// synchronous_commit off: losing one in a crash of PostgreSQL costs a
	// repeated post, never a status, so it need not wait for the disk.
	work     *sql.DB
	batch    *batcher
	projects projectCache
	url      string
	// leader is the connection holding the sweep's advisory lock, while
	// this replica holds it.
	leaderMu sync.Mutex
	leader   *sql.Conn
}

// Advisory lock keys (constants of this program: "bbsr" + a number).
const (
	lockSchema = 0x62627372_0001
	lockSweep  = 0x62627372_0002
)

const pgSchema = `
CREATE TABLE IF NOT EXISTS statuses (
	id TEXT PRIMARY KEY,
	credential TEXT NOT NULL,
	pipeline_id BIGINT NOT NULL,
	state TEXT NOT NULL,
	final BOOLEAN NOT NULL,
	finished_at BIGINT NOT NULL,
	body BYTEA NOT NULL,
	project_id BIGINT NOT NULL,
	version BIGINT NOT NULL,
	pending BOOLEAN NOT NULL,
	accepted_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	next_attempt_at BIGINT NOT NULL DEFAULT 0,
	lease_owner TEXT NOT NULL DEFAULT '',
	lease_until BIGINT NOT NULL DEFAULT 0,
	posted_state TEXT NOT NULL DEFAULT '',
	posted_pipeline BIGINT NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS projects (
	id BIGINT PRIMARY KEY,
	path TEXT NOT NULL,
	swept_at BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, checked_at BIGINT NOT NULL);
INSERT INTO health (id, checked_at) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS history (
	id BIGSERIAL PRIMARY KEY,
	status_id TEXT NOT NULL,
	at BIGINT NOT NULL,
	kind TEXT NOT NULL,
	pipeline_id BIGINT NOT NULL,
	state TEXT NOT NULL,
	source TEXT NOT NULL,
	code INTEGER NOT NULL,
	detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_status ON history (status_id, id);
CREATE INDEX IF NOT EXISTS history_at ON history (at);
CREATE TABLE IF NOT EXISTS server_minutes (server TEXT NOT NULL, minute BIGINT NOT NULL, posts INTEGER NOT NULL, failures INTEGER NOT NULL,
	PRIMARY KEY (server, minute));
CREATE TABLE IF NOT EXISTS server_failures (server TEXT PRIMARY KEY, at BIGINT NOT NULL, status_id TEXT NOT NULL, code INTEGER NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sweeps (id INTEGER PRIMARY KEY, at BIGINT NOT NULL, projects INTEGER NOT NULL, queued INTEGER NOT NULL,
	verified INTEGER NOT NULL, reposted INTEGER NOT NULL, replica TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS skips (commit_sha TEXT NOT NULL, project_path TEXT NOT NULL, pipeline_id BIGINT NOT NULL, iid BIGINT NOT NULL,
	source TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, at BIGINT NOT NULL, count INTEGER NOT NULL,
	PRIMARY KEY (commit_sha, project_path, pipeline_id));
CREATE INDEX IF NOT EXISTS skips_at ON skips (at);
CREATE INDEX IF NOT EXISTS skips_commit ON skips (commit_sha COLLATE "C");
CREATE TABLE IF NOT EXISTS pushes (
	project_path TEXT PRIMARY KEY,
	repository TEXT NOT NULL,
	project_id BIGINT NOT NULL DEFAULT 0,
	refs BYTEA NOT NULL,
	pushed_at BIGINT NOT NULL,
	first_pushed_at BIGINT NOT NULL,
	version BIGINT NOT NULL,
	pending BOOLEAN NOT NULL,
	next_attempt_at BIGINT NOT NULL DEFAULT 0,
	attempts INTEGER NOT NULL DEFAULT 0,
	baseline BIGINT NOT NULL DEFAULT 0,
	baseline_version BIGINT NOT NULL DEFAULT 0,
	triggered_at BIGINT NOT NULL DEFAULT 0,
	triggered_seen BIGINT NOT NULL DEFAULT 0,
	lease_owner TEXT NOT NULL DEFAULT '',
	lease_until BIGINT NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS push_events (id BIGSERIAL PRIMARY KEY, commit_sha TEXT NOT NULL, project_path TEXT NOT NULL, at BIGINT NOT NULL,
	kind TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS push_events_at ON push_events (at);
CREATE INDEX IF NOT EXISTS pushes_due ON pushes (next_attempt_at) WHERE pending;
CREATE INDEX IF NOT EXISTS push_events_commit ON push_events (commit_sha COLLATE "C", id);`

// pgIndexes need the columns added after the first release.
const pgIndexes = `
DROP INDEX IF EXISTS statuses_due;
CREATE INDEX IF NOT EXISTS statuses_server_due ON statuses (server, next_attempt_at, accepted_at) WHERE pending;
CREATE INDEX IF NOT EXISTS statuses_commit ON statuses (commit_sha COLLATE "C");
DROP INDEX IF EXISTS statuses_project;
CREATE INDEX IF NOT EXISTS statuses_project_lower ON statuses (lower(project_path), updated_at);`

// pgColumns came after the first release.
var pgColumns = []column{
	{"statuses", "server", "TEXT NOT NULL DEFAULT ''"},
	{"statuses", "post_seq", "BIGINT NOT NULL DEFAULT 0"},
	{"statuses", "uncertain", "BOOLEAN NOT NULL DEFAULT false"},
	{"projects", "seen_at", "BIGINT NOT NULL DEFAULT 0"},
	{"statuses", "commit_sha", "TEXT NOT NULL DEFAULT ''"},
	{"statuses", "project_path", "TEXT NOT NULL DEFAULT ''"},
	{"statuses", "gitlab_status", "TEXT NOT NULL DEFAULT ''"},
	{"statuses", "description", "TEXT NOT NULL DEFAULT ''"},
	{"statuses", "iid", "BIGINT NOT NULL DEFAULT 0"},
	{"statuses", "waiting", "TEXT NOT NULL DEFAULT ''"},
	{"history", "iid", "BIGINT NOT NULL DEFAULT 0"},
	{"history", "state_change", "BOOLEAN NOT NULL DEFAULT false"},
}

// OpenPostgres connects to url (postgres://...; sslmode and the other
// libpq parameters apply) and creates or migrates the schema, under a lock,
// so replicas starting together do it once.
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
	url = withoutJIT(url)
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, err
	}
	// Few connections: the batcher's writers, reads, and the sweep lock.
	// More would only make PostgreSQL switch between them.
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	err = func() error {
		conn, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, lockSchema); err != nil {
			return err
		}
		defer conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, lockSchema) //nolint:errcheck // the session ends with the conn
		if _, err := conn.ExecContext(ctx, pgSchema); err != nil {
			return err
		}
		for _, c := range pgColumns {
			if _, err := conn.ExecContext(ctx, "ALTER TABLE "+c.table+" ADD COLUMN IF NOT EXISTS "+c.name+" "+c.definition); err != nil {
				return err
			}
		}
		_, err = conn.ExecContext(ctx, pgIndexes)
		return err
	}()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("preparing the PostgreSQL schema: %w", err)
	}
	work, err := sql.Open("pgx", withParam(url, "synchronous_commit", "off"))
	if err != nil {
		db.Close()
		return nil, err
	}
	work.SetMaxOpenConns(4)
	work.SetMaxIdleConns(4)
	p := &Postgres{db: db, work: work, url: url}
	p.batch = newBatcher(db, 4, false, lockStatuses)
	return p, nil
}

// WithDatabase returns url with its database name replaced.
func WithDatabase(url, name string) string {
	u, err := neturl.Parse(url)
	if err != nil {
		return url
	}
	u.Path = "/" + name
	return u.String()
}

// withoutJIT turns PostgreSQL's JIT compilation off for the relay's
// connections: its statements are small and indexed, but on a large store
// (freshly filled, not yet analyzed) the planner's estimates can cross
// jit_above_cost, and a page's queries then spent 100 to 300 ms compiling
// themselves to run in a few.
func withoutJIT(url string) string { return withParam(url, "jit", "off") }

func withParam(url, key, value string) string {
	u, err := neturl.Parse(url)
	if err != nil {
		return url
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// lockStatuses takes the advisory lock of every status a batch writes, in
// sorted order (the subquery sorts before the locks are taken).
func lockStatuses(ctx context.Context, tx *sql.Tx, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM (SELECT DISTINCT k FROM unnest($1::text[]) k ORDER BY k) s`, keys)
	return err
}

// pgClaimSQL leases due rows; the last column is the lease left. The row
// lock makes a second replica's claim wait, then see the new lease and skip
// the row; SKIP LOCKED keeps it from waiting at all. The time is
// PostgreSQL's now() (the statement's start; stable, so the index of due
// rows is used); the lease left is counted to the moment of the answer.
//
// Due rows are looked up server by server (the servers found by skipping
// through the index, one step each), the oldest of each, so that a server
// whose breaker is open, with a backlog of any size, costs one step: a
// single walk of all due rows in order went through its whole backlog at
// every claim.
var pgClaimSQL = postgresSQL.sql(`
UPDATE statuses SET lease_owner = ?, lease_until = {stable_now} + ? WHERE lease_until <= {stable_now} AND id IN (
	SELECT d.id FROM (
		WITH RECURSIVE pending_servers(server) AS (
			SELECT (SELECT server FROM statuses WHERE pending ORDER BY server LIMIT 1)
			UNION ALL
			SELECT (SELECT s.server FROM statuses s WHERE s.pending AND s.server > pending_servers.server ORDER BY s.server LIMIT 1)
			FROM pending_servers WHERE pending_servers.server IS NOT NULL
		)
		SELECT server FROM pending_servers WHERE server IS NOT NULL AND strpos(?, '|' || server || '|') = 0
	) AS due_servers CROSS JOIN LATERAL (
		SELECT x.id, x.next_attempt_at, x.accepted_at FROM statuses x WHERE x.pending AND x.server = due_servers.server
			AND x.next_attempt_at <= {stable_now} AND x.lease_until <= {stable_now}
		ORDER BY x.next_attempt_at, x.accepted_at LIMIT ? FOR UPDATE SKIP LOCKED
	) AS d
	ORDER BY d.next_attempt_at, d.accepted_at LIMIT ?)
RETURNING ` + rowColumns + `, lease_until - {now}`)

// Accept implements Store.
func (s *Postgres) Accept(ctx context.Context, reports []Report, keep Keep) ([]bool, error) {
	changed := make([]bool, len(reports))
	keys := make([]string, len(reports))
	for i, r := range reports {
		keys[i] = r.StatusID
	}
	err := s.batch.submit(ctx, keys, func(ctx context.Context, tx *sql.Tx) error {
		return merge(ctx, statements{
			get: func(ctx context.Context, id string) *sql.Row { return tx.QueryRowContext(ctx, pgGet, id) },
			upsert: func(ctx context.Context, r Report) error {
				_, err := tx.ExecContext(ctx, pgUpsert, r.StatusID, r.Credential, r.Server, r.PipelineID, r.State, r.Final, ms(r.FinishedAt), r.Body, r.ProjectID,
					r.Commit, r.ProjectPath, r.GitLabStatus, r.Description, r.IID)
				return err
			},
			rearm: func(ctx context.Context, id string) error {
				_, err := tx.ExecContext(ctx, pgRearm, false, id)
				return err
			},
			project: func(ctx context.Context, r Report) error {
				_, err := tx.ExecContext(ctx, pgProject, r.ProjectID, r.ProjectPath)
				return err
			},
			exec: tx.ExecContext, dialect: postgresSQL,
		}, reports, keep, &s.projects, changed)
	})
	if err != nil {
		return nil, err
	}
	return changed, nil
}

var (
	pgGet     = postgresSQL.sql(getSQL)
	pgUpsert  = postgresSQL.sql(upsertSQL)
	pgRearm   = postgresSQL.sql(rearmSQL)
	pgProject = postgresSQL.sql(projectSQL)
)

// Get implements Store.
func (s *Postgres) Get(ctx context.Context, id string) (*Row, error) {
	r, err := scanRow(s.db.QueryRowContext(ctx, pgGet, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return r, err
}

// Claim implements Store, by PostgreSQL's clock: a replica whose own clock
// is off still holds a row exactly as long as the database says.
func (s *Postgres) Claim(ctx context.Context, c Claim) ([]Row, error) {
	return collectRows(s.work.QueryContext(ctx, pgClaimSQL, c.Owner, c.Lease.Milliseconds(), skipList(c.Skip), c.Limit, c.Limit))
}

// Finish implements Store, in one transaction.
func (s *Postgres) Finish(ctx context.Context, owner string, row Row, o Outcome) (Finished, error) {
	tx, err := s.work.BeginTx(ctx, nil)
	if err != nil {
		return Finished{}, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	f, err := finish(ctx, tx.ExecContext, postgresSQL, owner, row, o)
	if err != nil {
		return Finished{}, err
	}
	return f, tx.Commit()
}

// RecordSweep implements Store.
func (s *Postgres) RecordSweep(ctx context.Context, sw Sweep) error {
	_, err := s.db.ExecContext(ctx, postgresSQL.sql(sweepSQL), sweepArgs(sw)...)
	return err
}

// Overview implements Store.
func (s *Postgres) Overview(ctx context.Context, since time.Time) (Overview, error) {
	return overview(ctx, s.db, postgresSQL, since)
}

// Find implements Store.
func (s *Postgres) Find(ctx context.Context, f Find) ([]Found, int, error) {
	return find(ctx, s.db, postgresSQL, f)
}

// NoteSkip implements Store.
func (s *Postgres) NoteSkip(ctx context.Context, sk Skip) error {
	return noteSkip(ctx, s.db.ExecContext, postgresSQL, sk)
}

// Skips implements Store.
func (s *Postgres) Skips(ctx context.Context, commit string, limit int) ([]Skip, error) {
	return skips(ctx, s.db, postgresSQL, commit, limit)
}

// OpenPostgresReader connects to read the store only (bitbucket-status-relay
// status): nothing is created or migrated.
func OpenPostgresReader(ctx context.Context, url string) (*Postgres, error) {
	db, err := sql.Open("pgx", withParam(withoutJIT(url), "default_transaction_read_only", "on"))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(2)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return &Postgres{db: db, url: url}, nil
}

// Stats implements Store.
func (s *Postgres) Stats(ctx context.Context) (Stats, error) {
	return queryStats(ctx, s.db, postgresSQL)
}

// Projects implements Store.
func (s *Postgres) Projects(ctx context.Context) ([]Project, error) {
	return queryProjects(ctx, s.db)
}

// RememberProject implements Store.
func (s *Postgres) RememberProject(ctx context.Context, id int64, path string) error {
	_, err := s.db.ExecContext(ctx, pgProject, id, path)
	return err
}

// Note implements Store.
func (s *Postgres) Note(ctx context.Context, statusID string, e Entry) error {
	return note(ctx, s.db, postgresSQL, statusID, e)
}

// MarkSwept implements Store.
func (s *Postgres) MarkSwept(ctx context.Context, projectID int64, at time.Time) error {
	_, err := s.db.ExecContext(ctx, postgresSQL.sql(markSweptSQL), ms(at), projectID)
	return err
}

// Prune implements Store.
func (s *Postgres) Prune(ctx context.Context, retention time.Duration) (Pruned, error) {
	return prune(ctx, s.db.ExecContext, postgresSQL, retention)
}

// Lead implements Store: one replica at a time holds a session advisory
// lock on a connection of its own; if that connection dies (the replica,
// or PostgreSQL), the lock is free for another.
func (s *Postgres) Lead(ctx context.Context) (bool, error) {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if s.leader != nil {
		if err := s.leader.PingContext(ctx); err == nil {
			return true, nil
		}
		s.leader.Close()
		s.leader = nil
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return false, err
	}
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, lockSweep).Scan(&got); err != nil || !got {
		conn.Close()
		return false, err
	}
	s.leader = conn
	return true, nil
}

// Ping implements Store: a committed write, so a database that answers
// but cannot write (read-only, a full disk) fails it.
func (s *Postgres) Ping(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, postgresSQL.sql(pingSQL))
	return err
}

// Reachable implements Store.
func (s *Postgres) Reachable(ctx context.Context) error {
	var one int
	return s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

// Close implements Store.
func (s *Postgres) Close() error {
	s.leaderMu.Lock()
	if s.leader != nil {
		// Hand the sweep over now rather than when the connection ends.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = s.leader.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, lockSweep)
		cancel()
		s.leader.Close()
	}
	s.leaderMu.Unlock()
	if s.batch != nil {
		s.batch.close()
		s.work.Close()
	}
	return s.db.Close()
}
