package bitbucket

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
)

var dc = DataCenter{Server: "https://git.example.com/bitbucket", Project: "PROJ", Slug: "widgets"}

const (
	dcBuildsURL = "https://git.example.com/bitbucket/rest/api/latest/projects/PROJ/repos/widgets/commits/" + sha + "/builds"
	dcLegacyURL = "https://git.example.com/bitbucket/rest/build-status/1.0/commits/" + sha
)

var dcStatus = Status{Key: "gitlab/acme/widgets", State: state.Failed, Name: "GitLab: acme/widgets #7",
	Description: "Pipeline #7 on main failed", URL: "https://gitlab.example.com/p/1", Branch: "main",
	BuildNumber: "7", Duration: 90500 * time.Millisecond}

func TestDataCenterExactRequestPerAuthKind(t *testing.T) {
	t.Parallel()
	const body = `{"key":"gitlab/acme/widgets","state":"FAILED","url":"https://gitlab.example.com/p/1","name":"GitLab: acme/widgets #7",` +
		`"description":"Pipeline #7 on main failed","ref":"refs/heads/main","buildNumber":"7","duration":90500}`
	for _, c := range []struct {
		auth Auth
		want string
	}{
		{Auth{Kind: Bearer, Token: "http-token"}, "Bearer http-token"},
		{Auth{Kind: Basic, Username: "jdoe", Token: "pw"}, "Basic amRvZTpwdw=="},
	} {
		mock := httpmock.NewMockTransport()
		var s script
		s.on(mock, "POST", dcBuildsURL, reply{code: 204})
		posted, err := dc.Post(context.Background(), newClient(mock, c.auth), sha, dcStatus)
		if err != nil || posted.Outcome != "posted" || posted.Notice != "" {
			t.Fatalf("posted = %+v, %v", posted, err)
		}
		want := seen{"POST", dcBuildsURL, c.want, "application/json", "application/json", body}
		if got := s.requests(); len(got) != 1 || got[0] != want {
			t.Errorf("requests = %+v\nwant %+v", got, want)
		}
	}
}

func TestDataCenterCancelledAndTagRef(t *testing.T) {
	t.Parallel()
	req := dc.StatusRequest(sha, Status{Key: "k", State: state.Stopped, URL: "https://x/1", Tag: "v1.2.3"})
	if want := `{"key":"k","state":"CANCELLED","url":"https://x/1","ref":"refs/tags/v1.2.3"}`; string(req.Body) != want {
		t.Errorf("body = %s\nwant %s", req.Body, want)
	}
}

func TestDataCenterFallsBackToLegacyAPI(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var builds, legacy script
	builds.on(mock, "POST", dcBuildsURL, reply{code: 404, body: `<html>Not Found</html>`})
	legacy.on(mock, "POST", dcLegacyURL, reply{code: 204})
	st := dcStatus
	st.State = state.Stopped
	posted, err := dc.Post(context.Background(), newClient(mock, Auth{Kind: Bearer, Token: "t"}), sha, st)
	if err != nil || posted.Notice != LegacyNotice {
		t.Fatalf("posted = %+v, %v", posted, err)
	}
	want := seen{"POST", dcLegacyURL, "Bearer t", "application/json", "application/json",
		`{"state":"FAILED","key":"gitlab/acme/widgets","url":"https://gitlab.example.com/p/1","name":"GitLab: acme/widgets #7",` +
			`"description":"Canceled: Pipeline #7 on main failed"}`}
	if got := legacy.requests(); len(got) != 1 || got[0] != want {
		t.Errorf("legacy requests = %+v\nwant %+v", got, want)
	}
}

func TestDataCenterNoFallbackWhenProjectOrRepoIsMissing(t *testing.T) {
	t.Parallel()
	for _, exception := range []string{"com.atlassian.bitbucket.project.NoSuchProjectException",
		"com.atlassian.bitbucket.repository.NoSuchRepositoryException", "com.atlassian.bitbucket.commit.NoSuchCommitException"} {
		mock := httpmock.NewMockTransport()
		var builds, legacy script
		builds.on(mock, "POST", dcBuildsURL, reply{code: 404,
			body: `{"errors":[{"context":null,"message":"Project PROJ does not exist.","exceptionName":"` + exception + `"}]}`})
		legacy.on(mock, "POST", dcLegacyURL, reply{code: 204})
		_, err := dc.Post(context.Background(), newClient(mock, Auth{Kind: Bearer, Token: "t"}), sha, dcStatus)
		var he *HTTPError
		if !errors.As(err, &he) || he.StatusCode != 404 || he.Exception != exception {
			t.Errorf("%s: err = %v", exception, err)
		}
		if n := len(legacy.requests()); n != 0 {
			t.Errorf("%s: the legacy API was called %d times", exception, n)
		}
	}
}

func TestDataCenterRetryAfter(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var s script
	s.on(mock, "POST", dcBuildsURL, reply{code: 429, header: http.Header{"Retry-After": {"1"}}}, reply{code: 204})
	start := time.Now()
	posted, err := dc.Post(context.Background(), newClient(mock, Auth{Kind: Bearer, Token: "t"}), sha, dcStatus)
	if err != nil || posted.Attempts != 2 || time.Since(start) < time.Second {
		t.Fatalf("posted = %+v, %v after %s", posted, err, time.Since(start))
	}
}

func TestCheckRequests(t *testing.T) {
	t.Parallel()
	cases := map[string]Request{
		"https://api.bitbucket.org/2.0/repositories/acme/widgets/commit/" + sha:                        cloud.CheckRequest(sha),
		"https://api.bitbucket.org/2.0/repositories/acme/widgets":                                      cloud.CheckRequest(""),
		"https://git.example.com/bitbucket/rest/api/latest/projects/PROJ/repos/widgets/commits/" + sha: dc.CheckRequest(sha),
		"https://git.example.com/bitbucket/rest/api/latest/projects/PROJ/repos/widgets":                dc.CheckRequest(""),
	}
	for want, req := range cases {
		if req.Method != "GET" || req.URL != want || req.Body != nil {
			t.Errorf("got %+v, want GET %s", req, want)
		}
	}
}

func TestPrintRedactsCredential(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	c := &Client{Auth: Auth{Kind: Basic, Username: "jdoe@example.com", Token: "super-secret-token"}, UserAgent: "bitbucket-status/test"}
	dc.DryRun(&out, c, sha, Status{Key: "k", State: state.Successful, URL: "https://x/1?a=1&b=2"})
	want := "POST " + dcBuildsURL + "\n" +
		"Authorization: Basic [REDACTED] (user \"jdoe@example.com\")\n" +
		"Accept: application/json\nContent-Type: application/json\nUser-Agent: bitbucket-status/test\n\n" +
		"{\n  \"key\": \"k\",\n  \"state\": \"SUCCESSFUL\",\n  \"url\": \"https://x/1?a=1&b=2\"\n}\n\n" +
		"(if the server answers 404 without naming a missing project, repository or commit, it predates this API, " +
		"and this is sent instead: POST " + dcLegacyURL + ")\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}
