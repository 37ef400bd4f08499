package bitbucket

import (
	"context"
	"errors"
	"fmt"
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

// The 404s of a server without the repository-scoped builds API, as real
// servers send them: Jersey's own, never Bitbucket's errors[] envelope.
var unknownRoute404s = map[string]string{
	"null for uri (7.x and older)": `{"message":"null for uri: https://git.example.com/bitbucket/rest/api/latest/projects/PROJ/repos/widgets/commits/` + sha + `/builds","status-code":404}`,
	"HTTP 404 Not Found (10.x)":    `{"message":"HTTP 404 Not Found","status-code":404,"sub-code":-1}`,
	"XML status document (10.x)":   `<?xml version="1.0" encoding="UTF-8" standalone="yes"?><status><status-code>404</status-code><message>HTTP 404 Not Found</message></status>`,
	"a proxy's page":               `<html><body>Not Found</body></html>`,
}

func TestDataCenterFallsBackToLegacyAPIOnEveryUnknownRouteShape(t *testing.T) {
	t.Parallel()
	for shape, body := range unknownRoute404s {
		mock := httpmock.NewMockTransport()
		var builds, legacy script
		builds.on(mock, "POST", dcBuildsURL, reply{code: 404, body: body})
		legacy.on(mock, "POST", dcLegacyURL, reply{code: 204})
		posted, err := dc.Post(context.Background(), newClient(mock, Auth{Kind: Bearer, Token: "t"}), sha, dcStatus)
		if err != nil || posted.Notice != LegacyNotice {
			t.Fatalf("%s: posted = %+v, %v", shape, posted, err)
		}
		want := seen{"POST", dcLegacyURL, "Bearer t", "application/json", "application/json",
			`{"state":"FAILED","key":"gitlab/acme/widgets","url":"https://gitlab.example.com/p/1","name":"GitLab: acme/widgets #7",` +
				`"description":"Pipeline #7 on main failed"}`}
		if got := legacy.requests(); len(got) != 1 || got[0] != want {
			t.Errorf("%s: legacy requests = %+v\nwant %+v", shape, got, want)
		}
		if n := len(mock.GetCallCountInfo()); n != 2 {
			t.Errorf("%s: %d routes called, want the builds API and the legacy API only", shape, n)
		}
	}
}

// dcCapabilitiesURL and dcBuildCapabilitiesURL are what a Data Center server
// answers about itself (Atlassian's Jenkins plugin reads the same).
const (
	dcCapabilitiesURL      = "https://git.example.com/bitbucket/rest/capabilities"
	dcBuildCapabilitiesURL = "https://git.example.com/bitbucket/rest/api/latest/build/capabilities"
)

func capabilitiesBody(base string, withBuild bool) string {
	if !withBuild {
		return `{"application":"stash","capabilities":{"webhooks":"` + base + `/rest/webhooks/latest/capabilities"}}`
	}
	return `{"application":"stash","capabilities":{"build":"` + base + `/rest/api/latest/build/capabilities",` +
		`"webhooks":"` + base + `/rest/webhooks/latest/capabilities"}}`
}

func TestDataCenterStoppedAsksCapabilities(t *testing.T) {
	t.Parallel()
	const canceledBody = `{"key":"gitlab/acme/widgets","state":"%s","url":"https://gitlab.example.com/p/1","name":"GitLab: acme/widgets #7",` +
		`"description":"%s","ref":"refs/heads/main","buildNumber":"7","duration":90500}`
	stopped := dcStatus
	stopped.State = state.Stopped
	stopped.Description = "Pipeline #7 on main was canceled or skipped"
	for _, c := range []struct {
		name        string
		buildStatus string // the build capabilities document; "" = no build key at all
		wantURL     string
		wantBody    string
		wantNotice  string
	}{
		{"8.0 and later", `{"buildStatus":["richBuildStatus","cancelledStatus"]}`, dcBuildsURL,
			fmt.Sprintf(canceledBody, "CANCELLED", "Pipeline #7 on main was canceled or skipped"), ""},
		{"7.4 to 7.x", `{"buildStatus":["richBuildStatus"]}`, dcBuildsURL,
			fmt.Sprintf(canceledBody, "FAILED", "Canceled: Pipeline #7 on main was canceled or skipped"), NoCancelledNotice},
		{"before 7.4", "", dcLegacyURL,
			`{"state":"FAILED","key":"gitlab/acme/widgets","url":"https://gitlab.example.com/p/1","name":"GitLab: acme/widgets #7",` +
				`"description":"Canceled: Pipeline #7 on main was canceled or skipped"}`, LegacyNotice},
	} {
		mock := httpmock.NewMockTransport()
		var caps, buildCaps, post script
		// The server's own base URL differs from the configured one (a
		// proxy): the build document is still read from the configured server.
		caps.on(mock, "GET", dcCapabilitiesURL, reply{code: 200, body: capabilitiesBody("http://internal:7990/bitbucket", c.buildStatus != "")})
		buildCaps.on(mock, "GET", dcBuildCapabilitiesURL, reply{code: 200, body: c.buildStatus})
		post.on(mock, "POST", c.wantURL, reply{code: 204})
		client := newClient(mock, Auth{Kind: Bearer, Token: "t"})
		posted, err := dc.Post(context.Background(), client, sha, stopped)
		if err != nil || posted.Notice != c.wantNotice {
			t.Fatalf("%s: posted = %+v, %v", c.name, posted, err)
		}
		if got := caps.requests(); len(got) != 1 || got[0] != (seen{"GET", dcCapabilitiesURL, "Bearer t", "", "application/json", ""}) {
			t.Errorf("%s: capabilities requests = %+v", c.name, got)
		}
		wantBuildCaps := 1
		if c.buildStatus == "" {
			wantBuildCaps = 0
		}
		if got := buildCaps.requests(); len(got) != wantBuildCaps {
			t.Errorf("%s: build capabilities requests = %+v", c.name, got)
		}
		if got := post.requests(); len(got) != 1 || got[0].Body != c.wantBody {
			t.Errorf("%s: posts = %+v\nwant body %s", c.name, got, c.wantBody)
		}
		// The answer is remembered: a second canceled status asks nothing.
		if _, err := dc.Post(context.Background(), client, sha, stopped); err != nil {
			t.Fatal(err)
		}
		if n := len(caps.requests()); n != 1 {
			t.Errorf("%s: capabilities asked %d times for two posts, want once", c.name, n)
		}
	}
}

// TestDataCenterSkippedIsNeverFailed: a skipped pipeline ran nothing:
// CANCELLED where the server has it, else SUCCESSFUL with a description
// that says skipped, never FAILED.
func TestDataCenterSkippedIsNeverFailed(t *testing.T) {
	t.Parallel()
	skipped := dcStatus
	skipped.State, skipped.Skipped, skipped.Duration = state.Stopped, true, 0
	skipped.Description = "Pipeline #7 on main was skipped"
	for _, c := range []struct {
		name        string
		buildStatus string
		wantURL     string
		wantBody    string
		wantNotice  string
	}{
		{"8.0 and later", `{"buildStatus":["richBuildStatus","cancelledStatus"]}`, dcBuildsURL,
			`{"key":"gitlab/acme/widgets","state":"CANCELLED","url":"https://gitlab.example.com/p/1","name":"GitLab: acme/widgets #7",` +
				`"description":"Pipeline #7 on main was skipped","ref":"refs/heads/main","buildNumber":"7"}`, ""},
		{"7.4 to 7.x", `{"buildStatus":["richBuildStatus"]}`, dcBuildsURL,
			`{"key":"gitlab/acme/widgets","state":"SUCCESSFUL","url":"https://gitlab.example.com/p/1","name":"GitLab: acme/widgets #7",` +
				`"description":"Skipped: Pipeline #7 on main was skipped","ref":"refs/heads/main","buildNumber":"7"}`, NoCancelledSkippedNotice},
		{"before 7.4", "", dcLegacyURL,
			`{"state":"SUCCESSFUL","key":"gitlab/acme/widgets","url":"https://gitlab.example.com/p/1","name":"GitLab: acme/widgets #7",` +
				`"description":"Skipped: Pipeline #7 on main was skipped"}`, LegacyNotice},
	} {
		mock := httpmock.NewMockTransport()
		var caps, buildCaps, post script
		caps.on(mock, "GET", dcCapabilitiesURL, reply{code: 200, body: capabilitiesBody("https://git.example.com/bitbucket", c.buildStatus != "")})
		buildCaps.on(mock, "GET", dcBuildCapabilitiesURL, reply{code: 200, body: c.buildStatus})
		post.on(mock, "POST", c.wantURL, reply{code: 204})
		posted, err := dc.Post(context.Background(), newClient(mock, Auth{Kind: Bearer, Token: "t"}), sha, skipped)
		if err != nil || posted.Notice != c.wantNotice {
			t.Fatalf("%s: posted = %+v, %v", c.name, posted, err)
		}
		if got := post.requests(); len(got) != 1 || got[0].Body != c.wantBody {
			t.Errorf("%s: posts = %+v\nwant body %s", c.name, got, c.wantBody)
		}
	}
	shown := Shown{Found: true, State: "SUCCESSFUL", Description: "Skipped: Pipeline #7 on main was skipped", URL: skipped.URL}
	if !shown.Shows(skipped) {
		t.Error("a server without CANCELLED shows a skipped pipeline as SUCCESSFUL \"Skipped: ...\": that is what was posted")
	}
	canceled := skipped
	canceled.Skipped = false
	if shown.Shows(canceled) {
		t.Error("a canceled pipeline is not what a SUCCESSFUL status shows")
	}
}

func TestDataCenterOtherStatesCostOneRequest(t *testing.T) {
	t.Parallel()
	for _, st := range []state.State{state.InProgress, state.Successful, state.Failed} {
		mock := httpmock.NewMockTransport()
		var post script
		post.on(mock, "POST", dcBuildsURL, reply{code: 204})
		s := dcStatus
		s.State = st
		if _, err := dc.Post(context.Background(), newClient(mock, Auth{Kind: Bearer, Token: "t"}), sha, s); err != nil {
			t.Fatal(err)
		}
		if total := mock.GetTotalCallCount(); total != 1 {
			t.Errorf("%s: %d requests, want 1 (%v)", st, total, mock.GetCallCountInfo())
		}
	}
}

func TestDataCenterWithoutCapabilitiesResource(t *testing.T) {
	t.Parallel()
	// A server so old it has no /rest/capabilities: FAILED, which every
	// version takes, then the legacy API when /builds is unknown too.
	mock := httpmock.NewMockTransport()
	var caps, builds, legacy script
	caps.on(mock, "GET", dcCapabilitiesURL, reply{code: 404, body: `{"message":"null for uri: ` + dcCapabilitiesURL + `","status-code":404}`})
	builds.on(mock, "POST", dcBuildsURL, reply{code: 404, body: `{"message":"null for uri: ` + dcBuildsURL + `","status-code":404}`})
	legacy.on(mock, "POST", dcLegacyURL, reply{code: 204})
	s := dcStatus
	s.State = state.Stopped
	posted, err := dc.Post(context.Background(), newClient(mock, Auth{Kind: Bearer, Token: "t"}), sha, s)
	if err != nil || posted.Notice != LegacyNotice {
		t.Fatalf("posted = %+v, %v", posted, err)
	}
	if got := builds.requests(); len(got) != 1 || !strings.Contains(got[0].Body, `"state":"FAILED"`) {
		t.Errorf("builds = %+v", got)
	}
	if got := legacy.requests(); len(got) != 1 || !strings.Contains(got[0].Body, `"description":"Canceled: Pipeline #7 on main failed"`) {
		t.Errorf("legacy = %+v", got)
	}
}

func TestDataCenterCapabilitiesAreRetriedWithinBudget(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	var caps script
	caps.on(mock, "GET", dcCapabilitiesURL, reply{code: 503}, reply{code: 200, body: capabilitiesBody("https://git.example.com/bitbucket", true)})
	mock.RegisterResponder("GET", dcBuildCapabilitiesURL, httpmock.NewStringResponder(200, `{"buildStatus":["cancelledStatus"]}`))
	mock.RegisterResponder("POST", dcBuildsURL, httpmock.NewStringResponder(204, ""))
	s := dcStatus
	s.State = state.Stopped
	if _, err := dc.Post(context.Background(), newClient(mock, Auth{Kind: Bearer, Token: "t"}), sha, s); err != nil {
		t.Fatal(err)
	}
	if n := len(caps.requests()); n != 2 {
		t.Errorf("capabilities requested %d times, want 2 (one retry after 503)", n)
	}
	// A credential the server refuses is the post's error too: reported, not guessed around.
	mock = httpmock.NewMockTransport()
	mock.RegisterResponder("GET", dcCapabilitiesURL, httpmock.NewStringResponder(401,
		`{"errors":[{"context":null,"message":"Authentication failed.","exceptionName":"com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException"}]}`))
	_, err := dc.Post(context.Background(), newClient(mock, Auth{Kind: Bearer, Token: "t"}), sha, s)
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 401 || he.URL != dcCapabilitiesURL {
		t.Errorf("err = %v", err)
	}
	if mock.GetTotalCallCount() != 1 {
		t.Errorf("calls = %v", mock.GetCallCountInfo())
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
		if !errors.As(err, &he) || he.StatusCode != 404 || he.Exception != exception || !NamesMissingThing(he) {
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
