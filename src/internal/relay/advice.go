package relay

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
)

// The relay's own words for a refused request: it has no job variables
// (BITBUCKET_STATUS_KEY, BITBUCKET_NAMESPACE, ...), so what to change is
// named as its operator sets it: the route (or the default route, or the
// project's pull mirror), the credential by its name in the routes file
// and where its token comes from, and the setting to change there.

const appPasswordsGone = "App passwords stopped working on 28 Jul 2026: if it holds one, replace it with an API token or an access token."

// advice explains a request Bitbucket refused for a status of d (key is
// the status's key, commit its commit; posting is false for check, which
// only reads). Anything but a refusal is said as it is.
func (r *Relay) advice(err error, d Destination, key, commit string, posting bool) string {
	var oauth *bitbucket.OAuthError
	var he *bitbucket.HTTPError
	cred := r.cfg.credentialName(d.Credential)
	switch {
	case errors.As(err, &oauth) && errors.As(err, &he):
		return fmt.Sprintf("Bitbucket gave no OAuth access token for %s (%s)%s.\nCheck its consumer's Key and Secret; the consumer must be "+
			"private (\"This is a private consumer\") for the client-credentials grant.", cred, statusText(he.StatusCode), said(he))
	case !errors.As(err, &he):
		return err.Error()
	}
	repo := d.Where()
	switch code := he.StatusCode; {
	case code == http.StatusUnauthorized:
		return fmt.Sprintf("Bitbucket rejected %s (%s)%s.\n%s", cred, statusText(code), said(he), r.unauthorized(d, repo))
	case code == http.StatusForbidden:
		text := fmt.Sprintf("Bitbucket refused the request (%s)%s.\n%s works but may not do this on %s: ", statusText(code), said(he),
			upperFirst(cred), repo)
		if d.DataCenter != nil {
			text += "give its user or token at least Repository read permission on it."
		} else {
			text += "it may lack the scope: an access token needs the repository scope (Repositories: Read), an API token " +
				"read:repository:bitbucket."
		}
		if posting {
			text += fmt.Sprintf("\nOr the status key %q was first posted by another identity (the component's jobs with another token, or "+
				"a credential used before): only the account that created a status (or a repository admin) may overwrite it. Post with that "+
				"credential again, or give %s a key of its own: %s.", key, d.Via, keySetting(d))
		}
		return text
	case code == http.StatusNotFound:
		what := "no repository " + repo
		if commit != "" {
			what += " or no commit " + commit + " in it"
		}
		return fmt.Sprintf("Bitbucket found %s (%s)%s.\nThe repository came from %s: %s\nIf it is right: the commit may not be on "+
			"Bitbucket yet (a mirror that lags), or %s cannot see this private repository.", what, statusText(code), said(he), d.Via,
			repositorySetting(d), cred)
	case code == http.StatusBadRequest || code == http.StatusUnprocessableEntity:
		return fmt.Sprintf("Bitbucket rejected the status (%s)%s.\n%s", statusText(code), said(he), fieldSettings(he, d))
	}
	return he.Error()
}

