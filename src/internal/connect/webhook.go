package connect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/bitbucket"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/redact"
)

// hook is a repository webhook, Cloud's or Data Center's.
type hook struct {
	ID, URL, Description string
	Active               bool
	Events               []string
	// SecretSet is Cloud's; Data Center does not say.
	SecretSet *bool
}

// maxHookPages bounds a repository's webhook listing.
const maxHookPages = 10

// hooksURL is the repository's webhooks collection.
func (r *run) hooksURL() string {
	repo := r.target.Repo
	if repo.DataCenter {
		return repo.ServerURL + "/rest/api/latest/projects/" + url.PathEscape(repo.Owner) + "/repos/" + url.PathEscape(repo.Slug) + "/webhooks"
	}
	return strings.TrimRight(r.opts.CloudAPI, "/") + "/repositories/" + url.PathEscape(repo.Owner) + "/" + url.PathEscape(repo.Slug) + "/hooks"
}

func (r *run) hookURL(h hook) string {
	if r.target.Repo.DataCenter {
		return r.hooksURL() + "/" + h.ID
	}
	return r.hooksURL() + "/" + url.PathEscape(h.ID)
}

// listHooks reads every webhook of the repository.
func (r *run) listHooks(ctx context.Context) ([]hook, error) {
	var out []hook
	if r.target.Repo.DataCenter {
		start := 0
		for range maxHookPages {
			var page struct {
				Values []struct {
					ID     int64    `json:"id"`
					Name   string   `json:"name"`
					URL    string   `json:"url"`
					Active bool     `json:"active"`
					Events []string `json:"events"`
				} `json:"values"`
				IsLastPage    bool `json:"isLastPage"`
				NextPageStart int  `json:"nextPageStart"`
			}
			if err := r.bitbucketCall(ctx, http.MethodGet, r.hooksURL()+"?limit=100&start="+strconv.Itoa(start), nil, &page); err != nil {
				return nil, err
			}
			for _, v := range page.Values {
				out = append(out, hook{ID: strconv.FormatInt(v.ID, 10), URL: v.URL, Description: v.Name, Active: v.Active, Events: v.Events})
			}
			if page.IsLastPage || len(page.Values) == 0 {
				break
			}
			start = page.NextPageStart
		}
		return out, nil
	}
	next := r.hooksURL() + "?pagelen=100"
	for range maxHookPages {
		var page struct {
			Values []struct {
				UUID        string   `json:"uuid"`
				URL         string   `json:"url"`
				Description string   `json:"description"`
				Active      bool     `json:"active"`
				Events      []string `json:"events"`
				SecretSet   *bool    `json:"secret_set"`
			} `json:"values"`
			Next string `json:"next"`
		}
		if err := r.bitbucketCall(ctx, http.MethodGet, next, nil, &page); err != nil {
			return nil, err
		}
		for _, v := range page.Values {
			out = append(out, hook{ID: v.UUID, URL: v.URL, Description: v.Description, Active: v.Active, Events: v.Events, SecretSet: v.SecretSet})
		}
		// Only Bitbucket's own next page is followed.
		if page.Next == "" || !strings.HasPrefix(page.Next, strings.TrimRight(r.opts.CloudAPI, "/")+"/") {
			break
		}
		next = page.Next
	}
	return out, nil
}

// tokenHook reports whether a webhook is GitLab's guide's: it calls the
// pull mirror API with a GitLab token in its URL.
func tokenHook(h hook) bool {
	lower := strings.ToLower(h.URL)
	return strings.Contains(lower, "/mirror/pull") && (strings.Contains(lower, "private_token=") || strings.Contains(lower, "access_token="))
}

