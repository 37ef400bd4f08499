package bitbucket

import (
	"context"
	"io"
	"net/http"
)

// DefaultCloudAPI is Bitbucket Cloud's REST API base URL.
const DefaultCloudAPI = "https://api.bitbucket.org/2.0"

// Cloud is a repository on Bitbucket Cloud.
type Cloud struct {
	// API is the REST API base URL, without a trailing slash.
	API       string
	Workspace string
	Slug      string
}

// cloudStatus is the commitstatus object of Bitbucket Cloud's OpenAPI.
type cloudStatus struct {
	Key         string `json:"key"`
	State       string `json:"state"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	URL         string `json:"url,omitempty"`
	// RefName must be the branch for the status to show on its pull request.
	RefName string `json:"refname,omitempty"`
}

// StatusRequest is the POST that creates the status, or overwrites the one
// with the same key.
func (r Cloud) StatusRequest(commit string, s Status) Request {
	return Request{
		Method: http.MethodPost,
		URL:    joinURL(r.API, "repositories", r.Workspace, r.Slug, "commit", commit, "statuses", "build"),
		Body: jsonBody(cloudStatus{Key: s.Key, State: string(s.State), Name: s.Name, Description: s.Description,
			URL: s.URL, RefName: s.Branch}),
	}
}

// CheckRequest reads the commit, or the repository when no commit is known:
// it proves the credential and the names without changing anything.
func (r Cloud) CheckRequest(commit string) Request {
	if commit == "" {
		return Request{Method: http.MethodGet, URL: joinURL(r.API, "repositories", r.Workspace, r.Slug)}
	}
	return Request{Method: http.MethodGet, URL: joinURL(r.API, "repositories", r.Workspace, r.Slug, "commit", commit)}
}

// Post sends the status. Bitbucket answers 201 for a new key, 200 for a key
// it overwrote.
func (r Cloud) Post(ctx context.Context, c *Client, commit string, s Status) (Posted, error) {
	resp, err := c.Do(ctx, r.StatusRequest(commit, s))
	if err != nil {
		return Posted{}, err
	}
	p := Posted{Outcome: "created", Attempts: resp.Attempts, StatusCode: resp.StatusCode}
	if resp.StatusCode == http.StatusOK {
		p.Outcome = "updated"
	}
	return p, nil
}

// Check sends CheckRequest.
func (r Cloud) Check(ctx context.Context, c *Client, commit string) error {
	_, err := c.Do(ctx, r.CheckRequest(commit))
	return err
}

// DryRun prints the request Post would send.
func (r Cloud) DryRun(w io.Writer, c *Client, commit string, s Status) {
	c.Print(w, r.StatusRequest(commit, s))
}

// Where names the repository for messages: "bitbucket.org/workspace/slug"
// (or the API's host when it is not Bitbucket Cloud's own).
func (r Cloud) Where() string {
	if r.API == DefaultCloudAPI {
		return "bitbucket.org/" + r.Workspace + "/" + r.Slug
	}
	return r.Workspace + "/" + r.Slug + " at " + r.API
}

// Posted tells how a status was taken.
type Posted struct {
	// Outcome is "created", "updated" or, where the server does not say which, "posted".
	Outcome string
	// Notice is something the user should know, e.g. that an older API was used.
	Notice     string
	Attempts   int
	StatusCode int
}
