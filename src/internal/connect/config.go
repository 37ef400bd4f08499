package connect

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/config"
)

// Env is what connect reads from the environment: the relay's variables
// where they mean the same, and the credentials the mirror and the CI/CD
// variables may take instead of the BITBUCKET_* one.
type Env struct {
	GitLabURL   string `env:"GITLAB_URL" help:"GitLab's base URL."`
	GitLabToken string `env:"GITLAB_TOKEN" help:"A token with the api scope whose user may create projects in the group (or is a Maintainer of the project)."`

	AccessToken       string `env:"BITBUCKET_ACCESS_TOKEN" help:"The Bitbucket credential that manages the webhook, and by default the mirror's and the component's."`
	Username          string `env:"BITBUCKET_USERNAME" help:"With an API token (Cloud): the Atlassian account email; on Data Center, the token's user."`
	OAuthClientID     string `env:"BITBUCKET_OAUTH_CLIENT_ID" help:"Or an OAuth consumer (Cloud), for the webhook and the component; the mirror then needs BITBUCKET_MIRROR_TOKEN."`
	OAuthClientSecret string `env:"BITBUCKET_OAUTH_CLIENT_SECRET" help:"The OAuth consumer's secret."`
	OAuthTokenURL     string `env:"BITBUCKET_OAUTH_TOKEN_URL, default=https://bitbucket.org/site/oauth2/access_token" help:"Where OAuth tokens are fetched."`
	APIURL            string `env:"BITBUCKET_API_URL, default=https://api.bitbucket.org/2.0" help:"Bitbucket Cloud's API base URL."`
	ServerURL         string `env:"BITBUCKET_SERVER_URL" help:"A Bitbucket Data Center base URL: its repositories are set up through it."`
	PushSecret        string `env:"BITBUCKET_RELAY_PUSH_SECRET" help:"The relay's push secret: the webhook is signed with it (needed with --relay-url)."`

	MirrorToken    string `env:"BITBUCKET_MIRROR_TOKEN" help:"The credential GitLab's pull mirror fetches with, when not BITBUCKET_ACCESS_TOKEN (least privilege: read only)."`
	MirrorUsername string `env:"BITBUCKET_MIRROR_USERNAME" help:"With BITBUCKET_MIRROR_TOKEN: an API token's account email (Cloud), or the token's user (Data Center)."`
	CIToken        string `env:"BITBUCKET_CI_TOKEN" help:"The credential the component's jobs post with (the BITBUCKET_ACCESS_TOKEN variable), when not BITBUCKET_ACCESS_TOKEN."`
	CIUsername     string `env:"BITBUCKET_CI_USERNAME" help:"With BITBUCKET_CI_TOKEN: its BITBUCKET_USERNAME (an API token's account email)."`
}

// Variables lists connect's variables for --help.
func Variables() []config.Variable { return config.VariablesOf(Env{}) }

// LoadEnv reads Env; an empty variable counts as unset.
func LoadEnv(ctx context.Context, env map[string]string) (Env, error) {
	var e Env
	err := config.Process(ctx, env, &e)
	return e, err
}

// Resolved is Env checked: the tokens by role.
type Resolved struct {
	GitLabURL, GitLabToken string
	// REST manages webhooks; Mirror and CI are what GitLab is given, and
	// MirrorToken/MirrorUser name the mirror's variables.
	REST, Mirror, CI        Token
	MirrorToken, MirrorUser string
	APIURL, ServerURL       string
	OAuthTokenURL           string
	PushSecret              string
}

