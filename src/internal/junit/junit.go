// Package junit reads JUnit XML test reports as the common producers write
// them (pytest, jest-junit, gotestsum and go-junit-report, Maven Surefire,
// PHPUnit, rspec_junit_formatter, Gradle) into the counts and failed tests
// of an insights report. It streams: memory depends on the failures kept,
// never on the number of passing tests or the file's size.
package junit

import (
	"cmp"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/insights"
)

// MaxFileBytes is the largest file read. GitLab itself refuses JUnit files
// over 30 MB and a job's reports over 100 MB.
const MaxFileBytes = 100 << 20

// maxText bounds what is kept of one failure's message and output.
const maxText = 8 << 10

// Reader adds JUnit files up into one test report.
type Reader struct {
	Paths insights.Paths
	// Limit is how many failed tests are kept (the most severe and first);
	// 0 means insights.MaxFindings.
	Limit int

	counts   insights.TestCounts
	failures insights.Collector
	// names gives failed tests their IDs: one test that failed in two
	// suites (two browsers, two Python versions, two files) is two.
	names insights.TestNames
	flaky int
	// omittedBefore counts failures left out by a file's own limit.
	omittedBefore int

	// A file being read, on its own until it reads whole:
	// failed remembers the failed tests of each suite of this file, so a
	// test repeated within its suite (pytest-rerunfailures) that passed
	// withdraws its failure; renames are failures of earlier files that
	// turned out to have run in another suite too.
	failed  map[string]failedTest
	renames []insights.Rename
	name    string
}

type failedTest struct {
	status status
	id     string
	suite  insights.Suite
}

// ReadFile reads one file. On an error nothing of the file is counted.
func (r *Reader) ReadFile(name string) error {
	return insights.ReadFile(name, MaxFileBytes, "a JUnit file (GitLab itself refuses files over 30 MB): split the report", r.Read)
}

// Read reads one JUnit document from src; name is the file's name for
// messages. On an error nothing of the document is counted.
func (r *Reader) Read(src io.Reader, name string) error {
	file := &Reader{Paths: r.Paths, Limit: r.Limit, names: r.names.Clone(), failed: map[string]failedTest{}, name: name}
	limited := &io.LimitedReader{R: src, N: MaxFileBytes + 1}
	d := xml.NewDecoder(newOutputFilter(limited))
	d.CharsetReader = charsetReader
	err := file.decode(d)
	if limited.N <= 0 {
		return fmt.Errorf("%s: larger than %d MB, the most read from a JUnit file: split the report", name, MaxFileBytes>>20)
	}
	if err != nil {
		line, _ := d.InputPos()
		var se *xml.SyntaxError
		if errors.As(err, &se) {
			line = se.Line
			err = errors.New(se.Msg)
		}
		return fmt.Errorf("%s: line %d: %w", name, line, err)
	}
	r.merge(file)
	return nil
}

func (r *Reader) merge(f *Reader) {
	r.counts.Total += f.counts.Total
	r.counts.Failed += f.counts.Failed
	r.counts.Errored += f.counts.Errored
	r.counts.Skipped += f.counts.Skipped
	r.counts.Duration += f.counts.Duration
	r.flaky += f.flaky
	r.names = f.names
	r.failures.Limit = r.Limit
	for _, rn := range f.renames {
		r.failures.Rename(rn.ID, rn.NewID, rn.Prefix)
	}
	found, omitted := f.failures.Findings()
	for _, x := range found {
		r.failures.Add(x)
	}
	// What the file's own collector left out counts as left out here too.
	r.omittedBefore += omitted
}

// Counts are the tests read so far.
func (r *Reader) Counts() insights.TestCounts { return r.counts }

// Flaky is how many tests failed and then passed on a rerun.
func (r *Reader) Flaky() int { return r.flaky }

// Failures are the failed tests kept, and how many were left out.
func (r *Reader) Failures() ([]insights.Finding, int) {
	kept, omitted := r.failures.Findings()
	return kept, omitted + r.omittedBefore
}

type testCase struct {
	name, classname, file string
	line                  int
	status                status
	message, text         string
	// output is what a failed test printed (<system-out>, <system-err>):
	// ctest keeps its whole failure there.
	output   string
	flaky    bool
	duration time.Duration
	suite    suite
}

