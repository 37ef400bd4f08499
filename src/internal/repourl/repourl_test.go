package repourl

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		raw  string
		want Repo
	}{
		{"https://bitbucket.org/acme/widgets.git", Repo{Owner: "acme", Slug: "widgets"}},
		{"https://jdoe@bitbucket.org/acme/widgets.git", Repo{Owner: "acme", Slug: "widgets"}},
		{"https://bitbucket.org/acme/widgets", Repo{Owner: "acme", Slug: "widgets"}},
		{"https://bitbucket.org/acme/widgets/src/main/README.md", Repo{Owner: "acme", Slug: "widgets"}},
		{"git@bitbucket.org:acme/widgets.git", Repo{Owner: "acme", Slug: "widgets"}},
		{"ssh://git@bitbucket.org/acme/widgets.git", Repo{Owner: "acme", Slug: "widgets"}},
		{"  https://BITBUCKET.ORG/acme/widgets.git\n", Repo{Owner: "acme", Slug: "widgets"}},
		{"https://git.example.com/scm/PROJ/widgets.git",
			Repo{DataCenter: true, ServerURL: "https://git.example.com", Owner: "PROJ", Slug: "widgets"}},
		{"https://jdoe@git.example.com:8443/bitbucket/scm/proj/widgets.git",
			Repo{DataCenter: true, ServerURL: "https://git.example.com:8443/bitbucket", Owner: "PROJ", Slug: "widgets"}},
		{"https://git.example.com/bitbucket/projects/PROJ/repos/widgets/browse",
			Repo{DataCenter: true, ServerURL: "https://git.example.com/bitbucket", Owner: "PROJ", Slug: "widgets"}},
		{"https://git.example.com/users/jdoe/repos/dotfiles/browse",
			Repo{DataCenter: true, ServerURL: "https://git.example.com", Owner: "~JDOE", Slug: "dotfiles"}},
		{"ssh://git@git.example.com:7999/proj/widgets.git",
			Repo{DataCenter: true, ServerURL: "https://git.example.com", ServerGuessed: true, Owner: "PROJ", Slug: "widgets"}},
		{"ssh://git@git.example.com:7999/~jdoe/dotfiles.git",
			Repo{DataCenter: true, ServerURL: "https://git.example.com", ServerGuessed: true, Owner: "~JDOE", Slug: "dotfiles"}},
	}
	for _, c := range cases {
		got, err := Parse(c.raw)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v\nwant %+v", c.raw, got, err, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"":                                   "the URL is empty",
		"https://bitbucket.org/acme":         "a Bitbucket Cloud URL names WORKSPACE/REPO; this one has 1 path segment(s)",
		"git@github.com:acme/widgets.git":    "the scp-like form HOST:PATH is read only for bitbucket.org; for Data Center use ssh://git@github.com:7999/PROJECT/REPO.git or the https clone URL",
		"https://github.com/acme/widgets":    `a Data Center https URL has the form https://HOST[/CONTEXT]/scm/PROJECT/REPO.git; "/acme/widgets" has no /scm/PROJECT/REPO.git part`,
		"ftp://bitbucket.org/acme/widgets":   `unsupported scheme "ftp": use one of the forms ` + Forms,
		"ssh://git@git.example.com:7999/x":   "a Data Center ssh URL has the form ssh://git@HOST:PORT/PROJECT/REPO.git; this one has 1 path segments",
		"widgets":                            "not a URL: use one of the forms " + Forms,
		"https://bitbucket.org/acme/.git":    "the URL does not name an owner and a repository: use one of the forms " + Forms,
		"https://:pw@/x":                     "the URL has no host: use one of the forms " + Forms,
		"https://user:s3cret@bitbucket.org%": "not a URL (invalid URL escape \"%\"): use one of the forms " + Forms,
	}
	for raw, want := range cases {
		_, err := Parse(raw)
		if err == nil || err.Error() != want {
			t.Errorf("Parse(%q) error = %v\nwant %s", raw, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Parse(%q) error shows the password: %v", raw, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"https://bitbucket.org/a/b.git", "git@bitbucket.org:a/b.git",
		"https://h/ctx/scm/P/r.git", "ssh://git@h:7999/p/r.git", "https://h/projects/P/repos/r", "x@y:z", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r, err := Parse(raw)
		if err != nil {
			return
		}
		if r.Owner == "" || r.Slug == "" || strings.Contains(r.Owner+r.Slug, "/") {
			t.Fatalf("Parse(%q) = %+v: an owner or slug that is empty or holds a slash", raw, r)
		}
		if r.DataCenter != (r.ServerURL != "") {
			t.Fatalf("Parse(%q) = %+v: a Data Center repository needs a server URL, Cloud none", raw, r)
		}
	})
}
