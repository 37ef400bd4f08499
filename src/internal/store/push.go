package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"
)

// The first mile: a push to Bitbucket, stored before it is answered, is a
// mirror job of its GitLab project: one row per project, which later pushes
// join (their refs merged, their time the newest), until an update of the
// project's pull mirror started after the last of them has run. Each pushed
// commit keeps a short history of what became of its push.

// PushedRef is a ref a push moved, and the commit it points to now.
type PushedRef struct {
	// Ref is the full ref: refs/heads/main, refs/tags/v1.
	Ref    string `json:"ref"`
	Commit string `json:"commit"`
}

// Push is one push to Bitbucket for one GitLab project.
type Push struct {
	ProjectPath string
	// Repository names the Bitbucket repository pushed to, for the operator.
	Repository string
	Refs       []PushedRef
}

// PushJob is a project's mirror job as stored.
type PushJob struct {
	ProjectPath, Repository string
	// ProjectID is the GitLab project's, once looked up (0 before).
	ProjectID int64
	// Refs are the refs pushed since the job began, newest commit each.
	Refs []PushedRef
	// PushedAt is the last push's arrival, FirstPushedAt the first's since
	// the job began: the store's clock.
	PushedAt, FirstPushedAt time.Time
	Version                 int64
	Attempts                int
	// Baseline is the mirror's last_update_started_at (GitLab's clock) as
	// first seen after the push of version BaselineVersion: an update that
	// started later than it began after that push.
	Baseline        time.Time
	BaselineVersion int64
	// Triggered is when the relay last asked GitLab to start an update;
	// TriggeredSeen, the mirror's last_update_at (GitLab's clock) it saw
	// then: while that is unchanged, no update ended since the ask, which
	// GitLab keeps (deferred to its interval), and a later push needs no
	// other.
	Triggered, TriggeredSeen time.Time
	LeaseLeft                time.Duration
}

// PushOutcome is how far a claimed mirror job got.
type PushOutcome struct {
	// Done: the job has nothing left to do for its version (an update after
	// the last push ran, or none can: the project is no mirror).
	Done bool
	// RetryAt is when to look again.
	RetryAt         time.Time
	ProjectID       int64
	Baseline        time.Time
	BaselineVersion int64
	Triggered       time.Time
	TriggeredSeen   time.Time
	Error           string
	// Events join the history of every commit of the job.
	Events []PushEvent
}

// PushEvent is a line of a pushed commit's history.
type PushEvent struct {
	Commit, ProjectPath string
	At                  time.Time
	// Kind is "push", "mirror" (the relay asked GitLab), "update" (GitLab's
	// update ran) or "failed" (it could not fetch, or will not).
	Kind, Detail string
}

// pushKeep is how many refs a job keeps, the newest first.
const pushKeep = 20

const (
	pushColumns = `project_path, repository, project_id, refs, pushed_at, first_pushed_at, version, attempts, baseline, baseline_version,
	triggered_at, triggered_seen`
	pushGetSQL    = `SELECT refs, pending FROM pushes WHERE project_path = ?`
	pushUpsertSQL = `
INSERT INTO pushes (project_path, repository, refs, pushed_at, first_pushed_at, version, pending, next_attempt_at, updated_at)
VALUES (?, ?, ?, {now}, {now}, 1, {true}, 0, {now})
ON CONFLICT (project_path) DO UPDATE SET repository = excluded.repository, refs = excluded.refs, pushed_at = excluded.pushed_at,
	first_pushed_at = CASE WHEN pushes.pending THEN pushes.first_pushed_at ELSE excluded.first_pushed_at END,
	version = pushes.version + 1, pending = {true}, attempts = CASE WHEN pushes.pending THEN pushes.attempts ELSE 0 END,
	next_attempt_at = CASE WHEN pushes.pending AND pushes.next_attempt_at < {now} + 2000 THEN pushes.next_attempt_at
		WHEN pushes.pending THEN {now} + 2000 ELSE 0 END,
	updated_at = excluded.updated_at`
	// pushFinishSQL records a job's outcome; a push that came meanwhile
	// (another version) keeps it pending and due.
	pushFinishSQL = `
UPDATE pushes SET lease_owner = '', lease_until = 0, project_id = ?, baseline = ?, baseline_version = ?, triggered_at = ?, triggered_seen = ?,
	last_error = ?,
	attempts = CASE WHEN ? THEN 0 ELSE attempts + 1 END,
	pending = CASE WHEN ? AND version = ? THEN {false} ELSE {true} END,
	next_attempt_at = CASE WHEN version <> ? THEN 0 ELSE {now} + ? END, updated_at = {now}
WHERE project_path = ? AND lease_owner = ?`
	pushEventSQL = `INSERT INTO push_events (commit_sha, project_path, at, kind, detail) VALUES (?, ?, {now}, ?, ?)`
	pushTrimSQL  = `DELETE FROM push_events WHERE commit_sha = ? AND id < (
	SELECT min(id) FROM (SELECT id FROM push_events WHERE commit_sha = ? ORDER BY id DESC LIMIT 20) AS kept)`
	prunePushesSQL      = `DELETE FROM pushes WHERE pending = {false} AND updated_at < {now} - ?`
	prunePushEventsSQL  = `DELETE FROM push_events WHERE at < {now} - ?`
	pushPendingCountSQL = `SELECT count(*) FROM pushes WHERE pending = {true}`
)