// suite is a <testsuite> being read: what tells its tests from the same
// tests in another suite, and what its tests inherit.
type suite struct {
	insights.Suite
	// file is the source file its tests are in, when a suite names it
	// (Cypress names the spec on the file's first suite).
	file string
	// pytest: pytest wrote it, whose line attributes count from 0.
	pytest bool
}

type status int

const (
	passed status = iota
	skipped
	errored
	failed
)

func (r *Reader) decode(d *xml.Decoder) error {
	seenRoot := false
	var suites []suite
	// docFile is the last file a suite of this document named: Cypress
	// names the spec on its first suite, a sibling of the others.
	docFile := ""
	count := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			if !seenRoot {
				return errors.New("no <testsuites> or <testsuite> element: not a JUnit report")
			}
			return nil
		}
		if err != nil {
			return err
		}
		if end, ok := tok.(xml.EndElement); ok && end.Name.Local == "testsuite" && len(suites) > 0 {
			suites = suites[:len(suites)-1]
			continue
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch start.Name.Local {
		case "testsuites":
			seenRoot = true
		case "testsuite":
			seenRoot = true
			count++
			s := suite{Suite: insights.Suite{Key: fmt.Sprintf("%s#%d", r.name, count), Name: attr(start, "name"), Host: attr(start, "hostname"),
				File: r.name}, file: attr(start, "file")}
			if len(suites) > 0 {
				parent := suites[len(suites)-1]
				s.pytest, s.Device = parent.pytest, parent.Device
				s.file = cmp.Or(s.file, parent.file)
			}
			s.pytest = s.pytest || s.Name == "pytest"
			if s.file != "" {
				docFile = s.file
			}
			s.file = cmp.Or(s.file, docFile)
			suites = append(suites, s)
		case "properties":
			device, err := readDevice(d)
			if err != nil {
				return err
			}
			if len(suites) > 0 && device != "" {
				suites[len(suites)-1].Device = device
			}
		case "testcase":
			if !seenRoot || len(suites) == 0 {
				return errors.New("<testcase> outside any <testsuite>")
			}
			tc, err := readCase(d, start)
			if err != nil {
				return err
			}
			tc.suite = suites[len(suites)-1]
			r.add(tc)
		default:
			if !seenRoot {
				return fmt.Errorf("the root element is <%s>, not <testsuites> or <testsuite>: not a JUnit report", start.Name.Local)
			}
			// system-out of a suite, anything else.
			if err := d.Skip(); err != nil {
				return err
			}
		}
	}
}

// readDevice reads a suite's <properties> for the Android device its
// tests ran on.
func readDevice(d *xml.Decoder) (string, error) {
	device := ""
	for {
		tok, err := d.Token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local == "property" && attr(t, "name") == "device" {
				device = attr(t, "value")
			}
			if err := d.Skip(); err != nil {
				return "", err
			}
		case xml.EndElement:
			return device, nil
		}
	}
}

func readCase(d *xml.Decoder, start xml.StartElement) (testCase, error) {
	tc := testCase{line: -1}
	var duration time.Duration
	for _, a := range start.Attr {
		switch a.Name.Local {
		case "name":
			tc.name = a.Value
		case "classname":
			tc.classname = a.Value
		case "file":
			tc.file = a.Value
		case "line":
			if n, err := strconv.Atoi(strings.TrimSpace(a.Value)); err == nil && n >= 0 {
				tc.line = n
			}
		case "time":
			duration = ParseTime(a.Value)
		}
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return tc, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			tc.text = strings.TrimSpace(tc.text)
			tc.duration = duration
			return tc, nil
		case xml.StartElement:
			var st status
			switch t.Name.Local {
			case "failure":
				st = failed
			case "error":
				st = errored
			case "skipped":
				st = skipped
			case "system-out", "system-err":
				// Only a failing test's output reaches here (outputFilter).
				text, err := readText(d)
				if err != nil {
					return tc, err
				}
				if text = strings.TrimSpace(text); text != "" && len(tc.output) < maxText {
					tc.output = insights.Cut(strings.TrimSpace(tc.output+"\n"+text), maxText)
				}
				continue
			case "flakyFailure", "flakyError":
				// Surefire: failed, then passed on a rerun.
				tc.flaky = true
				if err := d.Skip(); err != nil {
					return tc, err
				}
				continue
			default:
				// properties, rerunFailure (a rerun after a <failure>, which
				// already decides).
				if err := d.Skip(); err != nil {
					return tc, err
				}
				continue
			}
			text, err := readText(d)
			if err != nil {
				return tc, err
			}
			if st > tc.status {
				tc.status = st
				tc.message = attr(t, "message")
				tc.text = text
			}
		}
	}
}

