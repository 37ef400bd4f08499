package connect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
)

// gitlabVariable is a CI/CD variable as GitLab shows it (a hidden one's
// value is not shown).
type gitlabVariable struct {
	Key         string  `json:"key"`
	Value       *string `json:"value"`
	Description *string `json:"description"`
	Masked      bool    `json:"masked"`
	Hidden      bool    `json:"hidden"`
	Protected   bool    `json:"protected"`
	Raw         bool    `json:"raw"`
}

// description is what connect writes beside a variable: who set it, and
// for a secret its fingerprint, by which the next run knows it unchanged
// when GitLab does not show the value.
func description(v Variable) string {
	if v.Secret {
		return "Set by bitbucket-status-relay connect (fingerprint " + fingerprint(v.Value) + ")"
	}
	return "Set by bitbucket-status-relay connect"
}

// allScopes reads and changes the variable of environment scope "*",
// the one every job sees.
var allScopes = url.Values{"filter[environment_scope]": {"*"}}

// readVariable reads one variable; nil when the project has none of key.
func (r *run) readVariable(ctx context.Context, key string) (*gitlabVariable, error) {
	if r.project.ID == 0 {
		return nil, nil // a dry run's project, not made
	}
	var v gitlabVariable
	err := r.gitlabCall(ctx, http.MethodGet, r.projectID()+"/variables/"+url.PathEscape(key), allScopes, nil, &v)
	var ae *gitlab.APIError
	switch {
	case errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound:
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading variable %s: %w", key, explainWrite(err))
	}
	return &v, nil
}

// variablesStep keeps the variables the component reads: a secret masked
// (and hidden, on GitLab 17.6+, where it is new), raw (a $ stays a $),
// not protected (every branch's pipeline posts its status); and deletes
// the variables that would contradict them.
func (r *run) variablesStep(ctx context.Context) error {
	hidden, err := r.atLeast(ctx, 17, 6)
	if err != nil {
		return fmt.Errorf("reading GitLab's version: %w", err)
	}
	var done []string
	say := func(format string, args ...any) { done = append(done, fmt.Sprintf(format, args...)) }
	for _, v := range r.creds.Variables {
		current, err := r.readVariable(ctx, v.Key)
		if err != nil {
			return err
		}
		body := map[string]any{"value": v.Value, "masked": v.Secret, "raw": true, "protected": false, "description": description(v)}
		switch {
		case current == nil:
			body["key"] = v.Key
			kind := "plain"
			if v.Secret && hidden {
				body["masked_and_hidden"] = true
				kind = "masked and hidden"
			} else if v.Secret {
				kind = "masked"
			}
			if err := r.gitlabCall(ctx, http.MethodPost, r.projectID()+"/variables", nil, body, nil); err != nil {
				return fmt.Errorf("creating variable %s: %w", v.Key, explainVariable(err, v))
			}
			say("%s created (%s)", v.Key, kind)
		case unchanged(*current, v):
			say("%s unchanged", v.Key)
		default:
			if err := r.gitlabCall(ctx, http.MethodPut, r.projectID()+"/variables/"+url.PathEscape(v.Key), allScopes, body, nil); err != nil {
				return fmt.Errorf("updating variable %s: %w", v.Key, explainVariable(err, v))
			}
			note := ""
			if v.Secret && !current.Hidden {
				note = " (masked; GitLab cannot hide an existing variable: delete it in Settings > CI/CD > Variables and run again to have it hidden)"
			}
			say("%s updated%s", v.Key, note)
		}
	}
	for _, key := range r.creds.Stale {
		current, err := r.readVariable(ctx, key)
		if err != nil {
			return err
		}
		if current == nil {
			continue
		}
		if err := r.gitlabCall(ctx, http.MethodDelete, r.projectID()+"/variables/"+url.PathEscape(key), allScopes, nil, nil); err != nil {
			return fmt.Errorf("deleting variable %s: %w", key, explainWrite(err))
		}
		say("%s deleted (%s)", key, staleWhy(key))
	}
	if r.opts.DryRun {
		for i, d := range done {
			done[i] = strings.NewReplacer(" created", " would be created", " updated", " would be updated", " deleted", " would be deleted").Replace(d)
		}
	}
	r.note("variables", "%s", strings.Join(done, "; "))
	return nil
}

// unchanged reports whether a variable holds v as connect writes it. A
// secret GitLab does not show is known by its fingerprint.
func unchanged(current gitlabVariable, v Variable) bool {
	if current.Protected || !current.Raw || current.Masked != v.Secret {
		return false
	}
	if current.Value != nil && !current.Hidden {
		return *current.Value == v.Value
	}
	return v.Secret && strings.Contains(deref(current.Description), "fingerprint "+fingerprint(v.Value))
}

func staleWhy(key string) string {
	switch key {
	case "BITBUCKET_USERNAME":
		return "an access token takes no user name: with one, the component sends Basic auth, which Bitbucket refuses"
	case "BITBUCKET_ACCESS_TOKEN":
		return "the OAuth consumer's variables replace it"
	}
	return "BITBUCKET_ACCESS_TOKEN replaces the OAuth consumer"
}

// explainVariable adds GitLab's masking rule to its refusal of a value.
func explainVariable(err error, v Variable) error {
	var ae *gitlab.APIError
	if errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest && strings.Contains(ae.Message, "value") && v.Secret {
		return fmt.Errorf("%w: GitLab cannot mask this value (this GitLab's rule may be stricter than single-line, 8 characters, no spaces)", err)
	}
	return explainWrite(err)
}
