// Package fakebitbucket is a stand-in for Bitbucket Cloud and Data Center in
// tests: it checks credentials and bodies as the real services do (as far as
// their documentation and known behaviour go), keeps statuses by key, and
// records every request for the test to inspect. Repository slugs choose
// misbehaviour: "missing", "forbidden", "reject", "rate-limited", "flaky",
// "down" and "hang"; "near-limit" works but says the credential is near its
// hourly limit. Code Insights reports and annotations are kept and checked as
// each server checks them (insights.go). Posted statuses are kept and read back by key (Cloud's
// statuses/build/{key}, Data Center's builds?key= from 7.14, the legacy
// list). For Data Center, the project key "MISSING" and commits
// starting "badc0de" are missing too, and DataCenterVersion chooses what the
// server supports and how it answers a route it does not have, as real
// servers of that version do.
package fakebitbucket

import (
	"encoding/base64"
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

// Server is an http.Handler. Set the expected credential before serving.
type Server struct {
	// Token is the expected secret: "Bearer Token", or with User set,
	// "Basic User:Token". ClientID and ClientSecret are an OAuth consumer's.
	User, Token            string
	ClientID, ClientSecret string
	// DataCenterVersion is the Data Center version to behave as, "9.4" when
	// empty. Before 8.0 the builds API refuses CANCELLED and UNKNOWN, and the
	// build capabilities lack "cancelledStatus"; before 7.4 there is no
	// repository-scoped builds API (nor a "build" capability); before 7.0 no
	// /rest/capabilities at all.
	DataCenterVersion string
	// NotFoundShape is how a route the server lacks is answered: Jersey's
	// own 404, never Bitbucket's errors[] envelope. "null-for-uri" (the
	// default before 10.0), "http-404" (the default from 10.0) or "xml".
	NotFoundShape string
	// OAuthTokenTTL, when set, makes each OAuth access token a new one that
	// expires after it (Cloud's last two hours); unset, the one token
	// OAuthAccessToken never expires.
	OAuthTokenTTL time.Duration

	mu       sync.Mutex
	statuses map[string]json.RawMessage // commit + key -> the status as posted
	tries    map[string]int             // path -> attempts, for "flaky"
	tokens   map[string]time.Time       // OAuth access token -> expiry
	reports  map[string]*report         // commit + key -> a Code Insights report
	hooks    map[string][]*Hook         // repository -> its webhooks
	hookSeq  int
	log      []Record
}

// OAuthAccessToken is the token the fake OAuth endpoint hands out.
const OAuthAccessToken = "fake-oauth-access-token"

// Record is one request as the server saw it. Auth names the scheme and
// user only: the fake never records a secret.
type Record struct {
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Auth   string          `json:"auth"`
	Code   int             `json:"code"`
	Body   json.RawMessage `json:"body,omitempty"`
}

// Requests returns what was received so far.
func (s *Server) Requests() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.log...)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_requests":
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(append([]Record{}, s.log...))
		return
	case r.URL.Path == "/_reset":
		s.mu.Lock()
		defer s.mu.Unlock()
		s.log, s.statuses, s.tries, s.reports, s.hooks = nil, nil, nil, nil, nil
		return
	}

	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	rec := &recorder{ResponseWriter: w, code: http.StatusOK}
	s.route(rec, r, body)
	entry := Record{Method: r.Method, Path: r.URL.EscapedPath(), Auth: authKind(r), Code: rec.code}
	if json.Valid(body) {
		entry.Body = body
	}
	s.mu.Lock()
	s.log = append(s.log, entry)
	s.mu.Unlock()
}

