// Package config reads every setting from the environment into one struct,
// checks it, and resolves it into a Run: the server and repository, the
// commit, the credential and the status to post. Errors name the variable to
// change, and never quote a secret.
package config

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/sethvargo/go-envconfig"
)

// Env is the whole configuration: every variable the program reads, with
// what it means. The --help text is generated from the help tags.
type Env struct {
	AccessToken       string `env:"BITBUCKET_ACCESS_TOKEN" help:"The secret: an access token (repository, project or workspace; sent as Bearer) or, with BITBUCKET_USERNAME, an API token. Mask it in GitLab."`
	Username          string `env:"BITBUCKET_USERNAME" help:"Send BITBUCKET_ACCESS_TOKEN with HTTP Basic as this user; for a Bitbucket Cloud API token, your Atlassian account email. Unset: Bearer."`
	OAuthClientID     string `env:"BITBUCKET_OAUTH_CLIENT_ID" help:"An OAuth consumer's key (Bitbucket Cloud): fetch a token with the client-credentials grant instead of BITBUCKET_ACCESS_TOKEN."`
	OAuthClientSecret string `env:"BITBUCKET_OAUTH_CLIENT_SECRET" help:"The OAuth consumer's secret. Mask it in GitLab."`
	OAuthTokenURL     string `env:"BITBUCKET_OAUTH_TOKEN_URL, default=https://bitbucket.org/site/oauth2/access_token" help:"Where the OAuth token is fetched."`

	Namespace  string `env:"BITBUCKET_NAMESPACE" help:"Bitbucket Cloud workspace. Default: from BITBUCKET_REPO_URL, else CI_PROJECT_NAMESPACE."`
	Repository string `env:"BITBUCKET_REPOSITORY" help:"Repository slug. Default: from BITBUCKET_REPO_URL, else CI_PROJECT_NAME."`
	Project    string `env:"BITBUCKET_PROJECT" help:"Bitbucket Data Center project key. Default: from BITBUCKET_REPO_URL."`
	RepoURL    string `env:"BITBUCKET_REPO_URL" help:"The repository's clone URL (https or ssh form), from which the workspace or project and the slug are taken; a host other than bitbucket.org means Data Center."`
	APIURL     string `env:"BITBUCKET_API_URL, default=https://api.bitbucket.org/2.0" help:"Bitbucket Cloud's API base URL. Must be https (plain http only for a loopback host)."`
	ServerURL  string `env:"BITBUCKET_SERVER_URL" help:"A Bitbucket Data Center base URL, context path included (https://git.example.com/bitbucket); selects Data Center."`

	StatusKey         string `env:"BITBUCKET_STATUS_KEY" help:"The status key. Default: gitlab/CI_PROJECT_PATH, the same for a project's running, success and failure reports; a key over Bitbucket's limit is shortened with a hash."`
	StatusName        string `env:"BITBUCKET_STATUS_NAME" help:"The status name. Default: GitLab: CI_PROJECT_PATH #CI_PIPELINE_IID; without CI_PROJECT_PATH, the same from a gitlab/... BITBUCKET_STATUS_KEY, else the key."`
	StatusDescription string `env:"BITBUCKET_STATUS_DESCRIPTION" help:"The status description. Default: the pipeline, its ref and its state."`
	StatusURL         string `env:"BITBUCKET_STATUS_URL" help:"The link from Bitbucket. Default: CI_PIPELINE_URL, else CI_JOB_URL, else CI_PROJECT_URL, else (outside GitLab CI) the commit's page on Bitbucket. Bitbucket Cloud refuses a single-label host (http://gitlab:8080/...)."`
	Timeout           string `env:"BITBUCKET_STATUS_TIMEOUT, default=60s" help:"The whole run's time budget, retries included (a Go duration: 90s, 2m)."`
	DryRun            string `env:"BITBUCKET_STATUS_DRY_RUN" help:"true: print the request instead of sending it (as --dry-run)."`
	JUnit             string `env:"BITBUCKET_JUNIT" help:"report: JUnit XML files to publish as a test report, as space-separated globs (** matches any folders); the final status on Data Center 7.4+ carries their counts."`
	CodeQuality       string `env:"BITBUCKET_CODE_QUALITY" help:"report: GitLab Code Quality (CodeClimate JSON) files to publish as a code quality report, as space-separated globs."`
	CodeQualityFailOn string `env:"BITBUCKET_CODE_QUALITY_FAIL_ON, default=major" help:"report: the code quality report fails on a finding of this severity or above: info, minor, major, critical or blocker."`
	ReportKey         string `env:"BITBUCKET_REPORT_KEY" help:"report: the start of the reports' keys, followed by ~tests and ~code-quality. Default: gitlab~<CI_PROJECT_PATH with / as ~>; keys over 50 characters are shortened with a hash."`
	ReportStrict      string `env:"BITBUCKET_REPORT_STRICT" help:"report: true: a report that cannot be read or published fails the job (exit 1). Default: a warning, exit 0."`
	BuildStatus       string `env:"BUILD_STATUS" help:"The state, when no STATE argument is given (the old build_status script's variable)."`

	CommitSHA         string `env:"CI_COMMIT_SHA" help:"GitLab: the commit. Unset (outside GitLab CI): HEAD of the git checkout, with its branch and origin remote."`
	CommitRefName     string `env:"CI_COMMIT_REF_NAME" help:"GitLab: the branch or tag; the branch becomes the status's refname."`
	CommitBranch      string `env:"CI_COMMIT_BRANCH" help:"GitLab: the branch, preferred to CI_COMMIT_REF_NAME."`
	CommitTag         string `env:"CI_COMMIT_TAG" help:"GitLab: the tag of a tag pipeline (then no refname is sent to Cloud)."`
	ProjectPath       string `env:"CI_PROJECT_PATH" help:"GitLab: the project's path, which makes the default key and name."`
	ProjectNamespace  string `env:"CI_PROJECT_NAMESPACE" help:"GitLab: the default workspace (not for a subgroup)."`
	ProjectName       string `env:"CI_PROJECT_NAME" help:"GitLab: the default repository slug."`
	ProjectURL        string `env:"CI_PROJECT_URL" help:"GitLab: the last fallback for the status URL."`
	PipelineID        string `env:"CI_PIPELINE_ID" help:"GitLab: the pipeline's instance-wide ID, in the description."`
	PipelineIID       string `env:"CI_PIPELINE_IID" help:"GitLab: the pipeline's number in the project (#IID), in the name; Data Center's buildNumber."`
	PipelineURL       string `env:"CI_PIPELINE_URL" help:"GitLab: the pipeline page, the status URL."`
	PipelineCreatedAt string `env:"CI_PIPELINE_CREATED_AT" help:"GitLab: when the pipeline started; gives Data Center's duration."`
	PipelineSource    string `env:"CI_PIPELINE_SOURCE" help:"GitLab: what made the pipeline; in a child pipeline (parent_pipeline) nothing is posted unless BITBUCKET_STATUS_KEY is set, so the parent's status is never overwritten."`
	ProjectDir        string `env:"CI_PROJECT_DIR" help:"GitLab: the checkout; report paths are made relative to it. Default: the working directory."`
	JobID             string `env:"CI_JOB_ID" help:"GitLab: the job's ID."`
	JobName           string `env:"CI_JOB_NAME" help:"GitLab: the job's name (never part of the key)."`
	JobURL            string `env:"CI_JOB_URL" help:"GitLab: the job page, the status URL when there is no pipeline URL."`
}

