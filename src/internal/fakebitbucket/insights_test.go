package fakebitbucket

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

func do(t *testing.T, url, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func annotations(n int, extra string) string {
	var list []string
	for i := range n {
		list = append(list, fmt.Sprintf(`{"external_id":"a%d%s","annotation_type":"BUG","summary":"s","severity":"HIGH"}`, i, extra))
	}
	return "[" + strings.Join(list, ",") + "]"
}

// What the stand-in refuses is what the servers refuse: a payload a real
// server would reject fails a test here.
func TestCloudInsightsLimits(t *testing.T) {
	ts := httptest.NewServer(&Server{Token: "tok"})
	defer ts.Close()
	report := "/2.0/repositories/acme/app/commit/" + sha + "/reports/k"
	for body, want := range map[string]string{
		`{"title":"t","details":"d","report_type":"TESTS"}`:                             "report_type: Select a valid choice.",
		`{"title":"t","details":"d","report_type":"TEST","result":"PASS"}`:              "result: Select a valid choice.",
		`{"details":"d","report_type":"TEST"}`:                                          "title: This field is required.",
		`{"title":"t","details":"d","report_type":"TEST","link":"javascript:alert(1)"}`: "link: Enter a valid URL.",
		`{"title":"t","details":"d","report_type":"TEST","data":[` + strings.Repeat(`{"title":"x","type":"NUMBER","value":1},`, 10) + `{"title":"x","type":"NUMBER","value":1}]}`: "data: A report can hold at most 10 data elements.",
	} {
		if code, got := do(t, ts.URL, "PUT", report, body); code != 400 || !strings.Contains(got, want) {
			t.Errorf("%s: %d %s, want 400 %s", body, code, got, want)
		}
	}
	if code, _ := do(t, ts.URL, "POST", report+"/annotations", annotations(1, "")); code != 404 {
		t.Errorf("annotations before the report: %d", code)
	}
	if code, got := do(t, ts.URL, "PUT", report, `{"title":"t","details":"d","report_type":"TEST","result":"FAILED"}`); code != 200 {
		t.Fatalf("%d %s", code, got)
	}
	if code, got := do(t, ts.URL, "POST", report+"/annotations", annotations(101, "")); code != 400 ||
		got != `{"code":400,"message":"Bulk upload supports a maximum of /100 annotations."}` {
		t.Errorf("101 annotations: %d %s", code, got)
	}
	for _, bad := range []string{`[{"external_id":"x","annotation_type":"BUG","summary":"s","line":0}]`, `[{"external_id":"x","annotation_type":"ISSUE","summary":"s"}]`,
		`[{"external_id":"x","annotation_type":"BUG","summary":""}]`, `[{"external_id":"x","annotation_type":"BUG","summary":"` + strings.Repeat("é", 451) + `"}]`,
		`[{"external_id":"x","annotation_type":"BUG","summary":"s"},{"external_id":"x","annotation_type":"BUG","summary":"s"}]`} {
		if code, _ := do(t, ts.URL, "POST", report+"/annotations", bad); code != 400 {
			t.Errorf("%s: %d", bad, code)
		}
	}
	for batch := range 10 {
		if code, got := do(t, ts.URL, "POST", report+"/annotations", annotations(100, fmt.Sprint("-", batch))); code != 200 {
			t.Fatalf("batch %d: %d %s", batch, code, got)
		}
	}
	if code, got := do(t, ts.URL, "POST", report+"/annotations", annotations(1, "-more")); code != 400 || !strings.Contains(got, "at most 1000") {
		t.Errorf("the 1,001st: %d %s", code, got)
	}
}

func TestDataCenterInsightsLimits(t *testing.T) {
	ts := httptest.NewServer(&Server{Token: "tok"})
	defer ts.Close()
	base := "/rest/insights/latest/projects/P/repos/app/commits/" + sha + "/reports/"
	if code, got := do(t, ts.URL, "PUT", base+strings.Repeat("k", 51), `{"title":"t","data":[]}`); code != 400 ||
		!strings.Contains(got, "The field 'key' cannot be more than 50 characters long") {
		t.Errorf("a 51-character key: %d %s", code, got)
	}
	for body, want := range map[string]string{
		`{"title":"t"}`: "The field 'data' is required",
		`{"title":"t","data":[],"link":"ftp://x"}`:  "The field 'link' must be a valid HTTP or HTTPS URL",
		`{"title":"t","data":[],"result":"PASSED"}`: "The field 'result' must be one of PASS, FAIL",
		`{"title":"t","data":[` + strings.Repeat(`{"title":"x","type":"NUMBER","value":1},`, 6) + `{"title":"x","type":"NUMBER","value":1}]}`: "The field 'data' cannot have more than 6 elements",
		`{"title":"t","data":[],"details":"` + strings.Repeat("x", 2001) + `"}`:                                                               "The field 'details' cannot be more than 2000 characters long",
	} {
		if code, got := do(t, ts.URL, "PUT", base+"k", body); code != 400 || !strings.Contains(got, want) {
			t.Errorf("%.80s: %d %s, want %s", body, code, got, want)
		}
	}
	if code, _ := do(t, ts.URL, "PUT", base+"k", `{"title":"t","data":[],"result":"FAIL"}`); code != 200 {
		t.Fatal(code)
	}
	one := `{"externalId":"e","message":"m","severity":"HIGH","type":"BUG"}`
	if code, got := do(t, ts.URL, "POST", base+"k/annotations", `{"annotations":[{"message":"","severity":"HIGH"}]}`); code != 400 ||
		!strings.Contains(got, "The field 'message' is required") {
		t.Errorf("no message: %d %s", code, got)
	}
	if code, _ := do(t, ts.URL, "POST", base+"k/annotations", `{"annotations":[`+strings.TrimSuffix(strings.Repeat(one+",", 1000), ",")+`]}`); code != 204 {
		t.Fatal(code)
	}
	// Past 1,000 the whole request is refused, and nothing of it added.
	if code, got := do(t, ts.URL, "POST", base+"k/annotations", `{"annotations":[`+one+`,`+one+`]}`); code != 400 ||
		!strings.Contains(got, "would exceed the limit of 1000 annotations") {
		t.Errorf("past 1,000: %d %s", code, got)
	}
	s := ts.Config.Handler.(*Server)
	if _, a := s.Report(sha, "k"); len(a) != 1000 {
		t.Errorf("%d annotations kept", len(a))
	}
}

// Data Center's rich build status fields, as its OpenAPI bounds them.
func TestDataCenterRichStatus(t *testing.T) {
	ts := httptest.NewServer(&Server{Token: "tok"})
	defer ts.Close()
	path := "/rest/api/latest/projects/P/repos/app/commits/" + sha + "/builds"
	for body, want := range map[string]string{
		`{"key":"k","state":"FAILED","url":"https://g/p","ref":"main"}`:                                           "ref: must match ^refs/.*",
		`{"key":"k","state":"FAILED","url":"https://g/p","testResults":{"successful":-1,"failed":0,"skipped":0}}`: "testResults:",
		`{"key":"k","state":"FAILED","url":"https://g/p","testResults":{"successful":1}}`:                         "testResults:",
		`{"key":"k","state":"FAILED","url":"https://g/p","duration":-5}`:                                          "duration:",
	} {
		if code, got := do(t, ts.URL, "POST", path, body); code != 400 || !strings.Contains(got, want) {
			t.Errorf("%s: %d %s, want %s", body, code, got, want)
		}
	}
	if code, got := do(t, ts.URL, "POST", path, `{"key":"k","state":"FAILED","url":"https://g/p","ref":"refs/heads/main","testResults":{"successful":1,"failed":2,"skipped":0}}`); code != 204 {
		t.Errorf("%d %s", code, got)
	}
}
