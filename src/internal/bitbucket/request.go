// Package bitbucket sends commit build statuses to Bitbucket over HTTP: it
// knows Bitbucket Cloud's and Data Center's URLs and JSON (one file each),
// authentication, retries and Bitbucket's error bodies. It knows nothing of
// GitLab or of where its settings come from.
package bitbucket

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/insights"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
)

// Status is one build status, independent of the server it goes to.
type Status struct {
	Key         string
	State       state.State
	Name        string
	Description string
	URL         string
	// Branch is the branch the commit was built on; empty for a tag.
	Branch string
	// Tag is the tag built, for a tag pipeline.
	Tag string
	// BuildNumber identifies the run (GitLab's pipeline IID); may be empty.
	BuildNumber string
	// Duration is how long the build took, for a final state; zero if unknown.
	Duration time.Duration
	// Tests are the build's test counts, if known; Data Center (7.4+) shows
	// them on the status.
	Tests *insights.TestCounts
	// Skipped: a stopped build that ran nothing (GitLab's skipped). A
	// server without CANCELLED gets SUCCESSFUL for it, never FAILED.
	Skipped bool
}

// Request is one HTTP call described in full, so it can be printed for a dry
// run exactly as it would be sent.
type Request struct {
	Method string
	URL    string
	// Body is the JSON document sent, nil for none.
	Body []byte
}

// jsonBody encodes v without HTML escaping, so a URL's "&" reaches
// Bitbucket (and a dry run) as it is.
func jsonBody(v any) []byte {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only maps of strings and numbers are encoded here.
		panic(fmt.Sprintf("bitbucket: encoding a request body: %v", err))
	}
	return []byte(strings.TrimSuffix(b.String(), "\n"))
}

// joinURL appends escaped path segments to base, which has no trailing slash.
func joinURL(base string, segments ...string) string {
	var b strings.Builder
	b.WriteString(strings.TrimRight(base, "/"))
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// Print writes req as a person reads it: request line, headers (the
// credential redacted) and the indented JSON body.
func (c *Client) Print(w io.Writer, req Request) {
	fmt.Fprintf(w, "%s %s\n", req.Method, req.URL)
	fmt.Fprintf(w, "Authorization: %s\n", c.Auth.describe())
	fmt.Fprintf(w, "Accept: application/json\n")
	if req.Body != nil {
		fmt.Fprintf(w, "Content-Type: application/json\n")
	}
	fmt.Fprintf(w, "User-Agent: %s\n", c.UserAgent)
	if req.Body != nil {
		var pretty bytes.Buffer
		if json.Indent(&pretty, req.Body, "", "  ") != nil {
			pretty.Write(req.Body)
		}
		fmt.Fprintf(w, "\n%s\n", pretty.String())
	}
}
