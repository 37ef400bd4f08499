package gitlab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/insights"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/jsonstream"
)

// TestReportSummary reads a pipeline's test counts, child pipelines
// included, in one request (test_report_summary, GitLab 14.2). Total is 0
// when the pipeline has no test report.
func (c *Client) TestReportSummary(ctx context.Context, projectID, pipelineID int64) (insights.TestCounts, error) {
	var s struct {
		Total struct {
			Time    float64 `json:"time"`
			Count   int     `json:"count"`
			Success int     `json:"success"`
			Failed  int     `json:"failed"`
			Skipped int     `json:"skipped"`
			Error   int     `json:"error"`
		} `json:"total"`
	}
	if _, err := c.get(ctx, fmt.Sprintf("projects/%d/pipelines/%d/test_report_summary", projectID, pipelineID), nil, &s); err != nil {
		return insights.TestCounts{}, err
	}
	t := s.Total
	seconds := time.Duration(0)
	if t.Time > 0 && t.Time < 1e9 {
		seconds = time.Duration(t.Time * float64(time.Second))
	}
	return insights.TestCounts{Total: max(t.Count, 0), Failed: max(t.Failed, 0), Errored: max(t.Error, 0), Skipped: max(t.Skipped, 0),
		Duration: seconds}, nil
}

// maxTestReport bounds what is read of a pipeline's full test report,
// which holds every passing case too: it is streamed, never held.
const maxTestReport = 256 << 20

// FailedTests reads the failed and errored cases of a pipeline's test
// report (test_report: no pagination, every case), streaming the answer and
// keeping at most limit, the first found. paths makes the files it names
// relative: the project's directory where the jobs ran (GitLab's default
// /builds/<path>) and its path. A test that failed in two suites (GitLab's
// suites are its jobs: two jobs of a parallel:matrix) is two findings, each
// saying which, as the job's JUnit reader makes them.
func (c *Client) FailedTests(ctx context.Context, projectID, pipelineID int64, paths insights.Paths, limit int) ([]insights.Finding, int, error) {
	resp, err := c.open(ctx, fmt.Sprintf("projects/%d/pipelines/%d/test_report", projectID, pipelineID), nil)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	collect := &insights.Collector{Limit: limit}
	var names insights.TestNames
	limited := &io.LimitedReader{R: resp.Body, N: maxTestReport}
	d := json.NewDecoder(limited)
	err = walkObject(d, func(key string) error {
		if key != "test_suites" {
			return jsonstream.Skip(d)
		}
		n := 0
		return walkArray(d, func() error {
			n++
			suite := insights.Suite{Key: fmt.Sprintf("#%d", n)}
			return walkObject(d, func(key string) error {
				switch key {
				case "name":
					// GitLab serializes a suite's name before its cases.
					if err := d.Decode(&suite.Name); err != nil {
						return err
					}
					suite.Key = suite.Name
					return nil
				case "test_cases":
				default:
					return jsonstream.Skip(d)
				}
				return walkArray(d, func() error {
					var tc testCase
					if err := d.Decode(&tc); err != nil {
						return err
					}
					if tc.Status == "failed" || tc.Status == "error" {
						f := tc.finding(paths)
						if rn := names.Name(&f, tc.Classname, tc.Name, suite); rn != nil {
							collect.Rename(rn.ID, rn.NewID, rn.Prefix)
						}
						collect.Add(f)
					}
					return nil
				})
			})
		})
	})
	if limited.N <= 0 {
		return nil, 0, fmt.Errorf("GitLab's test report of pipeline %d is larger than %d MB: not read", pipelineID, maxTestReport>>20)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading GitLab's test report of pipeline %d: %w", pipelineID, err)
	}
	found, omitted := collect.Findings()
	return found, omitted, nil
}

// testCase is one case of GitLab's test report (TestCaseEntity).
type testCase struct {
	Status       string `json:"status"`
	Name         string `json:"name"`
	Classname    string `json:"classname"`
	File         string `json:"file"`
	SystemOutput string `json:"system_output"`
	StackTrace   string `json:"stack_trace"`
}

// finding is the case as the job's JUnit reader makes it (the same ID, so
// a report moves between the job and the relay unchanged), placed by the
// same rules: GitLab keeps the file attribute but no line, which the
// output may give, and the output's frames.
func (tc testCase) finding(paths insights.Paths) insights.Finding {
	output := strings.TrimSpace(tc.SystemOutput + "\n" + tc.StackTrace)
	first, rest := insights.FirstLine(output)
	f := insights.FailedTest(tc.Classname, tc.Name, tc.Status == "error", first, insights.Cut(rest, 8<<10))
	f.Path, f.Line = paths.Place(insights.Clues{Files: []string{tc.File}, Line: -1, Classname: tc.Classname, Trace: output})
	return f
}

// walkObject reads a JSON object, calling each for every key with the
// decoder before its value, which each must consume.
func walkObject(d *json.Decoder, each func(key string) error) error {
	if err := expectDelim(d, '{'); err != nil {
		return err
	}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if err := each(key); err != nil {
			return err
		}
	}
	_, err := d.Token()
	return err
}

// walkArray reads a JSON array, calling each before every element, which
// each must consume. null counts as an empty array.
func walkArray(d *json.Decoder, each func() error) error {
	tok, err := d.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '[' {
		return fmt.Errorf("expected an array, found %v", tok)
	}
	for d.More() {
		if err := each(); err != nil {
			return err
		}
	}
	_, err = d.Token()
	return err
}

func expectDelim(d *json.Decoder, want json.Delim) error {
	tok, err := d.Token()
	if err != nil {
		return err
	}
	if delim, ok := tok.(json.Delim); !ok || delim != want {
		return fmt.Errorf("expected %v, found %v", want, tok)
	}
	return nil
}