// unauthorized says how the credential was sent and what to check.
func (r *Relay) unauthorized(d Destination, repo string) string {
	a := r.clients[d.Credential].Auth
	username := "BITBUCKET_USERNAME"
	if d.Credential != DefaultCredential {
		username = fmt.Sprintf("its username: in the routes file (credential %q)", d.Credential)
	}
	switch {
	case a.Kind == bitbucket.OAuth:
		return "The access token fetched for the OAuth consumer was refused: give the consumer the Repositories: Read permission."
	case d.DataCenter != nil && a.Kind == bitbucket.Basic:
		return fmt.Sprintf("It was sent as HTTP Basic as user %q: check that the token is that user's personal access token or password, "+
			"not expired. For an HTTP access token of a project or repository, remove %s, so it is sent as Bearer.", a.Username, username)
	case d.DataCenter != nil:
		return fmt.Sprintf("It was sent as a Bearer token, as HTTP access tokens are: check that it is one of project %s or repository %s "+
			"(or a user's) and has not expired. For a password, set %s to the user name.", d.DataCenter.Project, d.DataCenter.Slug, username)
	case a.Kind == bitbucket.Basic && !strings.Contains(a.Username, "@"):
		return fmt.Sprintf("It was sent as HTTP Basic as %q, which is not an email address: a Bitbucket Cloud API token needs the Atlassian "+
			"account's email: set %s to it. For a repository, project or workspace access token, remove %s, so it is sent as Bearer. %s",
			a.Username, username, username, appPasswordsGone)
	case a.Kind == bitbucket.Basic:
		return fmt.Sprintf("It was sent as HTTP Basic as %q, for an API token: check that the token is an API token of that account, not "+
			"expired (they last at most a year) or revoked. %s", a.Username, appPasswordsGone)
	}
	return fmt.Sprintf("It was sent as a Bearer token, right for a repository, project or workspace access token: check that it has "+
		"access to %s and is not revoked or expired. For an API token, set %s to the Atlassian account's email. %s", repo, username, appPasswordsGone)
}

// keySetting says how to give a status a key of its own.
func keySetting(d Destination) string {
	if strings.HasPrefix(d.Via, "route ") {
		return "set key: on the route in the routes file (BITBUCKET_RELAY_ROUTES), e.g. key: gitlab/{path}/relay"
	}
	return "add a route for the project to the routes file (BITBUCKET_RELAY_ROUTES) with a key:, e.g. key: gitlab/{path}/relay"
}

// repositorySetting says where the repository a status goes to is set.
func repositorySetting(d Destination) string {
	switch {
	case strings.HasPrefix(d.Via, "route ") && d.DataCenter != nil:
		return "check the route's data_center: and repository: (PROJECT/slug) in the routes file (BITBUCKET_RELAY_ROUTES)."
	case strings.HasPrefix(d.Via, "route "):
		return "check the route's cloud: (workspace/slug) in the routes file (BITBUCKET_RELAY_ROUTES)."
	case d.Via == mirrorVia:
		return "the project's pull mirror in GitLab (Settings > Repository > Mirroring repositories) names it; if the mirror is right, " +
			"add a route for the project to the routes file."
	case d.DataCenter != nil:
		return "BITBUCKET_PROJECT and the GitLab project's name; if the repository is named otherwise, add a route for the project " +
			"to the routes file (BITBUCKET_RELAY_ROUTES)."
	}
	return "the GitLab project's group and name; if the Bitbucket workspace or repository is named otherwise, add a route for the " +
		"project to the routes file (BITBUCKET_RELAY_ROUTES)."
}

// fieldSettings names where each field Bitbucket complained about comes
// from.
func fieldSettings(he *bitbucket.HTTPError, d Destination) string {
	from := map[string]string{
		"key": "the key (" + keySetting(d) + ")", "name": "the name (a route's name:)",
		"url":         "the link: the pipeline's page, from GitLab's web_url (check GITLAB_URL and GitLab's external URL)",
		"description": "the description, which the relay writes", "refname": "the branch, the pipeline's ref", "ref": "the branch, the pipeline's ref",
	}
	named := he.Named(from)
	if len(named) == 0 {
		return "The relay made it from the pipeline and " + d.Via + ": check that route's key: and name:."
	}
	return "Check " + strings.Join(named, "; and ") + "."
}

func statusText(code int) string { return fmt.Sprintf("%d %s", code, http.StatusText(code)) }

func said(he *bitbucket.HTTPError) string {
	if s := he.Said(); s != "" {
		return ": " + strings.TrimSuffix(s, ".")
	}
	return ""
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// credentialName names a credential as its operator set it.
func (c *Config) credentialName(name string) string {
	if from, ok := c.credentialFrom[name]; ok {
		return from
	}
	return fmt.Sprintf("credential %q", name)
}
