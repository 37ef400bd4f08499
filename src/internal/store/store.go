// Package store keeps the relay's work durably: one row per Bitbucket
// status (repository, commit, key) holding the newest pipeline accepted for
// it, whether it still has to be posted, and what was posted last. Events
// for the same status coalesce in their row, so only the newest is posted.
// Writes are group-committed: many webhooks share one transaction and one
// fsync, and none is answered before its write is on disk.
//
// Time that decides who may post (leases, when a retry is due) is the
// store's own clock: SQLite's (one process) or PostgreSQL's, never a
// replica's, so replicas whose clocks differ still never hold one status at
// once.
package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
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
	// Server names the Bitbucket server it goes to (limits and breakers are
	// per server).
	Server     string
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
	// Commit is the commit the status is on, for the operator's search.
	Commit string
	// Source says where the event came from (the pipeline's source, and
	// whether a webhook or the sweep brought it), for the status's history.
	Source string
	// GitLabStatus is GitLab's own word for the pipeline (skipped, manual,
	// canceled, ...), which the Bitbucket state does not tell apart.
	GitLabStatus string
	// Description is the status's text as posted: what the operator's page
	// shows beside the state.
	Description string
	// IID is the pipeline's number in its project (#7), as Bitbucket shows
	// it; 0 when unknown.
	IID int64
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
	// PostSeq counts the posts recorded for the status: a post that finds
	// it moved on since its claim raced another post.
	PostSeq   int64
	LastError string
	// Waiting says why the status waits without an attempt (a rate limit's
	// pause, a server at its limit of posts in flight); LastError keeps the
	// last attempt's failure beside it.
	Waiting string
	// Uncertain: an earlier attempt sent a request and got no answer, so it
	// may still land at Bitbucket later; the next successful post is
	// repeated once, after its Outcome.ConfirmAfter.
	Uncertain bool
	// LeaseLeft is, for a claimed row, how long the lease lasts by the
	// store's clock from the moment it was claimed: no request for it may
	// start later than that.
	LeaseLeft time.Duration
	// LeaseOwner names the replica posting it now, if one is.
	LeaseOwner string
	UpdatedAt  time.Time
}

// Decision is what keep makes of an incoming report.
type Decision int

const (
	// Ignore leaves the row as it is.
	Ignore Decision = iota
	// Replace stores the incoming report, to be posted.
	Replace
	// Wake keeps the stored report but makes the row due again: the relay
	// re-reads the pipeline from GitLab before posting.
	Wake
)

// Keep decides what an incoming report does to the stored one (nil when
// there is none), and says why in a few words for the status's history.
// The relay's ordering rules live in the function, not in the store.
type Keep func(current *Row, incoming Report) (Decision, string)

// Claim asks for due rows.
type Claim struct {
	Owner string
	Lease time.Duration
	Limit int
	// Skip names servers whose rows are not wanted now (at their limit of
	// posts in flight, or behind an open breaker).
	Skip []string
}

// Outcome is how an attempt to post a claimed row ended.
type Outcome struct {
	// Done is true when the row needs no further attempt for this version:
	// posted, or refused for good (the next event tries again).
	Done bool
	// RetryAt is when to try again, for an attempt that may work later.
	RetryAt time.Time
	// NotAttempted: the row was handed back without a request (its server
	// was busy); it does not count as an attempt.
	NotAttempted bool
	// Uncertain: a request was sent and no answer came: it may still land.
	Uncertain bool
	// ConfirmAfter: when this post follows an uncertain one, it is made
	// again this much later, so that it lands after the uncertain one
	// could: longer than any server keeps a request it has not answered.
	ConfirmAfter time.Duration
	// PostedState and PostedPipeline record what was posted, when it was.
	PostedState    string
	PostedPipeline int64
	Error          string
	// Attempt describes the request made to Bitbucket, if one was: it goes
	// into the status's history and its server's counts.
	Attempt *Attempt
}

