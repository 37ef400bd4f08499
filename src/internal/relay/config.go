package relay

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/config"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
)

// Env is every variable the relay reads. --help is generated from it.
type Env struct {
	Listen       string `env:"BITBUCKET_RELAY_LISTEN, default=:8080" help:"Address to listen on."`
	WebhookToken string `env:"BITBUCKET_RELAY_WEBHOOK_TOKEN" help:"The webhook's secret token, compared with X-Gitlab-Token. Set it, or BITBUCKET_RELAY_SIGNING_TOKEN, or both."`
	SigningToken string `env:"BITBUCKET_RELAY_SIGNING_TOKEN" help:"The webhook's signing token (whsec_..., GitLab 19.0+): a valid webhook-signature within 5 minutes is required."`
	Data         string `env:"BITBUCKET_RELAY_DATA, default=./relay-data" help:"Directory of the embedded store (/data in the image)."`
	DatabaseURL  string `env:"BITBUCKET_RELAY_DATABASE_URL" help:"postgres://USER:PASSWORD@HOST/DB?sslmode=verify-full: a PostgreSQL store instead of the embedded one, shared by any number of replicas."`
	Routes       string `env:"BITBUCKET_RELAY_ROUTES" help:"A routes file (YAML): which GitLab projects report to which Bitbucket repository, with which credential."`
	GitLabURL    string `env:"GITLAB_URL" help:"GitLab's base URL, the only GitLab the relay calls; with GITLAB_TOKEN, pipelines are re-read before posting and swept."`
	GitLabToken  string `env:"GITLAB_TOKEN" help:"A GitLab token with read_api."`
	Sweep        string `env:"BITBUCKET_RELAY_SWEEP_INTERVAL, default=10m" help:"How often to list recent pipelines and post what webhooks missed (needs GITLAB_TOKEN); 0 turns it off."`
	Grace        string `env:"BITBUCKET_RELAY_GRACE_PERIOD, default=20s" help:"On SIGTERM, how long to finish the posts in flight; what is left stays in the store."`
	Workers      int    `env:"BITBUCKET_RELAY_WORKERS, default=8" help:"Posts to Bitbucket at once."`
	MaxBody      int64  `env:"BITBUCKET_RELAY_MAX_BODY, default=26214400" help:"Largest webhook body accepted, in bytes (GitLab.com's own maximum payload, 25 MB)."`
	RetryBase    string `env:"BITBUCKET_RELAY_RETRY_BASE, default=2s" help:"First wait before posting a status again after a 5xx or no answer; doubles up to 2m, with no limit on tries."`
	PauseBase    string `env:"BITBUCKET_RELAY_PAUSE_BASE, default=30s" help:"First pause of a credential after a Bitbucket Cloud 429 (which says no Retry-After); doubles up to 10m while 429s go on."`
	Retention    string `env:"BITBUCKET_RELAY_RETENTION, default=720h" help:"How long the store keeps a status after its last change (720h: 30 days), whatever else is configured; a change Bitbucket never took is dropped after as long."`

	ServerWorkers    int    `env:"BITBUCKET_RELAY_SERVER_WORKERS" help:"Posts in flight to one Bitbucket server at most, so a server that hangs cannot hold every worker. Default: BITBUCKET_RELAY_WORKERS with one server configured, half of it with several."`
	ReadBudget       int64  `env:"BITBUCKET_RELAY_READ_BUDGET, default=33554432" help:"Bytes of webhook bodies over 256 KiB read at once over all requests, and read per second (32 MiB), beside 8 MiB kept for smaller bodies; past it a request gets 503 with Retry-After. Bounds the memory and CPU that bodies read to check a signature can take."`
	MirrorWorkspaces string `env:"BITBUCKET_RELAY_MIRROR_WORKSPACES" help:"With GITLAB_TOKEN: the Bitbucket Cloud workspaces (space- or comma-separated) a project's pull mirror may lead the BITBUCKET_* credential to. Empty: mirrors are not followed."`
	MirrorProjects   string `env:"BITBUCKET_RELAY_MIRROR_PROJECTS" help:"With GITLAB_TOKEN and BITBUCKET_SERVER_URL: the Data Center project keys a project's pull mirror may lead the BITBUCKET_* credential to. Empty: mirrors are not followed."`
	PushSecret       string `env:"BITBUCKET_RELAY_PUSH_SECRET" help:"Turns on POST /bitbucket: Bitbucket push webhooks (Cloud repo:push, Data Center repo:refs_changed) signed with this secret (X-Hub-Signature: sha256=...) start the pull mirror of each GitLab project the repository maps to, at once. Needs GITLAB_URL and GITLAB_TOKEN with the api scope and the Maintainer role on those projects."`
	MirrorInterval   string `env:"BITBUCKET_RELAY_MIRROR_INTERVAL, default=5m" help:"GitLab's pull mirroring interval (Admin > Settings > Repository, pull_mirror_interval_seconds; 5 minutes by default): an update asked within it of the last one is deferred to its end, and the relay waits that long before looking again."`
	StatusToken      string `env:"BITBUCKET_RELAY_STATUS_TOKEN" help:"Turns on the status page (GET /status): a browser gives it as the password of HTTP Basic, with any user name. Not the webhook's token. Unset: /status answers 404."`
	TestReports      string `env:"BITBUCKET_RELAY_TEST_REPORTS, default=true" help:"With GITLAB_TOKEN: when a pipeline ends, read its test summary (one GitLab request) for Data Center's testResults and publish a Code Insights test report with its failed tests; false turns it off (a route's test_reports: false, for its projects)."`
	VerifyPerHour    int    `env:"BITBUCKET_RELAY_VERIFY_PER_HOUR, default=100" help:"With GITLAB_TOKEN: how many statuses per credential and hour the sweep reads back from Bitbucket, to post again one that shows something else; 0 turns it off. Counts against Bitbucket Cloud's 1,000 requests an hour."`

	AccessToken       string `env:"BITBUCKET_ACCESS_TOKEN" help:"The default credential: an access token (Bearer) or, with BITBUCKET_USERNAME, an API token or password (Basic)."`
	Username          string `env:"BITBUCKET_USERNAME" help:"Send BITBUCKET_ACCESS_TOKEN with HTTP Basic as this user (an API token's Atlassian account email)."`
	OAuthClientID     string `env:"BITBUCKET_OAUTH_CLIENT_ID" help:"Or an OAuth consumer's key (Bitbucket Cloud)."`
	OAuthClientSecret string `env:"BITBUCKET_OAUTH_CLIENT_SECRET" help:"The OAuth consumer's secret."`
	OAuthTokenURL     string `env:"BITBUCKET_OAUTH_TOKEN_URL, default=https://bitbucket.org/site/oauth2/access_token" help:"Where OAuth tokens are fetched."`
	APIURL            string `env:"BITBUCKET_API_URL, default=https://api.bitbucket.org/2.0" help:"Bitbucket Cloud's API base URL."`
	ServerURL         string `env:"BITBUCKET_SERVER_URL" help:"A Bitbucket Data Center base URL: the default route posts there."`
	Project           string `env:"BITBUCKET_PROJECT" help:"With BITBUCKET_SERVER_URL: the Data Center project key of the default route (repository = the GitLab project's name)."`
}

