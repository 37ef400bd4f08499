// Package fakegitlab is a stand-in for GitLab's REST API in the tests (never
// shipped): projects by ID or path, their pull mirrors kept as GitLab keeps
// them (an update due or running absorbs another start, one asked within
// the interval of the last is deferred to its end, 14 failures in a row
// pause the mirror, a project that is no mirror answers 400), and a
// token's own scopes. For connect (setup.go): groups that may or may not
// take new projects, projects created and updated, the pull mirror's
// configuration (PUT, or import_url before 17.6), CI/CD variables with
// GitLab's masking rules, branches, and 429s with Retry-After. It records
// every request with its JSON body, never the PRIVATE-TOKEN.
package fakegitlab

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is the stand-in; its zero value answers 401 to everything but
// takes Token "" as no token at all. Set Token and add projects.
type Server struct {
	// Token is the PRIVATE-TOKEN expected; Scopes what the token has.
	Token  string
	Scopes []string
	// Interval is the pull mirroring interval (GitLab's 5 minutes by
	// default); UpdateTakes how long an update runs once started.
	Interval, UpdateTakes time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time

	// Version is what GET /version says ("18.6.0-ee" when empty): before
	// 17.6 there is no PUT .../mirror/pull and no hidden variable.
	Version string
	// Upstream is the Bitbucket repository's credential: when User or
	// Password is set, a mirror update with other credentials fails as git
	// does; Commit is its default branch's head, fetched by an update.
	Upstream Upstream
	// RetryAfter is the Retry-After (seconds) sent with failures of 429.
	RetryAfter int

	mu       sync.Mutex
	projects map[int64]*Project
	groups   map[string]*Group
	nextID   int64
	log      []Record
	// failNext answers the next n requests with a code, for outages;
	// failOn limits it to requests whose method and path start so.
	failCode, failNext int
	failOn             string
}

// Upstream is the repository a mirror pulls from.
type Upstream struct {
	User, Password, Commit string
}

// Project is a project the stand-in knows.
type Project struct {
	ID   int64
	Path string
	// Maintainer: the token has the Maintainer role (mirror settings).
	Maintainer bool
	// Mirror is its pull mirror; nil: not mirrored.
	Mirror *Mirror
	// Branches are its branches' heads; DefaultBranch is "main" when empty.
	Branches      map[string]string
	DefaultBranch string
	// Access is each feature's access level (issues_access_level, ...).
	Access     map[string]string
	Visibility string
	Variables  map[string]*Variable
}

// Variable is a project's CI/CD variable.
type Variable struct {
	Key, Value, Description        string
	Masked, Hidden, Protected, Raw bool
}

// Mirror is a pull mirror's state.
type Mirror struct {
	URL     string
	Enabled bool
	// UpdateStatus: none, scheduled, started, finished, failed.
	UpdateStatus                                              string
	LastUpdateStartedAt, LastUpdateAt, LastSuccessfulUpdateAt time.Time
	LastError                                                 string
	// Failures in a row; past 14 the mirror is paused ("hard failed").
	Failures int
	// FetchError, when set, is what the next updates end with: the
	// Bitbucket credential refused, say.
	FetchError string
	// Starts counts the updates that started.
	Starts int
	// AuthUser and AuthPassword are the credentials it fetches with;
	// TriggerBuilds, OverwriteDiverged and OnlyProtected its settings.
	AuthUser, AuthPassword                          string
	TriggerBuilds, OverwriteDiverged, OnlyProtected bool
	// due is when a deferred update runs; started, when the running one did.
	due, started time.Time
}

// MaxRetry is GitLab's Gitlab::Mirror::MAX_RETRY: past it a mirror is paused.
const MaxRetry = 14

// Record is one request as the stand-in saw it.
type Record struct {
	Method, Path, Query string
	Code                int
	Body                json.RawMessage
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) interval() time.Duration {
	if s.Interval == 0 {
		return 5 * time.Minute
	}
	return s.Interval
}