// webhookStep keeps one webhook to the relay's POST /bitbucket, signed
// with the push secret, found by its URL and updated rather than
// duplicated; and reports (or, with --remove-token-webhook, deletes)
// webhooks that hold a GitLab token in their URL.
func (r *run) webhookStep(ctx context.Context) error {
	hooks, err := r.listHooks(ctx)
	if err != nil {
		err = explainHooks(err)
		if r.opts.RelayURL == "" {
			// Nothing to make: what could not be read is said, not failed.
			r.note("webhook", "none made (no --relay-url); the repository's webhooks could not be read: %v", err)
			return nil
		}
		return err
	}
	var said []string
	for _, h := range hooks {
		if !tokenHook(h) {
			continue
		}
		shown := redact.Shapes(h.URL)
		if !r.opts.RemoveTokenWebhook {
			said = append(said, fmt.Sprintf("webhook %s (%s) holds a GitLab token in its URL, readable by every admin of the repository: "+
				"delete it, and revoke the token (--remove-token-webhook deletes it)", h.ID, shown))
			continue
		}
		if err := r.bitbucketCall(ctx, http.MethodDelete, r.hookURL(h), nil, nil); err != nil {
			return fmt.Errorf("deleting webhook %s (%s): %w", h.ID, shown, explainHooks(err))
		}
		verb := "deleted"
		if r.opts.DryRun {
			verb = "would delete"
		}
		said = append(said, fmt.Sprintf("%s webhook %s (%s), which held a GitLab token: revoke that token in GitLab too", verb, h.ID, shown))
	}
	if r.opts.RelayURL == "" {
		said = append([]string{"none made (no --relay-url): GitLab fetches the repository on its own schedule, every 30 minutes, so a push waits " +
			"up to 30 minutes for its pipeline"}, said...)
		r.note("webhook", "%s", strings.Join(said, "; "))
		return nil
	}
	target := strings.TrimRight(r.opts.RelayURL, "/") + "/bitbucket"
	event := "repo:push"
	if r.target.Repo.DataCenter {
		event = "repo:refs_changed"
	}
	desc := "bitbucket-status relay: starts GitLab's mirror on push (secret " + fingerprint(r.opts.PushSecret) + ")"
	var mine []hook
	for _, h := range hooks {
		if strings.EqualFold(strings.TrimRight(h.URL, "/"), target) {
			mine = append(mine, h)
		}
	}
	for _, h := range mine[min(1, len(mine)):] {
		said = append(said, fmt.Sprintf("webhook %s also calls the relay: delete it in Bitbucket (each push would start the mirror twice)", h.ID))
	}
	var body map[string]any
	if r.target.Repo.DataCenter {
		body = map[string]any{"name": desc, "url": target, "active": true, "events": []string{event},
			"configuration": map[string]any{"secret": r.opts.PushSecret}}
	} else {
		body = map[string]any{"description": desc, "url": target, "active": true, "events": []string{event}, "secret": r.opts.PushSecret}
	}
	switch {
	case len(mine) == 0:
		if err := r.bitbucketCall(ctx, http.MethodPost, r.hooksURL(), body, nil); err != nil {
			return fmt.Errorf("creating the webhook: %w", explainHooks(err))
		}
		verb := "created"
		if r.opts.DryRun {
			verb = "would create"
		}
		said = append([]string{fmt.Sprintf("%s: %s to %s, signed with BITBUCKET_RELAY_PUSH_SECRET", verb, event, target)}, said...)
	case mine[0].Active && slices.Equal(mine[0].Events, []string{event}) && mine[0].Description == desc && (mine[0].SecretSet == nil || *mine[0].SecretSet):
		said = append([]string{fmt.Sprintf("unchanged: %s to %s, signed", event, target)}, said...)
	default:
		if err := r.bitbucketCall(ctx, http.MethodPut, r.hookURL(mine[0]), body, nil); err != nil {
			return fmt.Errorf("updating webhook %s: %w", mine[0].ID, explainHooks(err))
		}
		verb := "updated"
		if r.opts.DryRun {
			verb = "would update"
		}
		said = append([]string{fmt.Sprintf("%s webhook %s: %s to %s, active, signed with BITBUCKET_RELAY_PUSH_SECRET", verb, mine[0].ID, event, target)}, said...)
	}
	r.note("webhook", "%s", strings.Join(said, "; "))
	return nil
}

// explainHooks adds what the credential needs to manage webhooks.
func explainHooks(err error) error {
	var he *bitbucket.HTTPError
	if errors.As(err, &he) && (he.StatusCode == http.StatusForbidden || he.StatusCode == http.StatusUnauthorized) {
		return fmt.Errorf("%w (the Bitbucket credential may not manage the repository's webhooks: an access token needs the webhook scope, "+
			"an API token read:webhook:bitbucket and write:webhook:bitbucket; on Data Center, repository admin)", err)
	}
	return err
}