type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func authKind(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if user, _, ok := r.BasicAuth(); ok {
		return "Basic " + user
	}
	if strings.HasPrefix(h, "Bearer ") {
		return "Bearer"
	}
	if h == "" {
		return "none"
	}
	return "other"
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	parts := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
	for i := range parts {
		if p, err := url.PathUnescape(parts[i]); err == nil {
			parts[i] = p
		}
	}
	if r.URL.Path == "/site/oauth2/access_token" {
		s.oauth(w, r, body)
		return
	}
	// Data Center may sit under a context path: find "rest".
	for i, p := range parts {
		if p == "rest" {
			s.dataCenter(w, r, parts[i+1:], body)
			return
		}
	}
	if len(parts) > 0 && parts[0] == "2.0" {
		parts = parts[1:]
	}
	s.cloud(w, r, parts, body)
}

func (s *Server) authorized(r *http.Request) bool {
	if user, pass, ok := r.BasicAuth(); ok {
		return s.User != "" && user == s.User && pass == s.Token
	}
	if s.User == "" && r.Header.Get("Authorization") == "Bearer "+s.Token {
		return true
	}
	if s.ClientID == "" {
		return false
	}
	bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if s.OAuthTokenTTL == 0 {
		return bearer == OAuthAccessToken
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	expires, ok := s.tokens[bearer]
	return ok && time.Now().Before(expires)
}

func (s *Server) oauth(w http.ResponseWriter, r *http.Request, body []byte) {
	id, secret, ok := r.BasicAuth()
	form, _ := url.ParseQuery(string(body))
	switch {
	case r.Method != http.MethodPost || form.Get("grant_type") != "client_credentials":
		writeJSON(w, http.StatusBadRequest, `{"error":"unsupported_grant_type","error_description":"Unsupported grant type"}`)
	case !ok || s.ClientID == "" || id != s.ClientID || secret != s.ClientSecret:
		writeJSON(w, http.StatusBadRequest, `{"error":"unauthorized_client","error_description":"Invalid OAuth client credentials"}`)
	case s.OAuthTokenTTL > 0:
		s.mu.Lock()
		if s.tokens == nil {
			s.tokens = map[string]time.Time{}
		}
		token := fmt.Sprintf("%s-%d", OAuthAccessToken, len(s.tokens)+1)
		s.tokens[token] = time.Now().Add(s.OAuthTokenTTL)
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, fmt.Sprintf(`{"access_token":%q,"scopes":"repository","expires_in":%d,"token_type":"bearer"}`,
			token, int(s.OAuthTokenTTL.Seconds())))
	default:
		writeJSON(w, http.StatusOK, `{"access_token":"`+OAuthAccessToken+`","scopes":"repository","expires_in":7200,"token_type":"bearer"}`)
	}
}

// Shown is the status a commit shows under key, as last posted; nil if none.
func (s *Server) Shown(commit, key string) json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statuses[commit+"\x00"+key]
}

// SetShown makes a commit show a status under key, as another writer
// would (a test of what the relay heals).
func (s *Server) SetShown(commit, key string, status json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remember(commit, key, status)
}

// remember stores a posted status; it reports whether the key existed.
func (s *Server) remember(commit, key string, status json.RawMessage) bool {
	if s.statuses == nil {
		s.statuses = map[string]json.RawMessage{}
	}
	_, existed := s.statuses[commit+"\x00"+key]
	s.statuses[commit+"\x00"+key] = status
	return existed
}

// showStatus answers a read of one status: Cloud's GET .../statuses/build/{key}
// or Data Center's GET .../builds?key=.
func (s *Server) showStatus(w http.ResponseWriter, commit, key string, dataCenter bool) {
	st := s.Shown(commit, key)
	switch {
	case st != nil:
		writeJSON(w, http.StatusOK, string(st))
	case dataCenter:
		noSuch(w, "No build status with key '"+key+"' exists for commit "+commit+".", "build.NoSuchBuildStatusException")
	default:
		writeJSON(w, http.StatusNotFound, `{"type":"error","error":{"message":"Commit status not found"}}`)
	}
}

