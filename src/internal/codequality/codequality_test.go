package codequality

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/insights"
)

func read(t *testing.T, file string) (*Reader, []string) {
	t.Helper()
	var warnings []string
	r := &Reader{Paths: insights.Paths{ProjectDir: "/builds/acme/app"}, Warn: func(s string) { warnings = append(warnings, s) }}
	if err := r.ReadFile(filepath.Join("testdata", file)); err != nil {
		t.Fatal(err)
	}
	return r, warnings
}

func describe(found []insights.Finding) []string {
	var out []string
	for _, f := range found {
		out = append(out, fmt.Sprintf("%s %v/%v %s:%d %s", f.ID[:6], f.Severity, f.Category, f.Path, f.Line, f.Title))
	}
	return out
}

func TestProducers(t *testing.T) {
	for _, tc := range []struct {
		file     string
		found    []string
		warnings []string
	}{
		{
			// golangci-lint: no check_name, the linter's name in the
			// description, its own severities ("" for none, "error", "warning").
			file: "golangci-lint.json",
			found: []string{
				"B1E1D2 critical/0 internal/auth/hash.go:17 gosec: G401: Use of weak cryptographic primitive",
				"7B41F2 major/0 internal/store/store.go:42 errcheck: Error return value of `f.Close` is not checked",
				"0C2D8A minor/0 cmd/api/main.go:88 unused: func `helper` is unused",
			},
			// Said once per file, however many findings lack one.
			warnings: []string{"testdata/golangci-lint.json: 1 finding with no severity: counted as major"},
		},
		{
			// ESLint's GitLab formatter: check_name, categories, content.body.
			file: "eslint-gitlab.json",
			found: []string{
				"a1b2c3 critical/2 src/legacy.js:3 eval can be harmful. (no-eval)",
				"5f0d2f major/0 src/cart.js:12 'total' is assigned a value but never used. (no-unused-vars)",
			},
		},
		{
			// GitLab's documented examples: lines.begin, positions.begin.line
			// (RuboCop's engine), a "./" path that walks back into the repository.
			file: "gitlab-example.json",
			found: []string{
				"9e4d3b blocker/1 app/models/user.rb:7 Useless assignment to variable - `x`. (Lint/UselessAssignment)",
				"781569 minor/0 lib/index.js:42 'unused' is assigned a value but never used. (no-unused-vars)",
				"b2a7c8 info/0 app/services/importer.rb:10 Method `process` has a Cognitive Complexity of 22 (exceeds 5 allowed). (method_complexity)",
			},
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r, warnings := read(t, tc.file)
			found, omitted := r.Findings()
			if got := describe(found); fmt.Sprint(got) != fmt.Sprint(tc.found) || omitted != 0 {
				t.Errorf("findings (omitted %d):\n got %q\nwant %q", omitted, got, tc.found)
			}
			if fmt.Sprint(warnings) != fmt.Sprint(tc.warnings) {
				t.Errorf("warnings %q, want %q", warnings, tc.warnings)
			}
		})
	}
}

func TestContentBodyIsTheDetails(t *testing.T) {
	r, _ := read(t, "eslint-gitlab.json")
	found, _ := r.Findings()
	if found[1].Details != "Error found in no-unused-vars" {
		t.Errorf("details %q", found[1].Details)
	}
}

