// Package codequality reads GitLab Code Quality reports (the CodeClimate
// JSON array that golangci-lint, ESLint's GitLab formatter, Ruff, RuboCop's
// engine and others write) into the findings of an insights report. It
// streams the array: memory depends on the findings kept, not the file.
package codequality

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/insights"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/jsonstream"
)

// MaxFileBytes is the largest file read.
const MaxFileBytes = 100 << 20

// Reader adds Code Quality files up into one report.
type Reader struct {
	Paths insights.Paths
	// Limit is how many findings are kept, the most severe first; 0 means
	// insights.MaxFindings.
	Limit int
	// Warn receives what was skipped and why (an entry without a path, an
	// unknown severity).
	Warn func(string)

	findings   insights.Collector
	bySeverity [insights.Blocker + 1]int
	total      int
	omitted    int
	// distinct are the findings read (path, line, check, description): the
	// same one twice is one finding, counted once. owners are the
	// fingerprints given out and the finding that has each: golangci-lint's
	// fingerprint holds no line, so two equal lines share one, and each must
	// still be its own annotation, with an ID of its own.
	distinct map[string]bool
	owners   map[string]string
	// unsure counts, per kind of doubt, the findings of the file being read
	// whose severity was guessed: said once per file.
	unsure map[string]int
}

// entry is one finding as GitLab documents it, and as producers vary it.
type entry struct {
	Description string   `json:"description"`
	CheckName   string   `json:"check_name"`
	Fingerprint string   `json:"fingerprint"`
	Severity    string   `json:"severity"`
	Categories  []string `json:"categories"`
	Content     *struct {
		Body string `json:"body"`
	} `json:"content"`
	Location struct {
		Path  string `json:"path"`
		Lines *struct {
			Begin json.Number `json:"begin"`
		} `json:"lines"`
		Positions *struct {
			Begin struct {
				Line json.Number `json:"line"`
			} `json:"begin"`
		} `json:"positions"`
	} `json:"location"`
}

// ReadFile reads one file. On an error nothing of the file is counted.
func (r *Reader) ReadFile(name string) error {
	return insights.ReadFile(name, MaxFileBytes, "a Code Quality file", r.Read)
}

// Read reads one Code Quality document; name is for messages.
func (r *Reader) Read(src io.Reader, name string) error {
	buffered := bufio.NewReaderSize(&io.LimitedReader{R: src, N: MaxFileBytes + 1}, 64<<10)
	if err := sniff(buffered, name); err != nil {
		return err
	}
	lines := &lineCounter{r: buffered}
	file := &Reader{Paths: r.Paths, Limit: r.Limit, Warn: r.Warn, distinct: maps.Clone(r.distinct), owners: maps.Clone(r.owners),
		unsure: map[string]int{}}
	if file.distinct == nil {
		file.distinct, file.owners = map[string]bool{}, map[string]string{}
	}
	if err := file.decode(json.NewDecoder(lines), lines, name); err != nil {
		if lines.read > MaxFileBytes {
			return fmt.Errorf("%s: larger than %d MB, the most read from a Code Quality file", name, MaxFileBytes>>20)
		}
		return err
	}
	for _, doubt := range slices.Sorted(maps.Keys(file.unsure)) {
		if r.Warn != nil {
			r.Warn(fmt.Sprintf("%s: %s %s", name, insights.Plural(file.unsure[doubt], "finding"), doubt))
		}
	}
	r.distinct, r.owners = file.distinct, file.owners
	r.total += file.total
	for i, n := range file.bySeverity {
		r.bySeverity[i] += n
	}
	r.findings.Limit = r.Limit
	found, omitted := file.findings.Findings()
	for _, f := range found {
		r.findings.Add(f)
	}
	r.omitted += omitted
	return nil
}

func (r *Reader) decode(d *json.Decoder, lines *lineCounter, name string) error {
	at := func(err error) error {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		offset := d.InputOffset()
		switch {
		case errors.As(err, &se):
			offset = se.Offset
		case errors.As(err, &te):
			offset = te.Offset
		}
		return fmt.Errorf("%s: line %d: %v", name, lines.lineAt(offset), err)
	}
	tok, err := d.Token()
	if err == io.EOF {
		return fmt.Errorf("%s: empty: a Code Quality report is a JSON array (write [] for no findings)", name)
	}
	if err != nil {
		return at(err)
	}
	if delim, ok := tok.(json.Delim); ok && delim == '{' {
		return fmt.Errorf("%s: %s", name, anObject(d))
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '[' {
		return at(fmt.Errorf("expected a JSON array of findings, found %v", tok))
	}
	for i := 1; d.More(); i++ {
		var e entry
		if err := d.Decode(&e); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return at(fmt.Errorf("finding %d: %s is a JSON %s, not %s", i, te.Field, te.Value, jsonKind(te.Type)))
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%s: line %d: the file ends inside finding %d: was it cut short?", name, lines.last(), i)
			}
			return at(err)
		}
		r.add(e, func(msg string) {
			if r.Warn != nil {
				r.Warn(fmt.Sprintf("%s: finding %d (line %d): %s", name, i, lines.lineAt(d.InputOffset()), msg))
			}
		})
	}
	if _, err := d.Token(); err != nil {
		return at(err)
	}
	if _, err := d.Token(); err != io.EOF {
		return at(errors.New("more after the array's end"))
	}
	return nil
}

