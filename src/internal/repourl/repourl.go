// Package repourl reads the URL of a Bitbucket repository (a clone URL in its
// https or ssh form, or the address of its page) and tells which server holds
// it and under which workspace or project and slug.
package repourl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// CloudHost is Bitbucket Cloud's host name; any other host is a Data Center server.
const CloudHost = "bitbucket.org"

// Repo is a repository named by a URL.
type Repo struct {
	// DataCenter is true for a self-hosted server, false for Bitbucket Cloud.
	DataCenter bool
	// ServerURL is a Data Center server's base URL, context path included,
	// e.g. "https://git.example.com/bitbucket". Empty for Cloud.
	ServerURL string
	// ServerGuessed is true when ServerURL came from an ssh URL, which gives
	// the host but neither the web port nor the context path.
	ServerGuessed bool
	// Owner is the Cloud workspace or the Data Center project key.
	Owner string
	// Slug is the repository slug.
	Slug string
}

// Forms lists the accepted forms, for error messages.
const Forms = "https://bitbucket.org/WORKSPACE/REPO.git, git@bitbucket.org:WORKSPACE/REPO.git, " +
	"https://HOST[/CONTEXT]/scm/PROJECT/REPO.git or ssh://git@HOST:7999/PROJECT/REPO.git"

// Parse reads raw, which may carry a user name but never needs a password.
func Parse(raw string) (Repo, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return Repo{}, errors.New("the URL is empty")
	}
	if !strings.Contains(raw, "://") {
		return parseSCP(raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Repo{}, fmt.Errorf("not a URL (%s): use one of the forms %s", describeURLError(err), Forms)
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return Repo{}, fmt.Errorf("the URL has no host: use one of the forms %s", Forms)
	}
	segments := splitPath(u.Path)
	if host == CloudHost || host == "www."+CloudHost {
		switch u.Scheme {
		case "https", "http", "ssh", "git+ssh":
		default:
			return Repo{}, fmt.Errorf("unsupported scheme %q: use one of the forms %s", u.Scheme, Forms)
		}
		return cloud(segments)
	}
	switch u.Scheme {
	case "https", "http":
		return dataCenterHTTP(u, segments)
	case "ssh", "git+ssh":
		if len(segments) != 2 {
			return Repo{}, fmt.Errorf("a Data Center ssh URL has the form ssh://git@HOST:PORT/PROJECT/REPO.git; this one has %d path segments", len(segments))
		}
		return dataCenter("https://"+hostForURL(u.Hostname()), true, segments[0], segments[1])
	}
	return Repo{}, fmt.Errorf("unsupported scheme %q: use one of the forms %s", u.Scheme, Forms)
}

// parseSCP reads git's scp-like syntax, user@host:path, which Bitbucket Cloud
// shows as its ssh clone URL.
func parseSCP(raw string) (Repo, error) {
	at := strings.LastIndexByte(raw, '@')
	colon := strings.IndexByte(raw[at+1:], ':')
	if colon < 0 {
		return Repo{}, fmt.Errorf("not a URL: use one of the forms %s", Forms)
	}
	host := strings.ToLower(raw[at+1 : at+1+colon])
	if host != CloudHost && host != "www."+CloudHost {
		return Repo{}, fmt.Errorf("the scp-like form HOST:PATH is read only for bitbucket.org; for Data Center use ssh://git@%s:7999/PROJECT/REPO.git or the https clone URL", host)
	}
	return cloud(splitPath(raw[at+1+colon+1:]))
}

func cloud(segments []string) (Repo, error) {
	if len(segments) < 2 {
		return Repo{}, fmt.Errorf("a Bitbucket Cloud URL names WORKSPACE/REPO; this one has %d path segment(s)", len(segments))
	}
	slug := strings.TrimSuffix(segments[1], ".git")
	return Repo{Owner: segments[0], Slug: slug}, validate(segments[0], slug)
}

// dataCenterHTTP reads a clone URL (.../scm/PROJECT/REPO.git) or a page
// address (.../projects/PROJECT/repos/REPO/...); what stands before "scm" or
// "projects" is the server's context path.
func dataCenterHTTP(u *url.URL, segments []string) (Repo, error) {
	base := u.Scheme + "://" + u.Host
	for i, s := range segments {
		switch {
		case s == "scm" && len(segments) == i+3:
			return dataCenter(base+joinPath(segments[:i]), false, segments[i+1], segments[i+2])
		case s == "projects" && len(segments) >= i+4 && segments[i+2] == "repos":
			return dataCenter(base+joinPath(segments[:i]), false, segments[i+1], segments[i+3])
		case (s == "users") && len(segments) >= i+4 && segments[i+2] == "repos":
			return dataCenter(base+joinPath(segments[:i]), false, "~"+segments[i+1], segments[i+3])
		}
	}
	return Repo{}, fmt.Errorf("a Data Center https URL has the form https://HOST[/CONTEXT]/scm/PROJECT/REPO.git; %q has no /scm/PROJECT/REPO.git part", u.Path)
}

func dataCenter(server string, guessed bool, project, slug string) (Repo, error) {
	slug = strings.TrimSuffix(slug, ".git")
	// Project keys are upper case in Data Center's REST API; ssh URLs show them
	// in lower case. A personal project "~user" becomes "~USER" the same way.
	return Repo{DataCenter: true, ServerURL: server, ServerGuessed: guessed, Owner: strings.ToUpper(project), Slug: slug},
		validate(project, slug)
}

// validate checks owner and slug (without ".git").
func validate(owner, slug string) error {
	if owner == "" || slug == "" || owner == "." || owner == ".." || slug == "." || slug == ".." {
		return fmt.Errorf("the URL does not name an owner and a repository: use one of the forms %s", Forms)
	}
	return nil
}

func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func joinPath(segments []string) string {
	if len(segments) == 0 {
		return ""
	}
	return "/" + strings.Join(segments, "/")
}

func hostForURL(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// describeURLError drops the URL net/url repeats in its errors: a pasted URL
// may carry a password.
func describeURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "unreadable"
}
