// Package insights is the neutral model of a report on a commit: what was
// checked, the result, a few figures and the findings, each with a path, a
// line and a severity. Readers of JUnit, Code Quality and GitLab's test
// report fill it; the bitbucket package turns it into each server's
// requests. It knows neither side.
package insights

import (
	"cmp"
	"container/heap"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind is what a report covers; it names the report's key.
type Kind string

const (
	Tests       Kind = "tests"
	CodeQuality Kind = "code-quality"
)

// Severity is GitLab's Code Quality scale, lowest first.
type Severity int

const (
	Info Severity = iota
	Minor
	Major
	Critical
	Blocker
)

var severityNames = []string{"info", "minor", "major", "critical", "blocker"}

func (s Severity) String() string {
	if s < Info || s > Blocker {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity reads one of GitLab's five severities.
func ParseSeverity(word string) (Severity, bool) {
	i := slices.Index(severityNames, strings.ToLower(strings.TrimSpace(word)))
	return Severity(i), i >= 0
}

// SeverityNames lists the accepted words, for messages.
func SeverityNames() string { return strings.Join(severityNames, ", ") }

// Category says what kind of problem a finding is.
type Category int

const (
	Smell Category = iota
	Bug
	Vulnerability
)

// Finding is one failed test or one code quality finding.
type Finding struct {
	// ID tells findings apart across runs (a fingerprint); stable for the
	// same problem.
	ID string
	// Path is relative to the repository, "" for the report's overview.
	Path string
	// Line is 1-based; 0 for the whole file.
	Line     int
	Title    string
	Details  string
	Severity Severity
	Category Category

	order int
}

// TestCounts are a test run's figures.
type TestCounts struct {
	Total, Failed, Errored, Skipped int
	Duration                        time.Duration
}

// Passed is the number of tests that passed.
func (c TestCounts) Passed() int { return max(c.Total-c.Failed-c.Errored-c.Skipped, 0) }

// Figure is one number shown with a report.
type Figure struct {
	Title string
	Value int64
	// Duration: Value is milliseconds.
	Duration bool
}

// Report is one report on a commit.
type Report struct {
	Kind   Kind
	Title  string
	Passed bool
	// Neutral: neither passed nor failed, for there was nothing to judge
	// (no test ran): a green report over nothing would lie.
	Neutral bool
	// Summary is a sentence on the result; Details what a reader should
	// know besides (e.g. how many findings were left out).
	Summary string
	Link    string
	// Tests is set for a test report.
	Tests *TestCounts
	// Figures are shown with the report, in order.
	Figures  []Figure
	Findings []Finding
	// Omitted is how many findings did not fit the limit and were left out.
	Omitted int
}

// MaxFindings is what any server takes in one report (Bitbucket's 1,000 on
// both Cloud and Data Center's default).
const MaxFindings = 1000

// Collector keeps the most severe findings up to a limit while a reader
// streams them in, so memory is bounded whatever the input's size. Among
// equals the first found is kept.
type Collector struct {
	Limit int
	kept  findingHeap
	seen  int
	ids   map[string]bool
}

// Add offers one finding. A finding whose ID was already added is dropped:
// servers refuse or duplicate a repeated external id.
func (c *Collector) Add(f Finding) {
	if c.ids == nil {
		c.ids = map[string]bool{}
	}
	if f.ID == "" {
		f.ID = Fingerprint(f.Path, fmt.Sprint(f.Line), f.Title)
	}
	if c.ids[f.ID] {
		return
	}
	limit := cmp.Or(c.Limit, MaxFindings)
	c.seen++
	f.order = c.seen
	if len(c.kept) < limit {
		c.ids[f.ID] = true
		heap.Push(&c.kept, f)
		return
	}
	if weaker(c.kept[0], f) {
		delete(c.ids, c.kept[0].ID)
		c.ids[f.ID] = true
		c.kept[0] = f
		heap.Fix(&c.kept, 0)
	}
}

// Remove withdraws the finding with id (a test that passed on a rerun).
func (c *Collector) Remove(id string) bool {
	if !c.ids[id] {
		return false
	}
	delete(c.ids, id)
	c.seen--
	i := slices.IndexFunc(c.kept, func(f Finding) bool { return f.ID == id })
	heap.Remove(&c.kept, i)
	return true
}

// Rename gives the kept finding with id a new ID and puts prefix before
// its title (a test that turns out to have run in two suites); it
// reports whether the finding was kept.
func (c *Collector) Rename(id, newID, prefix string) bool {
	if !c.ids[id] || c.ids[newID] {
		return false
	}
	i := slices.IndexFunc(c.kept, func(f Finding) bool { return f.ID == id })
	c.kept[i].ID, c.kept[i].Title = newID, prefix+c.kept[i].Title
	delete(c.ids, id)
	c.ids[newID] = true
	return true
}

// Has reports whether a finding with id is kept.
func (c *Collector) Has(id string) bool { return c.ids[id] }

// Findings returns the kept findings, most severe first, then in the order
// found, and how many were left out.
func (c *Collector) Findings() ([]Finding, int) {
	out := slices.Clone(c.kept)
	slices.SortFunc(out, func(a, b Finding) int {
		if a.Severity != b.Severity {
			return cmp.Compare(b.Severity, a.Severity)
		}
		return cmp.Compare(a.order, b.order)
	})
	return out, c.seen - len(out)
}

// weaker: a goes before b when room is short (lower severity, or found later).
func weaker(a, b Finding) bool {
	if a.Severity != b.Severity {
		return a.Severity < b.Severity
	}
	return a.order > b.order
}

type findingHeap []Finding

func (h findingHeap) Len() int           { return len(h) }
func (h findingHeap) Less(i, j int) bool { return weaker(h[i], h[j]) }
func (h findingHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *findingHeap) Push(x any)        { *h = append(*h, x.(Finding)) }
func (h *findingHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	*h = old[:len(old)-1]
	return f
}

// Fingerprint is a stable ID made of parts.
func Fingerprint(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:16])
}

// Paths makes a path from a report relative to the repository. A path
// that is relative and stays inside the repository, or absolute under the
// project's directory, is the repository's whether or not the file is at
// hand: the component's result jobs hold the report files and no sources.
type Paths struct {
	// ProjectDir is the repository's checkout where the report was written
	// (CI_PROJECT_DIR), "" if unknown: absolute paths under it are made relative.
	ProjectDir string
	// ProjectPath is the GitLab project's path (CI_PROJECT_PATH): runners
	// put jobs of one project in different directories
	// (/builds/<runner>/<n>/group/project, C:\GitLab-Runner\builds\...\group\project),
	// so a path that holds /group/project/ is the repository's from there.
	ProjectPath string
	// Root is where the report's files are found, "" if not at hand.
	Root string
	// Exists, when set, says whether a relative path is a file in the
	// checkout at hand (a directory's pyvenv.cfg tells a virtual
	// environment).
	Exists func(rel string) bool
	// Find, when set (a checkout is at hand: the job that ran the tests),
	// returns the repository's one file whose path ends with suffix
	// ("com/acme/Cart.java"), "" when none or several do: what turns a stack
	// trace's file name into a path.
	Find func(suffix string) string
	// GoModule is the module path in the checkout's go.mod, "" without one.
	GoModule string
}

// Relative returns p relative to the repository, or "" when it is not in
// it: an absolute path elsewhere, or one that leaves it with "..".
func (ps Paths) Relative(p string) string {
	p = strings.TrimSpace(strings.ReplaceAll(p, "\\", "/"))
	if p == "" {
		return ""
	}
	if dir := strings.TrimRight(strings.ReplaceAll(ps.ProjectDir, "\\", "/"), "/"); dir != "" {
		if rest, ok := strings.CutPrefix(p, dir+"/"); ok {
			p = rest
		}
	}
	if project := strings.Trim(ps.ProjectPath, "/"); project != "" && isAbsolute(p) {
		if i := strings.Index(p, "/"+project+"/"); i >= 0 {
			p = p[i+len(project)+2:]
		}
	}
	if isAbsolute(p) {
		return ""
	}
	p = path.Clean(p)
	if p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return ""
	}
	return p
}

