package bitbucket

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jarcoal/httpmock"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/insights"
)

func sampleReport() Insights {
	return Insights{Key: "gitlab~acme~app~code-quality", Report: insights.Report{
		Kind: insights.CodeQuality, Title: "GitLab code quality", Summary: "2 findings.", Link: "https://gitlab.example.com/p/-/pipelines/1/codequality_report",
		Omitted: 3,
		Figures: []insights.Figure{{Title: "A", Value: 1}, {Title: "B", Value: 2}, {Title: "C", Value: 3}, {Title: "D", Value: 4},
			{Title: "E", Value: 5}, {Title: "F", Value: 6}, {Title: "T", Value: 7000, Duration: true}},
		Findings: []insights.Finding{
			{ID: "f1", Path: "a.go", Line: 3, Title: "blocker\nsecond line", Details: "why", Severity: insights.Blocker, Category: insights.Vulnerability},
			{ID: "f2", Title: "", Severity: insights.Info, Category: insights.Smell},
		},
	}}
}

func TestCloudReportRequests(t *testing.T) {
	reqs := Cloud{API: "https://api.bitbucket.org/2.0", Workspace: "acme", Slug: "app"}.ReportRequests(sha, sampleReport())
	base := "https://api.bitbucket.org/2.0/repositories/acme/app/commit/" + sha + "/reports/gitlab~acme~app~code-quality"
	want := []Request{
		{Method: "DELETE", URL: base},
		{Method: "PUT", URL: base, Body: []byte(`{"title":"GitLab code quality","details":"2 findings.\n\n3 more left out: a report holds at most 1000, the most severe first.",` +
			`"external_id":"gitlab~acme~app~code-quality","reporter":"GitLab","link":"https://gitlab.example.com/p/-/pipelines/1/codequality_report",` +
			`"report_type":"BUG","result":"FAILED","data":[{"title":"A","type":"NUMBER","value":1},{"title":"B","type":"NUMBER","value":2},` +
			`{"title":"C","type":"NUMBER","value":3},{"title":"D","type":"NUMBER","value":4},{"title":"E","type":"NUMBER","value":5},` +
			`{"title":"F","type":"NUMBER","value":6},{"title":"T","type":"DURATION","value":7000}]}`)},
		{Method: "POST", URL: base + "/annotations", Body: []byte(`[{"external_id":"f1","annotation_type":"VULNERABILITY","path":"a.go","line":3,` +
			`"summary":"blocker second line","details":"why","result":"FAILED","severity":"CRITICAL"},` +
			`{"external_id":"f2","annotation_type":"CODE_SMELL","summary":"(no message)","result":"FAILED","severity":"LOW"}]`)},
	}
	compareRequests(t, reqs, want)
}

func TestDataCenterReportRequests(t *testing.T) {
	reqs := DataCenter{Server: "https://git.example.com/bitbucket", Project: "PROJ", Slug: "app"}.ReportRequests(sha, sampleReport())
	base := "https://git.example.com/bitbucket/rest/insights/latest/projects/PROJ/repos/app/commits/" + sha + "/reports/gitlab~acme~app~code-quality"
	want := []Request{
		{Method: "DELETE", URL: base},
		// Six figures at most on Data Center.
		{Method: "PUT", URL: base, Body: []byte(`{"title":"GitLab code quality","details":"2 findings.\n\n3 more left out: a report holds at most 1000, the most severe first.",` +
			`"result":"FAIL","reporter":"GitLab","link":"https://gitlab.example.com/p/-/pipelines/1/codequality_report","data":[` +
			`{"title":"A","type":"NUMBER","value":1},{"title":"B","type":"NUMBER","value":2},{"title":"C","type":"NUMBER","value":3},` +
			`{"title":"D","type":"NUMBER","value":4},{"title":"E","type":"NUMBER","value":5},{"title":"F","type":"NUMBER","value":6}]}`)},
		{Method: "POST", URL: base + "/annotations", Body: []byte(`{"annotations":[{"externalId":"f1","message":"blocker second line\n\nwhy",` +
			`"severity":"HIGH","type":"VULNERABILITY","path":"a.go","line":3},{"externalId":"f2","message":"(no message)","severity":"LOW","type":"CODE_SMELL"}]}`)},
	}
	compareRequests(t, reqs, want)
}

