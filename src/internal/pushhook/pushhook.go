// Package pushhook reads Bitbucket's push webhooks: Cloud's repo:push and
// Data Center's repo:refs_changed, their signature (X-Hub-Signature:
// sha256=<hex HMAC-SHA256 of the body>, both servers, when the webhook has
// a secret), the repository pushed to and the refs the push moved. It knows
// nothing of GitLab.
package pushhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/repourl"
)

// The X-Event-Key values read.
const (
	CloudPush      = "repo:push"
	DataCenterPush = "repo:refs_changed"
	// Ping is Data Center's "Test connection".
	Ping = "diagnostics:ping"
)

// Verify checks a delivery's X-Hub-Signature against the webhook's secret,
// in constant time. Its errors say what is wrong, never the secret.
func Verify(secret string, body []byte, header string) error {
	hexSum, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	switch {
	case header == "":
		return errors.New("no X-Hub-Signature: give the Bitbucket webhook a secret, the value of BITBUCKET_RELAY_PUSH_SECRET")
	case !ok:
		return errors.New("X-Hub-Signature is not sha256=<hex>")
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil || len(got) != sha256.Size {
		return errors.New("X-Hub-Signature is not sha256=<hex>")
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return errors.New("wrong X-Hub-Signature: the webhook's secret is not BITBUCKET_RELAY_PUSH_SECRET")
	}
	return nil
}

// Sign is the X-Hub-Signature Bitbucket sends with body.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Ref is a ref a push moved and the commit it points to now.
type Ref struct {
	// Ref is the full ref: refs/heads/main, refs/tags/v1.0.
	Ref    string
	Commit string
}

// Branch is the ref's branch, "" for a tag.
func (r Ref) Branch() string { b, _ := strings.CutPrefix(r.Ref, "refs/heads/"); return b }

// Push is what a push webhook says.
type Push struct {
	// Repo is the repository pushed to: Cloud's workspace and slug, or a
	// Data Center server's project key and slug (the server from the
	// payload's links, which only say where to look, never decide).
	Repo repourl.Repo
	// Refs are the refs moved to a commit; Deleted counts those deleted.
	Refs    []Ref
	Deleted int
}

// Where names the repository for messages.
func (p Push) Where() string {
	if p.Repo.DataCenter {
		return p.Repo.Owner + "/" + p.Repo.Slug + " at " + p.Repo.ServerURL
	}
	return repourl.CloudHost + "/" + p.Repo.Owner + "/" + p.Repo.Slug
}

// maxRefs bounds the refs read from one push.
const maxRefs = 100

type cloudPayload struct {
	Push *struct {
		Changes []struct {
			New *struct {
				Type   string `json:"type"`
				Name   string `json:"name"`
				Target struct {
					Hash string `json:"hash"`
				} `json:"target"`
			} `json:"new"`
			Closed bool `json:"closed"`
		} `json:"changes"`
	} `json:"push"`
	Repository *struct {
		FullName  string `json:"full_name"`
		Workspace *struct {
			Slug string `json:"slug"`
		} `json:"workspace"`
	} `json:"repository"`
}

type dataCenterPayload struct {
	EventKey   string `json:"eventKey"`
	Repository *struct {
		Slug    string `json:"slug"`
		Project *struct {
			Key string `json:"key"`
		} `json:"project"`
		Links struct {
			Clone []struct {
				Href string `json:"href"`
				Name string `json:"name"`
			} `json:"clone"`
		} `json:"links"`
	} `json:"repository"`
	Changes []struct {
		Ref struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		} `json:"ref"`
		RefID  string `json:"refId"`
		ToHash string `json:"toHash"`
		Type   string `json:"type"`
	} `json:"changes"`
}

// Parse reads a push webhook's body for its event key (X-Event-Key). Its
// errors say which field is wrong, for the 400 answer and the log.
func Parse(eventKey string, body []byte) (Push, error) {
	switch eventKey {
	case CloudPush:
		return parseCloud(body)
	case DataCenterPush:
		return parseDataCenter(body)
	}
	return Push{}, fmt.Errorf("X-Event-Key %q is not a push (%s or %s)", clip(eventKey), CloudPush, DataCenterPush)
}

func parseCloud(body []byte) (Push, error) {
	var p cloudPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return Push{}, fmt.Errorf("not a JSON repo:push payload: %v", err)
	}
	if p.Repository == nil || p.Push == nil {
		return Push{}, errors.New("no repository or push: not a repo:push payload")
	}
	ws, slug, ok := strings.Cut(p.Repository.FullName, "/")
	if !ok || ws == "" || slug == "" || strings.Contains(slug, "/") {
		return Push{}, fmt.Errorf("repository.full_name is %q, not workspace/repository", clip(p.Repository.FullName))
	}
	if p.Repository.Workspace != nil && p.Repository.Workspace.Slug != "" {
		ws = p.Repository.Workspace.Slug
	}
	out := Push{Repo: repourl.Repo{Owner: ws, Slug: slug}}
	for _, c := range p.Push.Changes {
		if c.Closed || c.New == nil {
			out.Deleted++
			continue
		}
		prefix := "refs/heads/"
		if c.New.Type == "tag" || c.New.Type == "annotated_tag" {
			prefix = "refs/tags/"
		}
		if err := out.add(prefix+c.New.Name, c.New.Target.Hash); err != nil {
			return Push{}, err
		}
	}
	return out, nil
}

func parseDataCenter(body []byte) (Push, error) {
	var p dataCenterPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return Push{}, fmt.Errorf("not a JSON repo:refs_changed payload: %v", err)
	}
	r := p.Repository
	if r == nil || r.Project == nil || r.Project.Key == "" || r.Slug == "" {
		return Push{}, errors.New("no repository with a project key and a slug: not a repo:refs_changed payload")
	}
	out := Push{Repo: repourl.Repo{DataCenter: true, Owner: r.Project.Key, Slug: r.Slug}}
	for _, c := range r.Links.Clone {
		if repo, err := repourl.Parse(c.Href); err == nil && repo.DataCenter && !repo.ServerGuessed {
			out.Repo.ServerURL = repo.ServerURL
			break
		}
	}
	for _, c := range p.Changes {
		if c.Type == "DELETE" || strings.Trim(c.ToHash, "0") == "" {
			out.Deleted++
			continue
		}
		ref := c.Ref.ID
		if ref == "" {
			ref = c.RefID
		}
		if err := out.add(ref, c.ToHash); err != nil {
			return Push{}, err
		}
	}
	return out, nil
}

func (p *Push) add(ref, commit string) error {
	if !isHash(commit) {
		return fmt.Errorf("the commit of %s is %q, not a commit hash", clip(ref), clip(commit))
	}
	if !strings.HasPrefix(ref, "refs/") {
		return fmt.Errorf("the ref %q is not a full ref (refs/...)", clip(ref))
	}
	if len(p.Refs) < maxRefs {
		p.Refs = append(p.Refs, Ref{Ref: ref, Commit: strings.ToLower(commit)})
	}
	return nil
}

func isHash(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