func isAbsolute(p string) bool { return strings.HasPrefix(p, "/") || (len(p) > 1 && p[1] == ':') }

// dependencyDirs hold other people's code or a build's output: never a
// failed test's place.
var dependencyDirs = map[string]bool{"node_modules": true, "vendor": true, "site-packages": true, "dist-packages": true,
	".venv": true, "venv": true, ".tox": true, "obj": true, "bower_components": true, ".gradle": true, ".m2": true}

// binaryExts are files that are not source: a test assembly, a class, a library.
var binaryExts = map[string]bool{".dll": true, ".exe": true, ".so": true, ".dylib": true, ".class": true, ".jar": true, ".pyc": true,
	".o": true, ".a": true, ".wasm": true, ".pdb": true}

// Foreign reports whether a repository path is not the project's own
// source: under a dependency directory (node_modules/, vendor/,
// site-packages/, a virtual environment: .venv/, venv/, or any directory
// holding pyvenv.cfg in the checkout at hand), .NET's build output (obj/,
// bin/Debug, bin/Release), or a file that is not source (a test DLL).
func (ps Paths) Foreign(rel string) bool {
	if binaryExts[strings.ToLower(path.Ext(rel))] {
		return true
	}
	segs := strings.Split(rel, "/")
	for i, seg := range segs[:len(segs)-1] {
		if dependencyDirs[seg] || (seg == "bin" && i+1 < len(segs)-1 && (segs[i+1] == "Debug" || segs[i+1] == "Release")) {
			return true
		}
		if ps.Exists != nil && ps.Exists(strings.Join(segs[:i+1], "/")+"/pyvenv.cfg") {
			return true
		}
	}
	return false
}

