package gitlab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Client reads GitLab's REST API with a token (read_api is enough). It
// makes one attempt per call: the relay schedules its own retries.
type Client struct {
	// BaseURL is GitLab's address, "https://gitlab.example.com"; the only
	// GitLab the relay ever calls, never a URL taken from a webhook.
	BaseURL   string
	Token     string
	HTTP      *http.Client
	UserAgent string
}

// APIError is an answer other than 2xx.
type APIError struct {
	Method, URL string
	StatusCode  int
	Message     string
	// RetryAfter is the wait GitLab asked for (429), if it did.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("GitLab answered %s %s with %d %s", e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Temporary reports whether trying again later may work.
func (e *APIError) Temporary() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

type apiPipeline struct {
	ID         int64  `json:"id"`
	IID        int64  `json:"iid"`
	ProjectID  int64  `json:"project_id"`
	SHA        string `json:"sha"`
	Ref        string `json:"ref"`
	Tag        bool   `json:"tag"`
	Status     string `json:"status"`
	Source     string `json:"source"`
	Name       string `json:"name"`
	WebURL     string `json:"web_url"`
	CreatedAt  string `json:"created_at"`
	UpdatedAt  string `json:"updated_at"`
	FinishedAt string `json:"finished_at"`
}

func (a apiPipeline) pipeline() Pipeline {
	p := Pipeline{ID: a.ID, IID: a.IID, ProjectID: a.ProjectID, SHA: strings.ToLower(a.SHA), Ref: a.Ref, Tag: a.Tag,
		Status: a.Status, URL: a.WebURL, Source: a.Source, Name: a.Name}
	// A timestamp GitLab's API sends is ISO 8601; one that does not parse
	// is left unknown rather than failing the whole read.
	p.CreatedAt, _ = ParseTime(a.CreatedAt)
	p.UpdatedAt, _ = ParseTime(a.UpdatedAt)
	p.FinishedAt, _ = ParseTime(a.FinishedAt)
	return p
}

// Pipeline reads one pipeline as it is now. The API does not give the
// project's path: the caller knows it.
func (c *Client) Pipeline(ctx context.Context, projectID, pipelineID int64) (Pipeline, error) {
	var a apiPipeline
	path := fmt.Sprintf("projects/%d/pipelines/%d", projectID, pipelineID)
	if _, err := c.get(ctx, path, nil, &a); err != nil {
		return Pipeline{}, err
	}
	return a.pipeline(), nil
}

// maxPages bounds one listing: 20 pages of 100 pipelines updated since the
// last sweep is more than a project makes between two sweeps.
const maxPages = 20

// PipelinesUpdatedAfter lists a project's pipelines updated after t,
// oldest first. The list lacks tag and finished_at: callers re-read a
// pipeline before posting it.
func (c *Client) PipelinesUpdatedAfter(ctx context.Context, projectID int64, t time.Time) ([]Pipeline, error) {
	var out []Pipeline
	q := url.Values{"updated_after": {t.UTC().Format(time.RFC3339)}, "order_by": {"updated_at"}, "sort": {"asc"}, "per_page": {"100"}}
	for page := 1; page <= maxPages; page++ {
		q.Set("page", strconv.Itoa(page))
		var list []apiPipeline
		next, err := c.get(ctx, fmt.Sprintf("projects/%d/pipelines", projectID), q, &list)
		if err != nil {
			return nil, err
		}
		for _, a := range list {
			out = append(out, a.pipeline())
		}
		if next == "" || len(list) == 0 {
			break
		}
	}
	return out, nil
}

// MirrorURL is the repository a "CI/CD for external repository" project
// pulls from: the project's import_url (shown to Maintainers, credentials
// stripped), else its pull mirror's url (Premium). "" when it has none.
func (c *Client) MirrorURL(ctx context.Context, projectID int64) (string, error) {
	var project struct {
		ImportURL string `json:"import_url"`
	}
	if _, err := c.get(ctx, fmt.Sprintf("projects/%d", projectID), nil, &project); err != nil {
		return "", err
	}
	if project.ImportURL != "" {
		return project.ImportURL, nil
	}
	var mirror struct {
		URL string `json:"url"`
	}
	_, err := c.get(ctx, fmt.Sprintf("projects/%d/mirror/pull", projectID), nil, &mirror)
	if e, ok := err.(*APIError); ok && (e.StatusCode == http.StatusNotFound || e.StatusCode == http.StatusForbidden) {
		return "", nil
	}
	return mirror.URL, err
}

// TriggerJobName is the name of the trigger job (a bridge) of parent
// pipeline parentID whose downstream pipeline is childID: what names a
// child pipeline the same way on every run. "" when none matches.
func (c *Client) TriggerJobName(ctx context.Context, projectID, parentID, childID int64) (string, error) {
	var bridges []struct {
		Name       string `json:"name"`
		Downstream *struct {
			ID int64 `json:"id"`
		} `json:"downstream_pipeline"`
	}
	q := url.Values{"per_page": {"100"}}
	if _, err := c.get(ctx, fmt.Sprintf("projects/%d/pipelines/%d/bridges", projectID, parentID), q, &bridges); err != nil {
		return "", err
	}
	for _, b := range bridges {
		if b.Downstream != nil && b.Downstream.ID == childID {
			return b.Name, nil
		}
	}
	return "", nil
}

// ProjectRef is a project as a group lists it.
type ProjectRef struct {
	ID   int64  `json:"id"`
	Path string `json:"path_with_namespace"`
}

// maxGroupPages bounds a group's listing: 50 pages of 100 projects.
const maxGroupPages = 50

// GroupProjects lists the projects of a group and its subgroups, archived
// ones left out.
func (c *Client) GroupProjects(ctx context.Context, group string) ([]ProjectRef, error) {
	var out []ProjectRef
	q := url.Values{"include_subgroups": {"true"}, "archived": {"false"}, "simple": {"true"}, "per_page": {"100"}, "order_by": {"id"}}
	for page := 1; page <= maxGroupPages; page++ {
		q.Set("page", strconv.Itoa(page))
		var list []ProjectRef
		next, err := c.get(ctx, "groups/"+url.PathEscape(group)+"/projects", q, &list)
		if err != nil {
			return nil, err
		}
		out = append(out, list...)
		if next == "" || len(list) == 0 {
			break
		}
	}
	return out, nil
}

// get reads /api/v4/<path> into v and returns GitLab's X-Next-Page.
func (c *Client) get(ctx context.Context, path string, q url.Values, v any) (string, error) {
	resp, err := c.open(ctx, path, q)
	if err != nil {
		return "", err
	}
	return resp.Header.Get("X-Next-Page"), decode(resp, v)
}

// decode reads a 2xx answer's JSON into out (nil: read and dropped) and
// closes it.
func decode(resp *http.Response, out any) error {
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return fmt.Errorf("GitLab's answer to %s %s is not the expected JSON: %v", resp.Request.Method, resp.Request.URL, err)
	}
	return nil
}

