package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/fakebitbucket"
)

// A job's workspace with the report files a test job left as artifacts.
func reportWorkspace(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const pytestReport = `<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="3" time="0.5">
<testcase classname="tests.test_cart" name="test_add" time="0.1"/>
<testcase classname="tests.test_cart" name="test_total" time="0.3"><failure message="assert 25 == 30">def test_total():
&gt;       assert total([10, 15]) == 30
E       assert 25 == 30

tests/test_cart.py:9: AssertionError</failure></testcase>
<testcase classname="tests.test_cart" name="test_coupon" time="0.0"><skipped message="later"/></testcase>
</testsuite></testsuites>`

const eslintReport = `[{"check_name":"no-eval","description":"eval can be harmful.","categories":["Security"],"severity":"critical",
"fingerprint":"a1b2c3","location":{"path":"src/legacy.js","lines":{"begin":3}}},
{"check_name":"no-unused-vars","description":"'x' is unused.","severity":"minor","fingerprint":"d4e5f6","location":{"path":"src/cart.js","lines":{"begin":12}}}]`

func reportJob(url, dir string, kv ...string) []string {
	return gitlabJob(url+"/2.0", append([]string{"CI_PROJECT_DIR=" + dir}, kv...)...)
}

func TestReportPublishesTestsAndCodeQualityToCloud(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	// As GitLab gives the component's result job its directory: the report
	// files downloaded, no sources (GIT_STRATEGY: none).
	dir := reportWorkspace(t, map[string]string{"reports/junit.xml": pytestReport, "gl-code-quality-report.json": eslintReport})
	env := reportJob(url, dir, "BITBUCKET_JUNIT=reports/*.xml", "BITBUCKET_CODE_QUALITY=gl-code-quality-report.json")
	o := runIn(t, dir, env, "report")
	where := "acme/widgets at " + url + "/2.0"
	want := "Published the test report for commit " + sha + " to " + where + ` (key "gitlab~acme~widgets~tests", failed, 1 annotation, 3 requests): 1 of 3 tests failed, 1 skipped in 400ms.` + "\n" +
		"Published the code quality report for commit " + sha + " to " + where + ` (key "gitlab~acme~widgets~code-quality", failed, 2 annotations, 3 requests): 2 findings: 1 critical, 1 minor. The report fails on a finding of severity major or above.` + "\n"
	if o.code != 0 || o.stdout != want || o.stderr != "" {
		t.Fatalf("code %d\nstdout %s\nwant   %s\nstderr %s", o.code, o.stdout, want, o.stderr)
	}
	var got []string
	for _, r := range s.Requests() {
		got = append(got, fmt.Sprintf("%s %s %d %s", r.Method, strings.TrimPrefix(r.Path, "/2.0/repositories/acme/widgets/commit/"+sha+"/reports/"), r.Code, r.Auth))
	}
	wantRequests := "[DELETE gitlab~acme~widgets~tests 404 Bearer PUT gitlab~acme~widgets~tests 200 Bearer POST gitlab~acme~widgets~tests/annotations 200 Bearer " +
		"DELETE gitlab~acme~widgets~code-quality 404 Bearer PUT gitlab~acme~widgets~code-quality 200 Bearer POST gitlab~acme~widgets~code-quality/annotations 200 Bearer]"
	if fmt.Sprint(got) != wantRequests {
		t.Errorf("requests\n got %v\nwant %s", got, wantRequests)
	}
	report, annotations := s.Report(sha, "gitlab~acme~widgets~tests")
	wantReport := `{"title":"GitLab test results","details":"1 of 3 tests failed, 1 skipped in 400ms.","external_id":"gitlab~acme~widgets~tests","reporter":"GitLab",` +
		`"link":"https://gitlab.example.com/acme/widgets/-/pipelines/1234/test_report","report_type":"TEST","result":"FAILED","data":[` +
		`{"title":"Tests","type":"NUMBER","value":3},{"title":"Passed","type":"NUMBER","value":1},{"title":"Failed","type":"NUMBER","value":1},` +
		`{"title":"Skipped","type":"NUMBER","value":1},{"title":"Duration","type":"DURATION","value":400}]}`
	if string(report) != wantReport {
		t.Errorf("report\n got %s\nwant %s", report, wantReport)
	}
	wantAnnotation := `{"external_id":"` + annotationID(t, annotations[0]) + `","annotation_type":"BUG","path":"tests/test_cart.py","line":9,` +
		`"summary":"tests.test_cart test_total failed: assert 25 == 30","details":"def test_total():\n\u003e       assert total([10, 15]) == 30\nE       assert 25 == 30\n\ntests/test_cart.py:9: AssertionError",` +
		`"result":"FAILED","severity":"HIGH"}`
	if len(annotations) != 1 || string(annotations[0]) != strings.ReplaceAll(wantAnnotation, `\u003e`, ">") {
		t.Errorf("annotations\n got %s\nwant %s", annotations, wantAnnotation)
	}
	_, annotations = s.Report(sha, "gitlab~acme~widgets~code-quality")
	wantCQ := `[{"external_id":"a1b2c3","annotation_type":"VULNERABILITY","path":"src/legacy.js","line":3,"summary":"eval can be harmful. (no-eval)","result":"FAILED","severity":"HIGH"} ` +
		`{"external_id":"d4e5f6","annotation_type":"CODE_SMELL","path":"src/cart.js","line":12,"summary":"'x' is unused. (no-unused-vars)","result":"FAILED","severity":"LOW"}]`
	if got := fmt.Sprintf("%s", annotations); got != wantCQ {
		t.Errorf("code quality annotations\n got %s\nwant %s", got, wantCQ)
	}

	// A re-run replaces the report: the same annotations, not twice as many.
	if o := runIn(t, dir, env, "report"); o.code != 0 {
		t.Fatalf("%+v", o)
	}
	if _, annotations := s.Report(sha, "gitlab~acme~widgets~tests"); len(annotations) != 1 {
		t.Errorf("after a re-run: %d annotations", len(annotations))
	}
}

// TestReportInAResultJobPlacesEveryFailure: the component's result job
// runs report in a directory that holds only the report files, which real
// producers wrote in the test job, in another runner's directory
// (/builds/<runner>/<n>/group/project). Every failure still lands on its
// file and line; a failure is never cancelled by another suite's pass;
// every code quality finding gets its annotation.
func TestReportInAResultJobPlacesEveryFailure(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	files := map[string]string{}
	for name, from := range map[string]string{
		"reports/playwright.xml":      "../junit/testdata/producers/playwright-projects.xml",
		"reports/py-3.11.xml":         "../junit/testdata/producers/pytest-matrix-py3.11.xml",
		"reports/py-3.12.xml":         "../junit/testdata/producers/pytest-matrix-py3.12.xml",
		"gl-code-quality-report.json": "../codequality/testdata/golangci-lint-2.6-duplicates.json",
	} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
	}
	dir := reportWorkspace(t, files)
	env := reportJob(url, dir, "BITBUCKET_JUNIT=reports/*.xml", "BITBUCKET_CODE_QUALITY=gl-code-quality-report.json", "CI_PROJECT_PATH=acme/shop")
	o := runIn(t, dir, env, "report")
	if o.code != 0 || !strings.Contains(o.stdout, `(key "gitlab~acme~shop~tests", failed, 2 annotations, 3 requests): 2 of 6 tests failed in `) ||
		!strings.Contains(o.stdout, `(key "gitlab~acme~shop~code-quality", failed, 4 annotations, 3 requests): 4 findings: 4 critical.`) {
		t.Fatalf("%+v", o)
	}
	place := func(key string) []string {
		_, annotations := s.Report(sha, key)
		var out []string
		for _, raw := range annotations {
			var a struct {
				Path    string
				Line    int
				Summary string
			}
			_ = json.Unmarshal(raw, &a)
			out = append(out, fmt.Sprintf("%s:%d %s", a.Path, a.Line, a.Summary))
		}
		return out
	}
	wantTests := []string{
		"tests/cart.spec.js:7 cart.spec.js adds up the cart failed: Error: expect(received).toBe(expected) // Object.is equality",
		"tests/test_cart.py:21 tests.test_cart test_python_version failed: AssertionError: 3.11 rounds differently",
	}
	if got := place("gitlab~acme~shop~tests"); strings.Join(got, "\n") != strings.Join(wantTests, "\n") {
		t.Errorf("test annotations:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(wantTests, "\n     "))
	}
	wantCQ := []string{
		"main.go:7 errcheck: Error return value of `f.Close` is not checked",
		"main.go:9 errcheck: Error return value of `g.Close` is not checked",
		"main.go:10 errcheck: Error return value of `os.Remove` is not checked",
		"main.go:11 errcheck: Error return value of `os.Remove` is not checked",
	}
	if got := place("gitlab~acme~shop~code-quality"); strings.Join(got, "\n") != strings.Join(wantCQ, "\n") {
		t.Errorf("code quality annotations:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(wantCQ, "\n     "))
	}
}

func annotationID(t *testing.T, raw json.RawMessage) string {
	var a struct {
		ExternalID string `json:"external_id"`
	}
	if err := json.Unmarshal(raw, &a); err != nil || len(a.ExternalID) != 32 {
		t.Fatalf("annotation %s", raw)
	}
	return a.ExternalID
}

// failures is a JUnit file of n failed tests and some passing ones.
func failures(n int) string {
	var b strings.Builder
	b.WriteString(`<testsuites><testsuite name="many">`)
	for i := range n {
		fmt.Fprintf(&b, `<testcase classname="pkg" name="Test%d"><failure message="want %d, got %d">long output %s</failure></testcase>`, i, i, i+1, strings.Repeat("é", 3000))
	}
	b.WriteString(`<testcase classname="pkg" name="TestOK"/></testsuite></testsuites>`)
	return b.String()
}

// At the servers' limits: 1,000 annotations in the fewest requests each
// takes (Cloud: 100 a request; Data Center: the report's 1,000 in one),
// the rest counted in the details, texts cut on character boundaries.
func TestReportAtTheLimits(t *testing.T) {
	t.Parallel()
	dir := reportWorkspace(t, map[string]string{"junit.xml": failures(1500)})
	for _, server := range []struct {
		name     string
		dc       bool
		requests int
	}{{"cloud", false, 12}, {"datacenter", true, 3}} {
		t.Run(server.name, func(t *testing.T) {
			s, url := server2(t)
			env := reportJob(url, dir, "BITBUCKET_JUNIT=junit.xml")
			key := "gitlab~acme~widgets~tests"
			if server.dc {
				env = append(env, "BITBUCKET_SERVER_URL="+url, "BITBUCKET_PROJECT=PROJ", "BITBUCKET_REPOSITORY=widgets")
			}
			o := runIn(t, dir, env, "report")
			if o.code != 0 || o.stderr != "" || !strings.Contains(o.stdout, fmt.Sprintf(`(key %q, failed, 1000 annotations, 500 left out, %d requests): 1500 of 1501 tests failed`, key, server.requests)) {
				t.Fatalf("%+v", o)
			}
			if n := len(s.Requests()); n != server.requests {
				t.Errorf("%d requests, want %d", n, server.requests)
			}
			report, annotations := s.Report(sha, key)
			if !strings.Contains(string(report), `500 more left out: a report holds at most 1000, the most severe first.`) {
				t.Errorf("report %s", report)
			}
			if len(annotations) != 1000 {
				t.Errorf("%d annotations", len(annotations))
			}
		})
	}
}

func server2(t *testing.T) (*fakebitbucket.Server, string) { return server(t, &fakebitbucket.Server{}) }

// On Data Center the report goes to the insights API, and the final status
// carries the test counts (7.4+).
func TestReportAndTestCountsOnDataCenter(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	dir := reportWorkspace(t, map[string]string{"junit.xml": pytestReport})
	env := reportJob(url, dir, "BITBUCKET_JUNIT=junit.xml", "BITBUCKET_SERVER_URL="+url+"/bitbucket", "BITBUCKET_PROJECT=PROJ", "BITBUCKET_REPOSITORY=widgets")
	o := runIn(t, dir, env, "report")
	if o.code != 0 || !strings.HasPrefix(o.stdout, "Published the test report for commit "+sha+" to PROJ/widgets at "+url+"/bitbucket (key \"gitlab~acme~widgets~tests\", failed, 1 annotation, 3 requests)") {
		t.Fatalf("%+v", o)
	}
	report, annotations := s.Report(sha, "gitlab~acme~widgets~tests")
	wantReport := `{"title":"GitLab test results","details":"1 of 3 tests failed, 1 skipped in 400ms.","result":"FAIL","reporter":"GitLab",` +
		`"link":"https://gitlab.example.com/acme/widgets/-/pipelines/1234/test_report","data":[{"title":"Tests","type":"NUMBER","value":3},` +
		`{"title":"Passed","type":"NUMBER","value":1},{"title":"Failed","type":"NUMBER","value":1},{"title":"Skipped","type":"NUMBER","value":1},` +
		`{"title":"Duration","type":"DURATION","value":400}]}`
	if string(report) != wantReport {
		t.Errorf("report\n got %s\nwant %s", report, wantReport)
	}
	// tests/test_cart.py is not in this workspace (a result job's has only
	// the report files): it is the repository's path all the same.
	if len(annotations) != 1 || !strings.Contains(string(annotations[0]), `"message":"tests.test_cart test_total failed: assert 25 == 30\n\ndef test_total():`) ||
		!strings.HasSuffix(string(annotations[0]), `"severity":"HIGH","type":"BUG","path":"tests/test_cart.py","line":9}`) {
		t.Errorf("annotations %s", annotations)
	}
	var paths []string
	for _, r := range s.Requests() {
		paths = append(paths, r.Method+" "+strings.TrimPrefix(r.Path, "/bitbucket/rest/insights/latest/projects/PROJ/repos/widgets/commits/"+sha+"/reports/"))
	}
	if want := "[DELETE gitlab~acme~widgets~tests PUT gitlab~acme~widgets~tests POST gitlab~acme~widgets~tests/annotations]"; fmt.Sprint(paths) != want {
		t.Errorf("requests %v, want %s", paths, want)
	}

	if o := runIn(t, dir, env, "failed"); o.code != 0 {
		t.Fatalf("%+v", o)
	}
	var shown struct {
		State       string
		TestResults map[string]int
	}
	if err := json.Unmarshal(s.Shown(sha, "gitlab/acme/widgets"), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.State != "FAILED" || fmt.Sprint(shown.TestResults) != "map[failed:1 skipped:1 successful:1]" {
		t.Errorf("status %+v", shown)
	}
}

// Two GitLab projects reporting on one Bitbucket commit keep a report each.
func TestReportsOfTwoProjectsDoNotOverwriteEachOther(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	dir := reportWorkspace(t, map[string]string{"junit.xml": pytestReport})
	for _, project := range []string{"acme/widgets", "acme/platform/widgets-e2e"} {
		if o := runIn(t, dir, reportJob(url, dir, "BITBUCKET_JUNIT=junit.xml", "CI_PROJECT_PATH="+project), "report"); o.code != 0 {
			t.Fatalf("%+v", o)
		}
	}
	for _, key := range []string{"gitlab~acme~widgets~tests", "gitlab~acme~platform~widgets-e2e~tests"} {
		if report, _ := s.Report(sha, key); report == nil {
			t.Errorf("no report %s", key)
		}
	}
}

func TestReportThatCannotBePublishedWarnsUnlessStrict(t *testing.T) {
	t.Parallel()
	_, url := server(t, &fakebitbucket.Server{})
	dir := reportWorkspace(t, map[string]string{"junit.xml": pytestReport})
	env := reportJob(url, dir, "BITBUCKET_JUNIT=junit.xml", "BITBUCKET_REPOSITORY=forbidden")
	o := runIn(t, dir, env, "report")
	wantStart := "bitbucket-status: warning: could not publish the test report for commit " + sha + " to acme/forbidden at " + url + "/2.0: "
	if o.code != 0 || o.stdout != "" || !strings.HasPrefix(o.stderr, wantStart) || !strings.Contains(o.stderr, "403") {
		t.Fatalf("%+v", o)
	}
	o = runIn(t, dir, append(env, "BITBUCKET_REPORT_STRICT=true"), "report")
	if o.code != 1 || !strings.HasPrefix(o.stderr, wantStart) ||
		!strings.HasSuffix(o.stderr, "bitbucket-status: 1 report problem (above); failing as BITBUCKET_REPORT_STRICT or --strict asks\n") {
		t.Fatalf("%+v", o)
	}
}

// A file that cannot be read is named with its line; the other files and
// reports still go, and the report says which file it lacks.
func TestReportWithABrokenFile(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	dir := reportWorkspace(t, map[string]string{"a/junit.xml": pytestReport, "b/junit.xml": "<testsuites>\n<testsuite>\n<testcase name='x'>\n</testsuites>\n",
		"cq.json": eslintReport})
	o := runIn(t, dir, reportJob(url, dir, "BITBUCKET_JUNIT=**/junit.xml", "BITBUCKET_CODE_QUALITY=cq.json"), "report")
	if o.code != 0 || o.stderr != "bitbucket-status: warning: could not read b/junit.xml: line 4: element <testcase> closed by </testsuites>\n" ||
		!strings.Contains(o.stdout, "Published the code quality report") {
		t.Fatalf("%+v", o)
	}
	report, _ := s.Report(sha, "gitlab~acme~widgets~tests")
	if !strings.Contains(string(report), `"details":"1 report file could not be read: b/junit.xml: line 4: element <testcase> closed by </testsuites>. 1 of 3 tests failed`) ||
		!strings.Contains(string(report), `"result":"FAILED"`) {
		t.Errorf("report %s", report)
	}
}

func TestReportGlobMatchingNothingWarns(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	dir := reportWorkspace(t, nil)
	o := runIn(t, dir, reportJob(url, dir, "BITBUCKET_JUNIT=reports/*.xml"), "report")
	want := `bitbucket-status: warning: --junit "reports/*.xml" matches no file in ` + dir + `: is the file listed in the test job's artifacts:paths (not only artifacts:reports), and does this job download its artifacts?` + "\n"
	if o.code != 0 || o.stdout != "" || o.stderr != want || len(s.Requests()) != 0 {
		t.Fatalf("%+v\nwant %s", o, want)
	}
}

func TestReportUsageErrors(t *testing.T) {
	t.Parallel()
	dir := reportWorkspace(t, nil)
	for _, c := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"report"}, nil, "bitbucket-status: report: nothing to publish: give --junit GLOB or --code-quality GLOB (or set BITBUCKET_JUNIT or BITBUCKET_CODE_QUALITY)\n"},
		{[]string{"report", "--junit", "x.xml", "--fail-on", "severe"}, nil, `bitbucket-status: --fail-on is "severe", not a severity: use one of info, minor, major, critical, blocker` + "\n"},
		{[]string{"report", "--junit", "x.xml"}, []string{"BITBUCKET_CODE_QUALITY_FAIL_ON=high"}, `bitbucket-status: BITBUCKET_CODE_QUALITY_FAIL_ON is "high", not a severity: use one of info, minor, major, critical, blocker` + "\n"},
		{[]string{"report", "--junit", "x.xml"}, []string{"BITBUCKET_REPORT_STRICT=yes please"}, `bitbucket-status: BITBUCKET_REPORT_STRICT is "yes please": use true or false` + "\n"},
		{[]string{"report", "--junit", "x.xml", "--key", "my/key"}, nil, `bitbucket-status: the report key "my/key" holds '/', '?', '#', '%' or a space, which a URL path does not carry as they are: use letters, digits and . _ ~ -` + "\n"},
		{[]string{"report", "x.xml"}, nil, `bitbucket-status: report takes no arguments, got "x.xml": give files with --junit and --code-quality` + "\n"},
	} {
		o := runIn(t, dir, reportJob("http://127.0.0.1:9", dir, c.env...), c.args...)
		if o.code != 2 || o.stdout != "" || o.stderr != c.want {
			t.Errorf("%v %v: %+v\nwant %s", c.args, c.env, o, c.want)
		}
	}
}

