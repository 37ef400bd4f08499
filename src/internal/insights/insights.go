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

// Paths makes a path from a report relative to the repository.
type Paths struct {
	// ProjectDir is the repository's checkout where the report was written
	// (CI_PROJECT_DIR), "" if unknown: absolute paths under it are made relative.
	ProjectDir string
	// Root is where the report's files are found, "" if not at hand.
	Root string
	// Exists, when set, says whether a relative path is a file in the
	// repository; a path from a stack trace is used only if it is.
	Exists func(rel string) bool
}

// Relative returns p relative to the repository, or "" when it is not in
// it: an absolute path elsewhere, or one that leaves it with "..".
func (ps Paths) Relative(p string) string {
	p = strings.TrimSpace(strings.ReplaceAll(p, "\\", "/"))
	if p == "" {
		return ""
	}
	if dir := strings.TrimRight(ps.ProjectDir, "/"); dir != "" {
		if rest, ok := strings.CutPrefix(p, dir+"/"); ok {
			p = rest
		}
	}
	if strings.HasPrefix(p, "/") || (len(p) > 1 && p[1] == ':') {
		return ""
	}
	p = path.Clean(p)
	if p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return ""
	}
	return p
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
	switch {
	case c.Total == 0:
		rep.Summary = "No tests were found in the reports."
	case rep.Passed:
		rep.Summary = fmt.Sprintf("All %s passed", Plural(c.Total-c.Skipped, "test"))
	default:
		rep.Summary = fmt.Sprintf("%d of %s failed", c.Failed+c.Errored, Plural(c.Total, "test"))
		if c.Errored > 0 {
			rep.Summary += fmt.Sprintf(" (%d with an error)", c.Errored)
		}
	}
	if c.Total > 0 {
		if c.Skipped > 0 {
			rep.Summary += fmt.Sprintf(", %d skipped", c.Skipped)
		}
		rep.Summary += fmt.Sprintf(" in %s.", c.Duration.Round(time.Millisecond))
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
// /app/tests/FooTest.php:45, (Foo.java:58)), and Python's frames (File
// "/builds/acme/app/tests/test_a.py", line 12) and pytest's setup errors
// (file /builds/acme/app/tests/test_a.py, line 20), in order. One pass
// over the text: a regular expression here cost more than reading the JUnit
// XML around it.
func FileRefs(text string) (refs, python []FileRef) {
	for i := 0; i < len(text) && len(refs) < 50; i++ {
		switch {
		case text[i] == ':' && i+1 < len(text) && isDigit(text[i+1]):
			start := i
			for start > 0 && isPathByte(text[start-1]) {
				start--
			}
			path := text[start:i]
			if dot := strings.LastIndexByte(path, '.'); dot <= 0 || dot == len(path)-1 || path[dot-1] == '/' || path[dot-1] == '.' {
				continue
			}
			if line, ok := number(text[i+1:]); ok {
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
