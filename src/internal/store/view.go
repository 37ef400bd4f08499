package store

import (
	"context"
	"database/sql"
	"errors"
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
	where, args := findWhere(d, f)
	// Counted up to FindCountLimit: a short prefix may match a great many,
	// and how many exactly past that helps no one.
	var total int
	if err := db.QueryRowContext(ctx, d.sql(`SELECT count(*) FROM (SELECT 1 FROM statuses WHERE `+where+` LIMIT ?) AS matches`),
		append(args, FindCountLimit)...).Scan(&total); err != nil {
		return nil, 0, err
	}
	found, err := collectRows(db.QueryContext(ctx, d.sql(`SELECT `+rowColumns+`, 0 FROM statuses WHERE `+where+` ORDER BY updated_at DESC LIMIT ?`),
		append(args, f.Limit)...))
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

// findWhere is the condition a Find searches with, always on an index:
// statuses_project, or statuses_commit in its byte-wise collation.
func findWhere(d dialect, f Find) (string, []any) {
	if f.Commit == "" {
		return `project_path = ?`, []any{f.Project}
	}
	if len(f.Commit) >= 40 {
		// In the index's collation, or PostgreSQL cannot use it.
		return `commit_sha ` + d.collate + ` = ?`, []any{f.Commit}
	}
	// A prefix is a range of the index: every hash that starts with it
	// sorts before the prefix followed by "g", hex digits being below it.
	return `commit_sha ` + d.collate + ` >= ? AND commit_sha ` + d.collate + ` < ?`, []any{f.Commit, f.Commit + "g"}
}

// history reads a status's last n entries, newest first.
func history(ctx context.Context, db *sql.DB, d dialect, id string, n int) ([]Entry, error) {
	rows, err := db.QueryContext(ctx, d.sql(`SELECT at, kind, pipeline_id, state, source, code, detail FROM history WHERE status_id = ? ORDER BY id DESC LIMIT ?`), id, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var at int64
		if err := rows.Scan(&at, &e.Kind, &e.PipelineID, &e.State, &e.Source, &e.Code, &e.Detail); err != nil {
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
