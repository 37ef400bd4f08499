package gitlab

import (
	"context"
	"errors"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/pipeline"
)

func TestParsePipelineHookBothFormats(t *testing.T) {
	t.Parallel()
	cases := map[string]Pipeline{
		"testdata/pipeline-old-format.json": {ID: 31, ProjectID: 1, ProjectPath: "gitlab-org/gitlab-test", Ref: "master",
			SHA: "bcbb5ec396a2c0f828686f14fac9b80b780504f2", Status: "success", Source: "merge_request_event",
			URL:       "http://192.168.64.1:3005/gitlab-org/gitlab-test/-/pipelines/31",
			CreatedAt: time.Date(2016, 8, 12, 15, 23, 28, 0, time.UTC), FinishedAt: time.Date(2016, 8, 12, 15, 26, 29, 0, time.UTC)},
		"testdata/pipeline-iso-format.json": {ID: 2045, IID: 7, ProjectID: 42, ProjectPath: "acme/widgets", Ref: "main",
			SHA: "0123456789abcdef0123456789abcdef01234567", Status: "running", URL: "https://gitlab.example.com/acme/widgets/-/pipelines/2045",
			CreatedAt: time.Date(2026, 11, 25, 10, 0, 0, 123e6, time.UTC), Name: "Pipeline for branch: main", Source: "push"},
		// A child pipeline (trigger: include:): its parent in source_pipeline.
		"testdata/pipeline-child.json": {ID: 2046, IID: 8, ProjectID: 42, ProjectPath: "acme/widgets", Ref: "main",
			SHA: "0123456789abcdef0123456789abcdef01234567", Status: "running", URL: "https://gitlab.example.com/acme/widgets/-/pipelines/2046",
			CreatedAt: time.Date(2026, 11, 25, 10, 0, 0, 123e6, time.UTC), Source: "parent_pipeline", ParentProjectID: 42, ParentPipelineID: 2045},
		// Blocked on a manual job: the jobs that wait to be played are named.
		"testdata/pipeline-manual.json": {ID: 2045, IID: 7, ProjectID: 42, ProjectPath: "acme/widgets", Ref: "main",
			SHA: "0123456789abcdef0123456789abcdef01234567", Status: "manual", URL: "https://gitlab.example.com/acme/widgets/-/pipelines/2045",
			CreatedAt: time.Date(2026, 11, 25, 10, 0, 0, 123e6, time.UTC), Name: "Pipeline for branch: main", Source: "push",
			Manual: []string{"deploy-production", "stop-review"}},
		"testdata/pipeline-skipped.json": {ID: 2045, IID: 7, ProjectID: 42, ProjectPath: "acme/widgets", Ref: "main",
			SHA: "0123456789abcdef0123456789abcdef01234567", Status: "skipped", URL: "https://gitlab.example.com/acme/widgets/-/pipelines/2045",
			CreatedAt: time.Date(2026, 11, 25, 10, 0, 0, 123e6, time.UTC), FinishedAt: time.Date(2026, 11, 25, 10, 0, 0, 300e6, time.UTC),
			Name: "Pipeline for branch: main", Source: "push"},
	}
	for file, want := range cases {
		body, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParsePipelineHook(body)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v, %v\nwant %+v", file, got, err, want)
		}
	}
}