// misbehave answers for the slugs that choose a failure; it reports whether it did.
func (s *Server) misbehave(w http.ResponseWriter, r *http.Request, slug string, retryAfter bool) bool {
	switch slug {
	case "hang":
		<-r.Context().Done()
		return true
	case "down":
		writeJSON(w, http.StatusServiceUnavailable, `{"type":"error","error":{"message":"Service unavailable"}}`)
		return true
	case "rate-limited":
		if retryAfter {
			// Data Center: Retry-After and its errors[] document.
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusTooManyRequests, `{"errors":[{"context":null,"message":"Rate limit exceeded. Please wait before retrying.","exceptionName":null}]}`)
			return true
		}
		// Cloud: plain text, no Retry-After.
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte("Rate limit for this resource has been exceeded"))
		return true
	case "flaky":
		s.mu.Lock()
		if s.tries == nil {
			s.tries = map[string]int{}
		}
		s.tries[r.URL.Path]++
		n := s.tries[r.URL.Path]
		s.mu.Unlock()
		if n <= 2 {
			w.WriteHeader(http.StatusBadGateway)
			return true
		}
	}
	return false
}

func (s *Server) cloud(w http.ResponseWriter, r *http.Request, parts []string, body []byte) {
	// repositories/{ws}/{slug}[/commit/{sha}[/statuses/build]]
	if len(parts) < 3 || parts[0] != "repositories" {
		writeJSON(w, http.StatusNotFound, `{"type":"error","error":{"message":"Resource not found"}}`)
		return
	}
	slug := parts[2]
	// Access-token answers carry the rate limit headers (OAuth consumers get none).
	if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		w.Header().Set("X-RateLimit-Limit", "1000")
		w.Header().Set("X-RateLimit-Resource", "api-repository")
		w.Header().Set("X-RateLimit-NearLimit", strconv.FormatBool(slug == "near-limit"))
	}
	if !s.authorized(r) {
		w.WriteHeader(http.StatusUnauthorized) // Bitbucket Cloud's 401 often has no body
		return
	}
	if s.misbehave(w, r, slug, false) {
		return
	}
	switch slug {
	case "missing":
		writeJSON(w, http.StatusNotFound, `{"type":"error","error":{"message":"Repository `+parts[1]+`/missing not found"}}`)
		return
	case "forbidden":
		writeJSON(w, http.StatusForbidden, `{"type":"error","error":{"message":"Your credentials lack one or more required privilege scopes.","detail":{"required":["repository"],"granted":["account"]}}}`)
		return
	case "reject":
		writeJSON(w, http.StatusBadRequest, `{"type":"error","error":{"message":"Bad request","fields":{"state":["Rejected by the test server."]}}}`)
		return
	}
	switch {
	case len(parts) >= 4 && len(parts) <= 5 && parts[3] == "hooks":
		s.cloudHooks(w, r, parts[1]+"/"+slug, parts[4:], body)
	case r.Method == http.MethodGet && (len(parts) == 3 || (len(parts) == 5 && parts[3] == "commit")):
		writeJSON(w, http.StatusOK, `{"type":"repository","full_name":"`+parts[1]+`/`+slug+`"}`)
	case r.Method == http.MethodPost && len(parts) == 7 && parts[3] == "commit" && parts[5] == "statuses" && parts[6] == "build":
		s.cloudStatus(w, parts[4], body)
	case r.Method == http.MethodGet && len(parts) == 8 && parts[3] == "commit" && parts[5] == "statuses" && parts[6] == "build":
		s.showStatus(w, parts[4], parts[7], false)
	case (len(parts) == 7 || (len(parts) == 8 && parts[7] == "annotations")) && parts[3] == "commit" && parts[5] == "reports":
		s.cloudReports(w, r, parts[4], parts[6], len(parts) == 8, body)
	default:
		writeJSON(w, http.StatusNotFound, `{"type":"error","error":{"message":"Resource not found"}}`)
	}
}

