package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const testSummary = `{"total":{"time":1.5,"count":2003,"success":2000,"failed":1,"skipped":1,"error":1,"suite_error":null},"test_suites":[]}`

// testReport is GitLab's test report of a pipeline: every case, 2,000 of
// them passing, the failed one with the file GitLab kept and its output.
func testReport() string {
	var b strings.Builder
	b.WriteString(`{"total_time":1.5,"total_count":2003,"success_count":2000,"failed_count":1,"skipped_count":1,"error_count":1,"test_suites":[`)
	b.WriteString(`{"name":"pytest","total_time":1.5,"total_count":2003,"test_cases":[`)
	for i := range 2000 {
		fmt.Fprintf(&b, `{"status":"success","name":"test_%d","classname":"tests.test_many","file":null,"execution_time":0.001,"system_output":null,"stack_trace":null,"recent_failures":null},`, i)
	}
	b.WriteString(`{"status":"failed","name":"test_total","classname":"tests.test_cart","file":"/builds/acme/widgets/tests/test_cart.py","execution_time":0.3,` +
		`"system_output":"assert 25 == 30\ntests/test_cart.py:9: AssertionError","stack_trace":null,"recent_failures":{"count":2,"base_branch":"main"}},`)
	b.WriteString(`{"status":"error","name":"test_db","classname":"tests.test_cart","file":null,"execution_time":0,"system_output":"fixture 'db' not found\nenv: BITBUCKET_ACCESS_TOKEN=` + token + `","stack_trace":null},`)
	b.WriteString(`{"status":"skipped","name":"test_later","classname":"tests.test_cart","file":null,"execution_time":0,"system_output":null,"stack_trace":null}]},`)
	b.WriteString(`{"name":"broken-job","total_count":0,"suite_error":"JUnit XML parsing failed: 1:1: FATAL: Document is empty","test_cases":[]}]}`)
	return b.String()
}