// A dry run prints every request, needs no credential, sends nothing.
func TestReportDryRun(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	dir := reportWorkspace(t, map[string]string{"cq.json": eslintReport})
	env := reportJob(url, dir, "BITBUCKET_ACCESS_TOKEN=")
	o := runIn(t, dir, env, "report", "--dry-run", "--code-quality", "cq.json", "--fail-on", "blocker", "--key", "lint")
	base := url + "/2.0/repositories/acme/widgets/commit/" + sha + "/reports/lint~code-quality"
	for _, want := range []string{"DELETE " + base + "\n", "PUT " + base + "\n", "POST " + base + "/annotations\n", `"result": "PASSED"`,
		"Authorization: (none: no credential is set)", "(dry run: nothing was sent)\n"} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("dry run lacks %q:\n%s", want, o.stdout)
		}
	}
	if o.code != 0 || len(s.Requests()) != 0 {
		t.Errorf("%+v, %d requests", o, len(s.Requests()))
	}
}

// A test that prints the credential does not send it to Bitbucket: report
// texts are scrubbed as the output is.
func TestReportNeverSendsTheCredential(t *testing.T) {
	t.Parallel()
	s, url := server(t, &fakebitbucket.Server{})
	leak := `<testsuite name="s"><testcase classname="c" name="env"><failure message="BITBUCKET_ACCESS_TOKEN=` + token + `">env: BITBUCKET_ACCESS_TOKEN=` + token + `</failure></testcase></testsuite>`
	dir := reportWorkspace(t, map[string]string{"junit.xml": leak})
	if o := runIn(t, dir, reportJob(url, dir, "BITBUCKET_JUNIT=junit.xml"), "report"); o.code != 0 {
		t.Fatalf("%+v", o)
	}
	_, annotations := s.Report(sha, "gitlab~acme~widgets~tests")
	if len(annotations) != 1 || !strings.Contains(string(annotations[0]), `"summary":"c env failed: BITBUCKET_ACCESS_TOKEN=[REDACTED]"`) {
		t.Errorf("annotations %s", annotations)
	}
	for _, r := range s.Requests() {
		if strings.Contains(string(r.Body), token) {
			t.Errorf("%s %s sent the credential: %s", r.Method, r.Path, r.Body)
		}
	}
}