// acceptPush merges a push into its project's job within a transaction;
// fresh: no job of the project was pending, so this one is due at once.
func acceptPush(ctx context.Context, tx *sql.Tx, d dialect, p Push, fresh *bool) error {
	var raw []byte
	var pending bool
	err := tx.QueryRowContext(ctx, d.sql(pushGetSQL), p.ProjectPath).Scan(&raw, &pending)
	var refs []PushedRef
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return err
	case pending:
		_ = json.Unmarshal(raw, &refs)
	}
	*fresh = !pending
	refs = mergeRefs(refs, p.Refs)
	body, err := json.Marshal(refs)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, d.sql(pushUpsertSQL), p.ProjectPath, cut(p.Repository, 1024), body); err != nil {
		return err
	}
	for _, ref := range p.Refs {
		detail := "pushed " + ref.Ref + " to " + p.Repository + "; the mirror of " + p.ProjectPath + " is to fetch it"
		if err := addPushEvent(ctx, tx.ExecContext, d, PushEvent{Commit: ref.Commit, ProjectPath: p.ProjectPath, Kind: "push", Detail: detail}); err != nil {
			return err
		}
	}
	return nil
}

// mergeRefs puts the new refs first, each ref once, at most pushKeep.
func mergeRefs(old, pushed []PushedRef) []PushedRef {
	out := make([]PushedRef, 0, len(old)+len(pushed))
	seen := map[string]bool{}
	for _, list := range [][]PushedRef{pushed, old} {
		for _, r := range list {
			if !seen[r.Ref] && len(out) < pushKeep {
				seen[r.Ref] = true
				out = append(out, r)
			}
		}
	}
	return out
}

func addPushEvent(ctx context.Context, exec execFunc, d dialect, e PushEvent) error {
	if _, err := exec(ctx, d.sql(pushEventSQL), e.Commit, cut(e.ProjectPath, 1024), e.Kind, cut(e.Detail, 2000)); err != nil {
		return err
	}
	_, err := exec(ctx, d.sql(pushTrimSQL), e.Commit, e.Commit)
	return err
}

