package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/insights"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/statuskey"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

// reportTimeout bounds one report's publishing: GitLab's test report read
// and the requests to Bitbucket.
const reportTimeout = time.Minute

// reportTries is how many times a report's request is sent when it meets a
// 5xx or no answer (the relay's clients make one attempt per call): within
// reportTimeout, with the client's backoff.
const reportTries = 4

// reportsSeenMax bounds the memory of which pipelines' reports were
// published; past it, it starts again (a report published twice is
// replaced, not doubled).
const reportsSeenMax = 10_000

// reports remembers the test reports published, so a status posted again
// (a confirmation, a sweep) does not publish its report again.
type reports struct {
	mu       sync.Mutex
	seen     map[string]bool
	inflight sync.WaitGroup
}

func (rs *reports) first(key string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.seen == nil || len(rs.seen) >= reportsSeenMax {
		rs.seen = map[string]bool{}
	}
	if rs.seen[key] {
		return false
	}
	rs.seen[key] = true
	return true
}

func (rs *reports) forget(key string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	delete(rs.seen, key)
}

// wantsTests says whether a post of pipeline p to d carries test results:
// with GITLAB_TOKEN, a final state, a parent (whose report includes its
// children), and a route that did not turn them off.
func (r *Relay) wantsTests(p gitlab.Pipeline, d Destination, s bitbucket.Status) bool {
	return r.cfg.GitLab != nil && r.cfg.TestReports && !d.NoTestReports && s.State.Final() && !p.IsChild() && p.ProjectID > 0
}

// testSummary is what GitLab said of a pipeline's tests; nil if it did
// not answer.
type testSummary struct{ insights.TestCounts }

// counts are the counts for a status: nil without tests or an answer.
func (t *testSummary) counts() *insights.TestCounts {
	if t == nil || t.Total == 0 {
		return nil
	}
	return &t.TestCounts
}

// testCounts reads the pipeline's test summary (one GitLab request, child
// pipelines included), waiting at most gitlabLookupTimeout; nil when
// GitLab did not answer (the status goes without the counts).
func (r *Relay) testCounts(ctx context.Context, p gitlab.Pipeline) *testSummary {
	rctx, cancel := context.WithTimeout(ctx, gitlabLookupTimeout)
	defer cancel()
	c, err := r.cfg.GitLab.TestReportSummary(rctx, p.ProjectID, p.ID)
	if err != nil {
		r.countGitLabError("test_report_summary", err)
		r.log.Warn("could not read the pipeline's test summary from GitLab: no test results for it",
			"project", p.ProjectPath, "pipeline", p.ID, "error", err.Error())
		return nil
	}
	return &testSummary{c}
}

// publishTests publishes the pipeline's test report, after its status and
// apart from it: a report that fails never delays or loses the status.
// known is the summary read for the status, if it was (Data Center); else
// it is read here. It is done once per pipeline, state and repository by
// this process; a pipeline without tests gets no report.
func (r *Relay) publishTests(statusID string, p gitlab.Pipeline, d Destination, known *testSummary) {
	// The status names the repository, commit and key; the pipeline and its state the rest.
	seen := statusID + "\x00" + strconv.FormatInt(p.ID, 10) + "\x00" + p.Status
	if !r.reports.first(seen) {
		return
	}
	r.reports.inflight.Add(1)
	go func() {
		defer r.reports.inflight.Done()
		ctx, cancel := context.WithTimeout(context.Background(), reportTimeout)
		defer cancel()
		summary := known
		if summary == nil {
			if summary = r.testCounts(ctx, p); summary == nil {
				r.reports.forget(seen)
				return
			}
		}
		if summary.Total == 0 {
			return
		}
		counts := summary.TestCounts
		attrs := []any{"project", p.ProjectPath, "pipeline", p.ID, "commit", p.SHA, "repository", d.Where()}
		outcome, rep, err := r.publishTestsNow(ctx, p, d, counts)
		r.metrics.reports.WithLabelValues(outcome).Inc()
		r.noteReport(ctx, statusID, p, rep, outcome, err)
		switch {
		case outcome == "partial":
			// Published; the next post of this status tries the failed tests again.
			r.reports.forget(seen)
			r.log.Warn("test report published without its failed tests", append(attrs, "error", err.Error())...)
			return
		case err != nil:
			r.reports.forget(seen)
			r.log.Warn("test report not published", append(attrs, "outcome", outcome, "error", err.Error())...)
			return
		}
		r.log.Info("test report published", append(attrs, "tests", counts.Total, "failed", counts.Failed+counts.Errored)...)
	}()
}