func (s *Server) cloudStatus(w http.ResponseWriter, commit string, body []byte) {
	var st struct {
		Key, State, Name, Description, URL, Refname string
	}
	if err := json.Unmarshal(body, &st); err != nil {
		writeJSON(w, http.StatusBadRequest, `{"type":"error","error":{"message":"Bad request"}}`)
		return
	}
	field := func(name, msg string) {
		m, _ := json.Marshal(name + ": " + msg)
		f, _ := json.Marshal(msg)
		writeJSON(w, http.StatusBadRequest, fmt.Sprintf(`{"type":"error","error":{"message":%s,"fields":{%q:[%s]}}}`, m, name, f))
	}
	switch {
	case st.Key == "":
		field("key", "This field is required.")
	case len([]rune(st.Key)) > 40:
		field("key", fmt.Sprintf("Ensure this value has at most 40 characters (it has %d).", len([]rune(st.Key))))
	case st.State != "INPROGRESS" && st.State != "SUCCESSFUL" && st.State != "FAILED" && st.State != "STOPPED":
		field("state", "Select a valid choice.")
	case len([]rune(st.Name)) > 255:
		field("name", fmt.Sprintf("Ensure this value has at most 255 characters (it has %d).", len([]rune(st.Name))))
	case st.URL != "" && (len(st.URL) > 450 || !validURL(st.URL)):
		field("url", "Enter a valid URL.")
	default:
		shown, _ := json.Marshal(map[string]string{"type": "build", "key": st.Key, "state": st.State, "name": st.Name,
			"description": st.Description, "url": st.URL, "refname": st.Refname})
		s.mu.Lock()
		existed := s.remember(commit, st.Key, shown)
		s.mu.Unlock()
		code := http.StatusCreated
		if existed {
			code = http.StatusOK
		}
		writeJSON(w, code, fmt.Sprintf(`{"type":"build","key":%q,"state":%q}`, st.Key, st.State))
	}
}

func validURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// dcVersion returns the Data Center version as major*100+minor (904 for 9.4).
func (s *Server) dcVersion() int {
	v := s.DataCenterVersion
	if v == "" {
		v = "9.4"
	}
	var major, minor int
	_, _ = fmt.Sscanf(v, "%d.%d", &major, &minor)
	return major*100 + minor
}