// Resolve checks e for targets and a relay URL ("" none). Its errors name
// the variable to set and why; nothing has been sent when they come.
func Resolve(e Env, relayURL string, targets []Target) (Resolved, error) {
	r := Resolved{GitLabURL: strings.TrimRight(strings.TrimSpace(e.GitLabURL), "/"), GitLabToken: strings.TrimSpace(e.GitLabToken),
		APIURL: strings.TrimRight(e.APIURL, "/"), ServerURL: strings.TrimRight(e.ServerURL, "/"), OAuthTokenURL: e.OAuthTokenURL,
		PushSecret: strings.TrimSpace(e.PushSecret)}
	switch {
	case r.GitLabURL == "" || r.GitLabToken == "":
		return r, errors.New("connect needs GITLAB_URL and GITLAB_TOKEN: a token with the api scope whose user may create projects in the " +
			"group (the group's Maintainer by default) or is a Maintainer of an existing project")
	}
	if err := config.CheckBaseURL("GITLAB_URL", r.GitLabURL); err != nil {
		return r, err
	}
	if err := config.CheckBaseURL("BITBUCKET_API_URL", r.APIURL); err != nil {
		return r, err
	}
	if r.ServerURL != "" {
		if err := config.CheckBaseURL("BITBUCKET_SERVER_URL", r.ServerURL); err != nil {
			return r, err
		}
	}
	r.REST = Token{Token: strings.TrimSpace(e.AccessToken), Username: strings.TrimSpace(e.Username), ClientID: strings.TrimSpace(e.OAuthClientID),
		ClientSecret: strings.TrimSpace(e.OAuthClientSecret)}
	switch {
	case r.REST.Token != "" && r.REST.ClientID != "":
		return r, errors.New("both BITBUCKET_ACCESS_TOKEN and BITBUCKET_OAUTH_CLIENT_ID are set: unset the credential you do not mean to use")
	case r.REST.Token == "" && r.REST.ClientID == "":
		return r, errors.New("no Bitbucket credential: set BITBUCKET_ACCESS_TOKEN to a repository, project or workspace access token (with " +
			"the webhook scope), or to an API token with BITBUCKET_USERNAME (your Atlassian account email); on Data Center, a user's " +
			"HTTP access token and BITBUCKET_USERNAME")
	case r.REST.ClientID != "" && r.REST.ClientSecret == "":
		return r, errors.New("BITBUCKET_OAUTH_CLIENT_ID is set but BITBUCKET_OAUTH_CLIENT_SECRET is not: set the consumer's secret too")
	case strings.ContainsAny(r.REST.Token+r.REST.ClientSecret, "\r\n"):
		return r, errors.New("BITBUCKET_ACCESS_TOKEN or BITBUCKET_OAUTH_CLIENT_SECRET contains a line break: set it to the secret alone")
	}
	r.Mirror, r.CI = r.REST, r.REST
	if t := strings.TrimSpace(e.MirrorToken); t != "" {
		r.Mirror = Token{Token: t, Username: strings.TrimSpace(e.MirrorUsername)}
	} else if e.MirrorUsername != "" {
		return r, errors.New("BITBUCKET_MIRROR_USERNAME is set but BITBUCKET_MIRROR_TOKEN is not: set the token that goes with it")
	}
	if t := strings.TrimSpace(e.CIToken); t != "" {
		r.CI = Token{Token: t, Username: strings.TrimSpace(e.CIUsername)}
	} else if e.CIUsername != "" {
		return r, errors.New("BITBUCKET_CI_USERNAME is set but BITBUCKET_CI_TOKEN is not: set the token that goes with it")
	}
	if relayURL != "" {
		if err := config.CheckBaseURL("--relay-url", relayURL); err != nil {
			return r, err
		}
		if u, _ := url.Parse(relayURL); u.RawQuery != "" || u.Fragment != "" {
			return r, fmt.Errorf("--relay-url %q: give the relay's base URL, without a query", relayURL)
		}
		switch {
		case r.PushSecret == "":
			return r, errors.New("--relay-url needs BITBUCKET_RELAY_PUSH_SECRET, the relay's push secret, which signs the webhook: set it to " +
				"the relay's value")
		case len(r.PushSecret) < 16 || len(r.PushSecret) > 128:
			return r, errors.New("BITBUCKET_RELAY_PUSH_SECRET must be 16 to 128 characters (Bitbucket Cloud takes 128 at most), as the relay requires")
		}
	}
	mirrorToken, mirrorUser, ciVar := "BITBUCKET_ACCESS_TOKEN", "BITBUCKET_USERNAME", "BITBUCKET_ACCESS_TOKEN"
	if e.MirrorToken != "" {
		mirrorToken, mirrorUser = "BITBUCKET_MIRROR_TOKEN", "BITBUCKET_MIRROR_USERNAME"
	}
	if e.CIToken != "" {
		ciVar = "BITBUCKET_CI_TOKEN"
	}
	r.MirrorToken, r.MirrorUser = mirrorToken, mirrorUser
	for _, t := range targets {
		if _, err := MirrorCredential(r.Mirror, t.Repo.DataCenter, mirrorToken, mirrorUser); err != nil {
			return r, err
		}
		vars, _ := CIVariables(r.CI, t)
		for _, v := range vars {
			if v.Secret {
				if err := CheckMaskable(v, ciVar); err != nil {
					return r, err
				}
			}
		}
	}
	return r, nil
}

// ReadTargets reads repositories, one a line: the repository's URL and,
// after a space, the GitLab project's path (optional on Cloud). Blank
// lines and lines starting with # are skipped. An error names the line.
func ReadTargets(in io.Reader, serverURL string) ([]Target, error) {
	var out []Target
	sc := bufio.NewScanner(in)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) > 2 {
			return nil, fmt.Errorf("line %d: %d words: give the repository URL and, after a space, the GitLab project path", n, len(fields))
		}
		path := ""
		if len(fields) == 2 {
			path = fields[1]
		}
		t, err := NewTarget(fields[0], path, serverURL)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no repository in the list: give one a line (URL [GITLAB_PATH])")
	}
	return out, nil
}