// Load fills an Env from env, a copy of the process environment.
func Load(ctx context.Context, env map[string]string) (Env, error) {
	var e Env
	if err := Process(ctx, env, &e); err != nil {
		return Env{}, err
	}
	return e, nil
}

// Environ returns the process environment as a map, for Load and Process.
func Environ() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// Process fills target, a pointer to a struct with env tags, from env. A
// variable set to the empty string counts as unset, so its default applies:
// GitLab defines variables empty more often than people mean "empty".
func Process(ctx context.Context, env map[string]string, target any) error {
	lookup := envconfig.LookuperFunc(func(key string) (string, bool) {
		v, ok := env[key]
		return v, ok && v != ""
	})
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: target, Lookuper: lookup}); err != nil {
		return fmt.Errorf("reading the environment: %w", err)
	}
	return nil
}

// Variable is one documented environment variable.
type Variable struct {
	Name    string
	Default string
	Help    string
}

// Variables lists every variable Env reads, in its order.
func Variables() []Variable { return VariablesOf(Env{}) }

// VariablesOf lists the variables a struct with env and help tags reads.
func VariablesOf(v any) []Variable {
	t := reflect.TypeOf(v)
	vars := make([]Variable, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		v := Variable{Help: f.Tag.Get("help")}
		for j, part := range strings.Split(f.Tag.Get("env"), ",") {
			part = strings.TrimSpace(part)
			if j == 0 {
				v.Name = part
			} else if d, ok := strings.CutPrefix(part, "default="); ok {
				v.Default = d
			}
		}
		vars = append(vars, v)
	}
	return vars
}