// Variables lists the relay's variables for --help.
func Variables() []config.Variable { return config.VariablesOf(Env{}) }

// LoadEnv reads Env; an empty variable counts as unset.
func LoadEnv(ctx context.Context, env map[string]string) (Env, error) {
	var e Env
	if err := config.Process(ctx, env, &e); err != nil {
		return Env{}, err
	}
	return e, nil
}

// Config is the relay's checked configuration.
type Config struct {
	Listen       string
	WebhookToken string
	SigningKey   gitlab.SigningKey
	Data         string
	DatabaseURL  string
	Sweep        time.Duration
	Grace        time.Duration
	Workers      int
	MaxBody      int64
	RetryBase    time.Duration
	PauseBase    time.Duration
	Retention    time.Duration
	// ServerWorkers is the limit of posts in flight per Bitbucket server.
	ServerWorkers int
	// ReadBudget bounds the webhook bodies being read at once.
	ReadBudget    int64
	VerifyPerHour int
	// TestReports: publish pipelines' test results (with GitLab).
	TestReports bool
	// StatusToken guards the status page; empty: no page.
	StatusToken string
	// PushSecret signs Bitbucket's push webhooks; empty: no POST /bitbucket.
	PushSecret string
	// MirrorInterval is GitLab's pull mirroring interval; mirrorPoll, how
	// soon a mirror job looks again at an update in progress.
	MirrorInterval time.Duration
	mirrorPoll     time.Duration
	GitLab         *gitlab.Client // nil without GITLAB_TOKEN
	// Credentials by name; "default" is the BITBUCKET_* variables' (absent
	// when they are not set).
	Credentials map[string]bitbucket.Auth
	routes      []route
	// defaultCloud / defaultDataCenter are where the default route posts.
	defaultCloudAPI   string
	defaultDataCenter string
	defaultProject    string
	// mirrorAllowed is, per credential, where a pull mirror may lead it.
	mirrorAllowed map[string]mirrorAllowList
	// credentialFrom names each credential as its operator set it, for
	// what the relay says about a refusal.
	credentialFrom map[string]string
	// lease is how long a claimed status is this process's; confirmAfter,
	// when a post that may have been overtaken is made again.
	lease, confirmAfter time.Duration
	// Secrets are every secret the configuration holds, for the log filter.
	Secrets []string
}

