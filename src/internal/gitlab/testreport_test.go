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
	found, omitted, err := newClient(mock).FailedTests(context.Background(), 42, 2045, "/builds/acme/widgets", 4)
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
	_, _, err := newClient(mock).FailedTests(context.Background(), 42, 2045, "", 10)
	if err == nil || err.Error() != "GitLab answered GET "+reportURL+" with 403 Forbidden: 403 Forbidden" {
		t.Errorf("error %v", err)
	}
	mock.RegisterResponder("GET", reportURL, httpmock.NewStringResponder(200, `{"test_suites":[{"test_cases":[{"status":`))
	_, _, err = newClient(mock).FailedTests(context.Background(), 42, 2045, "", 10)
	if err == nil || err.Error() != "reading GitLab's test report of pipeline 2045: unexpected EOF" {
		t.Errorf("error %v", err)
	}
}
