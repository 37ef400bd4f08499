package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	neturl "net/url"
	"sort"
	"strconv"
	"strings"
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
CREATE INDEX IF NOT EXISTS statuses_due ON statuses (next_attempt_at, accepted_at) WHERE pending;
CREATE TABLE IF NOT EXISTS projects (
	id BIGINT PRIMARY KEY,
	path TEXT NOT NULL,
	swept_at BIGINT NOT NULL DEFAULT 0
);`

// OpenPostgres connects to url (postgres://...; sslmode and the other
// libpq parameters apply) and creates or migrates the schema, under a lock,
// so replicas starting together do it once.
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
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
		_, err = conn.ExecContext(ctx, pgSchema)
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

// rebind turns the ? placeholders shared with SQLite into $1, $2, ...
func rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

var (
	pgGet    = rebind(`SELECT ` + rowColumns + ` FROM statuses WHERE id = ?`)
	pgUpsert = rebind(strings.ReplaceAll(upsertSQL, "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 1, ?, ?)", "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, true, ?, ?)"))
	// The row lock makes a second replica's claim wait, then see the new
	// lease and skip the row; SKIP LOCKED keeps it from waiting at all.
	pgClaim = rebind(`
UPDATE statuses SET lease_owner = ?, lease_until = ? WHERE lease_until <= ? AND id IN (
	SELECT id FROM statuses WHERE pending AND next_attempt_at <= ? AND lease_until <= ? ORDER BY next_attempt_at, accepted_at LIMIT ?
	FOR UPDATE SKIP LOCKED)
RETURNING ` + rowColumns)
	pgFinishDone  = rebind(strings.ReplaceAll(finishDoneSQL, "CASE WHEN version = ? THEN 0 ELSE 1 END", "version <> ?"))
	pgFinishRetry = rebind(finishRetrySQL)
	pgProject     = rebind(projectSQL)
)

func init() {
	pgUpsert = strings.ReplaceAll(pgUpsert, "CASE WHEN statuses.pending = 1 THEN", "CASE WHEN statuses.pending THEN")
	pgUpsert = strings.ReplaceAll(pgUpsert, "pending = 1, attempts = 0", "pending = true, attempts = 0")
}

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
			upsert: func(ctx context.Context, r Report, now int64) error {
				_, err := tx.ExecContext(ctx, pgUpsert, r.StatusID, r.Credential, r.PipelineID, r.State, r.Final, ms(r.FinishedAt), r.Body, r.ProjectID, now, now)
				return err
			},
			project: func(ctx context.Context, r Report) error {
				_, err := tx.ExecContext(ctx, pgProject, r.ProjectID, r.ProjectPath)
				return err
			},
		}, reports, keep, &s.projects, changed)
	})
	if err != nil {
		return nil, err
	}
	return changed, nil
}

// Get implements Store.
func (s *Postgres) Get(ctx context.Context, id string) (*Row, error) {
	r, err := scanRow(s.db.QueryRowContext(ctx, pgGet, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return r, err
}

// Claim implements Store.
func (s *Postgres) Claim(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Row, error) {
	return collectRows(s.work.QueryContext(ctx, pgClaim, owner, ms(now.Add(lease)), ms(now), ms(now), ms(now), limit))
}

// Finish implements Store.
func (s *Postgres) Finish(ctx context.Context, owner string, row Row, o Outcome) error {
	now := ms(time.Now())
	var err error
	if o.Done {
		_, err = s.work.ExecContext(ctx, pgFinishDone, row.Version, o.Error, now, o.PostedState, o.PostedState, o.PostedPipeline, o.PostedPipeline,
			row.StatusID, owner)
	} else {
		_, err = s.work.ExecContext(ctx, pgFinishRetry, row.Version, ms(o.RetryAt), o.Error, now, row.StatusID, owner)
	}
	return err
}

// Stats implements Store.
func (s *Postgres) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	var oldest sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT count(*), min(accepted_at) FROM statuses WHERE pending`).Scan(&st.Pending, &oldest)
	st.OldestPending = fromMS(oldest.Int64)
	return st, err
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

// MarkSwept implements Store.
func (s *Postgres) MarkSwept(ctx context.Context, projectID int64, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE projects SET swept_at = $1 WHERE id = $2`, ms(at), projectID)
	return err
}

// Prune implements Store.
func (s *Postgres) Prune(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM statuses WHERE NOT pending AND updated_at < $1`, ms(before))
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
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

// Ping implements Store.
func (s *Postgres) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

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
	s.batch.close()
	s.work.Close()
	return s.db.Close()
}
