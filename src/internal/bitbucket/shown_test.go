package bitbucket

import (
	"context"
	"strings"
	"testing"

	"github.com/jarcoal/httpmock"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
)

func TestShownCloud(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var s script
	s.on(mock, "GET", cloudStatusURL+"/gitlab%2Facme%2Fwidgets",
		reply{code: 200, body: `{"type":"build","key":"gitlab/acme/widgets","state":"INPROGRESS","url":"https://gitlab.example.com/p/1","description":"x"}`},
		reply{code: 404, body: `{"type":"error","error":{"message":"Commit status not found"}}`})
	c := newClient(mock, Auth{Kind: Bearer, Token: "t"})
	sh, err := cloud.Shown(context.Background(), c, sha, "gitlab/acme/widgets")
	if err != nil || sh != (Shown{Found: true, State: "INPROGRESS", Description: "x", URL: "https://gitlab.example.com/p/1"}) {
		t.Fatalf("%+v %v", sh, err)
	}
	if got := s.requests(); len(got) != 1 || got[0].Method != "GET" || got[0].Authorization != "Bearer t" {
		t.Fatalf("%+v", got)
	}
	if sh, err := cloud.Shown(context.Background(), c, sha, "gitlab/acme/widgets"); err != nil || sh.Found {
		t.Fatalf("a 404 is no status: %+v %v", sh, err)
	}
}

func TestShownDataCenterAndLegacy(t *testing.T) {
	t.Parallel()
	dc := DataCenter{Server: "https://git.example.com/bb", Project: "PROJ", Slug: "widgets"}
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder("GET", "https://git.example.com/bb/rest/api/latest/projects/PROJ/repos/widgets/commits/"+sha+"/builds?key=gitlab%2Facme%2Fwidgets",
		httpmock.NewStringResponder(200, `{"key":"gitlab/acme/widgets","state":"CANCELLED","url":"https://gitlab.example.com/p/1"}`))
	c := newClient(mock, Auth{Kind: Bearer, Token: "t"})
	sh, err := dc.Shown(context.Background(), c, sha, "gitlab/acme/widgets")
	if err != nil || !sh.Shows(Status{State: state.Stopped, URL: "https://gitlab.example.com/p/1"}) {
		t.Fatalf("%+v %v", sh, err)
	}
	// Before 7.14: Jersey's 404 for the route, then the legacy list.
	old := httpmock.NewMockTransport()
	old.RegisterResponder("GET", "=~/rest/api/latest/", httpmock.NewStringResponder(404, `{"message":"null for uri: x","status-code":404}`))
	old.RegisterResponder("GET", "https://git.example.com/bb/rest/build-status/1.0/commits/"+sha+"?limit=100",
		httpmock.NewStringResponder(200, `{"size":2,"values":[{"key":"other","state":"SUCCESSFUL","url":"u"},`+
			`{"key":"gitlab/acme/widgets","state":"FAILED","description":"Canceled: Pipeline #7 on main was canceled or skipped","url":"https://gitlab.example.com/p/1"}]}`))
	sh, err = dc.Shown(context.Background(), newClient(old, Auth{Kind: Bearer, Token: "t"}), sha, "gitlab/acme/widgets")
	if err != nil || !sh.Found || !sh.Shows(Status{State: state.Stopped, URL: "https://gitlab.example.com/p/1"}) ||
		sh.Shows(Status{State: state.Failed, URL: "https://gitlab.example.com/p/2"}) {
		t.Fatalf("legacy: %+v %v", sh, err)
	}
	if sh, err := dc.Shown(context.Background(), newClient(old, Auth{Kind: Bearer, Token: "t"}), sha, "nope"); err != nil || sh.Found {
		t.Fatalf("legacy, no such key: %+v %v", sh, err)
	}
	// A missing repository is an error, not "no status".
	missing := httpmock.NewMockTransport()
	missing.RegisterResponder("GET", "=~/builds", httpmock.NewStringResponder(404,
		`{"errors":[{"context":null,"message":"Repository PROJ/widgets does not exist.","exceptionName":"com.atlassian.bitbucket.repository.NoSuchRepositoryException"}]}`))
	if _, err := dc.Shown(context.Background(), newClient(missing, Auth{Kind: Bearer, Token: "t"}), sha, "k"); err == nil {
		t.Fatal("a missing repository read as no status")
	}
}

func TestShows(t *testing.T) {
	t.Parallel()
	s := Status{State: state.Successful, URL: "https://gitlab.example.com/p/2"}
	for sh, want := range map[Shown]bool{
		{Found: true, State: "SUCCESSFUL", URL: "https://gitlab.example.com/p/2"}: true,
		{Found: true, State: "SUCCESSFUL", URL: "https://gitlab.example.com/p/1"}: false, // another pipeline's
		{Found: true, State: "INPROGRESS", URL: "https://gitlab.example.com/p/2"}: false,
		{}: false,
	} {
		if got := sh.Shows(s); got != want {
			t.Errorf("%+v shows %+v: %v", sh, s, got)
		}
	}
}

// TestNamed: the fields a 400 names, from Cloud's fields or, with none,
// from the start of Data Center's message; a text named twice once.
func TestNamed(t *testing.T) {
	t.Parallel()
	hints := map[string]string{"key": "the key", "ref": "the branch", "refname": "the branch", "url": "the link"}
	for _, c := range []struct {
		err  HTTPError
		want string
	}{
		{HTTPError{Fields: map[string]string{"url": "Enter a valid URL.", "key": "too long", "other": "x"}}, "the key|the link"},
		{HTTPError{Fields: map[string]string{"ref": "x", "refname": "y"}}, "the branch"},
		{HTTPError{Message: "url: must be a valid URL"}, "the link"},
		{HTTPError{Message: "something else"}, ""},
	} {
		if got := strings.Join(c.err.Named(hints), "|"); got != c.want {
			t.Errorf("%+v: %q, want %q", c.err, got, c.want)
		}
	}
}
