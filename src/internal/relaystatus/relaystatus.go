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
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/redact"
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
	// Now is when it was read, in UTC as every time here.
	Now     time.Time `json:"now"`
	Pending int       `json:"pending"`
	// OldestPending is when the oldest change waiting was accepted.
	OldestPending time.Time `json:"oldest_pending,omitzero"`
	LastSweep     *Sweep    `json:"last_sweep"`
	Servers       []Server  `json:"servers"`
	// Minutes are the last hour's posts and failures, all servers, oldest
	// first.
	Minutes []Point `json:"minutes"`
	// Local is this replica's own state; nil when read from the store alone.
	Local *Local `json:"local,omitempty"`
}

// Sweep is the last sweep's summary.
type Sweep struct {
	At       time.Time `json:"at"`
	Replica  string    `json:"replica"`
	Projects int       `json:"projects"`
	Queued   int       `json:"queued"`
	Verified int       `json:"verified"`
	Reposted int       `json:"posted_again"`
}

// Server is one Bitbucket server over the last hour.
type Server struct {
	Server      string   `json:"server"`
	Posts       int      `json:"posts_last_hour"`
	Failures    int      `json:"failures_last_hour"`
	LastFailure *Failure `json:"last_failure"`
}

// Failure is a server's last failed post.
type Failure struct {
	At       time.Time `json:"at"`
	StatusID string    `json:"status"`
	// Code is the answer's HTTP code, 0 for none.
	Code   int    `json:"code"`
	Detail string `json:"detail"`
}

// Point is one minute of the plot.
type Point struct {
	At       time.Time `json:"at"`
	Posts    int       `json:"posts"`
	Failures int       `json:"failures"`
}

// text makes what came from elsewhere (a server's error, a webhook's
// names) fit to show: no credential (whatever an older relay stored), no
// control character.
func text(s string) string { return redact.Printable(redact.Shapes(s)) }