func TestBadFiles(t *testing.T) {
	for file, want := range map[string]string{
		"truncated.json":  "testdata/truncated.json: line 9: the file ends inside finding 2: was it cut short?",
		"wrong-type.json": "testdata/wrong-type.json: line 3: finding 2: location is a JSON string, not an object",
		"object.json":     "testdata/object.json: a JSON object, not a Code Quality report: GitLab Code Quality is a JSON array of findings (write [] for none)",
		"empty.json":      "testdata/empty.json: empty: a Code Quality report is a JSON array (write [] for no findings)",
		// What is given as Code Quality by mistake is named, with what to
		// give instead, not in a parser's words.
		"utf16-powershell.json": "testdata/utf16-powershell.json: UTF-16 text (what Windows PowerShell's > writes), not UTF-8: write the report " +
			"as UTF-8 (Out-File -Encoding utf8, Set-Content -Encoding utf8, or let the tool write the file itself)",
		"eslint-2.1.0.sarif": "testdata/eslint-2.1.0.sarif: a SARIF report, not GitLab Code Quality (a JSON array of findings): give the tool's " +
			"GitLab or CodeClimate output instead (eslint-formatter-gitlab, golangci-lint --output.code-climate.path, ruff --output-format=gitlab), or convert the SARIF",
		"gl-sast-report.json": "testdata/gl-sast-report.json: a GitLab security (SAST) report, for artifacts:reports:sast, not Code Quality " +
			"(a JSON array of findings): GitLab shows it in the security widget; give Code Quality a linter's GitLab (CodeClimate) output",
		"../../junit/testdata/pytest.xml": "../junit/testdata/pytest.xml: XML, not a Code Quality report (a JSON array of findings): give a " +
			"JUnit report to --junit (the component's junit input); a checkstyle or other linter XML needs its tool's GitLab (CodeClimate) output instead",
		"eslint-output-file.json": "testdata/eslint-output-file.json: text, not JSON: it starts \"error  no-unused-vars  'unused' is assigned a " +
			"value but never used.  /builds/…\". A Code Quality report is a JSON array of findings; if a tool's console output was written " +
			"here: eslint-formatter-gitlab writes its JSON to the path in ESLINT_CODE_QUALITY_REPORT (without --output-file, which overwrites it with the console text)",
	} {
		t.Run(file, func(t *testing.T) {
			r := &Reader{}
			err := r.ReadFile(filepath.Join("testdata", file))
			if err == nil || err.Error() != want {
				t.Fatalf("error = %v\nwant %s", err, want)
			}
			if r.Total() != 0 {
				t.Errorf("a file that could not be read was counted: %d", r.Total())
			}
		})
	}
}

// TestEveryFindingOnce: golangci-lint gives two equal lines one
// fingerprint (it holds no line): each is its own annotation, with an ID
// of its own, and the figures count what the annotations show. A finding
// repeated whole counts once; findings without a fingerprint on different
// lines are two.
func TestEveryFindingOnce(t *testing.T) {
	r, warnings := read(t, "golangci-lint-2.6-duplicates.json")
	found, omitted := r.Findings()
	want := []string{
		"critical/0 main.go:7 errcheck: Error return value of `f.Close` is not checked",
		"critical/0 main.go:9 errcheck: Error return value of `g.Close` is not checked",
		"critical/0 main.go:10 errcheck: Error return value of `os.Remove` is not checked",
		"critical/0 main.go:11 errcheck: Error return value of `os.Remove` is not checked",
	}
	var got []string
	ids := map[string]bool{}
	for _, f := range found {
		got = append(got, fmt.Sprintf("%v/%v %s:%d %s", f.Severity, f.Category, f.Path, f.Line, f.Title))
		ids[f.ID] = true
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") || omitted != 0 || r.Total() != 4 || len(ids) != 4 || len(warnings) != 0 {
		t.Errorf("total %d, %d distinct IDs, %d omitted, warnings %v, findings:\n%s", r.Total(), len(ids), omitted, warnings, strings.Join(got, "\n"))
	}
	if !ids["A224E0BACAE44A0A43EC6EDD098255C1"] {
		t.Error("the first finding with a fingerprint keeps it as its ID (GitLab keys findings by it)")
	}
	// No fingerprint, two lines; and the same finding twice.
	doc := `[{"description":"Unused variable x","check_name":"unused","severity":"minor","location":{"path":"a.py","lines":{"begin":3}}},
{"description":"Unused variable x","check_name":"unused","severity":"minor","location":{"path":"a.py","lines":{"begin":9}}},
{"description":"Unused variable x","check_name":"unused","severity":"minor","location":{"path":"a.py","lines":{"begin":9}}}]`
	r = &Reader{}
	if err := r.Read(strings.NewReader(doc), "x.json"); err != nil {
		t.Fatal(err)
	}
	found, _ = r.Findings()
	if r.Total() != 2 || len(found) != 2 || found[0].ID == found[1].ID || found[0].Line != 3 || found[1].Line != 9 {
		t.Errorf("total %d, findings %+v", r.Total(), found)
	}
	// The same file twice (a glob that matched a copy): nothing twice.
	if err := r.Read(strings.NewReader(doc), "copy.json"); err != nil || r.Total() != 2 {
		t.Errorf("after a copy: total %d, %v", r.Total(), err)
	}
	rep := r.Report("", insights.Major)
	if rep.Figures[0].Value != int64(len(found)) {
		t.Errorf("the figure says %d findings, the annotations are %d", rep.Figures[0].Value, len(found))
	}
}