// TestRelayPublishesTestReports: with GITLAB_TOKEN, a pipeline that ends
// gets its status first, then a test report under the key the job's report
// command uses, its failed tests as annotations, read from GitLab's whole
// test report without holding it.
func TestRelayPublishesTestReports(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	gl := newGitLabAPI(t)
	gl.set(2045, "failed", sha)
	gl.summaries[2045] = testSummary
	gl.testReports[2045] = testReport()
	data := t.TempDir()
	r := startRelay(t, data, "BITBUCKET_API_URL="+bb.url+"/2.0", "GITLAB_URL="+gl.url, "GITLAB_TOKEN="+gitlabToken)
	if code, _ := r.send("Pipeline Hook", hook("acme/widgets", 42, 2045, 7, "failed", sha, "main", "")); code != 202 {
		t.Fatal(code)
	}
	key := "gitlab~acme~widgets~tests"
	eventually(t, "the test report", func() bool { _, a := bb.Report(sha, key); return len(a) == 2 },
		func() string { return fmt.Sprint(bb.posted()) + r.log() })
	report, annotations := bb.Report(sha, key)
	want := `{"title":"GitLab test results","details":"2 of 2003 tests failed (1 with an error), 1 skipped in 1.5s.","external_id":"gitlab~acme~widgets~tests",` +
		`"reporter":"GitLab","link":"https://gitlab.example.com/acme/widgets/-/pipelines/2045/test_report","report_type":"TEST","result":"FAILED",` +
		`"data":[{"title":"Tests","type":"NUMBER","value":2003},{"title":"Passed","type":"NUMBER","value":2000},{"title":"Failed","type":"NUMBER","value":2},` +
		`{"title":"Skipped","type":"NUMBER","value":1},{"title":"Duration","type":"DURATION","value":1500}]}`
	if string(report) != want {
		t.Errorf("report\n got %s\nwant %s", report, want)
	}
	var got []string
	for _, a := range annotations {
		var x struct {
			Path, Summary, Severity string
			Line                    int
		}
		_ = json.Unmarshal(a, &x)
		got = append(got, fmt.Sprintf("%s:%d %s %s", x.Path, x.Line, x.Severity, x.Summary))
	}
	if w := "[tests/test_cart.py:9 HIGH tests.test_cart test_total failed: assert 25 == 30 :0 HIGH tests.test_cart test_db errored: fixture 'db' not found]"; fmt.Sprint(got) != w {
		t.Errorf("annotations\n got %v\nwant %s", got, w)
	}
	// A test that printed the relay's credential does not send it on.
	for _, req := range bb.Requests() {
		if strings.Contains(string(req.Body), token) {
			t.Errorf("%s %s sent the credential", req.Method, req.Path)
		}
	}
	if !strings.Contains(string(annotations[1]), `env: BITBUCKET_ACCESS_TOKEN=[REDACTED]`) {
		t.Errorf("annotation %s", annotations[1])
	}
	// The status first, never held up by the report.
	var order []string
	for _, req := range bb.Requests() {
		order = append(order, req.Method+" "+req.Path[strings.LastIndex(req.Path, "/")+1:])
	}
	if w := "[POST build DELETE gitlab~acme~widgets~tests PUT gitlab~acme~widgets~tests POST annotations]"; fmt.Sprint(order) != w {
		t.Errorf("requests %v, want %s", order, w)
	}
	eventually(t, "the metric", func() bool { return r.metric(`bitbucket_relay_test_reports_total{outcome="published"}`) == 1 }, r.log)
	// The operator sees it in the status's history.
	var out []byte
	eventually(t, "the report in the status's history", func() bool {
		cmd := exec.Command(relayBinary, "status", "--commit", sha)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "BITBUCKET_RELAY_DATA=" + data}
		out, _ = cmd.CombinedOutput()
		return strings.Contains(string(out), "report pipeline 2045 (#7) FAILED: 200: test report published: 2 of 2003 tests failed (1 with an error), 1 skipped in 1.5s. (2 annotations)")
	}, func() string { return string(out) })
}

// GitLab's test report fails: the status still goes, with the counts, and
// the report says the failed tests could not be read. On Data Center the
// status carries testResults.
func TestRelayTestReportWhenGitLabFails(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	gl := newGitLabAPI(t)
	gl.set(2045, "failed", sha)
	gl.summaries[2045] = testSummary
	gl.testReports[2045] = "500"
	r := startRelay(t, t.TempDir(), "BITBUCKET_SERVER_URL="+bb.url, "BITBUCKET_PROJECT=PROJ", "GITLAB_URL="+gl.url, "GITLAB_TOKEN="+gitlabToken)
	if code, _ := r.send("Pipeline Hook", hook("acme/widgets", 42, 2045, 7, "failed", sha, "main", "")); code != 202 {
		t.Fatal(code)
	}
	key := "gitlab~acme~widgets~tests"
	eventually(t, "the test report", func() bool { rep, _ := bb.Report(sha, key); return rep != nil },
		func() string { return fmt.Sprint(bb.posted()) + r.log() })
	report, annotations := bb.Report(sha, key)
	if !strings.Contains(string(report), `"details":"2 of 2003 tests failed (1 with an error), 1 skipped in 1.5s. The failed tests could not be read from GitLab: see the pipeline's Tests tab."`) ||
		len(annotations) != 0 {
		t.Errorf("report %s, %d annotations", report, len(annotations))
	}
	var shown struct {
		State       string
		TestResults map[string]int
	}
	_ = json.Unmarshal(bb.Shown(sha, "gitlab/acme/widgets"), &shown)
	if shown.State != "FAILED" || fmt.Sprint(shown.TestResults) != "map[failed:2 skipped:1 successful:2000]" {
		t.Errorf("status %+v", shown)
	}
	eventually(t, "the metrics", func() bool {
		return r.metric(`bitbucket_relay_test_reports_total{outcome="partial"}`) == 1 &&
			r.metric(`bitbucket_relay_gitlab_errors_total{call="test_report",code="500"}`) == 1
	}, r.log)
}