// unknownRoute answers as Jersey does for a path no resource serves.
func (s *Server) unknownRoute(w http.ResponseWriter, r *http.Request) {
	shape := s.NotFoundShape
	if shape == "" {
		shape = "null-for-uri"
		if s.dcVersion() >= 1000 {
			shape = "http-404"
		}
	}
	switch shape {
	case "xml":
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?><status><status-code>404</status-code><message>HTTP 404 Not Found</message></status>`))
	case "http-404":
		writeJSON(w, http.StatusNotFound, `{"message":"HTTP 404 Not Found","status-code":404,"sub-code":-1}`)
	default:
		uri, _ := json.Marshal("null for uri: " + requestURL(r))
		writeJSON(w, http.StatusNotFound, `{"message":`+string(uri)+`,"status-code":404}`)
	}
}

func requestURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}

// noSuch is Bitbucket's own 404 for a missing project, repository or commit.
func noSuch(w http.ResponseWriter, message, exception string) {
	m, _ := json.Marshal(message)
	writeJSON(w, http.StatusNotFound, `{"errors":[{"context":null,"message":`+string(m)+`,"exceptionName":"com.atlassian.bitbucket.`+exception+`"}]}`)
}

func (s *Server) dataCenter(w http.ResponseWriter, r *http.Request, parts []string, body []byte) {
	if !s.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, `{"errors":[{"context":null,"message":"Authentication failed. Please check your credentials and try again.","exceptionName":"com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException"}]}`)
		return
	}
	version := s.dcVersion()
	// build-status/1.0/commits/{sha}: every version, deprecated in 7.14.
	if len(parts) == 4 && parts[0] == "build-status" && parts[2] == "commits" && r.Method == http.MethodPost {
		s.dataCenterStatus(w, parts[3], body, map[string]bool{"SUCCESSFUL": true, "FAILED": true, "INPROGRESS": true})
		return
	}
	if len(parts) == 4 && parts[0] == "build-status" && parts[2] == "commits" && r.Method == http.MethodGet {
		s.legacyList(w, parts[3])
		return
	}
	// The context path and scheme the server believes it has, for the links it gives.
	self := strings.TrimSuffix(requestURL(r), r.URL.RequestURI()) + strings.TrimSuffix(r.URL.EscapedPath(), "/"+strings.Join(parts, "/"))
	switch {
	case len(parts) == 1 && parts[0] == "capabilities" && r.Method == http.MethodGet && version >= 700:
		build := ""
		if version >= 704 {
			build = `"build":"` + self + `/api/latest/build/capabilities",`
		}
		writeJSON(w, http.StatusOK, `{"application":"stash","capabilities":{`+build+`"webhooks":"`+self+`/webhooks/latest/capabilities"}}`)
		return
	case len(parts) == 4 && strings.Join(parts, "/") == "api/latest/build/capabilities" && r.Method == http.MethodGet && version >= 704:
		if version >= 800 {
			writeJSON(w, http.StatusOK, `{"buildStatus":["richBuildStatus","cancelledStatus","unknownStatus"]}`)
		} else {
			writeJSON(w, http.StatusOK, `{"buildStatus":["richBuildStatus"]}`)
		}
		return
	}
	// insights/latest/projects/{key}/repos/{slug}/commits/{sha}/reports/{key}[/annotations], from 5.15
	if len(parts) >= 10 && parts[0] == "insights" && parts[2] == "projects" && parts[4] == "repos" && parts[6] == "commits" &&
		parts[8] == "reports" && version >= 515 && (len(parts) == 10 || (len(parts) == 11 && parts[10] == "annotations")) {
		if s.misbehave(w, r, parts[5], true) {
			return
		}
		s.dataCenterReports(w, r, parts[7], parts[9], len(parts) == 11, body)
		return
	}
	// api/latest/projects/{key}/repos/{slug}[/commits/{sha}[/builds]]
	if len(parts) < 6 || parts[0] != "api" || parts[2] != "projects" || parts[4] != "repos" {
		s.unknownRoute(w, r)
		return
	}
	project, slug := parts[3], parts[5]
	builds := len(parts) == 9 && parts[6] == "commits" && parts[8] == "builds" && r.Method == http.MethodPost
	readBuild := len(parts) == 9 && parts[6] == "commits" && parts[8] == "builds" && r.Method == http.MethodGet
	if (builds && version < 704) || (readBuild && version < 714) {
		s.unknownRoute(w, r)
		return
	}
	if s.misbehave(w, r, slug, true) {
		return
	}
	switch {
	case project == "MISSING":
		noSuch(w, "Project "+project+" does not exist.", "project.NoSuchProjectException")
	case slug == "missing":
		noSuch(w, "Repository "+project+"/missing does not exist.", "repository.NoSuchRepositoryException")
	case len(parts) >= 8 && parts[6] == "commits" && strings.HasPrefix(parts[7], "badc0de"):
		noSuch(w, "Commit '"+parts[7]+"' does not exist in repository '"+slug+"'.", "commit.NoSuchCommitException")
	case slug == "forbidden":
		writeJSON(w, http.StatusForbidden, `{"errors":[{"context":null,"message":"You are not permitted to access this resource","exceptionName":"com.atlassian.bitbucket.AuthorisationException"}]}`)
	case builds && version >= 800:
		s.dataCenterStatus(w, parts[7], body, map[string]bool{"SUCCESSFUL": true, "FAILED": true, "INPROGRESS": true, "CANCELLED": true, "UNKNOWN": true})
	case builds:
		s.dataCenterStatus(w, parts[7], body, map[string]bool{"SUCCESSFUL": true, "FAILED": true, "INPROGRESS": true})
	case readBuild:
		s.showStatus(w, parts[7], r.URL.Query().Get("key"), true)
	case (len(parts) == 7 || len(parts) == 8) && parts[6] == "webhooks":
		s.dataCenterHooks(w, r, project+"/"+slug, parts[7:], body)
	case r.Method == http.MethodGet && (len(parts) == 6 || (len(parts) == 8 && parts[6] == "commits")):
		writeJSON(w, http.StatusOK, `{"slug":"`+slug+`"}`)
	default:
		s.unknownRoute(w, r)
	}
}

func (s *Server) dataCenterStatus(w http.ResponseWriter, commit string, body []byte, states map[string]bool) {
	var st struct {
		Key, State, URL, Name, Description string
		Ref, BuildNumber, Parent           string
		Duration                           *int64
		TestResults                        *struct {
			Successful, Failed, Skipped *int
		}
	}
	bad := func(msg string) {
		writeJSON(w, http.StatusBadRequest, fmt.Sprintf(`{"errors":[{"context":null,"message":%q,"exceptionName":null}]}`, msg))
	}
	switch {
	case json.Unmarshal(body, &st) != nil:
		bad("The request body is not valid JSON.")
	case st.Key == "" || len(st.Key) > 255:
		bad("key: must be between 1 and 255 characters.")
	case !states[st.State]:
		bad("state: invalid value " + st.State + ".")
	case st.URL == "" || len(st.URL) > 450 || !validURL(st.URL):
		bad("url: must be a valid URL of at most 450 characters.")
	case len(st.Name) > 255:
		bad("name: must be at most 255 characters.")
	case st.Ref != "" && (!strings.HasPrefix(st.Ref, "refs/") || len(st.Ref) > 1024):
		bad("ref: must match ^refs/.* and be at most 1024 characters.")
	case len(st.BuildNumber) > 255:
		bad("buildNumber: must be at most 255 characters.")
	case len(st.Parent) > 1024:
		bad("parent: must be at most 1024 characters.")
	case st.Duration != nil && *st.Duration < 0:
		bad("duration: must be at least 0.")
	case st.TestResults != nil && (st.TestResults.Successful == nil || st.TestResults.Failed == nil || st.TestResults.Skipped == nil ||
		*st.TestResults.Successful < 0 || *st.TestResults.Failed < 0 || *st.TestResults.Skipped < 0):
		bad("testResults: successful, failed and skipped must each be a number of at least 0.")
	default:
		fields := map[string]any{"key": st.Key, "state": st.State, "url": st.URL, "name": st.Name, "description": st.Description}
		if st.TestResults != nil {
			fields["testResults"] = map[string]int{"successful": *st.TestResults.Successful, "failed": *st.TestResults.Failed, "skipped": *st.TestResults.Skipped}
		}
		shown, _ := json.Marshal(fields)
		s.mu.Lock()
		s.remember(commit, st.Key, shown)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}
}

// legacyList answers GET /rest/build-status/1.0/commits/{sha}: every status
// of the commit, one page.
func (s *Server) legacyList(w http.ResponseWriter, commit string) {
	s.mu.Lock()
	var values []json.RawMessage
	for k, v := range s.statuses {
		if strings.HasPrefix(k, commit+"\x00") {
			values = append(values, v)
		}
	}
	s.mu.Unlock()
	page, _ := json.Marshal(map[string]any{"size": len(values), "limit": 100, "isLastPage": true, "start": 0, "values": values})
	writeJSON(w, http.StatusOK, string(page))
}

func writeJSON(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// BasicHeader is the Authorization value for user and secret, for tests.
func BasicHeader(user, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+secret))
}
