package gitlab

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Mirror is a project's pull mirror as GitLab shows it (GET
// /projects/:id/mirror/pull, Premium, 15.6+; Maintainer role).
type Mirror struct {
	Enabled bool
	// URL is the repository it pulls from, credentials masked.
	URL string
	// UpdateStatus is none, scheduled, started, finished or failed.
	UpdateStatus                                              string
	LastUpdateStartedAt, LastUpdateAt, LastSuccessfulUpdateAt time.Time
	// LastError is the last failed update's message (git's, possibly with
	// a URL).
	LastError string
}

// Updating reports whether an update is due or running: a start asked
// now would do nothing (GitLab absorbs it).
func (m Mirror) Updating() bool { return m.UpdateStatus == "scheduled" || m.UpdateStatus == "started" }

type apiMirror struct {
	Enabled                bool    `json:"enabled"`
	URL                    string  `json:"url"`
	UpdateStatus           string  `json:"update_status"`
	LastUpdateStartedAt    *string `json:"last_update_started_at"`
	LastUpdateAt           *string `json:"last_update_at"`
	LastSuccessfulUpdateAt *string `json:"last_successful_update_at"`
	LastError              *string `json:"last_error"`
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// PullMirror reads a project's pull mirror. GitLab answers 400 "The
// project is not mirrored" for a project that is none.
func (c *Client) PullMirror(ctx context.Context, projectID int64) (Mirror, error) {
	var a apiMirror
	if _, err := c.get(ctx, fmt.Sprintf("projects/%d/mirror/pull", projectID), nil, &a); err != nil {
		return Mirror{}, err
	}
	m := Mirror{Enabled: a.Enabled, URL: a.URL, UpdateStatus: a.UpdateStatus, LastError: deref(a.LastError)}
	m.LastUpdateStartedAt, _ = ParseTime(deref(a.LastUpdateStartedAt))
	m.LastUpdateAt, _ = ParseTime(deref(a.LastUpdateAt))
	m.LastSuccessfulUpdateAt, _ = ParseTime(deref(a.LastSuccessfulUpdateAt))
	return m, nil
}

// StartMirror asks GitLab to update a project's pull mirror (POST
// /projects/:id/mirror/pull: the api scope, the Maintainer role). GitLab
// answers 200 or 202, and defers the update within its interval (5
// minutes by default); 400 "The project is not mirrored", 403
// "Mirroring for the project is on pause" after 14 failures.
func (c *Client) StartMirror(ctx context.Context, projectID int64) error {
	return c.Do(ctx, http.MethodPost, fmt.Sprintf("projects/%d/mirror/pull", projectID), nil, nil, nil)
}

// Token is what GitLab says of the token the client holds
// (GET /personal_access_tokens/self, 15.5+; project and group access tokens
// too).
type Token struct {
	Name      string
	Scopes    []string
	ExpiresAt string
}

// Self reads the token's own scopes, changing nothing.
func (c *Client) Self(ctx context.Context) (Token, error) {
	var t struct {
		Name      string   `json:"name"`
		Scopes    []string `json:"scopes"`
		ExpiresAt *string  `json:"expires_at"`
	}
	if _, err := c.get(ctx, "personal_access_tokens/self", nil, &t); err != nil {
		return Token{}, err
	}
	return Token{Name: t.Name, Scopes: t.Scopes, ExpiresAt: deref(t.ExpiresAt)}, nil
}

// MirrorAdvice is a pull mirror's failure in a few words and what to do: the
// error GitLab kept (the caller makes it secret-free),
// and the fix for the usual causes.
func MirrorAdvice(lastError string, paused bool) string {
	said := strings.Join(strings.Fields(lastError), " ")
	if len(said) > 120 {
		said = said[:117] + "..."
	}
	lower := strings.ToLower(lastError)
	fix := "see Settings > Repository > Mirroring repositories in GitLab"
	switch {
	case strings.Contains(lower, "terminal prompts disabled") || strings.Contains(lower, "could not read username"):
		fix = "the mirror's URL has no user name: set it again in GitLab, Settings > Repository > Mirroring repositories " +
			"(https://<user>@bitbucket.org/<workspace>/<repo>.git, or run connect)"
	case strings.Contains(lower, "authentication failed") || strings.Contains(lower, "401") || strings.Contains(lower, "403") ||
		strings.Contains(lower, "access denied") || strings.Contains(lower, "invalid credentials"):
		fix = "the mirror's Bitbucket credential was refused: update it in GitLab, Settings > Repository > Mirroring repositories " +
			"(app passwords stopped working on 28 Jul 2026)"
	case strings.Contains(lower, "diverged"):
		fix = "a branch diverged in GitLab: turn on Overwrite diverged branches in Settings > Repository > Mirroring repositories"
	}
	if paused {
		return "GitLab paused the mirror after 14 failed updates (" + said + "): " + fix + ", then Update now there"
	}
	if said == "" {
		return fix
	}
	return said + ": " + fix
}
