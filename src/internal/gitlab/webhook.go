// Package gitlab reads what the relay needs from GitLab: pipeline webhooks
// (payload, secret token, Standard Webhooks signature) and, with a token,
// the pipelines and projects API. It knows nothing of Bitbucket.
package gitlab

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/pipeline"
)

// PipelineHook is the X-Gitlab-Event value of a pipeline event.
const PipelineHook = "Pipeline Hook"

// Pipeline is a pipeline as a webhook or the API describes it.
type Pipeline struct {
	ID        int64
	IID       int64
	ProjectID int64
	// ProjectPath is the project's full path ("acme/platform/widgets").
	ProjectPath string
	Ref         string
	Tag         bool
	SHA         string
	// Name is the pipeline's name (workflow:name), if it has one.
	Name string
	// Source is what made the pipeline: push, web, schedule, api,
	// parent_pipeline (a child pipeline: trigger: include:), pipeline (a
	// multi-project downstream pipeline), ...
	Source string
	// ParentProjectID and ParentPipelineID name the pipeline that triggered
	// this one (source_pipeline), for downstream pipelines; 0 otherwise.
	ParentProjectID  int64
	ParentPipelineID int64
	// Status is GitLab's word: running, success, canceled, ...
	Status     string
	URL        string
	CreatedAt  time.Time
	FinishedAt time.Time
	// UpdatedAt is known from the API only.
	UpdatedAt time.Time
	// Manual names the pipeline's jobs that wait for someone to play them
	// (a webhook's builds[] with status manual), at most maxManual.
	Manual []string `json:",omitempty"`
}

// maxManual is how many manual jobs a status names.
const maxManual = 3

// hookPayload is the part of a Pipeline Hook body the relay reads.
type hookPayload struct {
	ObjectKind       string `json:"object_kind"`
	ObjectAttributes *struct {
		ID         int64  `json:"id"`
		IID        int64  `json:"iid"`
		Name       string `json:"name"`
		Source     string `json:"source"`
		Ref        string `json:"ref"`
		Tag        bool   `json:"tag"`
		SHA        string `json:"sha"`
		Status     string `json:"status"`
		URL        string `json:"url"`
		CreatedAt  string `json:"created_at"`
		FinishedAt string `json:"finished_at"`
	} `json:"object_attributes"`
	Project *struct {
		ID                int64  `json:"id"`
		PathWithNamespace string `json:"path_with_namespace"`
		WebURL            string `json:"web_url"`
	} `json:"project"`
	Builds []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	} `json:"builds"`
	SourcePipeline *struct {
		Project *struct {
			ID int64 `json:"id"`
		} `json:"project"`
		PipelineID int64 `json:"pipeline_id"`
	} `json:"source_pipeline"`
}

// ChildPipeline is the source of a pipeline a parent made with trigger:
// include: in the same project.
const ChildPipeline = "parent_pipeline"

// IsChild reports whether p is a child pipeline: its parent's status covers
// it, and it must never change that status.
func (p Pipeline) IsChild() bool { return p.Source == ChildPipeline }

// ParsePipelineHook reads a Pipeline Hook body. Its errors say which field
// is wrong, for the 400 answer and the log.
func ParsePipelineHook(body []byte) (Pipeline, error) {
	var h hookPayload
	if err := json.Unmarshal(body, &h); err != nil {
		return Pipeline{}, fmt.Errorf("not a JSON pipeline payload: %v", err)
	}
	a, p := h.ObjectAttributes, h.Project
	switch {
	case h.ObjectKind != "pipeline":
		return Pipeline{}, fmt.Errorf("object_kind is %q, not \"pipeline\"", h.ObjectKind)
	case a == nil:
		return Pipeline{}, errors.New("no object_attributes")
	case p == nil:
		return Pipeline{}, errors.New("no project")
	case a.ID <= 0:
		return Pipeline{}, errors.New("object_attributes.id is missing")
	case !pipeline.IsCommitHash(a.SHA):
		return Pipeline{}, fmt.Errorf("object_attributes.sha is %q, not a commit hash", clip(a.SHA))
	case a.Status == "":
		return Pipeline{}, errors.New("object_attributes.status is missing")
	case p.PathWithNamespace == "" || !strings.Contains(p.PathWithNamespace, "/"):
		return Pipeline{}, fmt.Errorf("project.path_with_namespace is %q, not a project path", clip(p.PathWithNamespace))
	}
	out := Pipeline{ID: a.ID, IID: a.IID, ProjectID: p.ID, ProjectPath: p.PathWithNamespace, Ref: a.Ref, Tag: a.Tag,
		SHA: strings.ToLower(a.SHA), Status: a.Status, URL: a.URL, Name: a.Name, Source: a.Source}
	for _, b := range h.Builds {
		if b.Status == "manual" && b.Name != "" && len(out.Manual) < maxManual && !slices.Contains(out.Manual, b.Name) {
			out.Manual = append(out.Manual, clip(b.Name))
		}
	}
	if sp := h.SourcePipeline; sp != nil {
		out.ParentPipelineID = sp.PipelineID
		if sp.Project != nil {
			out.ParentProjectID = sp.Project.ID
		}
	}
	var err error
	if out.CreatedAt, err = ParseTime(a.CreatedAt); err != nil {
		return Pipeline{}, fmt.Errorf("object_attributes.created_at: %v", err)
	}
	if out.FinishedAt, err = ParseTime(a.FinishedAt); err != nil {
		return Pipeline{}, fmt.Errorf("object_attributes.finished_at: %v", err)
	}
	if out.URL == "" && p.WebURL != "" {
		// Older GitLab sends no pipeline URL; the page is at a fixed path.
		out.URL = strings.TrimRight(p.WebURL, "/") + "/-/pipelines/" + strconv.FormatInt(a.ID, 10)
	}
	return out, nil
}

// ParseTime reads both of GitLab's timestamp formats: the old
// "2016-08-12 15:23:28 UTC" and ISO 8601 ("2026-11-25T10:00:00.123Z").
// Empty and null are the zero time.
func ParseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05 MST", "2006-01-02 15:04:05 -0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a GitLab timestamp", clip(s))
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
