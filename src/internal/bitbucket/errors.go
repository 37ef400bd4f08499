package bitbucket

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// HTTPError is an answer other than 2xx, with what Bitbucket said about it.
type HTTPError struct {
	Method     string
	URL        string
	StatusCode int
	// Message, Detail and Fields come from Bitbucket's error body, when it has one.
	Message string
	Detail  string
	// Fields maps a request field to what is wrong with it ("key": "Ensure ...").
	Fields map[string]string
	// Exception is Data Center's exception class name, e.g.
	// "com.atlassian.bitbucket.repository.NoSuchRepositoryException".
	Exception string
	// Envelope is true when the body was Data Center's own errors[] document,
	// which a missing project, repository or commit gets and an unknown
	// route never does.
	Envelope bool
	// Text is the start of a body that is not Bitbucket's JSON (a proxy's page).
	Text     string
	Attempts int
	// BudgetSpent is true when a retryable answer (429, 5xx) was still the
	// answer when the run's time budget ran out.
	BudgetSpent bool
	// WantedWait is the wait Bitbucket asked for with Retry-After, when the
	// budget could not hold it.
	WantedWait time.Duration
	// RetryAfter is the wait a retryable answer asked for (Data Center's
	// 429), whatever the budget; zero when it asked none (Cloud's 429).
	RetryAfter time.Duration
}

func (e *HTTPError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s", e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if said := e.Said(); said != "" {
		fmt.Fprintf(&b, ": %s", said)
	}
	return b.String()
}

// Said is what the server wrote about the error, on one line, or "".
func (e *HTTPError) Said() string {
	var parts []string
	if e.Message != "" {
		parts = append(parts, e.Message)
	}
	if e.Detail != "" && e.Detail != e.Message {
		parts = append(parts, e.Detail)
	}
	if len(e.Fields) > 0 {
		names := make([]string, 0, len(e.Fields))
		for name := range e.Fields {
			names = append(names, name)
		}
		sort.Strings(names)
		var fs []string
		for _, name := range names {
			fs = append(fs, name+": "+e.Fields[name])
		}
		parts = append(parts, "fields: "+strings.Join(fs, "; "))
	}
	if len(parts) == 0 && e.Text != "" {
		parts = append(parts, e.Text)
	}
	return strings.Join(parts, " — ")
}

// TransportError is a request that got no answer: the connection failed,
// TLS failed, or no answer came within the time allowed.
type TransportError struct {
	Method   string
	URL      string
	Attempts int
	Elapsed  time.Duration
	Err      error
	// BudgetSpent is true when the run's time budget ended the tries.
	BudgetSpent bool
	// Interrupted is true when the run was canceled (a signal: GitLab
	// canceled the job) before an answer came.
	Interrupted bool
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("%s %s: %v (%d attempt%s in %s)", e.Method, e.URL, RootCause(e.Err), e.Attempts, plural(e.Attempts),
		e.Elapsed.Round(100*time.Millisecond))
}

func (e *TransportError) Unwrap() error { return e.Err }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// newHTTPError reads the error body leniently: Cloud's
// {"type":"error","error":{"message","detail","fields"}}, Data Center's
// {"errors":[{"message","exceptionName"}]}, OAuth's
// {"error":"invalid_client","error_description":"..."}, or anything else.
func newHTTPError(req Request, code int, body []byte, attempts int) *HTTPError {
	e := &HTTPError{Method: req.Method, URL: req.URL, StatusCode: code, Attempts: attempts}
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) != nil {
		e.Text = firstLine(string(body), 200)
		return e
	}
	var cloud struct {
		Message string                     `json:"message"`
		Detail  json.RawMessage            `json:"detail"`
		Fields  map[string]json.RawMessage `json:"fields"`
	}
	var oauthError string
	var dc []struct {
		Message       string `json:"message"`
		ExceptionName string `json:"exceptionName"`
	}
	switch {
	case json.Unmarshal(doc["error"], &cloud) == nil && cloud.Message != "":
		e.Message = firstLine(cloud.Message, 500)
		e.Detail = firstLine(textOf(cloud.Detail), 500)
		for name, v := range cloud.Fields {
			if e.Fields == nil {
				e.Fields = map[string]string{}
			}
			e.Fields[name] = firstLine(textOf(v), 300)
		}
	case json.Unmarshal(doc["errors"], &dc) == nil && len(dc) > 0:
		var msgs []string
		for _, d := range dc {
			msgs = append(msgs, d.Message)
		}
		e.Message = firstLine(strings.Join(msgs, "; "), 500)
		e.Exception = dc[0].ExceptionName
		e.Envelope = true
	case json.Unmarshal(doc["error"], &oauthError) == nil && oauthError != "":
		var description string
		_ = json.Unmarshal(doc["error_description"], &description)
		e.Message = firstLine(strings.TrimSpace(oauthError+": "+description), 500)
	case jerseyMessage(doc) != "":
		e.Message = jerseyMessage(doc)
	default:
		e.Text = firstLine(string(body), 200)
	}
	return e
}

// jerseyMessage is the message of Jersey's own error document,
// {"message":"null for uri: ...","status-code":404}, which Data Center
// sends for a route it does not have.
func jerseyMessage(doc map[string]json.RawMessage) string {
	var message string
	if _, ok := doc["status-code"]; !ok || json.Unmarshal(doc["message"], &message) != nil {
		return ""
	}
	return firstLine(message, 500)
}

// textOf renders a JSON value as text: a string as it is, a list of strings
// joined, anything else as JSON.
func textOf(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return strings.Join(list, " ")
	}
	return string(raw)
}

// firstLine keeps a server's text to one line of at most n bytes, valid UTF-8.
func firstLine(s string, n int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = strings.TrimSpace(s[:i]) + " ..."
	}
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

// Named is what hints says of each field Bitbucket complained about (in
// its fields, or, with none, at the start of its message: "key: ..."),
// each text once, sorted.
func (e *HTTPError) Named(hints map[string]string) []string {
	var named []string
	for field := range e.Fields {
		if h, ok := hints[field]; ok {
			named = append(named, h)
		}
	}
	for field, h := range hints {
		if len(e.Fields) == 0 && strings.HasPrefix(e.Message, field+":") {
			named = append(named, h)
		}
	}
	sort.Strings(named)
	return slices.Compact(named)
}