func compareRequests(t *testing.T, got, want []Request) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d requests, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Method != want[i].Method || got[i].URL != want[i].URL || string(got[i].Body) != string(want[i].Body) {
			t.Errorf("request %d:\n got %s %s %s\nwant %s %s %s", i, got[i].Method, got[i].URL, got[i].Body, want[i].Method, want[i].URL, want[i].Body)
		}
	}
}

// The severity table of the README.
func TestSeverities(t *testing.T) {
	want := map[insights.Severity][2]string{
		insights.Info: {"LOW", "LOW"}, insights.Minor: {"LOW", "LOW"}, insights.Major: {"MEDIUM", "MEDIUM"},
		insights.Critical: {"HIGH", "HIGH"}, insights.Blocker: {"CRITICAL", "HIGH"},
	}
	for s, w := range want {
		if cloudSeverity[s] != w[0] || dataCenterSeverity[s] != w[1] {
			t.Errorf("%v: cloud %s, data center %s; want %v", s, cloudSeverity[s], dataCenterSeverity[s], w)
		}
	}
}

// Texts are cut to the servers' limits on character boundaries; a link
// that is not http(s) is left out (Data Center refuses the report).
func TestReportTextsFitTheLimits(t *testing.T) {
	long := strings.Repeat("é", 3000)
	in := Insights{Key: "k", Report: insights.Report{Kind: insights.Tests, Title: long, Summary: long, Link: "javascript:alert(1)",
		Findings: []insights.Finding{{ID: strings.Repeat("x", 600), Title: long, Details: long}}}}
	for _, reqs := range [][]Request{
		Cloud{API: "https://a", Workspace: "w", Slug: "s"}.ReportRequests(sha, in),
		DataCenter{Server: "https://b", Project: "P", Slug: "s"}.ReportRequests(sha, in),
	} {
		for _, r := range reqs[1:] {
			body := string(r.Body)
			if !utf8.ValidString(body) || strings.Contains(body, "javascript") || strings.Contains(body, strings.Repeat("é", 2001)) ||
				strings.Contains(body, strings.Repeat("x", 450)) {
				t.Errorf("%s: %.300s", r.URL, body)
			}
		}
	}
}

func TestAThousandAnnotationsTakeTheFewestRequests(t *testing.T) {
	in := Insights{Key: "k", Report: insights.Report{Kind: insights.Tests, Title: "t"}}
	for i := range 1500 {
		in.Report.Findings = append(in.Report.Findings, insights.Finding{ID: string(rune('a'+i%26)) + strings.Repeat("x", i/26), Title: "f"})
	}
	if n := len(Cloud{API: "https://a", Workspace: "w", Slug: "s"}.ReportRequests(sha, in)); n != 12 {
		t.Errorf("cloud: %d requests, want 12 (DELETE, PUT, 10 × 100)", n)
	}
	if n := len(DataCenter{Server: "https://b", Project: "P", Slug: "s"}.ReportRequests(sha, in)); n != 3 {
		t.Errorf("data center: %d requests, want 3 (DELETE, PUT, 1 × 1000)", n)
	}
}