// Cut shortens s to at most n bytes on a character boundary, ending with
// "…" when it cut; invalid UTF-8 is replaced first.
func Cut(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	n -= len(ellipsis)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	if n < 0 {
		return ""
	}
	return s[:n] + ellipsis
}

// FirstLine is s's first non-empty line, trimmed, and the rest.
func FirstLine(s string) (string, string) {
	s = strings.TrimSpace(s)
	first, rest, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(first), strings.TrimSpace(rest)
}

// TestReport is a test report from its counts and failed tests, however
// they were read (JUnit files or GitLab's test report).
func TestReport(c TestCounts, flaky int, findings []Finding, omitted int, link string) Report {
	counts := c
	rep := Report{
		Kind: Tests, Title: "GitLab test results", Passed: c.Failed+c.Errored == 0, Link: link,
		Tests: &counts, Findings: findings, Omitted: omitted,
		Figures: []Figure{
			{Title: "Tests", Value: int64(c.Total)},
			{Title: "Passed", Value: int64(c.Passed())},
			{Title: "Failed", Value: int64(c.Failed + c.Errored)},
			{Title: "Skipped", Value: int64(c.Skipped)},
			{Title: "Duration", Value: c.Duration.Milliseconds(), Duration: true},
		},
	}
	if flaky > 0 {
		rep.Figures = append(rep.Figures, Figure{Title: "Passed on a rerun", Value: int64(flaky)})
	}
	duration := c.Duration.Round(time.Millisecond)
	rep.Figures[4].Value = duration.Milliseconds()
	switch {
	case c.Total == 0:
		rep.Passed, rep.Neutral = false, true
		rep.Summary = "No test ran: the reports hold no test case (a run that stopped before its tests, a filter that selected none, " +
			"or a file of another kind)."
	case c.Total == c.Skipped:
		rep.Passed, rep.Neutral = false, true
		rep.Summary = fmt.Sprintf("No test ran: %s skipped.", Plural(c.Skipped, "test"))
	case rep.Passed:
		rep.Summary = fmt.Sprintf("All %s passed", Plural(c.Total-c.Skipped, "test"))
	default:
		rep.Summary = fmt.Sprintf("%d of %s failed", c.Failed+c.Errored, Plural(c.Total, "test"))
		if c.Errored > 0 {
			rep.Summary += fmt.Sprintf(" (%d with an error)", c.Errored)
		}
	}
	if c.Total > c.Skipped {
		if c.Skipped > 0 {
			rep.Summary += fmt.Sprintf(", %d skipped", c.Skipped)
		}
		rep.Summary += fmt.Sprintf(" in %s.", duration)
	}
	if flaky > 0 {
		rep.Summary += fmt.Sprintf(" %s passed only on a rerun.", Plural(flaky, "test"))
	}
	return rep
}

