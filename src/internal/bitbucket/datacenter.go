package bitbucket

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

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
	Duration    int64        `json:"duration,omitempty"`
	TestResults *testResults `json:"testResults,omitempty"`
}

// testResults: Data Center's counts on a build; errors count as failed.
type testResults struct {
	Successful int `json:"successful"`
	Failed     int `json:"failed"`
	Skipped    int `json:"skipped"`
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

// NoCancelledNotice is said when a canceled pipeline was posted as FAILED
// because the server knows no CANCELLED state.
const NoCancelledNotice = "this server has no CANCELLED build state (Bitbucket before 8.0): " +
	"posted FAILED with a description that says canceled"

// NoCancelledSkippedNotice is said when a skipped pipeline was posted as
// SUCCESSFUL because the server knows no CANCELLED state: it ran nothing,
// so nothing failed.
const NoCancelledSkippedNotice = "this server has no CANCELLED build state (Bitbucket before 8.0): " +
	"the skipped pipeline was posted SUCCESSFUL with a description that says skipped (it ran nothing, so nothing failed)"

// StatusRequest is the POST of the repository-scoped builds API, for a
// server that knows CANCELLED (8.0 and later).
func (r DataCenter) StatusRequest(commit string, s Status) Request {
	return r.statusRequest(commit, s, true)
}

// statusRequest: without cancelled (7.4 to 7.x), a stopped build is sent
// as FAILED, as the legacy API does.
func (r DataCenter) statusRequest(commit string, s Status, cancelled bool) Request {
	st, description := string(s.State), s.Description
	switch {
	case s.State == state.Stopped && cancelled:
		st = "CANCELLED"
	case s.State == state.Stopped:
		st, description = withoutCancelled(s)
	}
	body := dataCenterStatus{Key: s.Key, State: st, URL: s.URL, Name: s.Name, Description: description,
		BuildNumber: s.BuildNumber, Duration: s.Duration.Milliseconds()}
	if t := s.Tests; t != nil {
		body.TestResults = &testResults{Successful: t.Passed(), Failed: t.Failed + t.Errored, Skipped: t.Skipped}
	}
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

// withoutCancelled is a stopped build for a server without CANCELLED:
// FAILED, and a description that says what really happened; a skipped
// one ran nothing, so nothing failed: SUCCESSFUL, and the description
// says skipped.
func withoutCancelled(s Status) (string, string) {
	if s.Skipped {
		description := "Skipped"
		if s.Description != "" {
			description += ": " + s.Description
		}
		return string(state.Successful), cut(description, maxDescription)
	}
	description := "Canceled"
	if s.Description != "" {
		description += ": " + s.Description
	}
	return string(state.Failed), cut(description, maxDescription)
}

// maxDescription is Bitbucket's limit on a description.
const maxDescription = 255

// cut shortens s to at most n bytes without splitting a character.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n -= len("...")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// LegacyRequest is the POST of the build-status 1.0 API, which knows no
// CANCELLED: a stopped build is sent as FAILED and its description says so.
func (r DataCenter) LegacyRequest(commit string, s Status) Request {
	st, description := string(s.State), s.Description
	if s.State == state.Stopped {
		st, description = withoutCancelled(s)
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
//
// Only a stopped build asks the server what it supports first (CANCELLED
// came with 8.0), as Atlassian's own Jenkins plugin does; every other state
// costs exactly one request.
func (r DataCenter) Post(ctx context.Context, c *Client, commit string, s Status) (Posted, error) {
	cancelled, notice := true, ""
	if s.State == state.Stopped {
		caps, err := r.capabilities(ctx, c)
		if err != nil {
			return Posted{}, err
		}
		switch {
		case caps.known && !caps.builds:
			return r.postLegacy(ctx, c, commit, s)
		case !caps.cancelled:
			// Also when the server has no capabilities resource at all: FAILED
			// is accepted by every version, and an unknown route still falls
			// back to the legacy API below.
			cancelled, notice = false, NoCancelledNotice
			if s.Skipped {
				notice = NoCancelledSkippedNotice
			}
		}
	}
	resp, err := c.Do(ctx, r.statusRequest(commit, s, cancelled))
	var he *HTTPError
	if errors.As(err, &he) && UnknownRoute(he) {
		return r.postLegacy(ctx, c, commit, s)
	}
	if err != nil {
		return Posted{}, err
	}
	return Posted{Outcome: "posted", Notice: notice, Attempts: resp.Attempts, StatusCode: resp.StatusCode}, nil
}

func (r DataCenter) postLegacy(ctx context.Context, c *Client, commit string, s Status) (Posted, error) {
	legacy, err := c.Do(ctx, r.LegacyRequest(commit, s))
	if err != nil {
		return Posted{}, err
	}
	return Posted{Outcome: "posted", Notice: LegacyNotice, Attempts: legacy.Attempts, StatusCode: legacy.StatusCode}, nil
}

// UnknownRoute reports whether a Data Center answer says that the server
// has no such endpoint: a 404 from Jersey itself ({"message":"null for uri:
// ...","status-code":404}, {"message":"HTTP 404 Not Found",...}, an XML
// <status> document, or a page from a proxy), never Bitbucket's own errors[]
// envelope, which it uses for a missing project, repository or commit
// (NoSuchProjectException, NoSuchRepositoryException, NoSuchCommitException).
func UnknownRoute(e *HTTPError) bool {
	return e.StatusCode == http.StatusNotFound && !e.Envelope
}

// NamesMissingThing reports whether a Data Center 404 says that the project,
// repository or commit does not exist.
func NamesMissingThing(e *HTTPError) bool {
	return strings.Contains(e.Exception, ".NoSuch") || strings.HasPrefix(e.Exception, "NoSuch")
}

// Check sends CheckRequest.
func (r DataCenter) Check(ctx context.Context, c *Client, commit string) error {
	_, err := c.Do(ctx, r.CheckRequest(commit))
	return err
}

// DryRun prints the request Post would send, and what it depends on.
func (r DataCenter) DryRun(w io.Writer, c *Client, commit string, s Status) {
	if s.State == state.Stopped {
		caps := r.CapabilitiesRequest()
		instead := "FAILED with a description that says canceled"
		if s.Skipped {
			instead = "SUCCESSFUL with a description that says skipped"
		}
		io.WriteString(w, "(first "+caps.Method+" "+caps.URL+" and the build capabilities it names: "+
			"a server without \"cancelledStatus\" (before 8.0) gets "+instead+")\n")
	}
	c.Print(w, r.StatusRequest(commit, s))
	legacy := r.LegacyRequest(commit, s)
	io.WriteString(w, "\n(if the server answers 404 without naming a missing project, repository or commit, "+
		"it predates this API, and this is sent instead: "+legacy.Method+" "+legacy.URL+")\n")
}

// Where names the repository for messages.
func (r DataCenter) Where() string {
	return r.Project + "/" + r.Slug + " at " + r.Server
}
