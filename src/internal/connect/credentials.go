package connect

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/repourl"
)

// Target is one repository to set up: the Bitbucket repository and the
// GitLab project that runs its CI/CD.
type Target struct {
	Repo repourl.Repo
	// CloneURL is the repository's https clone URL, with no user name:
	// what the mirror pulls (GitLab's mirror API takes no ssh).
	CloneURL   string
	GitLabPath string
}

// Name is how a target is named in the output.
func (t Target) Name() string { return t.GitLabPath }

// NewTarget reads a repository URL (its https or ssh clone URL, or its
// page) and the GitLab project path; a Cloud repository's path defaults
// to WORKSPACE/REPO. serverURL is BITBUCKET_SERVER_URL: a Data Center
// repository must be on it.
func NewTarget(rawURL, gitlabPath, serverURL string) (Target, error) {
	repo, err := repourl.Parse(rawURL)
	if err != nil {
		return Target{}, fmt.Errorf("repository URL %q: %v", rawURL, err)
	}
	t := Target{Repo: repo, GitLabPath: strings.Trim(strings.TrimSpace(gitlabPath), "/")}
	if repo.DataCenter {
		server := strings.TrimRight(serverURL, "/")
		switch {
		case server == "":
			return Target{}, fmt.Errorf("repository URL %q is on a Data Center server: set BITBUCKET_SERVER_URL to its base URL (https://HOST[/CONTEXT])", rawURL)
		case !sameHost(server, repo.ServerURL):
			return Target{}, fmt.Errorf("repository URL %q is not on BITBUCKET_SERVER_URL (%s): connect only talks to that server", rawURL, server)
		}
		t.Repo.ServerURL = server
		t.CloneURL = server + "/scm/" + strings.ToLower(repo.Owner) + "/" + repo.Slug + ".git"
		if t.GitLabPath == "" {
			return Target{}, fmt.Errorf("repository %s/%s: give the GitLab project with --gitlab-project GROUP/PROJECT (a Data Center project key is no GitLab group)", repo.Owner, repo.Slug)
		}
	} else {
		t.CloneURL = "https://" + repourl.CloudHost + "/" + repo.Owner + "/" + repo.Slug + ".git"
		if t.GitLabPath == "" {
			t.GitLabPath = repo.Owner + "/" + repo.Slug
		}
	}
	if err := checkProjectPath(t.GitLabPath); err != nil {
		return Target{}, err
	}
	return t, nil
}

func checkProjectPath(p string) error {
	segments := strings.Split(p, "/")
	if len(segments) < 2 {
		return fmt.Errorf("GitLab project %q: give GROUP/PROJECT (a project belongs to a group or a user)", p)
	}
	for _, s := range segments {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, " ?#%\\") {
			return fmt.Errorf("GitLab project %q: %q is not a path segment GitLab allows", p, s)
		}
	}
	return nil
}

func sameHost(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	return errA == nil && errB == nil && strings.EqualFold(ua.Hostname(), ub.Hostname())
}

// GitCredential is what GitLab's pull mirror fetches with over HTTPS: a
// user name and a password, as git sends them.
type GitCredential struct {
	User, Password string
	// Kind names it for the output: "a Bitbucket Cloud access token", ...
	Kind string
}

// Variable is a CI/CD variable connect keeps on the project.
type Variable struct {
	Key, Value string
	// Secret: masked (and hidden where GitLab can), compared by its
	// fingerprint.
	Secret bool
}

// Credentials are what connect gives GitLab: the mirror's git credential,
// the variables the component reads, and the variables that would
// contradict them (BITBUCKET_USERNAME beside an access token sends Basic
// auth, which Bitbucket refuses).
type Credentials struct {
	Mirror    GitCredential
	Variables []Variable
	Stale     []string
}

// Token is a Bitbucket credential as the environment gives it.
type Token struct {
	// Token is an access token, API token or HTTP access token; Username,
	// when set, sends it with HTTP Basic.
	Token, Username string
	// ClientID and ClientSecret are an OAuth consumer's (Cloud).
	ClientID, ClientSecret string
}