// Attempt is one request to Bitbucket: the state and pipeline it carried
// and the answer's code (0 for none).
type Attempt struct {
	State      string
	PipelineID int64
	IID        int64
	Code       int
}

// posted says whether the outcome changed what Bitbucket shows.
func (o Outcome) posted() bool { return o.PostedState != "" }

// Finished says what Finish did besides recording the outcome.
type Finished struct {
	// Rearmed: the row had moved on during the post (its lease was taken
	// over, or another post was recorded meanwhile), so this post may have
	// landed after a newer one: the row is due again, and the newest state
	// is posted again.
	Rearmed bool
}

// Project is a GitLab project the relay has served.
type Project struct {
	ID      int64
	Path    string
	SweptAt time.Time
}

// Entry is one line of a status's history: an event received or a post
// made. Each status keeps its last HistoryLength.
type Entry struct {
	At time.Time
	// Kind is "event", "post", or "report" (a Code Insights report
	// published after the status's post).
	Kind       string
	PipelineID int64
	State      string
	// Source is an event's (push, web, parent_pipeline; via the sweep).
	Source string
	// Code is a post's answer code, 0 for none.
	Code int
	// Detail is what an event did to the status, or why a post failed.
	Detail string
	// IID is the pipeline's number in its project, when known.
	IID int64
	// Change: an event that created or changed the status.
	Change bool
}

// HistoryLength is how many of its latest entries a status keeps; besides
// them it keeps, however many retries came after, the event that created
// it and the last event that changed it: HistoryKept entries at most.
const (
	HistoryLength = 20
	HistoryKept   = HistoryLength + 2
)

// Sweep is the last sweep's summary.
type Sweep struct {
	At                                   time.Time
	Projects, Queued, Verified, Reposted int
	Replica                              string
}

// Minute is one server's posts and failures in one minute.
type Minute struct {
	Server          string
	At              time.Time
	Posts, Failures int
}

// Failure is the last failed post to a server.
type Failure struct {
	Server   string
	At       time.Time
	StatusID string
	Code     int
	Detail   string
}

// Overview is what the operator's page shows first.
type Overview struct {
	Stats
	LastSweep *Sweep
	// Minutes since the time asked, per server; failures, the last per server.
	Minutes  []Minute
	Failures []Failure
}

// Find asks for statuses by commit (a full hash or a prefix of at least 7
// hex digits), failing ones first, or GitLab project path (in any letter
// case), newest change first.
type Find struct {
	Commit, Project string
	Limit           int
	// Offset skips that many statuses: a page of a project's.
	Offset int
	// History is how many of each status's entries to read.
	History int
}

// Skip is a pipeline the relay received and did not report, and why: what
// an operator needs when a commit shows no status at all.
type Skip struct {
	Commit      string
	ProjectPath string
	PipelineID  int64
	IID         int64
	// Source is the pipeline's source (push, parent_pipeline, ...).
	Source string
	// Reason is the metric's label (child_pipeline, subgroup, ...);
	// Detail says it in words.
	Reason, Detail string
	// At is when the last event of it came; Count, how many did.
	At    time.Time
	Count int
}

// Found is one status found, with its history, newest first.
type Found struct {
	Row
	History []Entry
}

// Stats is what the metrics show.
type Stats struct {
	Pending int
	// PendingPushes are mirror jobs not done.
	PendingPushes int
	// OldestPending is when the oldest pending change was accepted.
	OldestPending time.Time
}

// Pruned counts what a prune deleted.
type Pruned struct {
	// Posted are statuses with nothing pending, untouched for the retention.
	Posted int
	// Abandoned are changes still pending, accepted longer ago than the
	// retention: Bitbucket never took them.
	Abandoned int
	Projects  int
}