// Plural is n and word, with an s unless n is 1: "1 test", "3 tests".
func Plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// Scrub passes every text of the report through scrub (which removes the
// secrets a run knows): test output may print a token, and a report is
// sent where people read it.
func (r *Report) Scrub(scrub func(string) string) {
	r.Title, r.Summary, r.Link = scrub(r.Title), scrub(r.Summary), scrub(r.Link)
	for i := range r.Findings {
		f := &r.Findings[i]
		f.Title, f.Details, f.Path = scrub(f.Title), scrub(f.Details), scrub(f.Path)
	}
}

// TestID is the ID of a test's finding, the same from every reader (JUnit
// files, GitLab's test report), so that a report keeps its annotations
// when it moves between the job and the relay.
func TestID(classname, name string) string { return Fingerprint("junit", classname, name) }

// Suite is where a test ran, as far as a report tells: what tells two runs
// of one test apart when it ran in several (two browsers, two Python
// versions, two devices, two packages whose tests share a describe).
type Suite struct {
	// Key identifies the suite: a JUnit file and the suite's place in it,
	// or a GitLab test report suite's name.
	Key string
	// Name is the suite's name; Host its hostname (Playwright's project);
	// Device an Android device; File the report file.
	Name, Host, Device, File string
}

// TestNames gives failed tests their IDs. A test's ID is TestID(classname,
// name), the same from the job's JUnit files and from GitLab's test
// report; when the same test failed in a second suite, each failure gets
// an ID of its own and a title that says where it ran: GitLab keys a test
// by suite, class and name, and a failure in one suite is never hidden by
// another's.
type TestNames struct {
	first map[string]firstFailure
}

type firstFailure struct {
	suite     Suite
	path      string
	qualified bool
}

// Rename is what an earlier failure becomes once its test failed in
// another suite too.
type Rename struct {
	ID, NewID, Prefix string
}

// Clone copies the names given so far (a file read on its own, merged only
// if it reads whole).
func (n *TestNames) Clone() TestNames { return TestNames{first: maps.Clone(n.first)} }

// Name gives f (the failure of classname and name in suite s) its ID, and
// when it is the test's failure in another suite, a title that says which;
// it returns the earlier failure's rename, the first time there is one.
func (n *TestNames) Name(f *Finding, classname, name string, s Suite) *Rename {
	base := TestID(classname, name)
	if n.first == nil {
		n.first = map[string]firstFailure{}
	}
	first, seen := n.first[base]
	if !seen || first.suite.Key == s.Key {
		n.first[base] = firstFailure{suite: s, path: f.Path, qualified: first.qualified}
		f.ID = base
		if first.qualified {
			f.ID = Fingerprint("junit", classname, name, s.Key)
		}
		return nil
	}
	was, is := tell(first, firstFailure{suite: s, path: f.Path})
	f.ID = Fingerprint("junit", classname, name, s.Key)
	f.Title = "[" + is + "] " + f.Title
	if first.qualified {
		return nil
	}
	first.qualified = true
	n.first[base] = first
	return &Rename{ID: base, NewID: Fingerprint("junit", classname, name, first.suite.Key), Prefix: "[" + was + "] "}
}

