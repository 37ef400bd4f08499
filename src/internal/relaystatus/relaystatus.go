// Package relaystatus answers the question an operator of the relay gets:
// "why is my commit not green on Bitbucket?". It reads the relay's store (any
// replica sees the whole picture) and what lives in one process only (rate
// limit pauses, breakers), and shows it as a web page, plain text or JSON:
// the backlog, the last sweep, each Bitbucket server's posts and failures,
// and for a commit or a project every status with what GitLab sent, what was
// posted, what Bitbucket answered and what it waits for. It never shows a
// secret, a webhook body or a header.
package relaystatus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

// Local is what one replica alone knows.
type Local struct {
	// Replica names the replica that answered.
	Replica string            `json:"replica"`
	Servers []LocalServer     `json:"servers"`
	Pauses  []CredentialPause `json:"pauses"`
}

// LocalServer is one server's gate in this replica.
type LocalServer struct {
	Server      string    `json:"server"`
	InFlight    int       `json:"in_flight"`
	BreakerOpen bool      `json:"breaker_open"`
	OpenUntil   time.Time `json:"open_until,omitzero"`
}

// CredentialPause is a credential paused by a 429 in this replica.
type CredentialPause struct {
	Credential string    `json:"credential"`
	Until      time.Time `json:"until"`
}

// Overview is the first page.
type Overview struct {
	Now     time.Time `json:"now"`
	Pending int       `json:"pending"`
	// OldestPending is when the oldest change waiting was accepted.
	OldestPending time.Time    `json:"oldest_pending,omitzero"`
	LastSweep     *store.Sweep `json:"last_sweep"`
	Servers       []Server     `json:"servers"`
	// Minutes are the last hour's posts and failures, all servers, oldest
	// first.
	Minutes []Point `json:"minutes"`
	// Local is this replica's own state; nil when read from the store alone.
	Local *Local `json:"local,omitempty"`
}

// Server is one Bitbucket server over the last hour.
type Server struct {
	Server      string         `json:"server"`
	Posts       int            `json:"posts_last_hour"`
	Failures    int            `json:"failures_last_hour"`
	LastFailure *store.Failure `json:"last_failure"`
}

// Point is one minute of the plot.
type Point struct {
	At       time.Time `json:"at"`
	Posts    int       `json:"posts"`
	Failures int       `json:"failures"`
}

// ReadOverview reads the overview from st, as of now.
func ReadOverview(ctx context.Context, st store.Store, now time.Time, local *Local) (Overview, error) {
	hourAgo := now.Add(-time.Hour).Truncate(time.Minute)
	o, err := st.Overview(ctx, hourAgo)
	if err != nil {
		return Overview{}, err
	}
	out := Overview{Now: now, Pending: o.Pending, OldestPending: o.OldestPending, LastSweep: o.LastSweep, Local: local}
	servers := map[string]*Server{}
	server := func(name string) *Server {
		if servers[name] == nil {
			servers[name] = &Server{Server: name}
		}
		return servers[name]
	}
	out.Minutes = make([]Point, 60)
	for i := range out.Minutes {
		out.Minutes[i].At = hourAgo.Add(time.Duration(i+1) * time.Minute)
	}
	for _, m := range o.Minutes {
		s := server(m.Server)
		s.Posts += m.Posts
		s.Failures += m.Failures
		if i := int(m.At.Sub(hourAgo)/time.Minute) - 1; i >= 0 && i < len(out.Minutes) {
			out.Minutes[i].Posts += m.Posts
			out.Minutes[i].Failures += m.Failures
		}
	}
	for _, f := range o.Failures {
		f := f
		server(f.Server).LastFailure = &f
	}
	if local != nil {
		for _, s := range local.Servers {
			server(s.Server)
		}
	}
	for _, s := range servers {
		out.Servers = append(out.Servers, *s)
	}
	sort.Slice(out.Servers, func(i, j int) bool { return out.Servers[i].Server < out.Servers[j].Server })
	return out, nil
}

// Result is a search's answer.
type Result struct {
	Query string `json:"query"`
	// Kind is "commit" or "project".
	Kind string `json:"kind"`
	// Total is how many statuses match; Statuses the newest of them.
	Total    int      `json:"total"`
	Statuses []Status `json:"statuses"`
}

// Status is one status found.
type Status struct {
	ID         string `json:"id"`
	Server     string `json:"server"`
	Repository string `json:"repository"`
	Commit     string `json:"commit"`
	Key        string `json:"key"`
	Project    string `json:"project"`
	Credential string `json:"credential"`
	// Pipeline and State are the newest event accepted for it.
	Pipeline int64  `json:"pipeline"`
	State    string `json:"state"`
	Pending  bool   `json:"pending"`
	// PostedState and PostedPipeline are what Bitbucket was last given.
	PostedState    string        `json:"posted_state"`
	PostedPipeline int64         `json:"posted_pipeline"`
	LastError      string        `json:"last_error,omitempty"`
	Attempts       int           `json:"attempts"`
	UpdatedAt      time.Time     `json:"updated_at"`
	Waiting        string        `json:"waiting"`
	History        []store.Entry `json:"history"`
}