// jsonKind names what a Go type holds in JSON's words.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	}
	return "a number"
}

// Severity reads a finding's severity: GitLab's five, and the words other
// producers use (golangci-lint passes its linters' own: "error", "warning").
func Severity(word string) (insights.Severity, bool) {
	if s, ok := insights.ParseSeverity(word); ok {
		return s, true
	}
	switch strings.ToLower(strings.TrimSpace(word)) {
	case "error", "high":
		return insights.Critical, true
	case "warning", "warn", "medium":
		return insights.Minor, true
	case "low", "note", "notice":
		return insights.Info, true
	}
	return insights.Major, false
}

func (r *Reader) add(e entry, warn func(string)) {
	if strings.TrimSpace(e.Description) == "" && e.CheckName == "" {
		warn("no description: skipped")
		return
	}
	sev, ok := Severity(e.Severity)
	if !ok {
		if e.Severity == "" {
			r.unsure["with no severity: counted as major"]++
		} else {
			r.unsure[fmt.Sprintf("with the unknown severity %q: counted as major (GitLab's are %s)", e.Severity, insights.SeverityNames())]++
		}
	}
	line := lineOf(e)
	// One finding is one place, one check, one description: the same again
	// is a repeat, and counts once.
	key := insights.Fingerprint("codequality", e.Location.Path, strconv.Itoa(line), e.CheckName, e.Description)
	if r.distinct[key] {
		return
	}
	r.distinct[key] = true
	r.total++
	r.bySeverity[sev]++
	f := insights.Finding{
		ID:       e.Fingerprint,
		Title:    strings.TrimSpace(e.Description),
		Severity: sev,
		Category: category(e.Categories),
	}
	if owner, taken := r.owners[f.ID]; f.ID == "" || (taken && owner != key) {
		// No fingerprint, or another finding's: an ID of this one's own.
		f.ID = insights.Fingerprint(e.Fingerprint, key)
	}
	r.owners[f.ID] = key
	if e.CheckName != "" && !strings.Contains(f.Title, e.CheckName) {
		f.Title = strings.TrimSpace(f.Title + " (" + e.CheckName + ")")
	}
	if e.Content != nil {
		f.Details = strings.TrimSpace(e.Content.Body)
	}
	if p := r.Paths.Relative(e.Location.Path); p != "" {
		f.Path = p
		f.Line = line
	} else if e.Location.Path != "" {
		f.Details = strings.TrimSpace("In " + e.Location.Path + " (outside the repository).\n\n" + f.Details)
	}
	r.findings.Limit = r.Limit
	r.findings.Add(f)
}

func lineOf(e entry) int {
	var n json.Number
	switch {
	case e.Location.Lines != nil:
		n = e.Location.Lines.Begin
	case e.Location.Positions != nil:
		n = e.Location.Positions.Begin.Line
	}
	line, err := n.Int64()
	if err != nil || line < 0 || line > 1<<30 {
		return 0
	}
	return int(line)
}

func category(categories []string) insights.Category {
	switch {
	case slices.ContainsFunc(categories, func(c string) bool { return strings.EqualFold(c, "Security") }):
		return insights.Vulnerability
	case slices.ContainsFunc(categories, func(c string) bool { return strings.EqualFold(c, "Bug Risk") }):
		return insights.Bug
	}
	return insights.Smell
}

// Findings are the findings kept and how many were left out.
func (r *Reader) Findings() ([]insights.Finding, int) {
	kept, omitted := r.findings.Findings()
	return kept, omitted + r.omitted
}

// Total is how many findings were read.
func (r *Reader) Total() int { return r.total }

// BySeverity counts the findings read per severity.
func (r *Reader) BySeverity() [insights.Blocker + 1]int { return r.bySeverity }