// Forget releases a test's name in suite s (its failure passed on a rerun).
func (n *TestNames) Forget(classname, name string, s Suite) {
	if first, ok := n.first[TestID(classname, name)]; ok && first.suite.Key == s.Key && !first.qualified {
		delete(n.first, TestID(classname, name))
	}
}

// tell names two suites by what differs between them: the host
// (Playwright's project), the device, the suite's name, the report file,
// the test's file, else the suite's place.
func tell(a, b firstFailure) (string, string) {
	for _, pair := range [][2]string{{a.suite.Host, b.suite.Host}, {a.suite.Device, b.suite.Device}, {a.suite.Name, b.suite.Name},
		{path.Base(a.suite.File), path.Base(b.suite.File)}, {a.path, b.path}} {
		if pair[0] != pair[1] && pair[0] != "" && pair[1] != "" {
			return pair[0], pair[1]
		}
	}
	// The same file and names: the suites' places in it ("suite 2").
	_, na, _ := cutLast(a.suite.Key, "#")
	_, nb, _ := cutLast(b.suite.Key, "#")
	return "suite " + na, "suite " + nb
}

// FailedTest is the finding of a failed test (or an errored one): its name
// and first, the first line of what it said, as the title; details below.
func FailedTest(classname, name string, errored bool, first, details string) Finding {
	title := name
	if classname != "" && !strings.Contains(name, classname) {
		title = classname + " " + name
	}
	if errored {
		title += " errored"
	} else {
		title += " failed"
	}
	if first != "" {
		title += ": " + first
	}
	return Finding{ID: TestID(classname, name), Title: title, Details: details, Severity: Critical, Category: Bug}
}

// Clues are what a report says of where a failed test failed.
type Clues struct {
	// Files are the files the report names for it, most precise first (a
	// JUnit test case's, then its suite's).
	Files []string
	// Line is the report's line for it, counting from 1; -1 unknown.
	Line int
	// Classname is its class: a Go package's import path places Go's file
	// names.
	Classname string
	// Trace is what it said: message, stack trace, output.
	Trace string
}

// Place is where a failed test's annotation goes. The file the report names
// (the test's, or its suite's) is the repository's when it is inside it,
// at hand or not, unless it is not the project's own source (a test DLL,
// a dependency); its line is the one a stack trace gives in that file, else
// the report's. Without a file, the innermost frame
// of the project's own code, past dependencies' frames: where it failed
// (the assertion in the test, or the line of the code under test that
// threw). A frame that names only a file (Go, Java, Kotlin) is found in the
// checkout when one is at hand (go.mod's module, the class's package);
// without it, Go's is found from the package when its path holds the
// project's. Else the report's overview: "", 0.
func (ps Paths) Place(c Clues) (string, int) {
	trace := c.Trace
	for _, file := range c.Files {
		if p := ps.Relative(bundled(file)); p != "" && !ps.Foreign(p) {
			if line := ps.LineIn(trace, p); line > 0 {
				return p, line
			}
			return p, max(c.Line, 0)
		}
	}
	refs, python := FileRefs(trace)
	// Python's innermost frame is its last; other languages' their first.
	// A frame names the project's own code when it is in the repository and
	// not a dependency.
	for i := len(python) - 1; i >= 0; i-- {
		if p := ps.repoPath(python[i].Path, c.Classname); p != "" {
			return p, python[i].Line
		}
	}
	if frames := JavaFrames(trace); len(frames) > 0 {
		if ps.Find == nil {
			return "", 0
		}
		for _, f := range frames {
			if p := ps.Find(f.Suffix()); p != "" && !ps.Foreign(p) {
				return p, f.Line
			}
		}
		return "", 0
	}
	if len(refs) > 0 && path.Ext(refs[0].Path) == ".py" {
		// pytest's report lists a traceback's frames outermost first.
		slices.Reverse(refs)
	}
	for _, ref := range refs {
		if p := ps.repoPath(ref.Path, c.Classname); p != "" {
			return p, ref.Line
		}
	}
	return "", 0
}