// BITBUCKET_RELAY_TEST_REPORTS=false: the status only, as before.
func TestRelayTestReportsOff(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	gl := newGitLabAPI(t)
	gl.set(2045, "success", sha)
	gl.summaries[2045] = testSummary
	r := startRelay(t, t.TempDir(), "BITBUCKET_API_URL="+bb.url+"/2.0", "GITLAB_URL="+gl.url, "GITLAB_TOKEN="+gitlabToken, "BITBUCKET_RELAY_TEST_REPORTS=false")
	if code, _ := r.send("Pipeline Hook", hook("acme/widgets", 42, 2045, 7, "success", sha, "main", "")); code != 202 {
		t.Fatal(code)
	}
	eventually(t, "the status", func() bool { return len(bb.posted()[statusPath]) == 1 }, r.log)
	time.Sleep(500 * time.Millisecond)
	if n := len(bb.Requests()); n != 1 {
		t.Errorf("%d requests: %v", n, bb.Requests())
	}
}

// A slow GitLab never holds up a Cloud status: its test summary is read
// after the post, for the report.
func TestRelaySlowTestReportDoesNotDelayTheStatus(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	gl := newGitLabAPI(t)
	gl.set(2045, "success", sha)
	gl.summaries[2045] = `{"total":{"time":0.5,"count":1,"success":1,"failed":0,"skipped":0,"error":0}}`
	gl.testDelay = 2 * time.Second
	r := startRelay(t, t.TempDir(), "BITBUCKET_API_URL="+bb.url+"/2.0", "GITLAB_URL="+gl.url, "GITLAB_TOKEN="+gitlabToken)
	sent := time.Now()
	if code, _ := r.send("Pipeline Hook", hook("acme/widgets", 42, 2045, 7, "success", sha, "main", "")); code != 202 {
		t.Fatal(code)
	}
	eventually(t, "the status", func() bool { return len(bb.posted()[statusPath]) == 1 }, r.log)
	if waited := time.Since(sent); waited > 1500*time.Millisecond {
		t.Errorf("the status took %s: it waited for GitLab's test summary", waited)
	}
	eventually(t, "the report, later", func() bool { rep, _ := bb.Report(sha, "gitlab~acme~widgets~tests"); return rep != nil }, r.log)
	if rep, _ := bb.Report(sha, "gitlab~acme~widgets~tests"); !strings.Contains(string(rep), `"result":"PASSED"`) {
		t.Errorf("report %s", rep)
	}
}

// A Bitbucket that answers 502 twice to each path still gets the report:
// its requests are sent again, as the status's are.
func TestRelayTestReportThroughAFlakyBitbucket(t *testing.T) {
	t.Parallel()
	bb := newBitbucket(t)
	gl := newGitLabAPI(t)
	gl.set(2045, "failed", sha)
	gl.summaries[2045] = testSummary
	gl.testReports[2045] = testReport()
	r := startRelay(t, t.TempDir(), "BITBUCKET_API_URL="+bb.url+"/2.0", "GITLAB_URL="+gl.url, "GITLAB_TOKEN="+gitlabToken)
	// The default route: workspace acme, repository "flaky", which answers 502 twice per path.
	if code, _ := r.send("Pipeline Hook", hook("acme/flaky", 42, 2045, 7, "failed", sha, "main", "")); code != 202 {
		t.Fatal(code)
	}
	eventually(t, "the report, after 502s", func() bool { _, a := bb.Report(sha, "gitlab~acme~flaky~tests"); return len(a) == 2 },
		func() string { return fmt.Sprint(bb.Requests()) + r.log() })
	eventually(t, "the metric", func() bool { return r.metric(`bitbucket_relay_test_reports_total{outcome="published"}`) == 1 }, r.log)
}
