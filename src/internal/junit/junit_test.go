package junit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/insights"
)

// workspace is a checkout holding files, for paths found in stack traces.
func workspace(dir string, files ...string) insights.Paths {
	have := map[string]bool{}
	for _, f := range files {
		have[f] = true
	}
	return insights.Paths{ProjectDir: dir, Exists: func(rel string) bool { return have[rel] }}
}

type want struct {
	path  string
	line  int
	title string
}

// Each producer's file in its own shape, with its quirks named.
func TestProducers(t *testing.T) {
	for _, tc := range []struct {
		file   string
		paths  insights.Paths
		counts insights.TestCounts
		flaky  int
		found  []want
	}{
		{
			// pytest (xunit2, its default): no file or line attributes; the
			// failure's text names test and code files with a line.
			// A setup error is an <error> with pytest's "file X, line N".
			file:   "pytest.xml",
			paths:  workspace("/builds/acme/app", "tests/test_math.py", "app/math.py"),
			counts: insights.TestCounts{Total: 5, Failed: 1, Errored: 1, Skipped: 1, Duration: 6 * time.Millisecond},
			found: []want{
				// No file in the XML: the innermost frame of the project's own
				// code, here the code under test that raised.
				{"app/math.py", 4, "tests.test_math test_divide failed: ZeroDivisionError: division by zero"},
				{"tests/test_math.py", 20, `tests.test_math test_fixture errored: failed on setup with "fixture 'db' not found"`},
			},
		},
		{
			// pytest with junit_family=xunit1: file and line of the test
			// function (counting from 0); the traceback's line in that file
			// is where it failed.
			file:   "pytest-xunit1.xml",
			paths:  workspace("/builds/acme/app", "tests/test_api.py"),
			counts: insights.TestCounts{Total: 2, Failed: 1, Duration: 50 * time.Millisecond},
			found:  []want{{"tests/test_api.py", 16, "tests.test_api test_post failed: assert 500 == 201"}},
		},
		{
			// pytest-rerunfailures: the test case repeated; a pass withdraws the failure.
			file:   "pytest-rerunfailures.xml",
			paths:  workspace("/builds/acme/app"),
			counts: insights.TestCounts{Total: 2, Duration: 300 * time.Millisecond},
			flaky:  1,
		},
		{
			// jest-junit with addFileAttribute: file but no line; classname
			// repeats the name; the message is the text, with an absolute trace.
			file:   "jest-junit.xml",
			paths:  workspace("/builds/acme/shop", "src/cart.test.js"),
			counts: insights.TestCounts{Total: 3, Failed: 1, Skipped: 1, Duration: 10 * time.Millisecond},
			found:  []want{{"src/cart.test.js", 18, "Cart totals the prices failed: Error: expect(received).toBe(expected) // Object.is equality"}},
		},
		{
			// gotestsum: message="Failed" always; the output has Go's framing
			// and a file name relative to the package, not the repository.
			file:   "gotestsum.xml",
			paths:  workspace("/builds/acme/api", "internal/store/store_test.go"),
			counts: insights.TestCounts{Total: 4, Failed: 1, Duration: 330 * time.Millisecond},
			// Without go.mod or the project's path, the file name is not placed.
			found: []want{{"", 0, "gitlab.com/acme/api/internal/store TestSave failed: got 2 rows, want 1"}},
		},
		{
			// go-junit-report: a panic is an <error>; a skip's message is the log line.
			file:   "go-junit-report.xml",
			paths:  workspace("/builds/acme/api"),
			counts: insights.TestCounts{Total: 2, Errored: 1, Skipped: 1},
			found:  []want{{"", 0, "example.com/pkg Failure errored: Runtime error"}},
		},
		{
			// Surefire: a bare <testsuite>, decimal commas and thousands
			// separators, 1E-07, flakyFailure (passed on a rerun) and
			// rerunFailure after a failure; Java traces name a file only.
			file:   "surefire.xml",
			paths:  workspace("/builds/acme/orders", "src/test/java/com/acme/OrderServiceTest.java"),
			counts: insights.TestCounts{Total: 4, Failed: 1, Duration: 680*time.Millisecond + 100*time.Nanosecond},
			flaky:  1,
			found:  []want{{"", 0, "com.acme.OrderServiceTest rejectsEmptyCart failed: expected: <400> but was: <500>"}},
		},
		{
			// PHPUnit: suites nested three deep, absolute file and a line.
			file:   "phpunit.xml",
			paths:  workspace("/builds/acme/shop", "tests/Unit/PriceTest.php"),
			counts: insights.TestCounts{Total: 3, Failed: 1, Duration: 12 * time.Millisecond},
			// The text starts with the test's id: the title is the next line;
			// the line is the assertion's, from the text.
			found: []want{{"tests/Unit/PriceTest.php", 30, `Tests.Unit.PriceTest testTax failed: Failed asserting that 19.0 is identical to 20.0.`}},
		},
		{
			// rspec_junit_formatter: a bare <testsuite>, file as ./spec/..., the line in the trace.
			file:   "rspec.xml",
			paths:  workspace("/builds/acme/web", "spec/models/user_spec.rb"),
			counts: insights.TestCounts{Total: 2, Failed: 1, Duration: 31 * time.Millisecond},
			found:  []want{{"spec/models/user_spec.rb", 12, `spec.models.user_spec User normalizes the name failed: expected: "Ann"`}},
		},
		{
			// An old tool's ISO-8859-1.
			file:   "latin1.xml",
			paths:  workspace("/builds/acme/old"),
			counts: insights.TestCounts{Total: 1, Failed: 1},
			found:  []want{{"", 0, "Café naïve failed: résultat faux"}},
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r := &Reader{Paths: tc.paths}
			if err := r.ReadFile(filepath.Join("testdata", tc.file)); err != nil {
				t.Fatal(err)
			}
			if got := r.Counts(); got != tc.counts {
				t.Errorf("counts = %+v, want %+v", got, tc.counts)
			}
			if r.Flaky() != tc.flaky {
				t.Errorf("flaky = %d, want %d", r.Flaky(), tc.flaky)
			}
			found, omitted := r.Failures()
			if omitted != 0 {
				t.Errorf("omitted = %d", omitted)
			}
			var got []want
			for _, f := range found {
				got = append(got, want{f.Path, f.Line, f.Title})
				if f.Severity != insights.Critical || f.Category != insights.Bug || f.ID == "" {
					t.Errorf("finding %q: severity %v, category %v, id %q", f.Title, f.Severity, f.Category, f.ID)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.found) {
				t.Errorf("findings:\n got %+v\nwant %+v", got, tc.found)
			}
		})
	}
}

