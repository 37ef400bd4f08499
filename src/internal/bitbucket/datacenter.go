package bitbucket

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
)

// DataCenter is a repository on a Bitbucket Data Center (or Server) instance.
type DataCenter struct {
	// Server is the base URL, context path included, without a trailing slash.
	Server  string
	Project string
	Slug    string
}

// dataCenterStatus is the body of the repository-scoped builds API (7.4+).
type dataCenterStatus struct {
	Key         string `json:"key"`
	State       string `json:"state"`
	URL         string `json:"url"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	Ref         string `json:"ref,omitempty"`
	BuildNumber string `json:"buildNumber,omitempty"`
	// Duration is in milliseconds.
	Duration int64 `json:"duration,omitempty"`
}

// legacyStatus is the body of the old build-status 1.0 API.
type legacyStatus struct {
	State       string `json:"state"`
	Key         string `json:"key"`
	URL         string `json:"url"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
}

// LegacyNotice is said once when a status went to the legacy API.
const LegacyNotice = "this server has no repository-scoped builds API (Bitbucket Server before 7.4): " +
	"posted to the legacy /rest/build-status/1.0 API instead"

// StatusRequest is the POST of the repository-scoped builds API.
func (r DataCenter) StatusRequest(commit string, s Status) Request {
	st := string(s.State)
	if s.State == state.Stopped {
		st = "CANCELLED"
	}
	body := dataCenterStatus{Key: s.Key, State: st, URL: s.URL, Name: s.Name, Description: s.Description,
		BuildNumber: s.BuildNumber, Duration: s.Duration.Milliseconds()}
	switch {
	case s.Branch != "":
		body.Ref = "refs/heads/" + s.Branch
	case s.Tag != "":
		body.Ref = "refs/tags/" + s.Tag
	}
	return Request{
		Method: http.MethodPost,
		URL:    joinURL(r.Server, "rest", "api", "latest", "projects", r.Project, "repos", r.Slug, "commits", commit, "builds"),
		Body:   jsonBody(body),
	}
}

// LegacyRequest is the POST of the build-status 1.0 API, which knows no
// CANCELLED: a stopped build is sent as FAILED and its description says so.
func (r DataCenter) LegacyRequest(commit string, s Status) Request {
	st, description := string(s.State), s.Description
	if s.State == state.Stopped {
		st = string(state.Failed)
		description = "Canceled"
		if s.Description != "" {
			description += ": " + s.Description
		}
	}
	return Request{
		Method: http.MethodPost,
		URL:    joinURL(r.Server, "rest", "build-status", "1.0", "commits", commit),
		Body:   jsonBody(legacyStatus{State: st, Key: s.Key, URL: s.URL, Name: s.Name, Description: description}),
	}
}

// CheckRequest reads the commit, or the repository when no commit is known.
func (r DataCenter) CheckRequest(commit string) Request {
	if commit == "" {
		return Request{Method: http.MethodGet, URL: joinURL(r.Server, "rest", "api", "latest", "projects", r.Project, "repos", r.Slug)}
	}
	return Request{Method: http.MethodGet,
		URL: joinURL(r.Server, "rest", "api", "latest", "projects", r.Project, "repos", r.Slug, "commits", commit)}
}

// Post sends the status, and falls back to the legacy API when the server
// lacks the repository-scoped one. A 404 that names a missing project,
// repository or commit is the caller's mistake and is returned as it is: the
// legacy API checks none of them and would hide a typo for good.
func (r DataCenter) Post(ctx context.Context, c *Client, commit string, s Status) (Posted, error) {
	resp, err := c.Do(ctx, r.StatusRequest(commit, s))
	var he *HTTPError
	if errors.As(err, &he) && he.StatusCode == http.StatusNotFound && !NamesMissingThing(he) {
		legacy, lerr := c.Do(ctx, r.LegacyRequest(commit, s))
		if lerr != nil {
			return Posted{}, lerr
		}
		return Posted{Outcome: "posted", Notice: LegacyNotice, Attempts: legacy.Attempts}, nil
	}
	if err != nil {
		return Posted{}, err
	}
	return Posted{Outcome: "posted", Attempts: resp.Attempts}, nil
}

// NamesMissingThing reports whether a Data Center 404 says that the project,
// repository or commit does not exist (NoSuchProjectException,
// NoSuchRepositoryException, NoSuchCommitException), as opposed to the
// endpoint itself being unknown.
func NamesMissingThing(e *HTTPError) bool {
	return strings.Contains(e.Exception, ".NoSuch") || strings.HasPrefix(e.Exception, "NoSuch")
}

// Check sends CheckRequest.
func (r DataCenter) Check(ctx context.Context, c *Client, commit string) error {
	_, err := c.Do(ctx, r.CheckRequest(commit))
	return err
}

// DryRun prints the request Post would send, and the fallback.
func (r DataCenter) DryRun(w io.Writer, c *Client, commit string, s Status) {
	c.Print(w, r.StatusRequest(commit, s))
	legacy := r.LegacyRequest(commit, s)
	io.WriteString(w, "\n(if the server answers 404 without naming a missing project, repository or commit, "+
		"it predates this API, and this is sent instead: "+legacy.Method+" "+legacy.URL+")\n")
}

// Where names the repository for messages.
func (r DataCenter) Where() string {
	return r.Project + "/" + r.Slug + " at " + r.Server
}