// AddProject adds a project and returns it (held by the stand-in: change
// it under Lock).
func (s *Server) AddProject(path string, maintainer bool, mirror *Mirror) *Project {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.projects == nil {
		s.projects = map[int64]*Project{}
	}
	s.nextID++
	if mirror != nil && mirror.UpdateStatus == "" {
		mirror.UpdateStatus = "none"
	}
	p := &Project{ID: 100 + s.nextID, Path: path, Maintainer: maintainer, Mirror: mirror}
	s.projects[p.ID] = p
	return p
}

// Lock runs f with the stand-in's state held, the mirrors brought up to now.
func (s *Server) Lock(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	f()
}

// StartNow starts an update of m now, as GitLab's own schedule does.
func (s *Server) StartNow(m *Mirror) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.due = s.now()
	s.advance()
}

// FailNext answers the next n requests with code (an outage).
func (s *Server) FailNext(n, code int) { s.FailNextOn("", n, code) }

// FailNextOn answers the next n requests whose "METHOD /path" starts with
// prefix with code: a failure midway through a setup.
func (s *Server) FailNextOn(prefix string, n, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext, s.failCode, s.failOn = n, code, prefix
}

// Requests returns what was received.
func (s *Server) Requests() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.log...)
}

// advance moves every mirror's updates along to now: a due update starts;
// a started one ends after UpdateTakes, with FetchError or not.
func (s *Server) advance() {
	now := s.now()
	for _, p := range s.projects {
		m := p.Mirror
		if m == nil {
			continue
		}
		if !m.due.IsZero() && !now.Before(m.due) && m.UpdateStatus != "started" {
			m.due = time.Time{}
			m.UpdateStatus, m.LastUpdateStartedAt, m.started = "started", now, now
			m.Starts++
		}
		if m.UpdateStatus == "started" && !now.Before(m.started.Add(s.UpdateTakes)) {
			end := m.started.Add(s.UpdateTakes)
			m.LastUpdateAt = end
			if fetchError := s.fetchError(m); fetchError != "" {
				m.UpdateStatus, m.LastError = "failed", fetchError
				m.Failures++
			} else {
				m.UpdateStatus, m.LastError, m.LastSuccessfulUpdateAt, m.Failures = "finished", "", end, 0
				if s.Upstream.Commit != "" {
					if p.Branches == nil {
						p.Branches = map[string]string{}
					}
					p.Branches[p.defaultBranch()] = s.Upstream.Commit
				}
			}
		}
	}
}

// ServeHTTP answers /api/v4/... as GitLab does.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	rec := &recorder{ResponseWriter: w, code: http.StatusOK}
	s.route(rec, r, body)
	entry := Record{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Code: rec.code}
	if json.Valid(body) {
		entry.Body = body
	}
	s.log = append(s.log, entry)
}

type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func message(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"message": msg})
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	if s.failNext > 0 && strings.HasPrefix(r.Method+" "+r.URL.EscapedPath(), s.failOn) {
		s.failNext--
		if s.failCode == http.StatusTooManyRequests && s.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(s.RetryAfter))
		}
		message(w, s.failCode, http.StatusText(s.failCode))
		return
	}
	if s.Token == "" || r.Header.Get("PRIVATE-TOKEN") != s.Token {
		message(w, http.StatusUnauthorized, "401 Unauthorized")
		return
	}
	path, ok := strings.CutPrefix(r.URL.EscapedPath(), "/api/v4/")
	if !ok {
		message(w, http.StatusNotFound, "404 Not Found")
		return
	}
	parts := strings.Split(path, "/")
	if s.setup(w, r, parts, body) {
		return
	}
	switch {
	case path == "version":
		writeJSON(w, http.StatusOK, map[string]string{"version": s.version(), "revision": "fake"})
	case path == "personal_access_tokens/self":
		writeJSON(w, http.StatusOK, map[string]any{"id": 1, "name": "relay", "scopes": s.Scopes, "active": true, "revoked": false,
			"expires_at": "2027-06-01"})
	case len(parts) >= 2 && parts[0] == "projects":
		p := s.project(parts[1])
		if p == nil {
			message(w, http.StatusNotFound, "404 Project Not Found")
			return
		}
		switch {
		case len(parts) == 2 && r.Method == http.MethodGet:
			writeJSON(w, http.StatusOK, s.projectJSON(p))
		case len(parts) == 4 && parts[2] == "mirror" && parts[3] == "pull" && r.Method == http.MethodPut:
			var doc map[string]any
			_ = json.Unmarshal(body, &doc)
			s.configureMirror(w, p, doc)
		case len(parts) == 4 && parts[2] == "mirror" && parts[3] == "pull":
			s.mirror(w, r, p)
		default:
			message(w, http.StatusNotFound, "404 Not Found")
		}
	default:
		message(w, http.StatusNotFound, "404 Not Found")
	}
}