// Limits of a search, which keep a page under 60 KB: a commit has few
// statuses, each shown with its whole history; a project has one per
// commit, the newest shown with their last entries. The page shows the
// start of each entry's detail and the last error whole; text and JSON
// show everything.
const (
	commitStatuses, commitHistory   = 5, store.HistoryLength
	projectStatuses, projectHistory = 20, 3
)

// ErrQuery is a query that is neither a commit nor a project path.
var ErrQuery = errors.New("search for a commit (7 to 64 hex digits) or a GitLab project path (group/project)")

// Search finds the statuses of a commit (full or short hash) or a GitLab
// project path.
func Search(ctx context.Context, st store.Store, query string, now time.Time, local *Local) (Result, error) {
	query = strings.TrimSpace(query)
	r := Result{Query: query}
	f := store.Find{}
	switch {
	case isHex(query) && len(query) >= 7 && len(query) <= 64:
		r.Kind, f.Commit, f.Limit, f.History = "commit", strings.ToLower(query), commitStatuses, commitHistory
	case strings.Contains(query, "/") && !strings.ContainsAny(query, " \t\r\n") && len(query) <= 1024:
		r.Kind, f.Project, f.Limit, f.History = "project", strings.Trim(query, "/"), projectStatuses, projectHistory
	default:
		return r, ErrQuery
	}
	found, total, err := st.Find(ctx, f)
	if err != nil {
		return r, err
	}
	r.Total = total
	for _, fd := range found {
		r.Statuses = append(r.Statuses, statusOf(fd, now, local))
	}
	return r, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return s != ""
}

// statusOf describes a stored status, and says what it waits for.
func statusOf(f store.Found, now time.Time, local *Local) Status {
	s := Status{ID: f.StatusID, Server: f.Server, Commit: f.Commit, Project: f.ProjectPath, Credential: f.Credential, Pipeline: f.PipelineID,
		State: f.State, Pending: f.Pending, PostedState: f.PostedState, PostedPipeline: f.PostedPipeline, LastError: f.LastError,
		Attempts: f.Attempts, UpdatedAt: f.UpdatedAt, History: f.History}
	// Statuses are named "cloud|API|workspace/slug|commit|key" or
	// "dc|server|PROJECT/slug|commit|key".
	if parts := strings.SplitN(f.StatusID, "|", 5); len(parts) == 5 {
		s.Repository, s.Key = parts[2], parts[4]
	}
	s.Waiting = waiting(f.Row, now, local)
	return s
}

func waiting(r store.Row, now time.Time, local *Local) string {
	when := func(t time.Time) string { return t.UTC().Format("15:04:05 UTC") }
	switch {
	case strings.HasPrefix(r.StatusID, "unresolved|"):
		if r.Pending {
			return "for GitLab, to tell where this project reports (its pull mirror or its child pipeline's trigger job): " +
				"GitLab did not answer when the event came" + lastError(r)
		}
		return "nothing: its destination was found" + lastError(r)
	case !r.Pending && r.LastError != "":
		return "for the next event of this status: Bitbucket refused the last post, and a refusal is not retried on its own " +
			"(the post below says why, and what to change)"
	case !r.Pending:
		return fmt.Sprintf("nothing: Bitbucket was given %s for pipeline %d", r.PostedState, r.PostedPipeline)
	case r.LeaseOwner != "":
		return "for a post in flight, by replica " + r.LeaseOwner
	}
	if local != nil {
		for _, p := range local.Pauses {
			if p.Credential == r.Credential && p.Until.After(now) {
				return fmt.Sprintf("for its credential %q, paused by Bitbucket's rate limit (429) until %s (this replica's pause)", p.Credential, when(p.Until))
			}
		}
		for _, s := range local.Servers {
			if s.Server == r.Server && s.BreakerOpen {
				return fmt.Sprintf("for %s, which failed three times in a row: its breaker is open until %s (this replica's breaker)", s.Server, when(s.OpenUntil))
			}
		}
	}
	if r.NextAttempt.After(now) {
		return fmt.Sprintf("to try again at %s, after %d attempt(s)%s", when(r.NextAttempt), r.Attempts, lastError(r))
	}
	return "for a free worker: it is due now" + lastError(r)
}

func lastError(r store.Row) string {
	if r.LastError == "" {
		return ""
	}
	return ". Last: " + r.LastError
}
