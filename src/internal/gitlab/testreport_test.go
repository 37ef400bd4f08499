package gitlab

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/insights"
)

const reportURL = "https://gitlab.example.com/api/v4/projects/42/pipelines/2045/test_report"

func TestTestReportSummary(t *testing.T) {
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder("GET", reportURL+"_summary", httpmock.NewStringResponder(200,
		`{"total":{"time":12.5,"count":10,"success":6,"failed":2,"skipped":1,"error":1,"suite_error":null},"test_suites":[{"name":"rspec"}]}`))
	got, err := newClient(mock).TestReportSummary(context.Background(), 42, 2045)
	want := insights.TestCounts{Total: 10, Failed: 2, Errored: 1, Skipped: 1, Duration: 12500 * time.Millisecond}
	if err != nil || got != want {
		t.Fatalf("%+v, %v; want %+v", got, err, want)
	}
}

// The full report is streamed: every passing case is read past, only the
// failed ones kept, at most the limit, first found first.
func TestFailedTests(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"total_count":5005,"test_suites":[{"name":"a","suite_error":null,"test_cases":[`)
	for i := range 5000 {
		fmt.Fprintf(&b, `{"status":"success","name":"ok%d","classname":"c","file":null,"system_output":null,"recent_failures":null},`, i)
	}
	for i := range 5 {
		fmt.Fprintf(&b, `{"status":"failed","name":"bad%d","classname":"c","file":"/builds/acme/widgets/spec/a_spec.rb","system_output":"expected %d\n./spec/a_spec.rb:%d:in block","stack_trace":null},`, i, i, 10+i)
	}
	b.WriteString(`{"status":"error","name":"boom","classname":"c","file":"../outside.rb","system_output":"","stack_trace":"panic"}]},`)
	b.WriteString(`{"name":"broken","suite_error":"JUnit XML parsing failed","test_cases":[]},{"name":"nulls","test_cases":null}],"extra":{"nested":[1,[2,{"x":3}]]}}`)
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder("GET", reportURL, httpmock.NewStringResponder(200, b.String()))
	found, omitted, err := newClient(mock).FailedTests(context.Background(), 42, 2045, insights.Paths{ProjectDir: "/builds/acme/widgets"}, 4)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range found {
		got = append(got, fmt.Sprintf("%s:%d %s", f.Path, f.Line, f.Title))
	}
	want := "[spec/a_spec.rb:10 c bad0 failed: expected 0 spec/a_spec.rb:11 c bad1 failed: expected 1 spec/a_spec.rb:12 c bad2 failed: expected 2 spec/a_spec.rb:13 c bad3 failed: expected 3]"
	if fmt.Sprint(got) != want || omitted != 2 {
		t.Errorf("got %v (omitted %d)\nwant %s", got, omitted, want)
	}
	// The same ID as the job's JUnit reader gives the same test.
	if found[0].ID != insights.Fingerprint("junit", "c", "bad0") {
		t.Errorf("id %s", found[0].ID)
	}
}

func TestFailedTestsErrors(t *testing.T) {
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder("GET", reportURL, httpmock.NewStringResponder(403, `{"message":"403 Forbidden"}`))
	_, _, err := newClient(mock).FailedTests(context.Background(), 42, 2045, insights.Paths{}, 10)
	if err == nil || err.Error() != "GitLab answered GET "+reportURL+" with 403 Forbidden: 403 Forbidden" {
		t.Errorf("error %v", err)
	}
	mock.RegisterResponder("GET", reportURL, httpmock.NewStringResponder(200, `{"test_suites":[{"test_cases":[{"status":`))
	_, _, err = newClient(mock).FailedTests(context.Background(), 42, 2045, insights.Paths{}, 10)
	if err == nil || err.Error() != "reading GitLab's test report of pipeline 2045: unexpected EOF" {
		t.Errorf("error %v", err)
	}
}

// TestFailedTestsInTwoSuites: GitLab's suites are its jobs; the same test
// failing in two jobs of a parallel:matrix (and passing in a third) is two
// findings, each naming its job, with IDs of their own; a frame of the
// runner's own directory is placed by the project's path.
func TestFailedTestsInTwoSuites(t *testing.T) {
	doc := `{"test_suites":[` +
		`{"name":"pytest: [3.11]","test_cases":[{"status":"failed","name":"test_round","classname":"tests.test_math","file":null,` +
		`"system_output":"AssertionError: 0.30000000000000004 != 0.3\ntests/test_math.py:12: AssertionError"}]},` +
		`{"name":"pytest: [3.12]","test_cases":[{"status":"success","name":"test_round","classname":"tests.test_math"}]},` +
		`{"name":"pytest: [3.13]","test_cases":[{"status":"failed","name":"test_round","classname":"tests.test_math","file":null,` +
		`"system_output":"AssertionError: 0.30000000000000004 != 0.3\n/builds/t3st/0/acme/widgets/tests/test_math.py:12: AssertionError"}]}]}`
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder("GET", reportURL, httpmock.NewStringResponder(200, doc))
	found, omitted, err := newClient(mock).FailedTests(context.Background(), 42, 2045, insights.Paths{ProjectDir: "/builds/acme/widgets",
		ProjectPath: "acme/widgets"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range found {
		got = append(got, fmt.Sprintf("%s:%d %s", f.Path, f.Line, f.Title))
	}
	want := "tests/test_math.py:12 [pytest: [3.11]] tests.test_math test_round failed: AssertionError: 0.30000000000000004 != 0.3\n" +
		"tests/test_math.py:12 [pytest: [3.13]] tests.test_math test_round failed: AssertionError: 0.30000000000000004 != 0.3"
	if strings.Join(got, "\n") != want || omitted != 0 || found[0].ID == found[1].ID {
		t.Errorf("got (omitted %d)\n%s\nwant\n%s", omitted, strings.Join(got, "\n"), want)
	}
}
