// Package junit reads JUnit XML test reports as the common producers write
// them (pytest, jest-junit, gotestsum and go-junit-report, Maven Surefire,
// PHPUnit, rspec_junit_formatter, Gradle) into the counts and failed tests
// of an insights report. It streams: memory depends on the failures kept,
// never on the number of passing tests or the file's size.
package junit

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
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
	// failed remembers each failed test's key, so a repeated test case
	// (pytest-rerunfailures) that passed is not counted twice.
	failed map[string]status
	flaky  int
	// withdrawn are failures of earlier files that passed on a rerun.
	withdrawn []string
	// omittedBefore counts failures left out by a file's own limit.
	omittedBefore int
}

// ReadFile reads one file. On an error nothing of the file is counted.
func (r *Reader) ReadFile(name string) error {
	return insights.ReadFile(name, MaxFileBytes, "a JUnit file (GitLab itself refuses files over 30 MB): split the report", r.Read)
}

// Read reads one JUnit document from src; name is the file's name for
// messages. On an error nothing of the document is counted.
func (r *Reader) Read(src io.Reader, name string) error {
	file := &Reader{Paths: r.Paths, Limit: r.Limit, failed: maps.Clone(r.failed)}
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
	r.failed = f.failed
	r.failures.Limit = r.Limit
	for _, id := range f.withdrawn {
		r.failures.Remove(id)
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
	flaky                 bool
	duration              time.Duration
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
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch start.Name.Local {
		case "testsuites", "testsuite":
			seenRoot = true
		case "testcase":
			if !seenRoot {
				return errors.New("<testcase> outside any <testsuite>")
			}
			tc, err := readCase(d, start)
			if err != nil {
				return err
			}
			r.add(tc)
		default:
			if !seenRoot {
				return fmt.Errorf("the root element is <%s>, not <testsuites> or <testsuite>: not a JUnit report", start.Name.Local)
			}
			// properties, system-out of a suite, anything else.
			if err := d.Skip(); err != nil {
				return err
			}
		}
	}
}

func readCase(d *xml.Decoder, start xml.StartElement) (testCase, error) {
	tc := testCase{}
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
			tc.line, _ = strconv.Atoi(strings.TrimSpace(a.Value))
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
			tc.line = max(tc.line, 0)
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
			case "flakyFailure", "flakyError":
				// Surefire: failed, then passed on a rerun.
				tc.flaky = true
				if err := d.Skip(); err != nil {
					return tc, err
				}
				continue
			default:
				// system-out, system-err, properties, rerunFailure (a
				// rerun after a <failure>, which already decides).
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

func (r *Reader) add(tc testCase) {
	if r.failed == nil {
		r.failed = map[string]status{}
	}
	key := tc.classname + "\x00" + tc.name
	if was, ok := r.failed[key]; ok {
		// The same test again: a rerun (pytest-rerunfailures repeats the
		// test case). A pass withdraws the failure.
		r.counts.Duration += tc.duration
		if tc.status == passed {
			delete(r.failed, key)
			if !r.failures.Remove(tc.id()) {
				r.withdrawn = append(r.withdrawn, tc.id())
			}
			r.flaky++
			if was == errored {
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
	r.failed[key] = tc.status
	r.failures.Limit = r.Limit
	r.failures.Add(r.finding(tc))
}

func (tc testCase) id() string { return insights.TestID(tc.classname, tc.name) }

// finding is a failed test as the reader of a pull request sees it: its
// name and the first line of its message, the rest below, on the file and
// line the XML or a stack trace inside the repository names.
func (r *Reader) finding(tc testCase) insights.Finding {
	message := tc.message
	if generic[strings.ToLower(strings.TrimSpace(message))] {
		message = ""
	}
	first, rest := insights.FirstLine(message)
	body := tc.text
	if first == "" {
		first, rest = firstMeaningful(tc.text)
		body = ""
	}
	details := strings.TrimSpace(strings.Join(nonEmpty(rest, body), "\n\n"))
	f := insights.FailedTest(tc.classname, tc.name, tc.status == errored, first, details)
	if p := r.Paths.Relative(tc.file); p != "" && r.exists(p) {
		f.Path, f.Line = p, tc.line
		if f.Line == 0 {
			// jest-junit and rspec name the file but not the line; the trace
			// often has it.
			f.Line = r.Paths.LineIn(tc.message+"\n"+tc.text, p)
		}
	} else if p, line := r.fromTrace(tc.message + "\n" + tc.text); p != "" {
		f.Path, f.Line = p, line
	}
	return f
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

// firstMeaningful is the first line of a test's output that says
// something, past Go's "=== RUN" and "--- FAIL" framing, and the rest.
func firstMeaningful(text string) (string, string) {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- FAIL") {
			continue
		}
		return t, strings.TrimSpace(strings.Join(lines[i+1:], "\n"))
	}
	return "", ""
}

// exists: a file attribute is trusted unless the workspace can be checked.
func (r *Reader) exists(rel string) bool {
	return r.Paths.Exists == nil || r.Paths.Exists(rel)
}

// fromTrace finds the frame of a stack trace that names a file in the
// repository: Python's innermost frame is its last, other languages' first.
// Only with a workspace to check against: a file name alone (Go's, Java's)
// is not a path in the repository.
func (r *Reader) fromTrace(text string) (string, int) {
	if r.Paths.Exists == nil {
		return "", 0
	}
	refs, python := insights.FileRefs(text)
	for i := len(python) - 1; i >= 0; i-- {
		if p := r.Paths.Relative(python[i].Path); p != "" && r.Paths.Exists(p) {
			return p, python[i].Line
		}
	}
	for _, ref := range refs {
		if p := r.Paths.Relative(ref.Path); p != "" && r.Paths.Exists(p) {
			return p, ref.Line
		}
	}
	return "", 0
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