func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// readText reads an element's text up to its end, keeping at most maxText.
func readText(d *xml.Decoder) (string, error) {
	var b strings.Builder
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if room := maxText - b.Len(); room > 0 {
				b.Write(t[:min(len(t), room)])
			}
		case xml.StartElement:
			depth++
		case xml.EndElement:
			if depth == 0 {
				return b.String(), nil
			}
			depth--
		}
	}
}

// add counts a test case. The same test again within its suite is a rerun
// (pytest-rerunfailures repeats the case): a pass withdraws its failure.
// The same test in another suite or file is another test: a pass there
// never cancels a failure here.
func (r *Reader) add(tc testCase) {
	key := tc.suite.Key + "\x00" + tc.classname + "\x00" + tc.name
	if was, ok := r.failed[key]; ok {
		r.counts.Duration += tc.duration
		if tc.status == passed {
			delete(r.failed, key)
			r.failures.Remove(was.id)
			r.names.Forget(tc.classname, tc.name, was.suite)
			r.flaky++
			if was.status == errored {
				r.counts.Errored--
			} else {
				r.counts.Failed--
			}
		}
		return
	}
	r.counts.Total++
	r.counts.Duration += tc.duration
	switch tc.status {
	case skipped:
		r.counts.Skipped++
		return
	case passed:
		if tc.flaky {
			r.flaky++
		}
		return
	case errored:
		r.counts.Errored++
	case failed:
		r.counts.Failed++
	}
	f := r.finding(tc)
	if rn := r.names.Name(&f, tc.classname, tc.name, tc.suite.Suite); rn != nil && !r.failures.Rename(rn.ID, rn.NewID, rn.Prefix) {
		r.renames = append(r.renames, *rn)
	}
	r.failed[key] = failedTest{status: tc.status, id: f.ID, suite: tc.suite.Suite}
	r.failures.Limit = r.Limit
	r.failures.Add(f)
}

// finding is a failed test as the reader of a pull request sees it: its
// name and the first line that says what went wrong, the rest below, at
// the place it failed.
func (r *Reader) finding(tc testCase) insights.Finding {
	first, details := summary(tc)
	f := insights.FailedTest(tc.classname, tc.name, tc.status == errored, first, details)
	f.Path, f.Line = r.place(tc)
	return f
}

// summary is the first line of what a failed test said that says what
// went wrong, and the rest: past a message that only repeats the test's
// name or place (PHPUnit's "Class::test", Playwright's "file:3:5 title"),
// past Go's "=== RUN" and Playwright's "[project] › file › title" headers,
// with a leading "file:line:" taken off (the annotation stands there).
func summary(tc testCase) (string, string) {
	said := strings.TrimSpace(strings.Join(nonEmpty(tc.message, tc.text, tc.output), "\n"))
	lines := strings.Split(said, "\n")
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || sayNothing(t, tc) {
			continue
		}
		rest := strings.TrimSpace(strings.Join(lines[i+1:], "\n"))
		if tc.message != "" && i == 0 && tc.text != "" {
			// The message's first line is the title; the text is the detail.
			_, more := insights.FirstLine(tc.message)
			rest = strings.TrimSpace(strings.Join(nonEmpty(more, tc.text, tc.output), "\n\n"))
		}
		return withoutPlace(t), rest
	}
	return "", strings.TrimSpace(strings.Join(nonEmpty(tc.text, tc.output), "\n\n"))
}