// publishTestsNow publishes the report: the outcome (a metric's label),
// the report sent, and why it failed, if it did.
func (r *Relay) publishTestsNow(ctx context.Context, p gitlab.Pipeline, d Destination, counts insights.TestCounts) (string, insights.Report, error) {
	client := r.clients[d.Credential]
	if client == nil {
		return "dropped", insights.Report{}, errors.New("credential " + d.Credential + " is no longer configured")
	}
	if until := r.pausedUntil(d.Credential); !until.IsZero() {
		return "paused", insights.Report{}, errors.New("the credential is paused by a rate limit until " + until.Format(time.RFC3339))
	}
	var findings []insights.Finding
	omitted := 0
	var readErr error
	if counts.Failed+counts.Errored > 0 {
		// GitLab's default builds directory, to make absolute paths relative.
		findings, omitted, readErr = r.cfg.GitLab.FailedTests(ctx, p.ProjectID, p.ID,
			insights.Paths{ProjectDir: "/builds/" + p.ProjectPath, ProjectPath: p.ProjectPath}, insights.MaxFindings)
		if readErr != nil {
			r.countGitLabError("test_report", readErr)
		}
	}
	link := p.URL
	if u, err := url.Parse(p.URL); err == nil && p.URL != "" {
		link = u.JoinPath("test_report").String()
	}
	rep := insights.TestReport(counts, 0, findings, omitted, link)
	if readErr != nil {
		rep.Summary += " The failed tests could not be read from GitLab: see the pipeline's Tests tab."
	}
	rep.Scrub(r.secrets.Scrub)
	in := bitbucket.Insights{Key: statuskey.Report(p.ProjectPath, string(insights.Tests), ""), Report: rep}
	var reqs []bitbucket.Request
	if d.DataCenter != nil {
		reqs = d.DataCenter.ReportRequests(p.SHA, in)
	} else {
		reqs = d.Cloud.ReportRequests(p.SHA, in)
	}
	if _, err := client.Publish(ctx, reqs, reportTries); err != nil {
		var he *bitbucket.HTTPError
		if errors.As(err, &he) && he.StatusCode == http.StatusTooManyRequests {
			r.pauseCredential(d.Credential, he.RetryAfter)
			return "paused", rep, err
		}
		return "failed", rep, err
	}
	if readErr != nil {
		return "partial", rep, readErr
	}
	return "published", rep, nil
}

// noteReport puts the report's outcome in its status's history, where the
// status page and the status command show it.
func (r *Relay) noteReport(ctx context.Context, statusID string, p gitlab.Pipeline, rep insights.Report, outcome string, err error) {
	e := store.Entry{Kind: "report", PipelineID: p.ID, IID: p.IID, State: "FAILED"}
	switch {
	case rep.Neutral:
		e.State = "NO TESTS"
	case rep.Passed:
		e.State = "PASSED"
	}
	var he *bitbucket.HTTPError
	switch {
	case errors.As(err, &he):
		e.Code = he.StatusCode
	case err == nil || outcome == "partial":
		e.Code = http.StatusOK
	}
	switch {
	case err == nil:
		e.Detail = fmt.Sprintf("test report published: %s (%d annotations)", rep.Summary, min(len(rep.Findings), insights.MaxFindings))
	case outcome == "partial":
		e.Detail = "test report published without its failed tests: " + err.Error()
	default:
		e.Detail = "test report not published (" + outcome + "): " + err.Error()
	}
	e.Detail = r.clean(e.Detail)
	if err := r.store.Note(ctx, statusID, e); err != nil {
		r.log.Error("recording a test report in its status's history", "status", statusID, "error", err.Error())
	}
}