// project finds a project by ID or URL-encoded path.
func (s *Server) project(idOrPath string) *Project {
	if id, err := strconv.ParseInt(idOrPath, 10, 64); err == nil {
		return s.projects[id]
	}
	path, err := url.PathUnescape(idOrPath)
	if err != nil {
		return nil
	}
	for _, p := range s.projects {
		if strings.EqualFold(p.Path, path) {
			return p
		}
	}
	return nil
}

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// mirror is GET and POST /projects/:id/mirror/pull, as ee/lib/api/project_mirror.rb
// and StartPullMirroringService answer them.
func (s *Server) mirror(w http.ResponseWriter, r *http.Request, p *Project) {
	if !p.Maintainer {
		message(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	m := p.Mirror
	if m == nil || !m.Enabled {
		message(w, http.StatusBadRequest, "The project is not mirrored")
		return
	}
	switch r.Method {
	case http.MethodGet:
		lastError := any(nil)
		if m.LastError != "" {
			lastError = m.LastError
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": p.ID, "enabled": m.Enabled, "url": maskURL(m.URL), "update_status": m.UpdateStatus,
			"last_update_started_at": timeOrNil(m.LastUpdateStartedAt), "last_update_at": timeOrNil(m.LastUpdateAt),
			"last_successful_update_at": timeOrNil(m.LastSuccessfulUpdateAt), "last_error": lastError, "mirror_trigger_builds": m.TriggerBuilds,
			"only_mirror_protected_branches": m.OnlyProtected, "mirror_overwrites_diverged_branches": m.OverwriteDiverged, "mirror_branch_regex": nil})
	case http.MethodPost:
		now := s.now()
		switch {
		case m.Failures > MaxRetry:
			message(w, http.StatusForbidden, "Mirroring for the project is on pause")
			return
		case m.UpdateStatus == "scheduled" || m.UpdateStatus == "started" || !m.due.IsZero():
			// force_import_job! returns at once: the request is absorbed.
		case !m.LastUpdateAt.IsZero() && now.Sub(m.LastUpdateAt) < s.interval():
			// Within the interval: deferred, not dropped.
			m.due = m.LastUpdateAt.Add(s.interval())
		default:
			m.due, m.UpdateStatus = now, "scheduled"
		}
		// The docs say 202; the code sets 200.
		writeJSON(w, http.StatusOK, map[string]any{})
	default:
		message(w, http.StatusMethodNotAllowed, "405 Method Not Allowed")
	}
}

// maskURL masks a URL's credentials as GitLab does: *****:*****@.
func maskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return strings.Replace(raw, u.User.String()+"@", "*****:*****@", 1)
}

// String describes a mirror for test messages.
func (m *Mirror) String() string {
	return fmt.Sprintf("status %s, started %v, starts %d, failures %d, error %q", m.UpdateStatus, m.LastUpdateStartedAt, m.Starts, m.Failures, m.LastError)
}
