// Package store keeps the relay's work durably: one row per Bitbucket
// status (repository, commit, key) holding the newest pipeline accepted for
// it, whether it still has to be posted, and what was posted last. Events
// for the same status coalesce in their row, so only the newest is posted.
// Writes are group-committed: many webhooks share one transaction and one
// fsync, and none is answered before its write is on disk.
package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"
)

// Report is one accepted pipeline state for one status.
type Report struct {
	// StatusID names the status: target, commit and key.
	StatusID string
	// Credential names the credential that posts it (429 pauses are per
	// credential).
	Credential string
	PipelineID int64
	// State is the Bitbucket state the pipeline reports.
	State      string
	Final      bool
	FinishedAt time.Time
	// Body is the relay's own description of the work, opaque here.
	Body []byte
	// ProjectID and ProjectPath record a GitLab project the relay serves,
	// for the sweep; 0 for none.
	ProjectID   int64
	ProjectPath string
}

// Row is a status as stored.
type Row struct {
	Report
	// Version grows with every accepted change, so a post that raced a newer
	// event does not mark the newer one done.
	Version int64
	Pending bool
	// AcceptedAt is when the change waiting to be posted was accepted.
	AcceptedAt  time.Time
	Attempts    int
	NextAttempt time.Time
	// PostedState and PostedPipeline are what Bitbucket was last given.
	PostedState    string
	PostedPipeline int64
	LastError      string
}

// Keep decides whether an incoming report replaces the stored one (nil
// when there is none). The relay's ordering rules live in the function, not
// in the store.
type Keep func(current *Row, incoming Report) bool

// Outcome is how an attempt to post a claimed row ended.
type Outcome struct {
	// Done is true when the row needs no further attempt for this version:
	// posted, or refused for good (the next event tries again).
	Done bool
	// RetryAt is when to try again, for an attempt that may work later.
	RetryAt time.Time
	// PostedState and PostedPipeline record what was posted, when it was.
	PostedState    string
	PostedPipeline int64
	Error          string
}

// Project is a GitLab project the relay has served.
type Project struct {
	ID      int64
	Path    string
	SweptAt time.Time
}

// Stats is what the metrics show.
type Stats struct {
	Pending int
	// OldestPending is when the oldest pending change was accepted.
	OldestPending time.Time
}

// Store is what the relay needs; SQLite (embedded, the default) and
// Postgres (several replicas) implement it.
type Store interface {
	// Accept stores reports durably, each merged into its status's row as
	// keep decides; changed says which were taken.
	Accept(ctx context.Context, reports []Report, keep Keep) (changed []bool, err error)
	// Claim leases up to limit rows that are due, for owner, until now+lease.
	Claim(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Row, error)
	// Finish ends owner's lease on a claimed row with the attempt's outcome.
	Finish(ctx context.Context, owner string, row Row, o Outcome) error
	// Get reads one row; nil when there is none.
	Get(ctx context.Context, statusID string) (*Row, error)
	Stats(ctx context.Context) (Stats, error)
	Projects(ctx context.Context) ([]Project, error)
	// RememberProject records a project to sweep that no webhook named yet.
	RememberProject(ctx context.Context, id int64, path string) error
	MarkSwept(ctx context.Context, projectID int64, at time.Time) error
	// Prune deletes rows with nothing pending, untouched since before.
	Prune(ctx context.Context, before time.Time) (int, error)
	// Lead reports whether this process is the one that sweeps: always for
	// the embedded store; for a shared one, the replica holding its lock.
	Lead(ctx context.Context) (bool, error)
	Ping(ctx context.Context) error
	Close() error
}

// projectCache remembers the projects this process has recorded, so that the
// projects table is written once per project, not once per webhook: a row
// every webhook of a project updated would make them wait for each other.
type projectCache struct{ m sync.Map }

// isNew reports whether r's project (and path) is unrecorded; a failed
// transaction may leave it marked, which costs only a late sweep of it.
func (c *projectCache) isNew(r Report) bool {
	if r.ProjectID <= 0 {
		return false
	}
	old, loaded := c.m.Swap(r.ProjectID, r.ProjectPath)
	return !loaded || old != r.ProjectPath
}

// statements are one backend's ways to read and write a row within a
// transaction, for merge.
type statements struct {
	get     func(ctx context.Context, id string) *sql.Row
	upsert  func(ctx context.Context, r Report, now int64) error
	project func(ctx context.Context, r Report) error
}

// merge is Accept's work within a transaction, the same for every backend:
// each report is given to keep beside its stored row, and written if kept.
func merge(ctx context.Context, st statements, reports []Report, keep Keep, projects *projectCache, changed []bool) error {
	now := ms(time.Now())
	for i, r := range reports {
		cur, err := scanRow(st.get(ctx, r.StatusID))
		if errors.Is(err, sql.ErrNoRows) {
			cur, err = nil, nil
		}
		if err != nil {
			return err
		}
		if !keep(cur, r) {
			continue
		}
		changed[i] = true
		if err := st.upsert(ctx, r, now); err != nil {
			return err
		}
		if projects.isNew(r) {
			if err := st.project(ctx, r); err != nil {
				return err
			}
		}
	}
	return nil
}