// sayNothing: a line that says no more than the test's status, name or
// place.
func sayNothing(line string, tc testCase) bool {
	lower := strings.ToLower(line)
	switch {
	case generic[lower], strings.HasPrefix(line, "=== "), strings.HasPrefix(line, "--- FAIL"), strings.Trim(line, "─━-_ ") == "":
		return true
	case tc.name != "" && (strings.HasSuffix(line, "::"+tc.name) || line == tc.name || line == tc.classname+" "+tc.name):
		return true
	case strings.HasPrefix(line, "[") && strings.Contains(line, " › "):
		return true // Playwright's "[chromium] › cart.spec.js:4:1 › adds up ───"
	}
	// Playwright's message: "cart.spec.js:4:1 adds up the cart".
	place, rest, ok := strings.Cut(line, " ")
	return ok && tc.name != "" && strings.TrimSpace(rest) == tc.name && strings.Count(place, ":") >= 1
}

// withoutPlace takes off a leading "path:line:" or "path:line:col:" (Go's
// t.Errorf, C's assertions): the annotation already stands there.
func withoutPlace(line string) string {
	refs, _ := insights.FileRefs(line)
	if len(refs) == 0 {
		return line
	}
	i := strings.Index(line, refs[0].Path)
	if i != 0 && !(i > 0 && strings.TrimSpace(line[:i]) == "") {
		return line
	}
	rest := line[i+len(refs[0].Path):]
	// ":12:" or ":12:5:" then the words.
	for n := 0; n < 2 && len(rest) > 0 && rest[0] == ':'; n++ {
		j := 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j == 1 {
			break
		}
		rest = rest[j:]
	}
	if words, ok := strings.CutPrefix(rest, ": "); ok && strings.TrimSpace(words) != "" {
		return strings.TrimSpace(words)
	}
	return line
}

func nonEmpty(parts ...string) []string {
	var out []string
	for _, p := range parts {
		if strings.TrimSpace(p) != "" {
			out = append(out, p)
		}
	}
	return out
}

// generic messages say nothing the status did not: gotestsum writes
// message="Failed" on every failure.
var generic = map[string]bool{"failed": true, "failure": true, "error": true}

// place is where a failed test's annotation goes (insights.Place).
func (r *Reader) place(tc testCase) (string, int) {
	line := tc.line
	if line >= 0 && tc.suite.pytest {
		line++ // pytest's line attributes count from 0
	}
	return r.Paths.Place(insights.Clues{Files: []string{tc.file, tc.suite.file}, Line: line, Classname: tc.classname,
		Trace: tc.message + "\n" + tc.text + "\n" + tc.output})
}

// ParseTime reads a time attribute in seconds as producers write it:
// "0.160", "0,160" (a decimal comma), "14,029.255" (thousands), "1E-07",
// or nothing. What it cannot read counts as zero.
func ParseTime(v string) time.Duration {
	v = strings.TrimSpace(v)
	if strings.Contains(v, ",") {
		if strings.Contains(v, ".") {
			v = strings.ReplaceAll(v, ",", "")
		} else {
			v = strings.Replace(v, ",", ".", 1)
		}
	}
	s, err := strconv.ParseFloat(v, 64)
	if err != nil || s < 0 || s != s || s > 1e9 {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}

// charsetReader reads the one non-UTF-8 encoding producers declare,
// ISO-8859-1 (and its superset windows-1252, read as Latin-1).
func charsetReader(label string, in io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "iso-8859-1", "latin1", "latin-1", "windows-1252", "cp1252":
		return &latin1{r: in}, nil
	case "us-ascii", "ascii":
		return in, nil
	}
	return nil, fmt.Errorf("the encoding %q is not read: write the report in UTF-8", label)
}

type latin1 struct {
	r   io.Reader
	buf []byte
}

func (l *latin1) Read(p []byte) (int, error) {
	if len(p) < 2 {
		return 0, io.ErrShortBuffer
	}
	if cap(l.buf) < len(p)/2 {
		l.buf = make([]byte, len(p)/2)
	}
	n, err := l.r.Read(l.buf[:len(p)/2])
	out := p[:0]
	for _, c := range l.buf[:n] {
		out = utf8AppendRune(out, rune(c))
	}
	return len(out), err
}

func utf8AppendRune(b []byte, r rune) []byte {
	if r < 0x80 {
		return append(b, byte(r))
	}
	return append(b, byte(0xC0|r>>6), byte(0x80|r&0x3F))
}

// Report is the test report of what was read; link is where the tests are
// shown in full (the pipeline's Tests tab).
func (r *Reader) Report(link string) insights.Report {
	findings, omitted := r.Failures()
	return insights.TestReport(r.counts, r.flaky, findings, omitted, link)
}