// repoPath is the repository path a stack trace's file reference names,
// "" when it is not the project's own source.
func (ps Paths) repoPath(ref, classname string) string {
	ref = strings.ReplaceAll(ref, "\\", "/")
	if !strings.Contains(ref, "/") {
		// A file name alone: Go's "store_test.go:7", next to its package.
		if strings.HasSuffix(ref, ".go") {
			if dir, ok := ps.goPackageDir(classname); ok {
				return path.Join(dir, ref)
			}
		}
		if ps.Find != nil {
			return ps.Find(ref)
		}
		return ""
	}
	p := ps.Relative(ref)
	if p == "" && ps.Find != nil && strings.HasPrefix(ref, "/") {
		// An absolute path from another machine (.NET's build agent): the
		// longest end of it that is a file of the checkout.
		segs := strings.Split(strings.Trim(ref, "/"), "/")
		for i := 1; i < len(segs) && p == ""; i++ {
			p = ps.Find(strings.Join(segs[i:], "/"))
		}
	}
	if p == "" || ps.Foreign(p) {
		return ""
	}
	return p
}

// goPackageDir is where a Go package (a test case's classname, its import
// path) is in the repository: under go.mod's module with a checkout; else
// after the project's path in it (gitlab.com/acme/api/internal/store of
// acme/api is internal/store).
func (ps Paths) goPackageDir(importPath string) (string, bool) {
	if importPath == "" || strings.ContainsAny(importPath, " \t") {
		return "", false
	}
	if mod := ps.GoModule; mod != "" {
		if importPath == mod {
			return ".", true
		}
		if rest, ok := strings.CutPrefix(importPath, mod+"/"); ok {
			return rest, true
		}
		return "", false
	}
	project := strings.Trim(ps.ProjectPath, "/")
	if project == "" {
		return "", false
	}
	if strings.HasSuffix(importPath, "/"+project) {
		return ".", true
	}
	if i := strings.Index(importPath, "/"+project+"/"); i >= 0 {
		return importPath[i+len(project)+2:], true
	}
	return "", false
}

// bundled is a bundler's path as the source's: webpack://app/./src/a.js
// is src/a.js.
func bundled(p string) string {
	if rest, ok := strings.CutPrefix(p, "webpack://"); ok {
		if _, after, ok := strings.Cut(rest, "/./"); ok {
			return after
		}
	}
	return p
}

// LineIn is the line at which a stack trace names rel, a path in the
// repository; 0 if it names none.
func (ps Paths) LineIn(text, rel string) int {
	refs, _ := FileRefs(text)
	for _, ref := range refs {
		if ps.Relative(ref.Path) == rel {
			return ref.Line
		}
	}
	return 0
}

// FileRef is a "path:line" or a Python frame a stack trace names.
type FileRef struct {
	Path string
	Line int
}