// ReadOverview reads the overview from st, as of now.
func ReadOverview(ctx context.Context, st store.Store, now time.Time, local *Local) (Overview, error) {
	now = now.UTC()
	hourAgo := now.Add(-time.Hour).Truncate(time.Minute)
	o, err := st.Overview(ctx, hourAgo)
	if err != nil {
		return Overview{}, err
	}
	out := Overview{Now: now, Pending: o.Pending, OldestPending: o.OldestPending.UTC(), Local: local, Servers: []Server{}}
	if o.OldestPending.IsZero() {
		out.OldestPending = time.Time{}
	}
	if sw := o.LastSweep; sw != nil {
		out.LastSweep = &Sweep{At: sw.At.UTC(), Replica: text(sw.Replica), Projects: sw.Projects, Queued: sw.Queued, Verified: sw.Verified,
			Reposted: sw.Reposted}
	}
	servers := map[string]*Server{}
	server := func(name string) *Server {
		if servers[name] == nil {
			servers[name] = &Server{Server: text(name)}
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
		server(f.Server).LastFailure = &Failure{At: f.At.UTC(), StatusID: text(f.StatusID), Code: f.Code, Detail: text(f.Detail)}
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
	// Query is what was asked, as given; Kind ("commit" or "project") and
	// Value what it was read as (a URL pasted gives its commit or project).
	Query string `json:"query"`
	Kind  string `json:"kind"`
	Value string `json:"value"`
	// Total is how many statuses match (counted up to 1,000); Statuses are
	// those of this page: a commit's all of them (they are few), the
	// failing first; a project's PageSize at a time, newest first.
	Total    int      `json:"total"`
	Page     int      `json:"page"`
	Pages    int      `json:"pages"`
	Statuses []Status `json:"statuses"`
	// Skipped are the pipelines of a commit the relay received and did not
	// report, and why.
	Skipped []Skipped `json:"skipped"`
	// Pushes are what became of a commit's push to Bitbucket (the first
	// mile: the push received, GitLab's mirror asked, its update), newest
	// first.
	Pushes []Push `json:"pushes"`
}

// Push is a line of a pushed commit's history.
type Push struct {
	At      time.Time `json:"at"`
	Project string    `json:"project"`
	// Kind is "push", "mirror" (GitLab asked to update the mirror),
	// "update" (it fetched) or "failed".
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

// What is the line's kind in words: "push received", "mirror started",
// "mirror updated", "mirror failed".
func (p Push) What() string {
	switch p.Kind {
	case "push":
		return "push received"
	case "mirror":
		return "mirror started"
	case "update":
		return "mirror updated"
	case "failed":
		return "mirror failed"
	}
	return p.Kind
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
	// Pipeline, PipelineIID (#7, as Bitbucket shows it), State and
	// GitLabStatus are the newest event accepted; Description, the text
	// Bitbucket is given with it.
	Pipeline     int64  `json:"pipeline"`
	PipelineIID  int64  `json:"pipeline_iid"`
	State        string `json:"state"`
	GitLabStatus string `json:"gitlab_status"`
	Description  string `json:"description"`
	Pending      bool   `json:"pending"`
	// PostedState and PostedPipeline are what Bitbucket was last given.
	PostedState    string `json:"posted_state"`
	PostedPipeline int64  `json:"posted_pipeline"`
	// Failed: the last attempt to post it failed; LastError says how.
	Failed    bool      `json:"failed"`
	LastError string    `json:"last_error"`
	Attempts  int       `json:"attempts"`
	UpdatedAt time.Time `json:"updated_at"`
	// Waiting says what the status waits for, in words.
	Waiting string  `json:"waiting"`
	History []Entry `json:"history"`
}

// Entry is one line of a status's history, newest first.
type Entry struct {
	At time.Time `json:"at"`
	// Kind is "event" (a webhook or the sweep), "post" (a request to
	// Bitbucket) or "report" (a Code Insights report after the post).
	Kind        string `json:"kind"`
	Pipeline    int64  `json:"pipeline"`
	PipelineIID int64  `json:"pipeline_iid"`
	State       string `json:"state"`
	Source      string `json:"source"`
	// Code is a post's answer, 0 for none.
	Code   int    `json:"code"`
	Detail string `json:"detail"`
	// StateChange: an event that created or changed the status (kept
	// beyond the last 20 entries).
	StateChange bool `json:"state_change"`
}

// Skipped is a pipeline received for a commit and not reported.
type Skipped struct {
	Project     string    `json:"project"`
	Pipeline    int64     `json:"pipeline"`
	PipelineIID int64     `json:"pipeline_iid"`
	Source      string    `json:"source"`
	Reason      string    `json:"reason"`
	Detail      string    `json:"detail"`
	At          time.Time `json:"at"`
	Events      int       `json:"events"`
}

// Limits of a search, which keep a page under 60 KB: a commit's statuses
// are few, each shown with its whole history; a project's are paged,
// PageSize at a time with their last entries. The page shows the start of
// each entry's detail and the last error whole; text and JSON show
// everything.
const (
	commitStatuses, commitHistory = 100, store.HistoryKept
	PageSize, projectHistory      = 20, 3
	skipsShown                    = 50
)

// ErrQuery is a query that is neither a commit nor a project path.
var ErrQuery = errors.New("search for a commit (7 to 64 hex digits), a GitLab project path (group/project), " +
	"or paste a GitLab project, pipeline or commit URL, or a Bitbucket commit URL")

// Search finds the statuses of a commit (full or short hash) or a GitLab
// project path (any letter case), or of what a pasted URL names; page
// counts from 1 (a project's statuses come PageSize at a time).
func Search(ctx context.Context, st store.Store, query string, page int, now time.Time, local *Local) (Result, error) {
	query = strings.TrimSpace(query)
	r := Result{Query: query, Page: max(page, 1), Statuses: []Status{}, Skipped: []Skipped{}, Pushes: []Push{}}
	kind, value := Read(query)
	if kind == "" {
		return r, ErrQuery
	}
	r.Kind, r.Value = kind, value
	f := store.Find{}
	if kind == "commit" {
		f.Commit, f.Limit, f.History = value, commitStatuses, commitHistory
	} else {
		f.Project, f.Limit, f.Offset, f.History = value, PageSize, (r.Page-1)*PageSize, projectHistory
	}
	found, total, err := st.Find(ctx, f)
	if err != nil {
		return r, err
	}
	r.Total = total
	r.Pages = 1
	if kind == "project" {
		r.Pages = max(1, (total+PageSize-1)/PageSize)
	}
	for _, fd := range found {
		r.Statuses = append(r.Statuses, statusOf(fd, now, local))
	}
	if kind == "commit" {
		skips, err := st.Skips(ctx, value, skipsShown)
		if err != nil {
			return r, err
		}
		for _, sk := range skips {
			r.Skipped = append(r.Skipped, Skipped{Project: text(sk.ProjectPath), Pipeline: sk.PipelineID, PipelineIID: sk.IID, Source: text(sk.Source),
				Reason: text(sk.Reason), Detail: text(sk.Detail), At: sk.At.UTC(), Events: sk.Count})
		}
		pushes, err := st.PushEvents(ctx, value, skipsShown)
		if err != nil {
			return r, err
		}
		for _, e := range pushes {
			r.Pushes = append(r.Pushes, Push{At: e.At.UTC(), Project: text(e.ProjectPath), Kind: e.Kind, Detail: text(e.Detail)})
		}
	}
	return r, nil
}

// Read says what a query names: ("commit", a lower-case hash),
// ("project", a path), or ("", "") for nothing it can read. Besides a hash
// and a path it reads what an operator pastes from a browser: a GitLab
// project, pipeline, merge request or commit URL
// (https://gitlab.example.com/group/project/-/commit/SHA), and a Bitbucket
// commit URL, Cloud's (https://bitbucket.org/ws/repo/commits/SHA) or Data
// Center's (.../projects/P/repos/r/commits/SHA).
func Read(query string) (kind, value string) {
	query = strings.TrimSpace(query)
	if isHex(query) && len(query) >= 7 && len(query) <= 64 {
		return "commit", strings.ToLower(query)
	}
	if len(query) > 2048 || strings.ContainsAny(query, " \t\r\n") {
		return "", ""
	}
	if u, err := url.Parse(query); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
		segs := strings.Split(strings.Trim(u.Path, "/"), "/")
		for i, seg := range segs {
			if (seg == "commit" || seg == "commits") && i+1 < len(segs) {
				if sha := segs[i+1]; isHex(sha) && len(sha) >= 7 && len(sha) <= 64 {
					return "commit", strings.ToLower(sha)
				}
			}
		}
		// GitLab: everything before "/-/" is the project's path.
		path, _, _ := strings.Cut(strings.Trim(u.Path, "/"), "/-/")
		if path = strings.TrimSuffix(path, ".git"); projectPath.MatchString(path) {
			return "project", path
		}
		return "", ""
	}
	if path := strings.Trim(query, "/"); projectPath.MatchString(path) {
		return "project", path
	}
	return "", ""
}

// projectPath is a GitLab project's full path: a group and a project at
// least, each of letters, digits, '_', '-' and '.'.
var projectPath = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$`)

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
	s := Status{ID: text(f.StatusID), Server: text(f.Server), Commit: f.Commit, Project: text(f.ProjectPath), Credential: text(f.Credential),
		Pipeline: f.PipelineID, PipelineIID: f.IID, State: f.State, GitLabStatus: text(f.GitLabStatus), Description: text(f.Description),
		Pending: f.Pending, PostedState: f.PostedState, PostedPipeline: f.PostedPipeline, Failed: f.LastError != "",
		LastError: text(f.LastError), Attempts: f.Attempts, UpdatedAt: f.UpdatedAt.UTC(), History: []Entry{}}
	// Statuses are named "cloud|API|workspace/slug|commit|key" or
	// "dc|server|PROJECT/slug|commit|key".
	if parts := strings.SplitN(s.ID, "|", 5); len(parts) == 5 {
		s.Repository, s.Key = parts[2], parts[4]
	}
	for _, e := range f.History {
		s.History = append(s.History, Entry{At: e.At.UTC(), Kind: e.Kind, Pipeline: e.PipelineID, PipelineIID: e.IID, State: e.State,
			Source: text(e.Source), Code: e.Code, Detail: text(e.Detail), StateChange: e.Change})
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
		return "nothing: its destination was found"
	case !r.Pending && r.LastError != "":
		return "for the next event of this status: Bitbucket refused the last post, and a refusal is not retried on its own " +
			"(the last error says why, and what to change)"
	case !r.Pending && r.GitLabStatus == "manual":
		return fmt.Sprintf("nothing from the relay: Bitbucket was given %s for pipeline %s; in GitLab, %s: "+
			"it shows in progress until someone plays the job or the pipeline moves on", r.PostedState, postedName(r), lowerFirst(text(r.Description)))
	case !r.Pending:
		return fmt.Sprintf("nothing: Bitbucket was given %s for pipeline %s", r.PostedState, postedName(r))
	case r.LeaseOwner != "":
		return "for a post in flight, by replica " + text(r.LeaseOwner)
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
	if r.Waiting != "" && r.NextAttempt.After(now) {
		return fmt.Sprintf("%s, until %s", strings.TrimPrefix(text(r.Waiting), "waiting: "), when(r.NextAttempt))
	}
	if r.NextAttempt.After(now) {
		return fmt.Sprintf("to try again at %s, after %d attempt(s)", when(r.NextAttempt), r.Attempts)
	}
	return "for a free worker: it is due now"
}

// PipelineName is a pipeline as the page names it: its id, and its
// number in its project as Bitbucket shows it (#7), when known.
func PipelineName(id, iid int64) string {
	if iid > 0 {
		return fmt.Sprintf("%d (#%d)", id, iid)
	}
	return fmt.Sprint(id)
}

// postedName names the pipeline Bitbucket was last given: its number is
// known when it is the newest event's.
func postedName(r store.Row) string {
	if r.PostedPipeline == r.PipelineID {
		return PipelineName(r.PostedPipeline, r.IID)
	}
	return PipelineName(r.PostedPipeline, 0)
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func lastError(r store.Row) string {
	if r.LastError == "" {
		return ""
	}
	return ". Last: " + text(r.LastError)
}
