package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// The operator's reads: every one of them follows an index, so the page
// answers as fast with a million history entries as with ten.

// overview reads Overview with db.
func overview(ctx context.Context, db *sql.DB, d dialect, since time.Time) (Overview, error) {
	var o Overview
	var err error
	if o.Stats, err = queryStats(ctx, db, d); err != nil {
		return o, err
	}
	var sw Sweep
	var at int64
	err = db.QueryRowContext(ctx, `SELECT at, projects, queued, verified, reposted, replica FROM sweeps WHERE id = 1`).
		Scan(&at, &sw.Projects, &sw.Queued, &sw.Verified, &sw.Reposted, &sw.Replica)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return o, err
	default:
		sw.At = fromMS(at)
		o.LastSweep = &sw
	}
	rows, err := db.QueryContext(ctx, d.sql(`SELECT server, minute, posts, failures FROM server_minutes WHERE minute >= ? ORDER BY minute, server`),
		since.UnixMilli()/60000)
	if err != nil {
		return o, err
	}
	defer rows.Close()
	for rows.Next() {
		var m Minute
		var minute int64
		if err := rows.Scan(&m.Server, &minute, &m.Posts, &m.Failures); err != nil {
			return o, err
		}
		m.At = time.UnixMilli(minute * 60000).UTC()
		o.Minutes = append(o.Minutes, m)
	}
	if err := rows.Err(); err != nil {
		return o, err
	}
	frows, err := db.QueryContext(ctx, `SELECT server, at, status_id, code, detail FROM server_failures ORDER BY server`)
	if err != nil {
		return o, err
	}
	defer frows.Close()
	for frows.Next() {
		var f Failure
		if err := frows.Scan(&f.Server, &at, &f.StatusID, &f.Code, &f.Detail); err != nil {
			return o, err
		}
		f.At = fromMS(at)
		o.Failures = append(o.Failures, f)
	}
	return o, frows.Err()
}

// FindCountLimit is the most a search counts.
const FindCountLimit = 1000

// find reads the statuses a Find asks for, with their history.
func find(ctx context.Context, db *sql.DB, d dialect, f Find) ([]Found, int, error) {
	where, args := findWhere(d, f.Commit, f.Project)
	// Counted up to FindCountLimit: a short prefix may match a great many,
	// and how many exactly past that helps no one.
	var total int
	if err := db.QueryRowContext(ctx, d.sql(`SELECT count(*) FROM (SELECT 1 FROM statuses WHERE `+where+` LIMIT ?) AS matches`),
		append(args, FindCountLimit)...).Scan(&total); err != nil {
		return nil, 0, err
	}
	// A commit has few statuses: the failing ones (a refused or failed
	// post) first, then those waiting, then the rest. A project's are paged
	// through newest first, along its index.
	order := `updated_at DESC`
	if f.Commit != "" {
		order = `CASE WHEN last_error <> '' THEN 0 WHEN pending THEN 1 ELSE 2 END, updated_at DESC`
	}
	found, err := collectRows(db.QueryContext(ctx, d.sql(`SELECT `+rowColumns+`, 0 FROM statuses WHERE `+where+` ORDER BY `+order+` LIMIT ? OFFSET ?`),
		append(args, f.Limit, f.Offset)...))
	if err != nil {
		return nil, 0, err
	}
	out := make([]Found, len(found))
	for i, row := range found {
		out[i].Row = row
		if out[i].History, err = history(ctx, db, d, row.StatusID, f.History); err != nil {
			return nil, 0, err
		}
	}
	return out, total, nil
}

// findWhere is the condition a search uses, always on an index:
// statuses_project_lower (a project path in any letter case, as GitLab's
// are), or statuses_commit in its byte-wise collation.
func findWhere(d dialect, commit, project string) (string, []any) {
	if commit == "" {
		return `lower(project_path) = ?`, []any{strings.ToLower(project)}
	}
	return commitWhere(d, "commit_sha", commit)
}

// commitWhere matches a full hash, or a prefix as a range of the index:
// every hash that starts with it sorts before the prefix followed by "g",
// hex digits being below it. In the index's collation, or PostgreSQL
// cannot use it.
func commitWhere(d dialect, column, commit string) (string, []any) {
	if len(commit) >= 40 {
		return column + ` ` + d.collate + ` = ?`, []any{commit}
	}
	return column + ` ` + d.collate + ` >= ? AND ` + column + ` ` + d.collate + ` < ?`, []any{commit, commit + "g"}
}

// noteSkip records a skipped pipeline with exec.
func noteSkip(ctx context.Context, exec execFunc, d dialect, sk Skip) error {
	_, err := exec(ctx, d.sql(skipSQL), sk.Commit, cut(sk.ProjectPath, 1024), sk.PipelineID, sk.IID, cut(sk.Source, 100), cut(sk.Reason, 100),
		cut(sk.Detail, 2000))
	return err
}

// skips reads a commit's skipped pipelines, newest first.
func skips(ctx context.Context, db *sql.DB, d dialect, commit string, limit int) ([]Skip, error) {
	where, args := commitWhere(d, "commit_sha", commit)
	rows, err := db.QueryContext(ctx, d.sql(`SELECT commit_sha, project_path, pipeline_id, iid, source, reason, detail, at, count FROM skips WHERE `+
		where+` ORDER BY at DESC LIMIT ?`), append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Skip
	for rows.Next() {
		var sk Skip
		var at int64
		if err := rows.Scan(&sk.Commit, &sk.ProjectPath, &sk.PipelineID, &sk.IID, &sk.Source, &sk.Reason, &sk.Detail, &at, &sk.Count); err != nil {
			return nil, err
		}
		sk.At = fromMS(at)
		out = append(out, sk)
	}
	return out, rows.Err()
}

// history reads a status's last n entries, newest first.
func history(ctx context.Context, db *sql.DB, d dialect, id string, n int) ([]Entry, error) {
	rows, err := db.QueryContext(ctx, d.sql(`SELECT at, kind, pipeline_id, state, source, code, detail, iid, state_change FROM history
WHERE status_id = ? ORDER BY id DESC LIMIT ?`), id, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var at int64
		if err := rows.Scan(&at, &e.Kind, &e.PipelineID, &e.State, &e.Source, &e.Code, &e.Detail, &e.IID, &e.Change); err != nil {
			return nil, err
		}
		e.At = fromMS(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

func sweepArgs(s Sweep) []any {
	return []any{s.Projects, s.Queued, s.Verified, s.Reposted, s.Replica}
}
