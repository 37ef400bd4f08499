package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitcheckout"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/pipeline"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/repourl"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/statuskey"
)

// maxURL is Bitbucket's limit on a status's link.
const maxURL = 450

// Run is everything one invocation does, resolved and checked.
type Run struct {
	// Exactly one of Cloud and DataCenter is set.
	Cloud      *bitbucket.Cloud
	DataCenter *bitbucket.DataCenter
	Commit     string
	Status     bitbucket.Status
	Auth       bitbucket.Auth
	Timeout    time.Duration
	DryRun     bool
	// From names where each part of the target came from, for errors.
	From Origins
	// Notices are said on stderr before anything is sent.
	Notices []string
}

// Origins names the variable (or other source) that gave each value.
type Origins struct {
	Owner, Slug, Commit, Server string
}

// Options are the inputs that do not come from the environment.
type Options struct {
	// State is the outcome to post; empty for the check command.
	State state.State
	// Word is the state as given (skipped, canceled, manual, ...), for the
	// description.
	Word string
	// DryRun is the --dry-run flag, which wins over BITBUCKET_STATUS_DRY_RUN.
	DryRun bool
	// Checkout reads the git working tree; called only outside GitLab CI.
	Checkout func() (gitcheckout.Checkout, error)
	Now      time.Time
}

const fromOrigin = "the git remote origin"