// A UTF-8 byte order mark (PowerShell's Out-File -Encoding utf8) is read
// past, as in JUnit files.
func TestAByteOrderMarkIsReadPast(t *testing.T) {
	r, _ := read(t, "utf8-bom.json")
	if r.Total() != 2 {
		t.Errorf("total %d", r.Total())
	}
}

func TestAHundredThousandFindingsKeepTheMostSevere(t *testing.T) {
	name := filepath.Join(t.TempDir(), "many.json")
	var b strings.Builder
	b.WriteString("[\n")
	sev := []string{"info", "minor", "major", "critical", "blocker"}
	for i := range 100_000 {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"description":"finding %d","severity":%q,"fingerprint":"f%d","location":{"path":"a.go","lines":{"begin":%d}}}`, i, sev[i%5], i, i+1)
	}
	b.WriteString("\n]\n")
	if err := os.WriteFile(name, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &Reader{}
	if err := r.ReadFile(name); err != nil {
		t.Fatal(err)
	}
	found, omitted := r.Findings()
	if len(found) != 1000 || omitted != 99_000 || r.Total() != 100_000 {
		t.Fatalf("kept %d, omitted %d, total %d", len(found), omitted, r.Total())
	}
	// The 20,000 blockers come first; the first 1,000 of them are kept.
	if found[0].Title != "finding 4" || found[999].Title != "finding 4999" {
		t.Errorf("kept %q … %q", found[0].Title, found[999].Title)
	}
	if by := r.BySeverity(); by != [5]int{20_000, 20_000, 20_000, 20_000, 20_000} {
		t.Errorf("by severity %v", by)
	}
	rep := r.Report("", insights.Major)
	if rep.Passed || rep.Summary != "100000 findings: 20000 blocker, 20000 critical, 20000 major, 20000 minor, 20000 info. The report fails on a finding of severity major or above." {
		t.Errorf("report %q", rep.Summary)
	}
}

func TestThreshold(t *testing.T) {
	r, _ := read(t, "golangci-lint.json")
	for failOn, passed := range map[insights.Severity]bool{insights.Blocker: true, insights.Critical: false, insights.Major: false, insights.Info: false} {
		if got := r.Report("", failOn).Passed; got != passed {
			t.Errorf("fail on %v: passed = %v, want %v", failOn, got, passed)
		}
	}
	rep := r.Report("https://x/codequality_report", insights.Major)
	want := "[{Findings 3 false} {Blocker 0 false} {Critical 1 false} {Major 1 false} {Minor 1 false} {Info 0 false}]"
	if fmt.Sprint(rep.Figures) != want {
		t.Errorf("figures %v, want %s", rep.Figures, want)
	}
}

func TestPathsOutsideTheRepositoryGoToTheOverview(t *testing.T) {
	r := &Reader{Paths: insights.Paths{ProjectDir: "/builds/acme/app"}}
	doc := `[{"description":"d","severity":"major","fingerprint":"1","location":{"path":"../../etc/passwd","lines":{"begin":1}}},
{"description":"e","severity":"major","fingerprint":"2","location":{"path":"/builds/acme/app/src/a.go","lines":{"begin":2}}}]`
	if err := r.Read(strings.NewReader(doc), "x.json"); err != nil {
		t.Fatal(err)
	}
	found, _ := r.Findings()
	if found[0].Path != "" || found[0].Line != 0 || !strings.HasPrefix(found[0].Details, "In ../../etc/passwd (outside the repository).") ||
		found[1].Path != "src/a.go" || found[1].Line != 2 {
		t.Errorf("%+v", found)
	}
}