// finishPush records a job's outcome and its events.
func finishPush(ctx context.Context, exec execFunc, d dialect, owner string, job PushJob, o PushOutcome) error {
	// Due again after the wait asked, by the store's clock.
	wait := max(time.Until(o.RetryAt).Milliseconds(), 0)
	if _, err := exec(ctx, d.sql(pushFinishSQL), o.ProjectID, ms(o.Baseline), o.BaselineVersion, ms(o.Triggered), ms(o.TriggeredSeen),
		cut(o.Error, 2000),
		o.Done, o.Done, job.Version, job.Version, wait, job.ProjectPath, owner); err != nil {
		return err
	}
	for _, e := range o.Events {
		for _, ref := range job.Refs {
			e.Commit, e.ProjectPath = ref.Commit, job.ProjectPath
			if err := addPushEvent(ctx, exec, d, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanPushJob reads pushColumns and, last, the lease left.
func scanPushJob(sc scanner) (PushJob, error) {
	var j PushJob
	var raw []byte
	var pushed, first, baseline, triggered, seen, leaseLeft int64
	if err := sc.Scan(&j.ProjectPath, &j.Repository, &j.ProjectID, &raw, &pushed, &first, &j.Version, &j.Attempts, &baseline,
		&j.BaselineVersion, &triggered, &seen, &leaseLeft); err != nil {
		return j, err
	}
	_ = json.Unmarshal(raw, &j.Refs)
	j.PushedAt, j.FirstPushedAt, j.Baseline, j.Triggered = fromMS(pushed), fromMS(first), fromMS(baseline), fromMS(triggered)
	j.TriggeredSeen = fromMS(seen)
	j.LeaseLeft = time.Duration(leaseLeft) * time.Millisecond
	return j, nil
}

func collectPushJobs(rows *sql.Rows, err error) ([]PushJob, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PushJob
	for rows.Next() {
		j, err := scanPushJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// pushEvents reads a commit's push history (a full hash or a prefix),
// newest first.
func pushEvents(ctx context.Context, db *sql.DB, d dialect, commit string, limit int) ([]PushEvent, error) {
	where, args := commitWhere(d, "commit_sha", commit)
	rows, err := db.QueryContext(ctx, d.sql(`SELECT commit_sha, project_path, at, kind, detail FROM push_events WHERE `+where+
		` ORDER BY id DESC LIMIT ?`), append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PushEvent
	for rows.Next() {
		var e PushEvent
		var at int64
		if err := rows.Scan(&e.Commit, &e.ProjectPath, &at, &e.Kind, &e.Detail); err != nil {
			return nil, err
		}
		e.At = fromMS(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// The claims of due mirror jobs: SQLite's with this process's clock as a
// parameter (its own, the store's), PostgreSQL's skipping what another
// replica holds.
const (
	sqlitePushClaimSQL = `
UPDATE pushes SET lease_owner = ?2, lease_until = ?1 + ?3 WHERE project_path IN (
	SELECT project_path FROM pushes WHERE pending = 1 AND next_attempt_at <= ?1 AND lease_until <= ?1 ORDER BY next_attempt_at LIMIT ?4)
RETURNING ` + pushColumns + `, lease_until - ?1`
	pgPushClaimSQL = `
UPDATE pushes SET lease_owner = ?, lease_until = {now} + ? WHERE project_path IN (
	SELECT project_path FROM pushes WHERE pending AND next_attempt_at <= {stable_now} AND lease_until <= {stable_now}
	ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED)
RETURNING ` + pushColumns + `, lease_until - {now}`
)

// AcceptPush implements Store.
func (s *SQLite) AcceptPush(ctx context.Context, p Push) (fresh bool, err error) {
	err = s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error { return acceptPush(ctx, tx, sqliteSQL, p, &fresh) })
	return fresh, err
}

// ClaimPushes implements Store.
func (s *SQLite) ClaimPushes(ctx context.Context, c Claim) ([]PushJob, error) {
	var out []PushJob
	err := s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		out, err = collectPushJobs(tx.QueryContext(ctx, sqlitePushClaimSQL, time.Now().UnixMilli(), c.Owner, c.Lease.Milliseconds(), c.Limit))
		return err
	})
	return out, err
}

// FinishPush implements Store.
func (s *SQLite) FinishPush(ctx context.Context, owner string, job PushJob, o PushOutcome) error {
	return s.batch.submit(ctx, nil, func(ctx context.Context, tx *sql.Tx) error {
		return finishPush(ctx, tx.ExecContext, sqliteSQL, owner, job, o)
	})
}

// PushEvents implements Store.
func (s *SQLite) PushEvents(ctx context.Context, commit string, limit int) ([]PushEvent, error) {
	return pushEvents(ctx, s.db, sqliteSQL, commit, limit)
}

// AcceptPush implements Store: under the project's lock, as a status's.
func (s *Postgres) AcceptPush(ctx context.Context, p Push) (fresh bool, err error) {
	err = s.batch.submit(ctx, []string{"push|" + p.ProjectPath}, func(ctx context.Context, tx *sql.Tx) error {
		return acceptPush(ctx, tx, postgresSQL, p, &fresh)
	})
	return fresh, err
}

// ClaimPushes implements Store.
func (s *Postgres) ClaimPushes(ctx context.Context, c Claim) ([]PushJob, error) {
	return collectPushJobs(s.work.QueryContext(ctx, postgresSQL.sql(pgPushClaimSQL), c.Owner, c.Lease.Milliseconds(), c.Limit))
}

// FinishPush implements Store.
func (s *Postgres) FinishPush(ctx context.Context, owner string, job PushJob, o PushOutcome) error {
	tx, err := s.work.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if err := finishPush(ctx, tx.ExecContext, postgresSQL, owner, job, o); err != nil {
		return err
	}
	return tx.Commit()
}

// PushEvents implements Store.
func (s *Postgres) PushEvents(ctx context.Context, commit string, limit int) ([]PushEvent, error) {
	return pushEvents(ctx, s.db, postgresSQL, commit, limit)
}
