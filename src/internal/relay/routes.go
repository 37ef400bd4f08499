package relay

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
)

// RoutesFile is the routes file's format: which GitLab projects report to
// which Bitbucket repository, with which credential. Secrets are never in
// it: a credential names the environment variable or file that holds each.
type RoutesFile struct {
	Credentials map[string]CredentialSpec `yaml:"credentials"`
	Routes      []RouteSpec               `yaml:"routes"`
}

// CredentialSpec names where a credential's parts are.
type CredentialSpec struct {
	// TokenEnv or TokenFile holds an access token, API token or password.
	TokenEnv  string `yaml:"token_env"`
	TokenFile string `yaml:"token_file"`
	// Username sends the token with HTTP Basic (an API token's account
	// email; a Data Center user). Not a secret.
	Username string `yaml:"username"`
	// ClientID and ClientSecretEnv or ClientSecretFile are a Cloud OAuth
	// consumer's.
	ClientID         string `yaml:"client_id"`
	ClientSecretEnv  string `yaml:"client_secret_env"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// MirrorWorkspaces (Cloud) and MirrorProjects (Data Center project
	// keys, on BITBUCKET_SERVER_URL) are where a project's pull mirror may
	// lead this credential. Empty: nowhere, so a GitLab user who can create
	// a project cannot make the relay post to a repository they chose.
	MirrorWorkspaces []string `yaml:"mirror_workspaces"`
	MirrorProjects   []string `yaml:"mirror_projects"`
}

// source says where the credential's secret comes from, never the secret.
func (c CredentialSpec) source() string {
	switch {
	case c.ClientID != "":
		return "OAuth consumer " + c.ClientID
	case c.TokenEnv != "":
		return "its token from " + c.TokenEnv
	}
	return "its token from " + c.TokenFile
}

// isZero reports whether nothing is set.
func (c CredentialSpec) isZero() bool {
	return c.TokenEnv == "" && c.TokenFile == "" && c.Username == "" && c.ClientID == "" && c.ClientSecretEnv == "" &&
		c.ClientSecretFile == "" && len(c.MirrorWorkspaces) == 0 && len(c.MirrorProjects) == 0
}

// RouteSpec is one route. Placeholders in cloud, repository, key and name:
// {1}..{9} (what each * or ** of project matched), {path}, {namespace},
// {name}; key and name also take {source} and {ref} (the pipeline's source
// and branch or tag), and name {iid}.
type RouteSpec struct {
	// Project is a GitLab project path pattern: * is one path segment, a
	// final ** is one or more.
	Project string `yaml:"project"`
	// Cloud is a Bitbucket Cloud "workspace/slug".
	Cloud string `yaml:"cloud"`
	// DataCenter is a Data Center base URL; Repository is "PROJECT/slug".
	DataCenter string `yaml:"data_center"`
	Repository string `yaml:"repository"`
	// Credential names one of Credentials; empty: the BITBUCKET_* variables.
	Credential string `yaml:"credential"`
	Key        string `yaml:"key"`
	Name       string `yaml:"name"`
	// ChildPipelines is what a child pipeline (trigger: include:) of these
	// projects posts: "skip" (the default: its parent's status covers it)
	// or "own_status" (a status of its own, keyed by its trigger job).
	ChildPipelines string `yaml:"child_pipelines"`
	// TestReports: false publishes no test report for these projects (with
	// GITLAB_TOKEN they are on by default).
	TestReports *bool `yaml:"test_reports"`
	// Skip: never report these projects.
	Skip bool `yaml:"skip"`
}

// The values of child_pipelines.
const (
	childSkip      = "skip"
	childOwnStatus = "own_status"
)

// Route is a checked RouteSpec.
type route struct {
	RouteSpec
	index   int
	pattern []string
}

// Destination is where one project's statuses go.
type Destination struct {
	Cloud      *bitbucket.Cloud
	DataCenter *bitbucket.DataCenter
	Credential string
	// Key and Name override the default key and name, when a route sets them.
	Key, Name string
	// Via says what chose it, for logs: "route 2 (platform/**)".
	Via string
	// ChildPipelines is the route's child_pipelines ("" is skip).
	ChildPipelines string `json:",omitempty"`
	// NoTestReports: the route says test_reports: false.
	NoTestReports bool `json:",omitempty"`
}

// Server is the Bitbucket server the destination is on: Cloud's API or a
// Data Center base URL. Limits of posts in flight and breakers are per
// server.
func (d Destination) Server() string {
	if d.DataCenter != nil {
		return d.DataCenter.Server
	}
	return d.Cloud.API
}

// Where names the repository.
func (d Destination) Where() string {
	if d.DataCenter != nil {
		return d.DataCenter.Where()
	}
	return d.Cloud.Where()
}

// ParseRoutes reads a routes file strictly: an unknown key is an error, so
// a typo never silently sends statuses elsewhere.
func ParseRoutes(data []byte) (*RoutesFile, error) {
	var f RoutesFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	return &f, nil
}

// checkRoutes validates every route against the credentials it names.
func checkRoutes(f *RoutesFile) ([]route, error) {
	var out []route
	for i, r := range f.Routes {
		where := fmt.Sprintf("route %d (project %q)", i+1, r.Project)
		if r.Project == "" {
			return nil, fmt.Errorf("route %d: project is missing: give a GitLab project path pattern such as group/* or group/**", i+1)
		}
		pattern := strings.Split(strings.Trim(r.Project, "/"), "/")
		for j, seg := range pattern {
			if seg == "" || (seg == "**" && j != len(pattern)-1) || (strings.Contains(seg, "*") && seg != "*" && seg != "**") {
				return nil, fmt.Errorf("%s: a pattern segment is a name, * (one segment) or a final ** (the rest)", where)
			}
		}
		targets := 0
		for _, set := range []bool{r.Cloud != "", r.DataCenter != "", r.Skip} {
			if set {
				targets++
			}
		}
		switch {
		case targets != 1:
			return nil, fmt.Errorf("%s: set exactly one of cloud (workspace/slug), data_center (with repository) or skip", where)
		case r.DataCenter != "" && r.Repository == "":
			return nil, fmt.Errorf("%s: data_center needs repository: PROJECT/slug", where)
		case r.Cloud != "" && r.Repository != "":
			return nil, fmt.Errorf("%s: repository is for data_center; for Bitbucket Cloud, cloud is workspace/slug", where)
		case r.Credential != "" && f.Credentials[r.Credential].isZero():
			return nil, fmt.Errorf("%s: credential %q is not defined under credentials", where, r.Credential)
		case r.ChildPipelines != "" && r.ChildPipelines != childSkip && r.ChildPipelines != childOwnStatus:
			return nil, fmt.Errorf("%s: child_pipelines is %q: use skip (the default) or own_status", where, r.ChildPipelines)
		}
		out = append(out, route{RouteSpec: r, index: i + 1, pattern: pattern})
	}
	return out, nil
}

// match returns what each wildcard matched, or false.
func (r route) match(path string) ([]string, bool) {
	segs := strings.Split(path, "/")
	var captures []string
	for i, p := range r.pattern {
		switch {
		case p == "**":
			if i >= len(segs) {
				return nil, false
			}
			return append(captures, strings.Join(segs[i:], "/")), true
		case i >= len(segs):
			return nil, false
		case p == "*":
			captures = append(captures, segs[i])
		case !strings.EqualFold(p, segs[i]):
			return nil, false
		}
	}
	return captures, len(segs) == len(r.pattern)
}

// placeholders are the values a route's templates take for a project path:
// {path}, {namespace}, {name} and {1}..{9}, what each wildcard matched.
func placeholders(path string, captures []string) map[string]string {
	i := strings.LastIndexByte(path, '/')
	values := map[string]string{"path": path, "namespace": path[:max(i, 0)], "name": path[i+1:]}
	for n, c := range captures {
		values[strconv.Itoa(n+1)] = c
	}
	return values
}

// withPipeline adds the placeholders of one pipeline, which key and name
// take besides the project's: {iid}, {source} (push, schedule, web,
// trigger, ...) and {ref} (its branch or tag).
func withPipeline(values map[string]string, p gitlab.Pipeline) map[string]string {
	out := maps.Clone(values)
	out["source"], out["ref"], out["iid"] = p.Source, p.Ref, strconv.FormatInt(p.IID, 10)
	return out
}

// expand fills a template's placeholders; an unknown one stays as it is.
func expand(template string, values map[string]string) string {
	var b strings.Builder
	for {
		open := strings.IndexByte(template, '{')
		if open < 0 {
			b.WriteString(template)
			return b.String()
		}
		end := strings.IndexByte(template[open:], '}')
		if end < 0 {
			b.WriteString(template)
			return b.String()
		}
		name := template[open+1 : open+end]
		b.WriteString(template[:open])
		if v, ok := values[name]; ok {
			b.WriteString(v)
		} else {
			b.WriteString(template[open : open+end+1])
		}
		template = template[open+end+1:]
	}
}

// readSecret reads a secret from an environment variable or a file, trimmed
// of the line break files end with.
func readSecret(env func(string) string, varName, file, what string) (string, error) {
	var v string
	switch {
	case varName != "" && file != "":
		return "", fmt.Errorf("%s: set %s_env or %s_file, not both", what, what, what)
	case varName != "":
		if v = env(varName); v == "" {
			return "", fmt.Errorf("%s: the environment variable %s is not set", what, varName)
		}
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %v", what, err)
		}
		v = string(data)
	default:
		return "", nil
	}
	v = strings.TrimSpace(v)
	if strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return "", fmt.Errorf("%s contains a line break or another control character: keep only the secret", what)
	}
	return v, nil
}

// credentialAuth builds the Auth a credential spec names.
func credentialAuth(name string, c CredentialSpec, env func(string) string, tokenURL string) (bitbucket.Auth, error) {
	where := fmt.Sprintf("credential %q", name)
	token, err := readSecret(env, c.TokenEnv, c.TokenFile, "token")
	if err != nil {
		return bitbucket.Auth{}, fmt.Errorf("%s: %w", where, err)
	}
	secret, err := readSecret(env, c.ClientSecretEnv, c.ClientSecretFile, "client_secret")
	if err != nil {
		return bitbucket.Auth{}, fmt.Errorf("%s: %w", where, err)
	}
	switch {
	case c.ClientID != "" && token != "":
		return bitbucket.Auth{}, fmt.Errorf("%s: give either a token or an OAuth client_id, not both", where)
	case c.ClientID != "" && secret == "":
		return bitbucket.Auth{}, fmt.Errorf("%s: client_id needs client_secret_env or client_secret_file", where)
	case c.ClientID != "":
		return bitbucket.Auth{Kind: bitbucket.OAuth, ClientID: c.ClientID, ClientSecret: secret, TokenURL: tokenURL}, nil
	case token == "":
		return bitbucket.Auth{}, fmt.Errorf("%s: set token_env or token_file (or client_id and a client secret)", where)
	case c.Username != "":
		return bitbucket.Auth{Kind: bitbucket.Basic, Username: c.Username, Token: token}, nil
	}
	return bitbucket.Auth{Kind: bitbucket.Bearer, Token: token}, nil
}