// Resolve checks e and works out the Run.
func Resolve(e Env, o Options) (*Run, error) {
	r := &Run{}
	var err error
	if r.Timeout, err = time.ParseDuration(e.Timeout); err != nil || r.Timeout <= 0 {
		return nil, fmt.Errorf("BITBUCKET_STATUS_TIMEOUT is %q, not a positive duration: use a Go duration such as 60s or 2m", e.Timeout)
	}
	r.DryRun = o.DryRun
	if e.DryRun != "" && !o.DryRun {
		if r.DryRun, err = strconv.ParseBool(e.DryRun); err != nil {
			return nil, fmt.Errorf("BITBUCKET_STATUS_DRY_RUN is %q: use true or false", e.DryRun)
		}
	}

	// Outside GitLab CI the git checkout stands in for CI_COMMIT_SHA, the
	// branch and the repository.
	var checkout gitcheckout.Checkout
	var checkoutErr error
	if e.CommitSHA == "" && o.Checkout != nil {
		checkout, checkoutErr = o.Checkout()
	}
	if err := r.resolveCommit(e, checkout, checkoutErr); err != nil {
		return nil, err
	}
	if err := r.resolveTarget(e, checkout); err != nil {
		return nil, err
	}
	if err := r.resolveAuth(e); err != nil {
		return nil, err
	}
	if o.State != "" {
		if err := r.resolveStatus(e, checkout, o); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *Run) resolveCommit(e Env, checkout gitcheckout.Checkout, checkoutErr error) error {
	switch {
	case e.CommitSHA != "":
		r.Commit, r.From.Commit = e.CommitSHA, "CI_COMMIT_SHA"
	case checkout.Commit != "":
		r.Commit, r.From.Commit = checkout.Commit, "HEAD of the git checkout"
	case checkoutErr != nil:
		return fmt.Errorf("no commit: CI_COMMIT_SHA is not set (not in GitLab CI?) and the git checkout gave none (%v): "+
			"set CI_COMMIT_SHA to the commit, or run inside a clone of the repository", checkoutErr)
	default:
		return errors.New("no commit: set CI_COMMIT_SHA to the commit to report on")
	}
	if !pipeline.IsCommitHash(r.Commit) {
		return fmt.Errorf("%s is %q, not a commit hash: set it to the full hexadecimal commit ID", r.From.Commit, shorten(r.Commit))
	}
	return nil
}

func (r *Run) resolveTarget(e Env, checkout gitcheckout.Checkout) error {
	// The repository's URL: BITBUCKET_REPO_URL, or outside GitLab CI the
	// checkout's origin. An origin that is not a Bitbucket URL (a GitLab
	// clone, say) gives nothing: the errors below then say what to set.
	var repo *repourl.Repo
	repoFrom := "BITBUCKET_REPO_URL"
	switch {
	case e.RepoURL != "":
		u, err := repourl.Parse(e.RepoURL)
		if err != nil {
			return fmt.Errorf("BITBUCKET_REPO_URL is %q: %v", redactURL(e.RepoURL), err)
		}
		if e.ServerURL != "" && !u.DataCenter {
			return fmt.Errorf("BITBUCKET_SERVER_URL selects Bitbucket Data Center, but BITBUCKET_REPO_URL is a Bitbucket Cloud URL (%s): unset one of them", redactURL(e.RepoURL))
		}
		repo = &u
	case checkout.Origin != "":
		if u, err := repourl.Parse(checkout.Origin); err == nil && (e.ServerURL == "" || u.DataCenter) {
			repo, repoFrom = &u, fromOrigin
		}
	}
	part := func(get func(*repourl.Repo) string) pick {
		if repo == nil {
			return pick{}
		}
		return pick{get(repo), repoFrom}
	}
	owner := part(func(u *repourl.Repo) string { return u.Owner })
	slug := first(pick{e.Repository, "BITBUCKET_REPOSITORY"}, part(func(u *repourl.Repo) string { return u.Slug }),
		pick{e.ProjectName, "CI_PROJECT_NAME"})
	if e.ServerURL != "" || (repo != nil && repo.DataCenter) {
		server := first(pick{e.ServerURL, "BITBUCKET_SERVER_URL"}, part(func(u *repourl.Repo) string { return u.ServerURL }))
		if e.ServerURL == "" && repo.ServerGuessed {
			r.Notices = append(r.Notices, fmt.Sprintf("assuming the Data Center server is %s (an ssh URL does not give its web address): "+
				"set BITBUCKET_SERVER_URL if it differs, e.g. has a context path", repo.ServerURL))
		}
		return r.resolveDataCenter(e, server, first(pick{e.Project, "BITBUCKET_PROJECT"}, owner), slug)
	}
	if e.Project != "" && e.Namespace == "" {
		return errors.New("BITBUCKET_PROJECT is a Bitbucket Data Center project key, but no Data Center server is set: " +
			"set BITBUCKET_SERVER_URL (or a Data Center BITBUCKET_REPO_URL), or for Bitbucket Cloud use BITBUCKET_NAMESPACE instead")
	}
	workspace := first(pick{e.Namespace, "BITBUCKET_NAMESPACE"}, owner)
	if workspace.value == "" {
		if strings.Contains(e.ProjectNamespace, "/") {
			return fmt.Errorf("CI_PROJECT_NAMESPACE is %q, a GitLab subgroup, which cannot be a Bitbucket workspace: "+
				"set BITBUCKET_NAMESPACE to the workspace, or BITBUCKET_REPO_URL to the repository's clone URL", e.ProjectNamespace)
		}
		workspace = pick{e.ProjectNamespace, "CI_PROJECT_NAMESPACE"}
	}
	if workspace.value == "" || slug.value == "" {
		return errors.New("no Bitbucket repository: set BITBUCKET_REPO_URL to its clone URL " +
			"(https://bitbucket.org/WORKSPACE/REPO.git), or BITBUCKET_NAMESPACE and BITBUCKET_REPOSITORY")
	}
	api := strings.TrimRight(e.APIURL, "/")
	if err := checkServerURL("BITBUCKET_API_URL", api); err != nil {
		return err
	}
	r.Cloud = &bitbucket.Cloud{API: api, Workspace: workspace.value, Slug: slug.value}
	r.From.Owner, r.From.Slug, r.From.Server = workspace.from, slug.from, "BITBUCKET_API_URL"
	return nil
}

// resolveDataCenter finishes the target for Data Center.
func (r *Run) resolveDataCenter(e Env, server, project, slug pick) error {
	if e.Namespace != "" && e.Project == "" {
		return errors.New("BITBUCKET_NAMESPACE is a Bitbucket Cloud workspace, but a Data Center server is set: " +
			"set BITBUCKET_PROJECT to the Data Center project key instead")
	}
	if project.value == "" {
		return errors.New("no Bitbucket Data Center project key: set BITBUCKET_PROJECT (e.g. PROJ), " +
			"or BITBUCKET_REPO_URL to the clone URL (https://HOST/scm/PROJ/REPO.git)")
	}
	if slug.value == "" {
		return errors.New("no Bitbucket Data Center repository slug: set BITBUCKET_REPOSITORY, or BITBUCKET_REPO_URL to the clone URL")
	}
	base := strings.TrimRight(server.value, "/")
	if err := checkServerURL(server.from, base); err != nil {
		return err
	}
	r.DataCenter = &bitbucket.DataCenter{Server: base, Project: project.value, Slug: slug.value}
	r.From.Owner, r.From.Slug, r.From.Server = project.from, slug.from, server.from
	return nil
}

func (r *Run) resolveAuth(e Env) error {
	token := strings.TrimSpace(e.AccessToken)
	secret := strings.TrimSpace(e.OAuthClientSecret)
	switch {
	case hasControl(token):
		return errors.New("BITBUCKET_ACCESS_TOKEN contains a line break or another control character: set it to the token alone")
	case hasControl(secret):
		return errors.New("BITBUCKET_OAUTH_CLIENT_SECRET contains a line break or another control character: set it to the secret alone")
	case token != "" && (e.OAuthClientID != "" || secret != ""):
		return errors.New("both BITBUCKET_ACCESS_TOKEN and BITBUCKET_OAUTH_CLIENT_ID/BITBUCKET_OAUTH_CLIENT_SECRET are set: unset the credential you do not mean to use")
	case e.OAuthClientID != "" && secret == "":
		return errors.New("BITBUCKET_OAUTH_CLIENT_ID is set but BITBUCKET_OAUTH_CLIENT_SECRET is not: set the consumer's secret too")
	case secret != "" && e.OAuthClientID == "":
		return errors.New("BITBUCKET_OAUTH_CLIENT_SECRET is set but BITBUCKET_OAUTH_CLIENT_ID is not: set the consumer's key too")
	case e.Username != "" && token == "":
		return errors.New("BITBUCKET_USERNAME is set but BITBUCKET_ACCESS_TOKEN is not: set the API token (or password) that goes with it")
	case e.OAuthClientID != "":
		if r.DataCenter != nil {
			return errors.New("BITBUCKET_OAUTH_CLIENT_ID is for Bitbucket Cloud's OAuth consumers: for Data Center, " +
				"set BITBUCKET_ACCESS_TOKEN to an HTTP access token instead")
		}
		tokenURL := strings.TrimSpace(e.OAuthTokenURL)
		if err := checkServerURL("BITBUCKET_OAUTH_TOKEN_URL", tokenURL); err != nil {
			return err
		}
		r.Auth = bitbucket.Auth{Kind: bitbucket.OAuth, ClientID: e.OAuthClientID, ClientSecret: secret, TokenURL: tokenURL}
	case e.Username != "":
		r.Auth = bitbucket.Auth{Kind: bitbucket.Basic, Username: e.Username, Token: token}
	case token != "":
		r.Auth = bitbucket.Auth{Kind: bitbucket.Bearer, Token: token}
	}
	return nil
}

// RequireCredential is the error for a run that would send a request
// without one; a dry run needs none.
func (r *Run) RequireCredential() error {
	if r.Auth.Kind != bitbucket.NoAuth {
		return nil
	}
	if r.DataCenter != nil {
		return errors.New("no credential: set BITBUCKET_ACCESS_TOKEN to an HTTP access token (sent as Bearer), " +
			"or to a personal access token or password with BITBUCKET_USERNAME")
	}
	return errors.New("no credential: set BITBUCKET_ACCESS_TOKEN to a repository, project or workspace access token (sent as Bearer), " +
		"or to an API token with BITBUCKET_USERNAME set to your Atlassian account email; " +
		"or set BITBUCKET_OAUTH_CLIENT_ID and BITBUCKET_OAUTH_CLIENT_SECRET")
}

func (r *Run) resolveStatus(e Env, checkout gitcheckout.Checkout, o Options) error {
	p := pipeline.Pipeline{ProjectPath: e.ProjectPath, IID: e.PipelineIID, Tag: e.CommitTag,
		Branch: cmp.Or(e.CommitBranch, e.CommitRefName, checkout.Branch), State: o.State, Word: o.Word, EndedAt: o.Now}
	if created, err := time.Parse(time.RFC3339, e.PipelineCreatedAt); err == nil {
		p.CreatedAt = created
	}
	dataCenter := r.DataCenter != nil
	r.Status = pipeline.Status(p, dataCenter)
	s := &r.Status

	if e.StatusKey != "" {
		limit, server := pipeline.KeyLimit(dataCenter), "Bitbucket Cloud"
		if dataCenter {
			server = "Bitbucket Data Center"
		}
		s.Key = statuskey.Fit(e.StatusKey, limit)
		if len(e.StatusKey) > limit {
			r.Notices = append(r.Notices, fmt.Sprintf("BITBUCKET_STATUS_KEY is %d bytes, over %s's limit of %d: using %q",
				len(e.StatusKey), server, limit, s.Key))
		}
	}
	s.Name = text(r, "BITBUCKET_STATUS_NAME", e.StatusName, defaultName(e, s.Key))
	s.Description = text(r, "BITBUCKET_STATUS_DESCRIPTION", e.StatusDescription, s.Description)

	// Outside GitLab CI (a status posted from a terminal) there is no
	// pipeline to link to: the commit's page on Bitbucket is the next best,
	// and Data Center requires a link.
	link := first(pick{e.StatusURL, "BITBUCKET_STATUS_URL"}, pick{e.PipelineURL, "CI_PIPELINE_URL"},
		pick{e.JobURL, "CI_JOB_URL"}, pick{e.ProjectURL, "CI_PROJECT_URL"}, pick{r.commitPage(), "the commit's page on Bitbucket"})
	if err := checkLink(link.from, link.value); err != nil {
		return err
	}
	if !dataCenter {
		if err := checkCloudLinkHost(link.from, link.value); err != nil {
			return err
		}
	}
	s.URL = link.value
	return nil
}

// commitPage is the commit's page in Bitbucket's web interface.
func (r *Run) commitPage() string {
	if dc := r.DataCenter; dc != nil {
		return dc.Server + "/projects/" + url.PathEscape(dc.Project) + "/repos/" + url.PathEscape(dc.Slug) + "/commits/" + r.Commit
	}
	return "https://bitbucket.org/" + url.PathEscape(r.Cloud.Workspace) + "/" + url.PathEscape(r.Cloud.Slug) + "/commits/" + r.Commit
}

// defaultName is the name GitLab's jobs give a status. Posted by hand with
// only a key (no CI_PROJECT_PATH), the project path is read back from a
// default-shaped key, so the status keeps its name; any other key names
// itself.
func defaultName(e Env, key string) string {
	path := e.ProjectPath
	if path == "" && e.StatusKey != "" {
		p, ok := strings.CutPrefix(e.StatusKey, statuskey.Prefix)
		if !ok || p == "" {
			return key
		}
		path = p
	}
	return pipeline.Name(path, e.PipelineIID)
}

// text returns the override, or the default; either is cut to Bitbucket's
// limit, and an override that had to be cut is reported.
func text(r *Run, variable, override, fallback string) string {
	if override == "" {
		return pipeline.Cut(fallback, pipeline.MaxText)
	}
	if len(override) > pipeline.MaxText {
		r.Notices = append(r.Notices, fmt.Sprintf("%s is %d bytes, over Bitbucket's limit of %d: it is cut", variable, len(override), pipeline.MaxText))
	}
	return pipeline.Cut(override, pipeline.MaxText)
}

// checkServerURL allows https, and plain http only to a loopback host, so a
// credential never crosses a network in clear.
func checkServerURL(variable, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%s is %q, not an absolute https URL: set it like https://bitbucket.example.com", variable, redactURL(raw))
	}
	if u.User != nil {
		return fmt.Errorf("%s carries a user name or password in the URL (%s): remove it; credentials go in BITBUCKET_USERNAME and BITBUCKET_ACCESS_TOKEN", variable, redactURL(raw))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s is %q: remove the query or fragment; give the base URL only", variable, raw)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%s is %q, plain http, which would send the credential across the network in clear: use https "+
			"(plain http is accepted only for a loopback host, as in tests)", variable, raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkLink checks the status URL as Bitbucket will: absolute, at most 450 bytes.
func checkLink(variable, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%s is %q, not an absolute http(s) URL, which Bitbucket rejects: set BITBUCKET_STATUS_URL to the page the status should link to",
			variable, shorten(redactURL(raw)))
	}
	if len(raw) > maxURL {
		return fmt.Errorf("%s is %d bytes, over Bitbucket's limit of %d for a status URL: set BITBUCKET_STATUS_URL to a shorter link", variable, len(raw), maxURL)
	}
	return nil
}