// Store is what the relay needs; SQLite (embedded, the default) and
// Postgres (several replicas) implement it.
type Store interface {
	// Accept stores reports durably, each merged into its status's row as
	// keep decides; changed says which were taken (replaced or woken).
	Accept(ctx context.Context, reports []Report, keep Keep) (changed []bool, err error)
	// Claim leases due rows. A claim that did not commit returns no row.
	Claim(ctx context.Context, c Claim) ([]Row, error)
	// Finish ends owner's lease on a claimed row with the attempt's outcome.
	Finish(ctx context.Context, owner string, row Row, o Outcome) (Finished, error)
	// Get reads one row; nil when there is none.
	Get(ctx context.Context, statusID string) (*Row, error)
	Stats(ctx context.Context) (Stats, error)
	Projects(ctx context.Context) ([]Project, error)
	// RememberProject records a project to sweep that no webhook named yet.
	RememberProject(ctx context.Context, id int64, path string) error
	MarkSwept(ctx context.Context, projectID int64, at time.Time) error
	// Prune deletes what is older than retention: statuses with nothing
	// pending untouched that long, changes pending that long, and projects
	// with no status left.
	Prune(ctx context.Context, retention time.Duration) (Pruned, error)
	// Lead reports whether this process is the one that sweeps: always for
	// the embedded store; for a shared one, the replica holding its lock.
	Lead(ctx context.Context) (bool, error)
	// Ping commits a small write: the store answers and can write.
	Ping(ctx context.Context) error
	// Reachable reads: the store answers. It writes nothing.
	Reachable(ctx context.Context) error
	// Note adds an entry to a status's history (a report published or not);
	// a status that does not exist takes none.
	Note(ctx context.Context, statusID string, e Entry) error
	// RecordSweep keeps the last sweep's summary.
	RecordSweep(ctx context.Context, s Sweep) error
	// Overview reads the backlog, the last sweep, and each server's posts
	// and failures per minute since.
	Overview(ctx context.Context, since time.Time) (Overview, error)
	// Find reads statuses and their history; total is how many match, up
	// to FindCountLimit.
	Find(ctx context.Context, f Find) (found []Found, total int, err error)
	// AcceptPush stores a push to Bitbucket durably, merged into its GitLab
	// project's mirror job; fresh: it began the job (none was pending), which
	// is due at once, where a push joining a pending job is taken up with it.
	AcceptPush(ctx context.Context, p Push) (fresh bool, err error)
	// ClaimPushes leases due mirror jobs (Claim's Owner, Lease and Limit).
	ClaimPushes(ctx context.Context, c Claim) ([]PushJob, error)
	// FinishPush ends owner's lease on a mirror job with how far it got.
	FinishPush(ctx context.Context, owner string, job PushJob, o PushOutcome) error
	// PushEvents reads a pushed commit's history (a full hash or a prefix),
	// newest first.
	PushEvents(ctx context.Context, commit string, limit int) ([]PushEvent, error)
	// NoteSkip records a pipeline received and not reported.
	NoteSkip(ctx context.Context, s Skip) error
	// Skips reads what was received for a commit (a full hash or a prefix)
	// and not reported, newest first, at most limit.
	Skips(ctx context.Context, commit string, limit int) ([]Skip, error)
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

// dialect is what differs between SQLite's and PostgreSQL's SQL. Statements
// are written once with {now} (the store's clock, in milliseconds), {true}
// and {false}, and ? placeholders.
type dialect struct {
	now, yes, no string
	// collate makes text compare byte by byte, as the commit index does.
	collate string
	// numbered: $1, $2, ... instead of ?.
	numbered bool
}

// stableNow is PostgreSQL's now() in milliseconds: the transaction's start,
// the same for every row, so a comparison with it can use an index.
const stableNow = `(extract(epoch from now()) * 1000)::bigint`

var (
	sqliteSQL   = dialect{now: `CAST(unixepoch('subsec') * 1000 AS INTEGER)`, yes: "1", no: "0"}
	postgresSQL = dialect{now: `(extract(epoch from clock_timestamp()) * 1000)::bigint`, yes: "true", no: "false", numbered: true, collate: `COLLATE "C"`}
)

func (d dialect) sql(q string) string {
	q = strings.NewReplacer("{now}", d.now, "{stable_now}", stableNow, "{true}", d.yes, "{false}", d.no).Replace(q)
	if !d.numbered {
		return q
	}
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

// The statements both backends share.
const (
	rowColumns = `id, credential, server, pipeline_id, state, final, finished_at, body, project_id, version, pending, accepted_at,
	attempts, next_attempt_at, posted_state, posted_pipeline, post_seq, last_error, uncertain, commit_sha, project_path, gitlab_status, description, iid, waiting, lease_owner,
	updated_at`
	getSQL    = `SELECT ` + rowColumns + `, 0 FROM statuses WHERE id = ?`
	upsertSQL = `
INSERT INTO statuses (id, credential, server, pipeline_id, state, final, finished_at, body, project_id, commit_sha, project_path,
	gitlab_status, description, iid, version, pending, accepted_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, {true}, {now}, {now})
ON CONFLICT (id) DO UPDATE SET credential = excluded.credential, server = excluded.server, pipeline_id = excluded.pipeline_id,
	commit_sha = excluded.commit_sha, project_path = excluded.project_path, gitlab_status = excluded.gitlab_status,
	description = excluded.description, iid = excluded.iid, waiting = '',
	state = excluded.state, final = excluded.final, finished_at = excluded.finished_at, body = excluded.body, project_id = excluded.project_id,
	version = statuses.version + 1, accepted_at = CASE WHEN statuses.pending THEN statuses.accepted_at ELSE excluded.accepted_at END,
	pending = {true}, attempts = 0, next_attempt_at = 0, updated_at = excluded.updated_at`
	// rearmSQL makes a row due at once as a new version, keeping its
	// report: a woken status, or one whose post may have landed late.
	rearmSQL = `
UPDATE statuses SET version = version + 1, accepted_at = CASE WHEN pending THEN accepted_at ELSE {now} END, pending = {true},
	attempts = 0, next_attempt_at = 0, uncertain = CASE WHEN ? THEN {true} ELSE uncertain END, updated_at = {now}
WHERE id = ?`
	projectSQL = `INSERT INTO projects (id, path, seen_at) VALUES (?, ?, {now}) ON CONFLICT (id) DO UPDATE SET path = excluded.path, seen_at = excluded.seen_at`
	// finishDoneSQL records a post (or a refusal) by the lease's owner, if
	// no other post was recorded since the claim. A newer version stays
	// due; after an unanswered request, the post is repeated once, later.
	finishDoneSQL = `
UPDATE statuses SET pending = CASE WHEN version <> ? OR (uncertain AND ?) THEN {true} ELSE {false} END,
	next_attempt_at = CASE WHEN version <> ? THEN 0 WHEN uncertain AND ? THEN {now} + ? ELSE 0 END,
	uncertain = CASE WHEN version <> ? OR NOT ? THEN uncertain ELSE {false} END,
	attempts = 0, lease_owner = '', lease_until = 0, last_error = ?, waiting = '', updated_at = {now},
	post_seq = post_seq + CASE WHEN ? THEN 1 ELSE 0 END,
	posted_state = CASE WHEN ? THEN ? ELSE posted_state END,
	posted_pipeline = CASE WHEN ? THEN ? ELSE posted_pipeline END
WHERE id = ? AND lease_owner = ? AND post_seq = ?`
	finishRetrySQL = `
UPDATE statuses SET attempts = attempts + ?, next_attempt_at = CASE WHEN version = ? THEN {now} + ? ELSE 0 END,
	uncertain = CASE WHEN ? THEN {true} ELSE uncertain END,
	lease_owner = '', lease_until = 0, last_error = CASE WHEN ? THEN last_error ELSE ? END, waiting = CASE WHEN ? THEN ? ELSE '' END,
	updated_at = {now}
WHERE id = ? AND lease_owner = ?`
	statsSQL       = `SELECT count(*), min(accepted_at) FROM statuses WHERE pending = {true}`
	markSweptSQL   = `UPDATE projects SET swept_at = ? WHERE id = ?`
	prunePostedSQL = `DELETE FROM statuses WHERE pending = {false} AND updated_at < {now} - ?`
	// A change pending longer than the retention is dropped unless a post
	// of it is in flight.
	pruneAbandonedSQL = `DELETE FROM statuses WHERE pending = {true} AND accepted_at < {now} - ? AND lease_until < {now}`
	pruneProjectsSQL  = `DELETE FROM projects WHERE seen_at < {now} - ? AND NOT EXISTS (SELECT 1 FROM statuses WHERE project_id = projects.id)`
	pingSQL           = `UPDATE health SET checked_at = {now} WHERE id = 1`

	historySQL = `INSERT INTO history (status_id, at, kind, pipeline_id, state, source, code, detail, iid, state_change)
VALUES (?, {now}, ?, ?, ?, ?, ?, ?, ?, ?)`
	// trimSQL keeps a status's last HistoryLength entries, and the first
	// (the event that created it) and the last event that changed it.
	trimSQL = `DELETE FROM history WHERE status_id = ? AND id < (
	SELECT min(id) FROM (SELECT id FROM history WHERE status_id = ? ORDER BY id DESC LIMIT 20) AS kept)
	AND id <> (SELECT min(id) FROM history WHERE status_id = ?)
	AND id <> coalesce((SELECT max(id) FROM history WHERE status_id = ? AND state_change = {true}), 0)`
	minuteSQL = `INSERT INTO server_minutes (server, minute, posts, failures) VALUES (?, {now} / 60000, 1, ?)
ON CONFLICT (server, minute) DO UPDATE SET posts = server_minutes.posts + 1, failures = server_minutes.failures + excluded.failures`
	failureSQL = `INSERT INTO server_failures (server, at, status_id, code, detail) VALUES (?, {now}, ?, ?, ?)
ON CONFLICT (server) DO UPDATE SET at = excluded.at, status_id = excluded.status_id, code = excluded.code, detail = excluded.detail`
	sweepSQL = `INSERT INTO sweeps (id, at, projects, queued, verified, reposted, replica) VALUES (1, {now}, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET at = excluded.at, projects = excluded.projects, queued = excluded.queued, verified = excluded.verified,
	reposted = excluded.reposted, replica = excluded.replica`
	pruneHistorySQL = `DELETE FROM history WHERE at < {now} - ?`
	pruneSkipsSQL   = `DELETE FROM skips WHERE at < {now} - ?`
	// skipSQL keeps one row per pipeline skipped: its last reason.
	skipSQL = `INSERT INTO skips (commit_sha, project_path, pipeline_id, iid, source, reason, detail, at, count)
VALUES (?, ?, ?, ?, ?, ?, ?, {now}, 1)
ON CONFLICT (commit_sha, project_path, pipeline_id) DO UPDATE SET iid = excluded.iid, source = excluded.source, reason = excluded.reason,
	detail = excluded.detail, at = excluded.at, count = skips.count + 1`
	pruneMinutesSQL = `DELETE FROM server_minutes WHERE minute < ({now} - ?) / 60000`
)

// skipList is Claim.Skip as one parameter: "|a|b|".
func skipList(servers []string) string {
	if len(servers) == 0 {
		return ""
	}
	return "|" + strings.Join(servers, "|") + "|"
}

// statements are one backend's ways to read and write a row within a
// transaction, for merge.
type statements struct {
	get     func(ctx context.Context, id string) *sql.Row
	upsert  func(ctx context.Context, r Report) error
	rearm   func(ctx context.Context, id string) error
	project func(ctx context.Context, r Report) error
	exec    func(ctx context.Context, query string, args ...any) (sql.Result, error)
	dialect dialect
}

// merge is Accept's work within a transaction, the same for every backend:
// each report is given to keep beside its stored row, written as kept, and
// noted in the status's history whatever keep decided.
func merge(ctx context.Context, st statements, reports []Report, keep Keep, projects *projectCache, changed []bool) error {
	for i, r := range reports {
		cur, err := scanRow(st.get(ctx, r.StatusID))
		if errors.Is(err, sql.ErrNoRows) {
			cur, err = nil, nil
		}
		if err != nil {
			return err
		}
		decision, why := keep(cur, r)
		switch decision {
		case Wake:
			err = st.rearm(ctx, r.StatusID)
		case Replace:
			err = st.upsert(ctx, r)
		}
		if err != nil {
			return err
		}
		if cur != nil || decision != Ignore {
			// A status that does not exist has no history to add to.
			if err := addHistory(ctx, st.exec, st.dialect, r.StatusID, Entry{Kind: "event", PipelineID: r.PipelineID, State: r.State,
				Source: r.Source, Detail: why, IID: r.IID, Change: decision == Replace}); err != nil {
				return err
			}
		}
		if decision == Ignore {
			continue
		}
		changed[i] = true
		if projects.isNew(r) {
			if err := st.project(ctx, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// note adds e to the history of status id, if it exists, in one transaction.
func note(ctx context.Context, db *sql.DB, d dialect, id string, e Entry) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after a commit it does nothing
	var n int
	if err := tx.QueryRowContext(ctx, d.sql(`SELECT count(*) FROM statuses WHERE id = ?`), id).Scan(&n); err != nil || n == 0 {
		return err
	}
	if err := addHistory(ctx, tx.ExecContext, d, id, e); err != nil {
		return err
	}
	return tx.Commit()
}

// addHistory adds an entry to a status's history and drops what is past
// HistoryLength.
func addHistory(ctx context.Context, exec execFunc, d dialect, id string, e Entry) error {
	if _, err := exec(ctx, d.sql(historySQL), id, e.Kind, e.PipelineID, e.State, e.Source, e.Code, cut(e.Detail, 2000), e.IID, e.Change); err != nil {
		return err
	}
	_, err := exec(ctx, d.sql(trimSQL), id, id, id, id)
	return err
}

// execFunc runs a statement: a *sql.Tx's or a *sql.DB's ExecContext.
type execFunc func(ctx context.Context, query string, args ...any) (sql.Result, error)

// cut keeps s to n bytes, on a character boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// finishArgs are finishDoneSQL's and finishRetrySQL's arguments.
func finishArgs(owner string, row Row, o Outcome) []any {
	if o.Done {
		posted := o.posted()
		return []any{row.Version, posted, row.Version, posted, o.ConfirmAfter.Milliseconds(), row.Version, posted, o.Error,
			posted, posted, o.PostedState, posted, o.PostedPipeline, row.StatusID, owner, row.PostSeq}
	}
	attempted := 1
	if o.NotAttempted {
		attempted = 0
	}
	return []any{attempted, row.Version, max(time.Until(o.RetryAt).Milliseconds(), 0), o.Uncertain, o.NotAttempted, o.Error, o.NotAttempted,
		o.Error, row.StatusID, owner}
}

// finish records an outcome with exec (a backend's way to run a statement
// within one transaction) and, when the row moved on during a post that
// may have reached Bitbucket, rearms it so the newest state is posted after
// it. A request made goes into the status's history and its server's counts.
func finish(ctx context.Context, exec execFunc, d dialect, owner string, row Row, o Outcome) (Finished, error) {
	query := finishRetrySQL
	if o.Done {
		query = finishDoneSQL
	}
	res, err := exec(ctx, d.sql(query), finishArgs(owner, row, o)...)
	if err != nil {
		return Finished{}, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return Finished{}, err
	}
	if a := o.Attempt; a != nil {
		failed := 0
		if o.PostedState == "" {
			failed = 1
		}
		if err := addHistory(ctx, exec, d, row.StatusID, Entry{Kind: "post", PipelineID: a.PipelineID, State: a.State, Code: a.Code,
			Detail: o.Error, IID: a.IID}); err != nil {
			return Finished{}, err
		}
		if _, err := exec(ctx, d.sql(minuteSQL), row.Server, failed); err != nil {
			return Finished{}, err
		}
		if failed == 1 {
			if _, err := exec(ctx, d.sql(failureSQL), row.Server, row.StatusID, a.Code, cut(o.Error, 2000)); err != nil {
				return Finished{}, err
			}
		}
	}
	if n == 1 || !(o.posted() || o.Uncertain) {
		return Finished{}, nil
	}
	if _, err := exec(ctx, d.sql(rearmSQL), o.Uncertain, row.StatusID); err != nil {
		return Finished{}, err
	}
	return Finished{Rearmed: true}, nil
}

// minuteKeep is how long the per-minute counts of posts are kept.
const minuteKeep = 24 * time.Hour

// prune runs the deletes of Prune.
func prune(ctx context.Context, exec execFunc, d dialect, retention time.Duration) (Pruned, error) {
	var p Pruned
	for _, step := range []struct {
		query string
		arg   time.Duration
		count *int
	}{{prunePostedSQL, retention, &p.Posted}, {pruneAbandonedSQL, retention, &p.Abandoned}, {pruneProjectsSQL, retention, &p.Projects},
		{pruneHistorySQL, retention, nil}, {pruneSkipsSQL, retention, nil}, {prunePushesSQL, retention, nil},
		{prunePushEventsSQL, retention, nil}, {pruneMinutesSQL, minuteKeep, nil}} {
		res, err := exec(ctx, d.sql(step.query), step.arg.Milliseconds())
		if err != nil {
			return p, err
		}
		if step.count == nil {
			continue
		}
		n, err := res.RowsAffected()
		if err != nil {
			return p, err
		}
		*step.count = int(n)
	}
	return p, nil
}

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

type scanner interface{ Scan(...any) error }

// scanRow reads rowColumns and, last, the lease left in milliseconds.
func scanRow(sc scanner) (*Row, error) {
	var r Row
	var finished, accepted, next, updated, leaseLeft int64
	if err := sc.Scan(&r.StatusID, &r.Credential, &r.Server, &r.PipelineID, &r.State, &r.Final, &finished, &r.Body, &r.ProjectID,
		&r.Version, &r.Pending, &accepted, &r.Attempts, &next, &r.PostedState, &r.PostedPipeline, &r.PostSeq, &r.LastError,
		&r.Uncertain, &r.Commit, &r.ProjectPath, &r.GitLabStatus, &r.Description, &r.IID, &r.Waiting, &r.LeaseOwner, &updated, &leaseLeft); err != nil {
		return nil, err
	}
	r.FinishedAt, r.AcceptedAt, r.NextAttempt, r.UpdatedAt = fromMS(finished), fromMS(accepted), fromMS(next), fromMS(updated)
	r.LeaseLeft = time.Duration(leaseLeft) * time.Millisecond
	return &r, nil
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
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

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

func queryStats(ctx context.Context, db *sql.DB, d dialect) (Stats, error) {
	var st Stats
	var oldest sql.NullInt64
	if err := db.QueryRowContext(ctx, d.sql(statsSQL)).Scan(&st.Pending, &oldest); err != nil {
		return st, err
	}
	st.OldestPending = fromMS(oldest.Int64)
	err := db.QueryRowContext(ctx, d.sql(pushPendingCountSQL)).Scan(&st.PendingPushes)
	return st, err
}

// column is one column added to a table after its first release: a store
// made by an older relay gains it at open.
type column struct{ table, name, definition string }