// Do sends method /api/v4/<path> with body as JSON (nil: none) and reads
// a 2xx answer's JSON into out (nil: read and dropped, as an empty 204): the calls that
// change GitLab, which connect makes, and its reads. A non-2xx answer is an
// *APIError.
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := c.send(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	return decode(resp, out)
}

// open sends GET /api/v4/<path>: a 2xx answer for the caller to read and
// close, or an *APIError.
func (c *Client) open(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	return c.send(ctx, http.MethodGet, path, q, nil)
}

// send sends method /api/v4/<path> with body (JSON, or none when nil): a
// 2xx answer for the caller to read and close, or an *APIError.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	u := strings.TrimRight(c.BaseURL, "/") + "/api/v4/" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var payload io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		payload = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, payload)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("PRIVATE-TOKEN", c.Token)
	req.Header.Set("Accept", "application/json")
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	client := c.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return resp, nil
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	e := &APIError{Method: method, URL: u, StatusCode: resp.StatusCode}
	var doc struct {
		Message any    `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(answer, &doc) == nil {
		e.Message = messageText(firstNonNil(doc.Message, doc.Error))
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return nil, e
}

// messageText reads GitLab's message: a sentence, or a validation
// failure's fields ({"namespace": ["is not valid"]} is "namespace is not
// valid").
func messageText(m any) string {
	fields, ok := m.(map[string]any)
	if !ok {
		return strings.TrimSpace(fmt.Sprint(m))
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		switch v := fields[k].(type) {
		case []any:
			for _, item := range v {
				parts = append(parts, k+" "+fmt.Sprint(item))
			}
		default:
			parts = append(parts, k+" "+fmt.Sprint(v))
		}
	}
	return strings.Join(parts, "; ")
}

func firstNonNil(values ...any) any {
	for _, v := range values {
		if v != nil && v != "" {
			return v
		}
	}
	return ""
}

// Version reads GitLab's version: a read-only request that proves the URL
// and the token.
func (c *Client) Version(ctx context.Context) (string, error) {
	var v struct {
		Version string `json:"version"`
	}
	_, err := c.get(ctx, "version", nil, &v)
	return v.Version, err
}

// ProjectID finds a project's ID from its full path.
func (c *Client) ProjectID(ctx context.Context, path string) (int64, error) {
	var project struct {
		ID int64 `json:"id"`
	}
	if _, err := c.get(ctx, "projects/"+url.PathEscape(path), nil, &project); err != nil {
		return 0, err
	}
	return project.ID, nil
}