// CheckLink says why Bitbucket would refuse raw as a status's link (Cloud:
// cloud is true), naming it as what; nil when it would take it.
func CheckLink(what, raw string, cloud bool) error {
	if err := checkLink(what, raw); err != nil {
		return err
	}
	if cloud {
		return checkCloudLinkHost(what, raw)
	}
	return nil
}

// checkCloudLinkHost catches what Bitbucket Cloud would refuse with
// "400 url: Enter a valid URL.": a host name of one label, such as the
// internal name a self-managed GitLab may have (http://gitlab:8080/...).
// Data Center takes such links. An IP address and localhost pass.
func checkCloudLinkHost(variable, raw string) error {
	u, _ := url.Parse(raw) // checkLink has parsed it
	host := strings.TrimSuffix(u.Hostname(), ".")
	if strings.Contains(host, ".") || net.ParseIP(host) != nil || strings.EqualFold(host, "localhost") {
		return nil
	}
	fix := "set BITBUCKET_STATUS_URL to a link with a fully qualified host name"
	if strings.HasPrefix(variable, "CI_") {
		fix += ", or give GitLab a fully qualified external URL (external_url in /etc/gitlab/gitlab.rb), from which it makes " + variable
	}
	return fmt.Errorf("%s is %q, whose host %q is a single-label name, which Bitbucket Cloud rejects (400 url: Enter a valid URL.): %s",
		variable, shorten(redactURL(raw)), host, fix)
}

// redactURL hides a password in a URL a user pasted, and anything that does
// not parse is shown only by its length.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") {
			return fmt.Sprintf("(%d bytes, not shown: it may hold a password)", len(raw))
		}
		return raw
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		return u.Redacted()
	}
	return raw
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

func shorten(s string) string { return pipeline.Cut(s, 80) }

// pick is a value and the name of where it came from.
type pick struct{ value, from string }

func first(picks ...pick) pick {
	for _, p := range picks {
		if p.value != "" {
			return p
		}
	}
	return pick{}
}

// CheckBaseURL allows an absolute https URL without credentials, and plain
// http only to a loopback host.
func CheckBaseURL(variable, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil {
		shown := "(not shown: it does not parse)"
		if err == nil {
			shown = u.Redacted()
		}
		return fmt.Errorf("%s is %q: give an absolute https URL without credentials", variable, shown)
	}
	host := u.Hostname()
	if u.Scheme == "http" && host != "localhost" && !strings.HasPrefix(host, "127.") && host != "::1" {
		return fmt.Errorf("%s is %q, plain http, which would send a token across the network in clear: use https (plain http only for a loopback host)", variable, raw)
	}
	return nil
}