// FileRefs finds "path.ext:line" in text (app_test.go:12:, at Object.toBe
// (/builds/acme/app/src/a.test.js:10:5), ./spec/a_spec.rb:7:in,
// /app/tests/FooTest.php:45, (Foo.java:58), .NET's "in /src/Cart.cs:line
// 27", a bundler's webpack://app/./cypress/e2e/a.cy.js:12:8), and Python's
// frames (File "/builds/acme/app/tests/test_a.py", line 12) and pytest's
// setup errors (file /builds/acme/app/tests/test_a.py, line 20), in order.
// One pass over the text: a regular expression here cost more than reading
// the JUnit XML around it.
func FileRefs(text string) (refs, python []FileRef) {
	for i := 0; i < len(text) && len(refs) < 50; i++ {
		switch {
		case text[i] == ':' && i+1 < len(text) && (isDigit(text[i+1]) || strings.HasPrefix(text[i:], ":line ")):
			start := i
			for start > 0 && isPathByte(text[start-1]) {
				start--
			}
			path := text[start:i]
			if dot := strings.LastIndexByte(path, '.'); dot <= 0 || dot == len(path)-1 || path[dot-1] == '/' || path[dot-1] == '.' {
				continue
			}
			if bundled, ok := strings.CutPrefix(path, "//"); ok {
				// webpack://app/./src/a.js: the path after the bundle's "./".
				if _, rest, ok := strings.Cut(bundled, "/./"); ok {
					path = rest
				}
			}
			if line, ok := number(strings.TrimPrefix(text[i+1:], "line ")); ok {
				refs = append(refs, FileRef{path, line})
			}
		case text[i] == ',' && strings.HasPrefix(text[i:], ", line ") && i > 0:
			var path string
			if text[i-1] == '"' {
				open := strings.LastIndexByte(text[:i-1], '"')
				if open < 0 || !strings.HasSuffix(text[:open], "File ") {
					continue
				}
				path = text[open+1 : i-1]
			} else {
				start := strings.LastIndex(text[:i], "file ")
				if start < 0 || strings.ContainsAny(text[start+5:i], " \n") {
					continue
				}
				path = text[start+5 : i]
			}
			if line, ok := number(text[i+len(", line "):]); ok {
				python = append(python, FileRef{path, line})
			}
		}
	}
	return refs, python
}

// JavaFrame is a frame of a JVM stack trace: "at com.acme.Cart.total(Cart.kt:19)".
type JavaFrame struct {
	// Class is the frame's class, without a module or an inner class:
	// "com.acme.Cart"; File and Line where its source is.
	Class, File string
	Line        int
}

// Suffix is where the frame's source sits in a source tree:
// "com/acme/Cart.kt".
func (f JavaFrame) Suffix() string {
	pkg, _, ok := cutLast(f.Class, ".")
	if !ok {
		return f.File
	}
	return strings.ReplaceAll(pkg, ".", "/") + "/" + f.File
}

// JavaFrames finds the frames of JVM stack traces (Java, Kotlin, Scala,
// Groovy) in text, innermost first: "at app//com.acme.Cart.total(Cart.kt:19)".
func JavaFrames(text string) []JavaFrame {
	var out []JavaFrame
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "at ")
		if !ok || !strings.HasSuffix(rest, ")") || len(out) >= 50 {
			continue
		}
		open := strings.LastIndexByte(rest, '(')
		if open < 0 {
			continue
		}
		file, lineText, ok := strings.Cut(rest[open+1:len(rest)-1], ":")
		n, good := number(lineText)
		ext := path.Ext(file)
		if !ok || !good || (ext != ".java" && ext != ".kt" && ext != ".scala" && ext != ".groovy") {
			continue
		}
		method := rest[:open]
		if slash := strings.LastIndexByte(method, '/'); slash >= 0 {
			method = method[slash+1:] // app//com.acme..., java.base/java.lang...
		}
		class, _, ok := cutLast(method, ".")
		if !ok {
			continue
		}
		class, _, _ = strings.Cut(class, "$")
		out = append(out, JavaFrame{Class: class, File: file, Line: n})
	}
	return out
}

func cutLast(s, sep string) (string, string, bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isPathByte(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '.' || c == '/' || c == '\\' || c == '-'
}

// number reads the digits at the start of s.
func number(s string) (int, bool) {
	n := 0
	for n < len(s) && n < 9 && isDigit(s[n]) {
		n++
	}
	v, err := strconv.Atoi(s[:n])
	return v, err == nil && v > 0
}

// ReadFile opens a report file and passes it to read, unless it is larger
// than most bytes: then an error that says how large, and of what (the most
// read from what), before a byte is read.
func ReadFile(name string, most int64, what string, read func(src io.Reader, name string) error) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Size() > most {
		return fmt.Errorf("%s: %s is larger than %d MB, the most read from %s", name, sizeOf(info.Size()), most>>20, what)
	}
	return read(f, name)
}

func sizeOf(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}