// mirrorAllowList is where a pull mirror may lead one credential: Cloud
// workspaces and Data Center project keys, lower-cased.
type mirrorAllowList struct{ workspaces, projects map[string]bool }

func newMirrorAllowList(workspaces, projects []string) mirrorAllowList {
	set := func(names []string) map[string]bool {
		m := map[string]bool{}
		for _, n := range names {
			if n = strings.ToLower(strings.TrimSpace(n)); n != "" {
				m[n] = true
			}
		}
		return m
	}
	return mirrorAllowList{workspaces: set(workspaces), projects: set(projects)}
}

// followsMirrors reports whether any credential may follow a pull mirror.
func (c *Config) followsMirrors() bool {
	for _, a := range c.mirrorAllowed {
		if len(a.workspaces)+len(a.projects) > 0 {
			return true
		}
	}
	return false
}

// splitList reads a space- or comma-separated variable.
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// DefaultCredential is the credential of the BITBUCKET_* variables.
const DefaultCredential = "default"

// Resolve checks e, reads the routes file and every credential. Its errors
// name the variable or route to change.
func Resolve(e Env, env func(string) string) (*Config, error) {
	c := &Config{Listen: e.Listen, WebhookToken: strings.TrimSpace(e.WebhookToken), Data: e.Data, Workers: e.Workers, MaxBody: e.MaxBody,
		DatabaseURL: strings.TrimSpace(e.DatabaseURL), Credentials: map[string]bitbucket.Auth{}, ReadBudget: e.ReadBudget,
		VerifyPerHour: e.VerifyPerHour, mirrorAllowed: map[string]mirrorAllowList{}, credentialFrom: map[string]string{}, lease: defaultLease,
		confirmAfter: defaultConfirmAfter, mirrorPoll: defaultMirrorPoll}
	if c.DatabaseURL != "" {
		u, err := url.Parse(c.DatabaseURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			return nil, errors.New("BITBUCKET_RELAY_DATABASE_URL is not a PostgreSQL URL: give postgres://USER:PASSWORD@HOST:5432/DATABASE (with ?sslmode=verify-full for TLS)")
		}
		if pw, ok := u.User.Password(); ok {
			c.Secrets = append(c.Secrets, pw, url.QueryEscape(pw), url.PathEscape(pw))
		}
		c.Secrets = append(c.Secrets, u.Query().Get("password"))
	}
	if c.WebhookToken == "" && e.SigningToken == "" {
		return nil, errors.New("neither BITBUCKET_RELAY_WEBHOOK_TOKEN nor BITBUCKET_RELAY_SIGNING_TOKEN is set, so anyone could post statuses: " +
			"set BITBUCKET_RELAY_WEBHOOK_TOKEN to the webhook's secret token (or BITBUCKET_RELAY_SIGNING_TOKEN to its signing token, GitLab 19.0+)")
	}
	if e.SigningToken != "" {
		key, err := gitlab.ParseSigningKey(e.SigningToken)
		if err != nil {
			return nil, fmt.Errorf("BITBUCKET_RELAY_SIGNING_TOKEN is %w", err)
		}
		c.SigningKey = key
		c.Secrets = append(c.Secrets, e.SigningToken)
	}
	c.Secrets = append(c.Secrets, c.WebhookToken)
	if c.StatusToken = strings.TrimSpace(e.StatusToken); c.StatusToken != "" {
		if c.StatusToken == c.WebhookToken || c.StatusToken == strings.TrimSpace(e.SigningToken) {
			return nil, errors.New("BITBUCKET_RELAY_STATUS_TOKEN is the webhook's token: give the status page a token of its own, so one cannot be used for the other")
		}
		if len(c.StatusToken) < 16 {
			return nil, errors.New("BITBUCKET_RELAY_STATUS_TOKEN is shorter than 16 characters: use a long random one (openssl rand -hex 24)")
		}
		c.Secrets = append(c.Secrets, c.StatusToken)
	}
	if c.PushSecret = strings.TrimSpace(e.PushSecret); c.PushSecret != "" {
		switch {
		case e.GitLabToken == "" || e.GitLabURL == "":
			return nil, errors.New("BITBUCKET_RELAY_PUSH_SECRET is set, but a push starts GitLab's pull mirror, which needs GITLAB_URL and " +
				"GITLAB_TOKEN (the api scope, the Maintainer role on the projects): set them, or unset BITBUCKET_RELAY_PUSH_SECRET")
		case len(c.PushSecret) < 16:
			return nil, errors.New("BITBUCKET_RELAY_PUSH_SECRET is shorter than 16 characters: use a long random one (openssl rand -hex 24), " +
				"the Bitbucket webhook's secret")
		case len(c.PushSecret) > 128:
			return nil, errors.New("BITBUCKET_RELAY_PUSH_SECRET is longer than 128 characters, the most Bitbucket Cloud takes for a webhook's secret")
		case c.PushSecret == c.WebhookToken || c.PushSecret == c.StatusToken || c.PushSecret == strings.TrimSpace(e.SigningToken):
			return nil, errors.New("BITBUCKET_RELAY_PUSH_SECRET is another of the relay's tokens: give Bitbucket's webhook a secret of its own")
		}
		c.Secrets = append(c.Secrets, c.PushSecret)
	}
	var err error
	if c.MirrorInterval, err = time.ParseDuration(e.MirrorInterval); err != nil || c.MirrorInterval < 0 {
		return nil, fmt.Errorf("BITBUCKET_RELAY_MIRROR_INTERVAL is %q: use GitLab's pull mirroring interval as a duration, such as 5m", e.MirrorInterval)
	}
	if quarter := c.MirrorInterval / 4; quarter > 0 && quarter < c.mirrorPoll {
		// An instance that mirrors more often than every 20 s is looked at
		// as often: an update there ends sooner.
		c.mirrorPoll = max(quarter, 100*time.Millisecond)
	}
	if c.Sweep, err = time.ParseDuration(e.Sweep); err != nil || c.Sweep < 0 {
		return nil, fmt.Errorf("BITBUCKET_RELAY_SWEEP_INTERVAL is %q: use a duration such as 10m, or 0 to turn the sweep off", e.Sweep)
	}
	if c.Grace, err = time.ParseDuration(e.Grace); err != nil || c.Grace <= 0 {
		return nil, fmt.Errorf("BITBUCKET_RELAY_GRACE_PERIOD is %q: use a positive duration such as 20s", e.Grace)
	}
	if c.RetryBase, err = time.ParseDuration(e.RetryBase); err != nil || c.RetryBase <= 0 {
		return nil, fmt.Errorf("BITBUCKET_RELAY_RETRY_BASE is %q: use a positive duration such as 2s", e.RetryBase)
	}
	if c.PauseBase, err = time.ParseDuration(e.PauseBase); err != nil || c.PauseBase <= 0 {
		return nil, fmt.Errorf("BITBUCKET_RELAY_PAUSE_BASE is %q: use a positive duration such as 30s", e.PauseBase)
	}
	if c.Retention, err = time.ParseDuration(e.Retention); err != nil || c.Retention < time.Hour {
		return nil, fmt.Errorf("BITBUCKET_RELAY_RETENTION is %q: use a duration of at least 1h, such as 720h (30 days)", e.Retention)
	}
	if c.ReadBudget < 1<<20 {
		return nil, fmt.Errorf("BITBUCKET_RELAY_READ_BUDGET is %d: use a size in bytes of at least 1048576 (1 MiB)", c.ReadBudget)
	}
	if c.TestReports, err = strconv.ParseBool(e.TestReports); err != nil {
		return nil, fmt.Errorf("BITBUCKET_RELAY_TEST_REPORTS is %q: use true or false", e.TestReports)
	}
	if c.VerifyPerHour < 0 {
		return nil, fmt.Errorf("BITBUCKET_RELAY_VERIFY_PER_HOUR is %d: use 0 (off) or more", c.VerifyPerHour)
	}
	if c.Workers < 1 || c.Workers > 256 {
		return nil, fmt.Errorf("BITBUCKET_RELAY_WORKERS is %d: use 1 to 256", c.Workers)
	}
	if c.MaxBody < 1024 {
		return nil, fmt.Errorf("BITBUCKET_RELAY_MAX_BODY is %d: use a size in bytes of at least 1024", c.MaxBody)
	}
	if e.GitLabToken != "" || e.GitLabURL != "" {
		if e.GitLabToken == "" || e.GitLabURL == "" {
			return nil, errors.New("GITLAB_URL and GITLAB_TOKEN go together: set both (a read_api token and GitLab's base URL) or neither")
		}
		if err := config.CheckBaseURL("GITLAB_URL", e.GitLabURL); err != nil {
			return nil, err
		}
		c.GitLab = &gitlab.Client{BaseURL: strings.TrimRight(e.GitLabURL, "/"), Token: strings.TrimSpace(e.GitLabToken)}
		c.Secrets = append(c.Secrets, e.GitLabToken)
	}
	if err := config.CheckBaseURL("BITBUCKET_API_URL", e.APIURL); err != nil {
		return nil, err
	}
	c.defaultCloudAPI = strings.TrimRight(e.APIURL, "/")
	if e.ServerURL != "" {
		if err := config.CheckBaseURL("BITBUCKET_SERVER_URL", e.ServerURL); err != nil {
			return nil, err
		}
		c.defaultDataCenter, c.defaultProject = strings.TrimRight(e.ServerURL, "/"), e.Project
	}
	if err := config.CheckBaseURL("BITBUCKET_OAUTH_TOKEN_URL", e.OAuthTokenURL); err != nil {
		return nil, err
	}
	// The default credential, as the job binary reads it.
	spec := CredentialSpec{Username: e.Username, ClientID: e.OAuthClientID}
	c.mirrorAllowed[DefaultCredential] = newMirrorAllowList(splitList(e.MirrorWorkspaces), splitList(e.MirrorProjects))
	if len(splitList(e.MirrorProjects)) > 0 && e.ServerURL == "" {
		return nil, errors.New("BITBUCKET_RELAY_MIRROR_PROJECTS names Data Center project keys, but BITBUCKET_SERVER_URL is not set: set the server they are on")
	}
	envOf := func(name string) string {
		return map[string]string{"BITBUCKET_ACCESS_TOKEN": e.AccessToken, "BITBUCKET_OAUTH_CLIENT_SECRET": e.OAuthClientSecret}[name]
	}
	if e.AccessToken != "" {
		spec.TokenEnv = "BITBUCKET_ACCESS_TOKEN"
	}
	if e.OAuthClientSecret != "" {
		spec.ClientSecretEnv = "BITBUCKET_OAUTH_CLIENT_SECRET"
	}
	if !spec.isZero() {
		auth, err := credentialAuth(DefaultCredential, spec, envOf, e.OAuthTokenURL)
		if err != nil {
			return nil, fmt.Errorf("the BITBUCKET_* credential: %w", err)
		}
		c.Credentials[DefaultCredential] = auth
		c.credentialFrom[DefaultCredential] = "the credential in BITBUCKET_ACCESS_TOKEN"
		if auth.Kind == bitbucket.OAuth {
			c.credentialFrom[DefaultCredential] = "the OAuth consumer in BITBUCKET_OAUTH_CLIENT_ID and BITBUCKET_OAUTH_CLIENT_SECRET"
		}
	}
	if e.Routes != "" {
		data, err := os.ReadFile(e.Routes)
		if err != nil {
			return nil, fmt.Errorf("BITBUCKET_RELAY_ROUTES: %v", err)
		}
		f, err := ParseRoutes(data)
		if err != nil {
			return nil, fmt.Errorf("BITBUCKET_RELAY_ROUTES (%s): %v", e.Routes, err)
		}
		if c.routes, err = checkRoutes(f); err != nil {
			return nil, fmt.Errorf("BITBUCKET_RELAY_ROUTES (%s): %v", e.Routes, err)
		}
		for name, spec := range f.Credentials {
			auth, err := credentialAuth(name, spec, env, e.OAuthTokenURL)
			if err != nil {
				return nil, fmt.Errorf("BITBUCKET_RELAY_ROUTES (%s): %v", e.Routes, err)
			}
			c.Credentials[name] = auth
			c.mirrorAllowed[name] = newMirrorAllowList(spec.MirrorWorkspaces, spec.MirrorProjects)
			c.credentialFrom[name] = fmt.Sprintf("credential %q of the routes file (%s)", name, spec.source())
		}
		for _, r := range c.routes {
			if !r.Skip && r.Credential == "" && c.Credentials[DefaultCredential].Kind == bitbucket.NoAuth {
				return nil, fmt.Errorf("BITBUCKET_RELAY_ROUTES (%s): route %d names no credential and BITBUCKET_ACCESS_TOKEN (or an OAuth consumer) is not set: "+
					"set one, or give the route a credential", e.Routes, r.index)
			}
		}
	}
	if _, ok := c.Credentials[DefaultCredential]; !ok && len(c.routes) == 0 {
		return nil, errors.New("no Bitbucket credential: set BITBUCKET_ACCESS_TOKEN (or BITBUCKET_OAUTH_CLIENT_ID and BITBUCKET_OAUTH_CLIENT_SECRET), " +
			"or a routes file (BITBUCKET_RELAY_ROUTES) whose routes name credentials")
	}
	for _, a := range c.Credentials {
		c.Secrets = append(c.Secrets, a.Token, a.ClientSecret)
	}
	c.ServerWorkers = e.ServerWorkers
	switch servers := len(c.servers()); {
	case c.ServerWorkers < 0 || c.ServerWorkers > c.Workers:
		return nil, fmt.Errorf("BITBUCKET_RELAY_SERVER_WORKERS is %d: use 1 to BITBUCKET_RELAY_WORKERS (%d)", c.ServerWorkers, c.Workers)
	case c.ServerWorkers > 0:
	case servers > 1:
		c.ServerWorkers = max(1, c.Workers/2)
	default:
		c.ServerWorkers = c.Workers
	}
	return c, nil
}

// servers lists the Bitbucket servers the configuration can post to.
func (c *Config) servers() []string {
	set := map[string]bool{}
	if _, ok := c.Credentials[DefaultCredential]; ok {
		set[c.defaultCloudAPI] = c.defaultDataCenter == "" || c.GitLab != nil
		if c.defaultDataCenter != "" {
			set[c.defaultDataCenter] = true
		}
	}
	for _, r := range c.routes {
		switch {
		case r.Skip:
		case r.Cloud != "":
			set[c.defaultCloudAPI] = true
		default:
			set[strings.TrimRight(r.DataCenter, "/")] = true
		}
	}
	var out []string
	for s, used := range set {
		if used {
			out = append(out, s)
		}
	}
	return out
}