func TestFailureDetailsKeepTheRestOfTheMessage(t *testing.T) {
	r := &Reader{Paths: workspace("/builds/acme/web", "spec/models/user_spec.rb")}
	if err := r.ReadFile("testdata/rspec.xml"); err != nil {
		t.Fatal(err)
	}
	found, _ := r.Failures()
	want := "got: \"ann\"\n\nFailure/Error: expect(user.name).to eq(\"Ann\")\n\n  expected: \"Ann\"\n       got: \"ann\"\n./spec/models/user_spec.rb:12:in `block (2 levels) in <top (required)>'"
	if found[0].Details != want {
		t.Errorf("details = %q\nwant %q", found[0].Details, want)
	}
}

// Bad input: an error that names the file and the line, nothing counted,
// and never a crash or an unbounded read.
func TestBadFiles(t *testing.T) {
	for file, want := range map[string]string{
		"malformed.xml":    "testdata/malformed.xml: line 5: element <testcase> closed by </testsuite>",
		"entities.xml":     "testdata/entities.xml: line 8: invalid character entity &lol9;",
		"invalid-utf8.xml": "testdata/invalid-utf8.xml: line 4: invalid UTF-8",
		"not-junit.html":   "testdata/not-junit.html: line 1: the root element is <html>, not <testsuites> or <testsuite>: not a JUnit report",
	} {
		t.Run(file, func(t *testing.T) {
			r := &Reader{}
			if err := r.ReadFile("testdata/pytest.xml"); err != nil {
				t.Fatal(err)
			}
			before := r.Counts()
			err := r.ReadFile(filepath.Join("testdata", file))
			if err == nil || err.Error() != want {
				t.Fatalf("error = %v, want %s", err, want)
			}
			if r.Counts() != before {
				t.Errorf("a file that could not be read was counted: %+v", r.Counts())
			}
		})
	}
}

func TestAGigabyteFileIsRefusedUnread(t *testing.T) {
	name := filepath.Join(t.TempDir(), "huge.xml")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: a gigabyte that takes no disk.
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	err = (&Reader{}).ReadFile(name)
	want := name + ": 1.0 GB is larger than 100 MB, the most read from a JUnit file (GitLab itself refuses files over 30 MB): split the report"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant %s", err, want)
	}
}

func TestAStreamPastTheLimitStops(t *testing.T) {
	head := strings.NewReader(`<testsuites><testsuite name="x">`)
	endless := &repeat{s: `<testcase classname="c" name="t"/>`}
	err := (&Reader{}).Read(ioMulti(head, endless), "pipe")
	if err == nil || err.Error() != "pipe: larger than 100 MB, the most read from a JUnit file: split the report" {
		t.Fatalf("error = %v", err)
	}
	if endless.read > MaxFileBytes+64<<10 {
		t.Errorf("read %d bytes of an endless stream", endless.read)
	}
}

// Past the limit the first failures are kept, and the rest counted.
func TestFailuresPastTheLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString(`<testsuites><testsuite name="many">`)
	for i := range 1500 {
		fmt.Fprintf(&b, `<testcase classname="c" name="t%d"><failure message="m%d"/></testcase>`, i, i)
	}
	for i := range 3000 {
		fmt.Fprintf(&b, `<testcase classname="c" name="ok%d"/>`, i)
	}
	b.WriteString(`</testsuite></testsuites>`)
	r := &Reader{}
	if err := r.Read(strings.NewReader(b.String()), "many.xml"); err != nil {
		t.Fatal(err)
	}
	found, omitted := r.Failures()
	if len(found) != 1000 || omitted != 500 || found[0].Title != "c t0 failed: m0" || found[999].Title != "c t999 failed: m999" {
		t.Fatalf("kept %d (first %q, last %q), omitted %d", len(found), found[0].Title, found[len(found)-1].Title, omitted)
	}
	if c := r.Counts(); c.Total != 4500 || c.Failed != 1500 || c.Passed() != 3000 {
		t.Errorf("counts %+v", c)
	}
}