func TestParsePipelineHookErrors(t *testing.T) {
	t.Parallel()
	valid := `"object_attributes":{"id":1,"sha":"0123456789abcdef","status":"running"},"project":{"path_with_namespace":"a/b"}`
	cases := map[string]string{
		`[]`:                         "not a JSON pipeline payload: json: cannot unmarshal array into Go value of type gitlab.hookPayload",
		`{"object_kind":"push"}`:     `object_kind is "push", not "pipeline"`,
		`{"object_kind":"pipeline"}`: "no object_attributes",
		`{"object_kind":"pipeline",` + strings.Replace(valid, `"id":1`, `"id":0`, 1) + `}`:                            "object_attributes.id is missing",
		`{"object_kind":"pipeline",` + strings.Replace(valid, `0123456789abcdef`, `main`, 1) + `}`:                    `object_attributes.sha is "main", not a commit hash`,
		`{"object_kind":"pipeline",` + strings.Replace(valid, `running`, ``, 1) + `}`:                                 "object_attributes.status is missing",
		`{"object_kind":"pipeline",` + strings.Replace(valid, `a/b`, `b`, 1) + `}`:                                    `project.path_with_namespace is "b", not a project path`,
		`{"object_kind":"pipeline",` + strings.Replace(valid, `"id":1,`, `"id":1,"created_at":"yesterday",`, 1) + `}`: `object_attributes.created_at: "yesterday" is not a GitLab timestamp`,
	}
	for body, want := range cases {
		if _, err := ParsePipelineHook([]byte(body)); err == nil || err.Error() != want {
			t.Errorf("%s:\n got %v\nwant %s", body, err, want)
		}
	}
	if _, err := ParsePipelineHook([]byte(`{"object_kind":"pipeline",` + valid + `}`)); err != nil {
		t.Errorf("the valid base case: %v", err)
	}
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	want := time.Date(2016, 8, 12, 15, 23, 28, 0, time.UTC)
	for _, s := range []string{"2016-08-12 15:23:28 UTC", "2016-08-12T15:23:28Z", "2016-08-12T15:23:28.000Z", "2016-08-12T17:23:28+02:00", "2016-08-12 17:23:28 +0200"} {
		if got, err := ParseTime(s); err != nil || !got.Equal(want) {
			t.Errorf("%s: %v, %v", s, got, err)
		}
	}
}

// The Standard Webhooks specification's own test vectors
// (libraries/go/webhook_test.go of standard-webhooks/standard-webhooks).
const (
	vectorKey       = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	vectorWrong     = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
)

