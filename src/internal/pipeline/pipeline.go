// Package pipeline describes a GitLab pipeline the same way whoever read it
// (a job from its CI variables, the relay from a webhook or GitLab's API),
// and computes the one Bitbucket build status it reports. Both binaries call
// Status, so a team can switch from the component to the relay, or run both,
// and Bitbucket shows one status per pipeline.
package pipeline

import (
	"strings"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/state"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/statuskey"
)

// Pipeline is what a status is made from.
type Pipeline struct {
	// ProjectPath is the GitLab project's full path: "acme/platform/widgets".
	ProjectPath string
	// IID is the pipeline's number in its project (#7); may be empty.
	IID string
	// Branch is the branch built; empty for a tag pipeline.
	Branch string
	// Tag is the tag built, for a tag pipeline.
	Tag string
	// URL is the pipeline's page.
	URL   string
	State state.State
	// Word is GitLab's own word for the state, when known ("skipped",
	// "canceled", "manual", ...): the description says which, and a skipped
	// pipeline is never posted as failed.
	Word string
	// Manual names the manual jobs a pipeline blocked on them waits for,
	// when known.
	Manual []string
	// CreatedAt and EndedAt give Data Center's duration for a final state;
	// either may be zero (unknown).
	CreatedAt, EndedAt time.Time
}

// MaxText is Bitbucket's limit on a name or description, in bytes.
const MaxText = 255

// Key is the status key of a project: one per project and commit, the same
// for every report of its pipelines, within the server's limit.
func Key(projectPath string, dataCenter bool) string {
	return statuskey.Fit(statuskey.Default(projectPath), KeyLimit(dataCenter))
}

// KeyLimit is the longest key the server takes.
func KeyLimit(dataCenter bool) int {
	if dataCenter {
		return statuskey.DataCenterMax
	}
	return statuskey.CloudMax
}

// Status is the build status p reports.
func Status(p Pipeline, dataCenter bool) bitbucket.Status {
	s := bitbucket.Status{
		Key:         Key(p.ProjectPath, dataCenter),
		State:       p.State,
		Name:        Cut(Name(p.ProjectPath, p.IID), MaxText),
		URL:         p.URL,
		Tag:         p.Tag,
		BuildNumber: p.IID,
		Skipped:     p.State == state.Stopped && strings.EqualFold(p.Word, "skipped"),
	}
	if s.Tag == "" {
		s.Branch = p.Branch
	}
	s.Description = Cut(Description(p.IID, s.Branch, s.Tag, p.State, what(p)), MaxText)
	if dataCenter && p.State.Final() && !p.CreatedAt.IsZero() && p.EndedAt.After(p.CreatedAt) {
		s.Duration = p.EndedAt.Sub(p.CreatedAt).Truncate(time.Millisecond)
	}
	return s
}

// Name is the status's name: "GitLab: acme/widgets #7".
func Name(projectPath, iid string) string {
	if projectPath == "" {
		return "bitbucket-status"
	}
	name := "GitLab: " + projectPath
	if iid != "" {
		name += " #" + iid
	}
	return name
}

var stateWords = map[state.State]string{
	state.InProgress: "is running",
	state.Successful: "passed",
	state.Failed:     "failed",
	state.Stopped:    "was canceled or skipped",
}

// gitlabWords say more than the state for GitLab's words that share one:
// a pipeline that waits is not running, one that was skipped ran nothing.
var gitlabWords = map[string]string{
	"manual":               "waits for a manual action",
	"scheduled":            "waits for a delayed job",
	"waiting_for_resource": "waits for a resource",
	"canceled":             "was canceled",
	"canceling":            "is being canceled",
	"cancelled":            "was canceled",
	"skipped":              "was skipped",
}

// what says what the pipeline is doing, in a few words: "passed", "waits
// for a manual action: deploy".
func what(p Pipeline) string {
	words, ok := gitlabWords[strings.ToLower(p.Word)]
	if !ok {
		return stateWords[p.State]
	}
	if strings.EqualFold(p.Word, "manual") && len(p.Manual) > 0 {
		words += ": " + strings.Join(p.Manual, ", ")
	}
	return words
}

// Description says which pipeline and what it did: "Pipeline #7 on main
// passed"; happened is what(p), or the state's words when empty.
func Description(iid, branch, tag string, st state.State, happened string) string {
	if happened == "" {
		happened = stateWords[st]
	}
	subject := "The build"
	if iid != "" {
		subject = "Pipeline #" + iid
	}
	switch {
	case tag != "":
		subject += " for tag " + tag
	case branch != "":
		subject += " on " + branch
	}
	return subject + " " + happened
}

// IsCommitHash accepts 7 to 64 hex digits: a short or full SHA-1 or
// SHA-256, from a job's CI_COMMIT_SHA or a webhook's sha alike.
func IsCommitHash(s string) bool {
	if len(s) < 7 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// Cut shortens s to at most n bytes without splitting a character.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n -= len("...")
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "..."
}