// sniff reads what the file starts with, to say what it is when it is no
// Code Quality report: UTF-16 (Windows PowerShell's >), XML (a JUnit or
// checkstyle report), text (a tool's console output). A UTF-8 byte order
// mark (PowerShell's Out-File -Encoding utf8) is passed over.
func sniff(b *bufio.Reader, name string) error {
	head, _ := b.Peek(512)
	switch {
	case bytes.HasPrefix(head, []byte{0xEF, 0xBB, 0xBF}):
		_, err := b.Discard(3)
		return err
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}), bytes.HasPrefix(head, []byte{0xFE, 0xFF}),
		len(head) >= 2 && (head[0] == 0 || head[1] == 0):
		return fmt.Errorf("%s: UTF-16 text (what Windows PowerShell's > writes), not UTF-8: write the report as UTF-8 "+
			"(Out-File -Encoding utf8, Set-Content -Encoding utf8, or let the tool write the file itself)", name)
	}
	trimmed := bytes.TrimLeft(head, " \t\r\n")
	switch {
	case len(trimmed) == 0, trimmed[0] == '[', trimmed[0] == '{':
		return nil
	case trimmed[0] == '<':
		return fmt.Errorf("%s: XML, not a Code Quality report (a JSON array of findings): give a JUnit report to --junit "+
			"(the component's junit input); a checkstyle or other linter XML needs its tool's GitLab (CodeClimate) output instead", name)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(trimmed)), "\n")
	return fmt.Errorf("%s: text, not JSON: it starts %q. A Code Quality report is a JSON array of findings; "+
		"if a tool's console output was written here: eslint-formatter-gitlab writes its JSON to the path in ESLINT_CODE_QUALITY_REPORT "+
		"(without --output-file, which overwrites it with the console text)", name, insights.Cut(first, 80))
}

// anObject says what a JSON object given as a Code Quality report is,
// reading only its top-level keys: SARIF (a linter's other format) and
// GitLab's security reports are told apart.
func anObject(d *json.Decoder) string {
	keys := map[string]string{}
	for d.More() && len(keys) < 50 {
		tok, err := d.Token()
		if err != nil {
			break
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if key == "$schema" || key == "version" {
			if d.Decode(&value) != nil {
				break
			}
			keys[key] = string(value)
			continue
		}
		keys[key] = ""
		if jsonstream.Skip(d) != nil {
			break
		}
	}
	_, runs := keys["runs"]
	_, vulnerabilities := keys["vulnerabilities"]
	switch {
	case strings.Contains(strings.ToLower(keys["$schema"]), "sarif") || (runs && strings.Contains(keys["version"], "2.1")):
		return "a SARIF report, not GitLab Code Quality (a JSON array of findings): give the tool's GitLab or CodeClimate output " +
			"instead (eslint-formatter-gitlab, golangci-lint --output.code-climate.path, ruff --output-format=gitlab), or convert the SARIF"
	case vulnerabilities:
		return "a GitLab security (SAST) report, for artifacts:reports:sast, not Code Quality (a JSON array of findings): " +
			"GitLab shows it in the security widget; give Code Quality a linter's GitLab (CodeClimate) output"
	}
	return "a JSON object, not a Code Quality report: GitLab Code Quality is a JSON array of findings (write [] for none)"
}

// lineCounter remembers where each line starts, so a decoder's byte offset
// can be told as a line, without keeping the text.
type lineCounter struct {
	r     io.Reader
	read  int64
	lines int64
	// recent holds the offsets of the last lines' starts.
	recent          []int64
	endsWithNewline bool
}

func (l *lineCounter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for i := 0; i < n; {
		j := bytes.IndexByte(p[i:n], '\n')
		if j < 0 {
			break
		}
		l.lines++
		l.recent = append(l.recent, l.read+int64(i+j+1))
		if len(l.recent) > 4096 {
			l.recent = slices.Delete(l.recent, 0, 2048)
		}
		i += j + 1
	}
	l.read += int64(n)
	if n > 0 {
		l.endsWithNewline = p[n-1] == '\n'
	}
	return n, err
}

// last is the last line that holds anything.
func (l *lineCounter) last() int64 {
	if l.endsWithNewline {
		return l.lines
	}
	return l.lines + 1
}

// lineAt is the 1-based line of offset, when it is among the lines seen
// lately (the decoder reads ahead a little).
func (l *lineCounter) lineAt(offset int64) int64 {
	after := int64(0)
	for i := len(l.recent) - 1; i >= 0 && l.recent[i] > offset; i-- {
		after++
	}
	return l.lines - after + 1
}

// Report is the code quality report of what was read: failed when a
// finding is at failOn or above. link is where the findings are shown.
func (r *Reader) Report(link string, failOn insights.Severity) insights.Report {
	findings, omitted := r.Findings()
	rep := insights.Report{Kind: insights.CodeQuality, Title: "GitLab code quality", Passed: true, Link: link,
		Findings: findings, Omitted: omitted,
		Figures: []insights.Figure{{Title: "Findings", Value: int64(r.total)}}}
	var parts []string
	for s := insights.Blocker; s >= insights.Info; s-- {
		n := r.bySeverity[s]
		rep.Figures = append(rep.Figures, insights.Figure{Title: capitalize(s.String()), Value: int64(n)})
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
			if s >= failOn {
				rep.Passed = false
			}
		}
	}
	if r.total == 0 {
		rep.Summary = "No findings."
	} else {
		rep.Summary = fmt.Sprintf("%s: %s.", insights.Plural(r.total, "finding"), strings.Join(parts, ", "))
	}
	rep.Summary += fmt.Sprintf(" The report fails on a finding of severity %s or above.", failOn)
	return rep
}

func capitalize(s string) string { return strings.ToUpper(s[:1]) + s[1:] }