// Publish: a first DELETE that finds nothing is a first run; any other
// failure stops the rest.
func TestPublish(t *testing.T) {
	mock := httpmock.NewMockTransport()
	c := newClient(mock, Auth{Kind: Bearer, Token: "secret"})
	mock.RegisterResponder("DELETE", "https://a/r", httpmock.NewStringResponder(404, `{"type":"error","error":{"message":"Report not found"}}`))
	mock.RegisterResponder("PUT", "https://a/r", httpmock.NewStringResponder(403, `{"type":"error","error":{"message":"Forbidden"}}`))
	mock.RegisterResponder("POST", "https://a/r/annotations", httpmock.NewStringResponder(200, `[]`))
	_, err := c.Publish(context.Background(), []Request{{Method: "DELETE", URL: "https://a/r"}, {Method: "PUT", URL: "https://a/r", Body: []byte("{}")},
		{Method: "POST", URL: "https://a/r/annotations", Body: []byte("[]")}}, 3)
	var he *HTTPError
	if err == nil || !errors.As(err, &he) || he.StatusCode != http.StatusForbidden || he.Method != "PUT" {
		t.Fatalf("error %v", err)
	}
	if info := mock.GetCallCountInfo(); info["POST https://a/r/annotations"] != 0 || info["DELETE https://a/r"] != 1 {
		t.Errorf("calls %v", info)
	}
}

// Data Center 7.4+ shows a build's test counts; errors count as failed.
func TestDataCenterStatusCarriesTestResults(t *testing.T) {
	s := Status{Key: "k", State: "FAILED", URL: "https://g/p", Tests: &insights.TestCounts{Total: 10, Failed: 2, Errored: 1, Skipped: 3}}
	req := DataCenter{Server: "https://b", Project: "P", Slug: "s"}.StatusRequest(sha, s)
	if want := `{"key":"k","state":"FAILED","url":"https://g/p","testResults":{"successful":4,"failed":3,"skipped":3}}`; string(req.Body) != want {
		t.Errorf("body %s\nwant %s", req.Body, want)
	}
	// Cloud has no such field.
	if body := string((Cloud{API: "https://a", Workspace: "w", Slug: "s"}).StatusRequest(sha, s).Body); strings.Contains(body, "test") {
		t.Errorf("cloud body %s", body)
	}
}

func TestHTTPLink(t *testing.T) {
	for in, want := range map[string]string{
		"https://g.example.com/p/-/pipelines/1/test_report": "https://g.example.com/p/-/pipelines/1/test_report",
		`https://g.example.com/p/-/pipelines/1?b="2" x&a=1`: "https://g.example.com/p/-/pipelines/1?a=1&b=%222%22+x",
		"javascript:alert(1)":                               "", "ftp://g.example.com/x": "", "/relative/path": "", "": "",
	} {
		if got := httpLink(in); got != want {
			t.Errorf("httpLink(%q) = %q, want %q", in, got, want)
		}
	}
}

// With tries, a request that met a 5xx is sent again by a client that makes
// one attempt per call; a 4xx is not.
func TestPublishTriesAgainAfterA5xx(t *testing.T) {
	mock := httpmock.NewMockTransport()
	c := newClient(mock, Auth{Kind: Bearer, Token: "secret"})
	c.MaxAttempts = 1
	mock.RegisterResponder("DELETE", "https://a/r", httpmock.ResponderFromMultipleResponses([]*http.Response{
		httpmock.NewStringResponse(502, "bad gateway"), httpmock.NewStringResponse(503, ""), httpmock.NewStringResponse(204, "")}))
	mock.RegisterResponder("PUT", "https://a/r", httpmock.NewStringResponder(200, "{}"))
	sent, err := c.Publish(context.Background(), []Request{{Method: "DELETE", URL: "https://a/r"}, {Method: "PUT", URL: "https://a/r", Body: []byte("{}")}}, 4)
	if err != nil || sent != 4 {
		t.Fatalf("sent %d, %v", sent, err)
	}
	mock.RegisterResponder("PUT", "https://a/r", httpmock.NewStringResponder(400, `{"type":"error","error":{"message":"bad"}}`))
	mock.RegisterResponder("DELETE", "https://a/r", httpmock.NewStringResponder(204, ""))
	mock.ZeroCallCounters()
	if _, err := c.Publish(context.Background(), []Request{{Method: "DELETE", URL: "https://a/r"}, {Method: "PUT", URL: "https://a/r", Body: []byte("{}")}}, 4); err == nil {
		t.Fatal("a 400 went through")
	}
	if n := mock.GetCallCountInfo()["PUT https://a/r"]; n != 1 {
		t.Errorf("%d PUTs: a 400 was sent again", n)
	}
}