func TestSignatureVectors(t *testing.T) {
	t.Parallel()
	key, err := ParseSigningKey(vectorKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := key.Sign(vectorID, vectorTimestamp, []byte(vectorBody)); got != vectorSignature {
		t.Fatalf("Sign = %s, want %s", got, vectorSignature)
	}
	at := time.Unix(vectorTimestamp, 0)
	ts := "1614265330"
	cases := []struct {
		name, id, ts, sigs, body string
		now                      time.Time
		want                     string
	}{
		{"valid", vectorID, ts, vectorSignature, vectorBody, at, ""},
		{"valid among others", vectorID, ts, vectorWrong + " v2," + vectorWrong[3:] + " " + vectorSignature + " " + vectorWrong, vectorBody, at, ""},
		{"4 minutes late", vectorID, ts, vectorSignature, vectorBody, at.Add(4 * time.Minute), ""},
		{"invalid", vectorID, ts, vectorWrong, vectorBody, at, "no valid signature: the signing token differs, or the body was changed"},
		{"body changed", vectorID, ts, vectorSignature, vectorBody + " ", at, "no valid signature: the signing token differs, or the body was changed"},
		{"other id", "msg_other", ts, vectorSignature, vectorBody, at, "no valid signature: the signing token differs, or the body was changed"},
		{"too old (a replay)", vectorID, ts, vectorSignature, vectorBody, at.Add(5*time.Minute + time.Second), "webhook-timestamp is 5m1s old, more than 5m0s: a replay, or a clock off"},
		{"too new", vectorID, ts, vectorSignature, vectorBody, at.Add(-5*time.Minute - time.Second), "webhook-timestamp is 5m1s in the future, more than 5m0s: a clock off"},
		{"no id", "", ts, vectorSignature, vectorBody, at, "webhook-id, webhook-timestamp or webhook-signature is missing"},
		{"no timestamp", vectorID, "", vectorSignature, vectorBody, at, "webhook-id, webhook-timestamp or webhook-signature is missing"},
		{"no signature", vectorID, ts, "", vectorBody, at, "webhook-id, webhook-timestamp or webhook-signature is missing"},
		{"bad timestamp", vectorID, "soon", vectorSignature, vectorBody, at, "webhook-timestamp is not a Unix time"},
	}
	for _, c := range cases {
		err := key.Verify(c.id, c.ts, c.sigs, []byte(c.body), c.now)
		if (err == nil && c.want != "") || (err != nil && err.Error() != c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := ParseSigningKey("whsec_not base64!"); err == nil {
		t.Error("a bad signing token was accepted")
	}
}

func newClient(mock *httpmock.MockTransport) *Client {
	return &Client{BaseURL: "https://gitlab.example.com/", Token: "glpat-SECRET", HTTP: &http.Client{Transport: mock}, UserAgent: "relay/test"}
}

func TestAPIPipeline(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder("GET", "https://gitlab.example.com/api/v4/projects/42/pipelines/2045", func(r *http.Request) (*http.Response, error) {
		if r.Header.Get("PRIVATE-TOKEN") != "glpat-SECRET" || r.Header.Get("User-Agent") != "relay/test" {
			return httpmock.NewStringResponse(401, `{"message":"401 Unauthorized"}`), nil
		}
		return httpmock.NewStringResponse(200, `{"id":2045,"iid":7,"project_id":42,"sha":"0123456789ABCDEF0123456789abcdef01234567","ref":"v1.0","tag":true,`+
			`"status":"canceled","source":"parent_pipeline","web_url":"https://gitlab.example.com/acme/widgets/-/pipelines/2045","created_at":"2026-11-25T10:00:00.000Z",`+
			`"updated_at":"2026-11-25T10:05:00.000Z","finished_at":"2026-11-25T10:04:59.500Z"}`), nil
	})
	got, err := newClient(mock).Pipeline(context.Background(), 42, 2045)
	want := Pipeline{ID: 2045, IID: 7, ProjectID: 42, SHA: "0123456789abcdef0123456789abcdef01234567", Ref: "v1.0", Tag: true, Status: "canceled", Source: "parent_pipeline",
		URL: "https://gitlab.example.com/acme/widgets/-/pipelines/2045", CreatedAt: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
		UpdatedAt: time.Date(2026, 11, 25, 10, 5, 0, 0, time.UTC), FinishedAt: time.Date(2026, 11, 25, 10, 4, 59, 5e8, time.UTC)}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v\nwant %+v", got, err, want)
	}
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder("GET", "https://gitlab.example.com/api/v4/projects/42/pipelines/1",
		httpmock.NewStringResponder(404, `{"message":"404 Not found"}`))
	resp := httpmock.NewStringResponse(429, `Retry later`)
	resp.Header.Set("Retry-After", "30")
	mock.RegisterResponder("GET", "https://gitlab.example.com/api/v4/projects/42/pipelines/2", httpmock.ResponderFromResponse(resp))
	_, err := newClient(mock).Pipeline(context.Background(), 42, 1)
	var e *APIError
	if !errors.As(err, &e) || e.Temporary() || err.Error() != "GitLab answered GET https://gitlab.example.com/api/v4/projects/42/pipelines/1 with 404 Not Found: 404 Not found" {
		t.Errorf("404: %v", err)
	}
	_, err = newClient(mock).Pipeline(context.Background(), 42, 2)
	if !errors.As(err, &e) || !e.Temporary() || e.RetryAfter != 30*time.Second {
		t.Errorf("429: %#v", err)
	}
	if strings.Contains(err.Error(), "glpat-SECRET") {
		t.Error("the token is in the error")
	}
}

func TestAPIListPages(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	page := func(n, next, body string) {
		mock.RegisterResponderWithQuery("GET", "https://gitlab.example.com/api/v4/projects/42/pipelines",
			"order_by=updated_at&page="+n+"&per_page=100&sort=asc&updated_after=2026-11-25T09%3A00%3A00Z",
			func(*http.Request) (*http.Response, error) {
				r := httpmock.NewStringResponse(200, body)
				r.Header.Set("X-Next-Page", next)
				return r, nil
			})
	}
	page("1", "2", `[{"id":1,"sha":"aaaaaaa","status":"success","ref":"main"}]`)
	page("2", "", `[{"id":2,"sha":"bbbbbbb","status":"running","ref":"dev"}]`)
	got, err := newClient(mock).PipelinesUpdatedAfter(context.Background(), 42, time.Date(2026, 11, 25, 10, 0, 0, 0, time.FixedZone("", 3600)))
	if err != nil || len(got) != 2 || got[0].ID != 1 || got[1].Status != "running" || got[1].Ref != "dev" {
		t.Fatalf("%+v, %v", got, err)
	}
}

func TestAPIMirrorURL(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder("GET", "https://gitlab.example.com/api/v4/projects/1", httpmock.NewStringResponder(200, `{"import_url":"https://bitbucket.org/acme/widgets.git"}`))
	mock.RegisterResponder("GET", "https://gitlab.example.com/api/v4/projects/2", httpmock.NewStringResponder(200, `{"import_url":null}`))
	mock.RegisterResponder("GET", "https://gitlab.example.com/api/v4/projects/2/mirror/pull", httpmock.NewStringResponder(200, `{"url":"https://git.example.com/scm/PROJ/widgets.git"}`))
	mock.RegisterResponder("GET", "https://gitlab.example.com/api/v4/projects/3", httpmock.NewStringResponder(200, `{}`))
	mock.RegisterResponder("GET", "https://gitlab.example.com/api/v4/projects/3/mirror/pull", httpmock.NewStringResponder(404, `{"message":"404 Not found"}`))
	c := newClient(mock)
	for id, want := range map[int64]string{1: "https://bitbucket.org/acme/widgets.git", 2: "https://git.example.com/scm/PROJ/widgets.git", 3: ""} {
		if got, err := c.MirrorURL(context.Background(), id); err != nil || got != want {
			t.Errorf("project %d: %q, %v", id, got, err)
		}
	}
}

func FuzzParsePipelineHook(f *testing.F) {
	for _, file := range []string{"testdata/pipeline-old-format.json", "testdata/pipeline-iso-format.json", "testdata/pipeline-child.json"} {
		body, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	f.Add([]byte(`{"object_kind":"pipeline","object_attributes":{"id":1,"sha":"abcdef0","status":"x","created_at":"2016-08-12 15:23:28 UTC"},"project":{"path_with_namespace":"a/b","web_url":"x"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePipelineHook(body)
		if err != nil {
			return
		}
		if p.ID <= 0 || p.Status == "" || !pipeline.IsCommitHash(p.SHA) || !strings.Contains(p.ProjectPath, "/") || p.SHA != strings.ToLower(p.SHA) {
			t.Fatalf("accepted an invalid pipeline: %+v", p)
		}
	})
}

func TestAPIProjectID(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder("GET", "=~^https://gitlab.example.com/api/v4/projects/acme%2Fplatform%2Fwidgets$",
		httpmock.NewStringResponder(200, `{"id":77,"path_with_namespace":"acme/platform/widgets"}`))
	id, err := newClient(mock).ProjectID(context.Background(), "acme/platform/widgets")
	if err != nil || id != 77 {
		t.Fatalf("%d %v (%v)", id, err, mock.GetCallCountInfo())
	}
}

func TestAPITriggerJobName(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	mock.RegisterResponderWithQuery("GET", "https://gitlab.example.com/api/v4/projects/42/pipelines/2045/bridges", "per_page=100",
		httpmock.NewStringResponder(200, `[{"id":9000,"name":"docs","downstream_pipeline":null},`+
			`{"id":9001,"name":"deploy:review","downstream_pipeline":{"id":2046,"sha":"0123456","status":"running"}}]`))
	c := newClient(mock)
	if name, err := c.TriggerJobName(context.Background(), 42, 2045, 2046); err != nil || name != "deploy:review" {
		t.Fatalf("%q %v", name, err)
	}
	if name, err := c.TriggerJobName(context.Background(), 42, 2045, 3000); err != nil || name != "" {
		t.Fatalf("no bridge for the child: %q %v", name, err)
	}
}

func TestAPIGroupProjects(t *testing.T) {
	t.Parallel()
	mock := httpmock.NewMockTransport()
	pages := map[string][2]string{
		"1": {"2", `[{"id":1,"path_with_namespace":"acme/platform/a"}]`},
		"2": {"", `[{"id":2,"path_with_namespace":"acme/platform/deep/b"}]`},
	}
	mock.RegisterResponder("GET", "=~^https://gitlab.example.com/api/v4/groups/acme%2Fplatform/projects", func(r *http.Request) (*http.Response, error) {
		q := r.URL.Query()
		p, ok := pages[q.Get("page")]
		if !ok || q.Get("include_subgroups") != "true" || q.Get("archived") != "false" || q.Get("per_page") != "100" {
			return httpmock.NewStringResponse(400, `{"error":"unexpected query `+r.URL.RawQuery+`"}`), nil
		}
		resp := httpmock.NewStringResponse(200, p[1])
		resp.Header.Set("X-Next-Page", p[0])
		return resp, nil
	})
	got, err := newClient(mock).GroupProjects(context.Background(), "acme/platform")
	if err != nil || len(got) != 2 || got[0] != (ProjectRef{1, "acme/platform/a"}) || got[1] != (ProjectRef{2, "acme/platform/deep/b"}) {
		t.Fatalf("%+v, %v (%v)", got, err, mock.GetCallCountInfo())
	}
}
