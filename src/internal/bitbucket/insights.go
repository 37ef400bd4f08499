package bitbucket

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/insights"
)

// Code Insights limits, from the servers' documentation and answers.
const (
	// ReportKeyMax: Data Center refuses a report key over 50 characters;
	// Cloud documents none, and one key serves both.
	ReportKeyMax = 50
	// CloudAnnotationsPerRequest: Cloud's bulk upload takes 100.
	CloudAnnotationsPerRequest = 100
	// DataCenterAnnotationsPerRequest: Data Center takes a report's whole
	// 1,000 in one request (and refuses a request that would pass them).
	DataCenterAnnotationsPerRequest = 1000
	cloudFigures                    = 10
	dataCenterFigures               = 6
	maxTitle                        = 450
	maxDetails                      = 2000
	maxSummary                      = 450
	maxExternalID                   = 449
)

// Reporter names the tool on a report.
const Reporter = "GitLab"

// Insights is a report on a commit as one server takes it: the requests
// that replace the report under Key with Report and its findings.
type Insights struct {
	Key    string
	Report insights.Report
}

type cloudReport struct {
	Title      string `json:"title"`
	Details    string `json:"details"`
	ExternalID string `json:"external_id"`
	Reporter   string `json:"reporter"`
	Link       string `json:"link,omitempty"`
	ReportType string `json:"report_type"`
	// Result is empty (neither) for a report on nothing: no test ran.
	Result string  `json:"result,omitempty"`
	Data   []datum `json:"data"`
}

// datum is one figure of a report, the same on both servers.
type datum struct {
	Title string `json:"title"`
	Type  string `json:"type"`
	Value int64  `json:"value"`
}

// data is a report's first most figures (always a list: Data Center
// requires one).
func data(figures []insights.Figure, most int) []datum {
	out := []datum{}
	for _, f := range figures[:min(len(figures), most)] {
		d := datum{Title: f.Title, Type: "NUMBER", Value: f.Value}
		if f.Duration {
			d.Type = "DURATION"
		}
		out = append(out, d)
	}
	return out
}

type cloudAnnotation struct {
	ExternalID     string `json:"external_id"`
	AnnotationType string `json:"annotation_type"`
	Path           string `json:"path,omitempty"`
	Line           int    `json:"line,omitempty"`
	Summary        string `json:"summary"`
	Details        string `json:"details,omitempty"`
	Result         string `json:"result"`
	Severity       string `json:"severity"`
}

// cloudSeverity and dataCenterSeverity map GitLab's five severities onto
// each server's scale (the README's table).
var (
	cloudSeverity      = [...]string{insights.Info: "LOW", insights.Minor: "LOW", insights.Major: "MEDIUM", insights.Critical: "HIGH", insights.Blocker: "CRITICAL"}
	dataCenterSeverity = [...]string{insights.Info: "LOW", insights.Minor: "LOW", insights.Major: "MEDIUM", insights.Critical: "HIGH", insights.Blocker: "HIGH"}
	annotationType     = [...]string{insights.Smell: "CODE_SMELL", insights.Bug: "BUG", insights.Vulnerability: "VULNERABILITY"}
)

// ReportRequests replaces the report: DELETE (which clears its old
// annotations; Bitbucket keeps them across a PUT), PUT, then the
// annotations in batches of 100.
func (r Cloud) ReportRequests(commit string, in Insights) []Request {
	base := joinURL(r.API, "repositories", r.Workspace, r.Slug, "commit", commit, "reports", in.Key)
	rep := in.Report
	body := cloudReport{
		Title: insights.Cut(rep.Title, maxTitle), Details: details(rep), ExternalID: in.Key, Reporter: Reporter,
		Link: httpLink(rep.Link), ReportType: "BUG", Result: "FAILED", Data: data(rep.Figures, cloudFigures),
	}
	if rep.Kind == insights.Tests {
		body.ReportType = "TEST"
	}
	switch {
	case rep.Neutral:
		body.Result = ""
	case rep.Passed:
		body.Result = "PASSED"
	}
	reqs := []Request{{Method: http.MethodDelete, URL: base}, {Method: http.MethodPut, URL: base, Body: jsonBody(body)}}
	findings := rep.Findings[:min(len(rep.Findings), insights.MaxFindings)]
	for len(findings) > 0 {
		batch := findings[:min(len(findings), CloudAnnotationsPerRequest)]
		findings = findings[len(batch):]
		list := make([]cloudAnnotation, 0, len(batch))
		for _, f := range batch {
			list = append(list, cloudAnnotation{
				ExternalID: insights.Cut(f.ID, maxExternalID), AnnotationType: annotationType[f.Category],
				Path: f.Path, Line: max(f.Line, 0), Summary: summary(f), Details: insights.Cut(f.Details, maxDetails),
				Result: "FAILED", Severity: cloudSeverity[f.Severity],
			})
		}
		reqs = append(reqs, Request{Method: http.MethodPost, URL: base + "/annotations", Body: jsonBody(list)})
	}
	return reqs
}