// A test that failed in one file and passed in the next (another job of a
// matrix, another spec run) failed: a pass elsewhere never cancels it.
func TestAPassInAnotherFileNeverCancelsAFailure(t *testing.T) {
	r := &Reader{}
	for _, doc := range []string{
		`<testsuite name="a"><testcase classname="c" name="t"><failure message="boom"/></testcase></testsuite>`,
		`<testsuite name="a"><testcase classname="c" name="t"/></testsuite>`,
	} {
		if err := r.Read(strings.NewReader(doc), "x.xml"); err != nil {
			t.Fatal(err)
		}
	}
	found, _ := r.Failures()
	if c := r.Counts(); c.Total != 2 || c.Failed != 1 || len(found) != 1 || r.Flaky() != 0 || r.Report("").Passed {
		t.Errorf("counts %+v, findings %d, flaky %d", c, len(found), r.Flaky())
	}
}

func TestPathsOutsideTheRepositoryGoToTheOverview(t *testing.T) {
	r := &Reader{Paths: workspace("/builds/acme/app", "tests/a.py")}
	doc := `<testsuite name="a">
<testcase classname="c" name="up" file="../secret/a.py" line="3"><failure message="x"/></testcase>
<testcase classname="c" name="abs" file="/etc/passwd" line="3"><failure message="x"/></testcase>
<testcase classname="c" name="in" file="/builds/acme/app/./tests/a.py" line="3"><failure message="x"/></testcase>
</testsuite>`
	if err := r.Read(strings.NewReader(doc), "x.xml"); err != nil {
		t.Fatal(err)
	}
	found, _ := r.Failures()
	var got []string
	for _, f := range found {
		got = append(got, fmt.Sprintf("%s=%s:%d", f.Title[:4], f.Path, f.Line))
	}
	if want := "[c up=:0 c ab=:0 c in=tests/a.py:3]"; fmt.Sprint(got) != want {
		t.Errorf("got %v, want %s", got, want)
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0.160": 160 * time.Millisecond, "0,160": 160 * time.Millisecond, "14,029.255": 14029255 * time.Millisecond,
		"1E-07": 100 * time.Nanosecond, "0.000000": 0, "": 0, "abc": 0, "-1": 0, "NaN": 0, " 2 ": 2 * time.Second,
	} {
		if got := ParseTime(in); got != want {
			t.Errorf("ParseTime(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestReportSaysWhatHappened(t *testing.T) {
	r := &Reader{Paths: workspace("/builds/acme/app", "tests/test_math.py")}
	if err := r.ReadFile("testdata/pytest.xml"); err != nil {
		t.Fatal(err)
	}
	rep := r.Report("https://gitlab.example.com/acme/app/-/pipelines/5/test_report")
	if rep.Passed || rep.Summary != "2 of 5 tests failed (1 with an error), 1 skipped in 6ms." || rep.Kind != insights.Tests {
		t.Errorf("report %+v", rep)
	}
	want := "[{Tests 5 false} {Passed 2 false} {Failed 2 false} {Skipped 1 false} {Duration 6 true}]"
	if fmt.Sprint(rep.Figures) != want {
		t.Errorf("figures %v, want %s", rep.Figures, want)
	}
	if rep := insights.TestReport(insights.TestCounts{Total: 3, Duration: time.Second}, 1, nil, 0, ""); !rep.Passed ||
		rep.Summary != "All 3 tests passed in 1s. 1 test passed only on a rerun." || len(rep.Figures) != 6 {
		t.Errorf("passing report %+v", rep)
	}
	// Nothing ran: neither green nor red, and it says so.
	if rep := insights.TestReport(insights.TestCounts{}, 0, nil, 0, ""); rep.Passed || !rep.Neutral || rep.Summary != "No test ran: the reports "+
		"hold no test case (a run that stopped before its tests, a filter that selected none, or a file of another kind)." {
		t.Errorf("empty report %+v", rep)
	}
	if rep := insights.TestReport(insights.TestCounts{Total: 2, Skipped: 2}, 0, nil, 0, ""); rep.Passed || !rep.Neutral ||
		rep.Summary != "No test ran: 2 tests skipped." {
		t.Errorf("all skipped %+v", rep)
	}
	// The duration figure and the summary round alike.
	if rep := insights.TestReport(insights.TestCounts{Total: 1, Duration: 1499600 * time.Microsecond}, 0, nil, 0, ""); rep.Figures[4].Value != 1500 ||
		rep.Summary != "All 1 test passed in 1.5s." {
		t.Errorf("rounding: figure %d, summary %q", rep.Figures[4].Value, rep.Summary)
	}
}
