package bitbucket

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
)

// Shown is a build status as Bitbucket shows it for a key.
type Shown struct {
	// Found is false when Bitbucket has no status under the key.
	Found       bool
	State       string
	Description string
	URL         string
}

// Shows reports whether what Bitbucket shows is s, as this client would
// post it: the same state (Data Center's CANCELLED, or FAILED with a
// "Canceled" description on servers without it, for a stopped pipeline;
// SUCCESSFUL with a "Skipped" one for a skipped pipeline)
// and the same link (which names the pipeline).
func (sh Shown) Shows(s Status) bool {
	if !sh.Found || sh.URL != s.URL {
		return false
	}
	if s.State == state.Stopped && s.Skipped {
		return sh.State == string(state.Stopped) || sh.State == "CANCELLED" ||
			(sh.State == string(state.Successful) && strings.HasPrefix(sh.Description, "Skipped"))
	}
	if s.State == state.Stopped {
		return sh.State == string(state.Stopped) || sh.State == "CANCELLED" ||
			(sh.State == string(state.Failed) && strings.HasPrefix(sh.Description, "Canceled"))
	}
	return sh.State == string(s.State)
}

type shownBody struct {
	State       string `json:"state"`
	Key         string `json:"key"`
	Description string `json:"description"`
	URL         string `json:"url"`
}

// ShownRequest reads the status with key on commit:
// GET .../commit/{sha}/statuses/build/{key}.
func (r Cloud) ShownRequest(commit, key string) Request {
	return Request{Method: http.MethodGet, URL: joinURL(r.API, "repositories", r.Workspace, r.Slug, "commit", commit, "statuses", "build", key)}
}

// Shown reads what Bitbucket Cloud shows under key; a 404 is no status.
func (r Cloud) Shown(ctx context.Context, c *Client, commit, key string) (Shown, error) {
	return readShown(ctx, c, r.ShownRequest(commit, key))
}

// ShownRequest reads the status with key on commit (7.14 and later):
// GET .../commits/{sha}/builds?key={key}.
func (r DataCenter) ShownRequest(commit, key string) Request {
	u := joinURL(r.Server, "rest", "api", "latest", "projects", r.Project, "repos", r.Slug, "commits", commit, "builds")
	return Request{Method: http.MethodGet, URL: u + "?key=" + url.QueryEscape(key)}
}

// Shown reads what Data Center shows under key. A server without the
// repository-scoped read (before 7.14) is asked the legacy list instead.
func (r DataCenter) Shown(ctx context.Context, c *Client, commit, key string) (Shown, error) {
	sh, err := readShown(ctx, c, r.ShownRequest(commit, key))
	var he *HTTPError
	if !errors.As(err, &he) || !UnknownRoute(he) {
		return sh, err
	}
	resp, err := c.Do(ctx, Request{Method: http.MethodGet, URL: joinURL(r.Server, "rest", "build-status", "1.0", "commits", commit) + "?limit=100"})
	if err != nil {
		return Shown{}, err
	}
	var page struct {
		Values []shownBody `json:"values"`
	}
	if err := json.Unmarshal(resp.Body, &page); err != nil {
		return Shown{}, errors.New("the legacy build-status answer is not the expected JSON")
	}
	for _, v := range page.Values {
		if v.Key == key {
			return Shown{Found: true, State: v.State, Description: v.Description, URL: v.URL}, nil
		}
	}
	return Shown{}, nil
}

func readShown(ctx context.Context, c *Client, req Request) (Shown, error) {
	resp, err := c.Do(ctx, req)
	var he *HTTPError
	switch {
	case errors.As(err, &he) && he.StatusCode == http.StatusNotFound && (he.Envelope || !strings.Contains(req.URL, "/rest/")):
		// Cloud's 404, or Data Center's own "no such build status".
		if NamesMissingThing(he) && !strings.Contains(he.Exception, "BuildStatus") {
			return Shown{}, err
		}
		return Shown{}, nil
	case err != nil:
		return Shown{}, err
	}
	var b shownBody
	if err := json.Unmarshal(resp.Body, &b); err != nil || b.State == "" {
		return Shown{}, errors.New("the status Bitbucket shows is not the expected JSON")
	}
	return Shown{Found: true, State: b.State, Description: b.Description, URL: b.URL}, nil
}