// MirrorCredential is the git credential for repositories on Cloud
// (dataCenter false) or Data Center, from the token that the mirror uses:
//   - a Cloud access token (repository, project, workspace) goes as x-token-auth;
//   - a Cloud API token (Basic with the account email) goes as
//     x-bitbucket-api-token-auth, git's static user for API tokens;
//   - a Data Center token needs its user: project and repository tokens
//     take only Bearer, which GitLab's mirror cannot send.
//
// An OAuth consumer's tokens last two hours: no mirror credential.
func MirrorCredential(t Token, dataCenter bool, tokenVar, userVar string) (GitCredential, error) {
	switch {
	case t.ClientID != "" && t.Token == "":
		return GitCredential{}, fmt.Errorf("an OAuth consumer's access tokens expire within 2 hours, too soon for a pull mirror: set " +
			"BITBUCKET_MIRROR_TOKEN to a repository access token (or an API token with BITBUCKET_MIRROR_USERNAME)")
	case t.Token == "":
		return GitCredential{}, fmt.Errorf("no credential for the pull mirror: set %s", tokenVar)
	case dataCenter && t.Username == "":
		return GitCredential{}, fmt.Errorf("the project and repository HTTP access tokens of Data Center take only Bearer authentication, and GitLab's "+
			"pull mirror sends a user name and password: set %s to a user's HTTP access token (a service account's) and %s to that user",
			tokenVar, userVar)
	case dataCenter:
		return GitCredential{User: t.Username, Password: t.Token, Kind: "a Data Center HTTP access token of user " + t.Username}, nil
	case t.Username != "":
		return GitCredential{User: "x-bitbucket-api-token-auth", Password: t.Token, Kind: "a Bitbucket Cloud API token"}, nil
	}
	return GitCredential{User: "x-token-auth", Password: t.Token, Kind: "a Bitbucket Cloud access token"}, nil
}

// CIVariables are the variables the component's jobs read for token t on
// target's server, and the variables they replace.
func CIVariables(t Token, target Target) (vars []Variable, stale []string) {
	switch {
	case t.Token != "":
		vars = append(vars, Variable{Key: "BITBUCKET_ACCESS_TOKEN", Value: t.Token, Secret: true})
		if t.Username != "" {
			vars = append(vars, Variable{Key: "BITBUCKET_USERNAME", Value: t.Username})
		} else {
			stale = append(stale, "BITBUCKET_USERNAME")
		}
		stale = append(stale, "BITBUCKET_OAUTH_CLIENT_ID", "BITBUCKET_OAUTH_CLIENT_SECRET")
	case t.ClientID != "":
		vars = append(vars, Variable{Key: "BITBUCKET_OAUTH_CLIENT_ID", Value: t.ClientID},
			Variable{Key: "BITBUCKET_OAUTH_CLIENT_SECRET", Value: t.ClientSecret, Secret: true})
		stale = append(stale, "BITBUCKET_ACCESS_TOKEN", "BITBUCKET_USERNAME")
	}
	// The component takes the repository from the project's path unless
	// told otherwise: a Data Center server always needs telling.
	if target.Repo.DataCenter || !strings.EqualFold(target.GitLabPath, target.Repo.Owner+"/"+target.Repo.Slug) {
		vars = append(vars, Variable{Key: "BITBUCKET_REPO_URL", Value: target.CloneURL})
	}
	return vars, stale
}

// CheckMaskable is GitLab's rule for a masked variable, checked before
// anything is written: one line, no spaces, 8 characters or more.
func CheckMaskable(v Variable, from string) error {
	switch {
	case len(v.Value) < 8:
		return fmt.Errorf("%s cannot be masked in GitLab: it is shorter than 8 characters (GitLab masks single-line values of 8 or more "+
			"without spaces); nothing was written", from)
	case strings.ContainsAny(v.Value, " \t\r\n"):
		return fmt.Errorf("%s cannot be masked in GitLab: it contains a space or a line break (GitLab masks single-line values without "+
			"spaces); nothing was written", from)
	}
	return nil
}

// fingerprint names a secret without showing it: 12 hex digits of its
// SHA-256, kept in a description so a second run can tell whether the
// secret GitLab or Bitbucket holds (and never shows) is this one. Bitbucket
// and GitLab tokens are random: 48 bits of their hash give nothing away.
func fingerprint(secret string) string {
	sum := sha256.Sum256([]byte("bitbucket-status connect\x00" + secret))
	return hex.EncodeToString(sum[:6])
}