type dataCenterReport struct {
	Title   string `json:"title"`
	Details string `json:"details"`
	// Result is empty (neither) for a report on nothing: no test ran.
	Result   string  `json:"result,omitempty"`
	Reporter string  `json:"reporter"`
	Link     string  `json:"link,omitempty"`
	Data     []datum `json:"data"`
}

type dataCenterAnnotation struct {
	ExternalID string `json:"externalId"`
	Message    string `json:"message"`
	Severity   string `json:"severity"`
	Type       string `json:"type"`
	Path       string `json:"path,omitempty"`
	Line       int    `json:"line,omitempty"`
}

type dataCenterAnnotations struct {
	Annotations []dataCenterAnnotation `json:"annotations"`
}

// ReportRequests replaces the report: DELETE (which removes its
// annotations: Data Center keeps duplicates otherwise), PUT, then all
// annotations in one request.
func (r DataCenter) ReportRequests(commit string, in Insights) []Request {
	base := joinURL(r.Server, "rest", "insights", "latest", "projects", r.Project, "repos", r.Slug, "commits", commit, "reports", in.Key)
	rep := in.Report
	body := dataCenterReport{Title: insights.Cut(rep.Title, maxTitle), Details: details(rep), Result: "FAIL",
		Reporter: Reporter, Link: httpLink(rep.Link), Data: data(rep.Figures, dataCenterFigures)}
	switch {
	case rep.Neutral:
		body.Result = ""
	case rep.Passed:
		body.Result = "PASS"
	}
	reqs := []Request{{Method: http.MethodDelete, URL: base}, {Method: http.MethodPut, URL: base, Body: jsonBody(body)}}
	findings := rep.Findings[:min(len(rep.Findings), insights.MaxFindings)]
	for len(findings) > 0 {
		batch := findings[:min(len(findings), DataCenterAnnotationsPerRequest)]
		findings = findings[len(batch):]
		list := dataCenterAnnotations{Annotations: make([]dataCenterAnnotation, 0, len(batch))}
		for _, f := range batch {
			message := summary(f)
			if f.Details != "" {
				message += "\n\n" + f.Details
			}
			list.Annotations = append(list.Annotations, dataCenterAnnotation{
				ExternalID: insights.Cut(f.ID, maxExternalID), Message: insights.Cut(message, maxDetails),
				Severity: dataCenterSeverity[f.Severity], Type: annotationType[f.Category], Path: f.Path, Line: max(f.Line, 0),
			})
		}
		reqs = append(reqs, Request{Method: http.MethodPost, URL: base + "/annotations", Body: jsonBody(list)})
	}
	return reqs
}

// summary is a finding's one line; servers refuse an empty one.
func summary(f insights.Finding) string {
	s := strings.TrimSpace(strings.ReplaceAll(f.Title, "\n", " "))
	if s == "" {
		s = "(no message)"
	}
	return insights.Cut(s, maxSummary)
}

// details is the report's text: its summary, and what was left out.
func details(rep insights.Report) string {
	text := rep.Summary
	if rep.Omitted > 0 {
		text = strings.TrimSpace(fmt.Sprintf("%s\n\n%d more left out: a report holds at most %d, the most severe first.",
			text, rep.Omitted, insights.MaxFindings))
	}
	if text == "" {
		text = rep.Title
	}
	return insights.Cut(text, maxDetails)
}

// httpLink is link when it is an absolute http(s) URL: Data Center refuses
// a report whose link is anything else.
func httpLink(link string) string {
	u, err := url.Parse(link)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	// Re-encoded: a quote or a space in a query is escaped, as a URI must be.
	u.RawQuery = u.Query().Encode()
	return u.String()
}

// Publish sends a report's requests in order. A first DELETE that finds
// nothing (404) is what a first run meets; any other failure stops. tries,
// when above 1, sends a request that met a 5xx or no answer again, after a
// backoff, up to that many times: for a client that makes one attempt per
// call (the relay's), so that one 502 does not lose a report.
func (c *Client) Publish(ctx context.Context, reqs []Request, tries int) (int, error) {
	sent := 0
	for i, req := range reqs {
		for try := 1; ; try++ {
			resp, err := c.Do(ctx, req)
			var he *HTTPError
			var te *TransportError
			switch {
			case i == 0 && req.Method == http.MethodDelete && errors.As(err, &he) && he.StatusCode == http.StatusNotFound:
				sent += he.Attempts
			case err == nil:
				sent += resp.Attempts
			case try < tries && errors.As(err, &he) && he.StatusCode >= 500, try < tries && errors.As(err, &te) && !te.Interrupted:
				if he != nil {
					sent += he.Attempts
				} else {
					sent += te.Attempts
				}
				select {
				case <-ctx.Done():
					return sent, err
				case <-time.After(c.backoff(try)):
				}
				continue
			default:
				return sent, err
			}
			break
		}
	}
	return sent, nil
}
