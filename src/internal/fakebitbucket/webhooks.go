package fakebitbucket

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Webhooks as each server keeps them: Cloud's
// /2.0/repositories/{ws}/{slug}/hooks[/{uuid}] (201 on create, the secret
// never shown, only secret_set), Data Center's
// /rest/api/latest/projects/{key}/repos/{slug}/webhooks[/{id}] (the secret
// in configuration.secret, not shown either). The slug "no-webhooks"
// refuses them as a credential without the webhook scope is refused.

// Hook is a repository's webhook as the stand-in keeps it.
type Hook struct {
	ID          string   `json:"id"`
	URL         string   `json:"url"`
	Description string   `json:"description"`
	Active      bool     `json:"active"`
	Events      []string `json:"events"`
	// Secret is what signs its deliveries ("" for none).
	Secret string `json:"-"`
}

// AddHook adds a webhook to a repository ("workspace/slug" or
// "PROJECT/slug"), as a user would have made it.
func (s *Server) AddHook(repo string, h Hook) Hook {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addHook(repo, h)
}

func (s *Server) addHook(repo string, h Hook) Hook {
	if s.hooks == nil {
		s.hooks = map[string][]*Hook{}
	}
	s.hookSeq++
	if h.ID == "" {
		h.ID = strconv.Itoa(s.hookSeq)
	}
	key := strings.ToLower(repo)
	s.hooks[key] = append(s.hooks[key], &h)
	return h
}

// Hooks returns a repository's webhooks.
func (s *Server) Hooks(repo string) []Hook {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Hook
	for _, h := range s.hooks[strings.ToLower(repo)] {
		out = append(out, *h)
	}
	return out
}

func (s *Server) findHook(repo, id string) *Hook {
	for _, h := range s.hooks[strings.ToLower(repo)] {
		if h.ID == id {
			return h
		}
	}
	return nil
}

func (s *Server) removeHook(repo, id string) bool {
	key := strings.ToLower(repo)
	for i, h := range s.hooks[key] {
		if h.ID == id {
			s.hooks[key] = append(s.hooks[key][:i], s.hooks[key][i+1:]...)
			return true
		}
	}
	return false
}

func cloudUUID(id string) string { return fmt.Sprintf("{00000000-0000-4000-8000-%012s}", id) }

func cloudHookJSON(h *Hook) map[string]any {
	return map[string]any{"type": "webhook_subscription", "uuid": cloudUUID(h.ID), "url": h.URL, "description": h.Description,
		"subject_type": "repository", "active": h.Active, "events": h.Events, "secret_set": h.Secret != "",
		"created_at": "2026-11-02T09:00:00.000000+00:00"}
}

var cloudEvents = map[string]bool{"repo:push": true, "repo:updated": true, "pullrequest:created": true, "pullrequest:updated": true,
	"pullrequest:fulfilled": true, "repo:commit_status_created": true, "repo:commit_status_updated": true}

// cloudHooks serves repositories/{ws}/{slug}/hooks[/{uuid}].
func (s *Server) cloudHooks(w http.ResponseWriter, r *http.Request, repo string, rest []string, body []byte) {
	if strings.HasSuffix(repo, "/no-webhooks") {
		writeJSON(w, http.StatusForbidden, `{"type":"error","error":{"message":"Your credentials lack one or more required privilege scopes.","detail":{"required":["webhook"],"granted":["repository"]}}}`)
		return
	}
	var doc map[string]any
	_ = json.Unmarshal(body, &doc)
	fieldError := func(field, msg string) {
		m, _ := json.Marshal(msg)
		writeJSON(w, http.StatusBadRequest, fmt.Sprintf(`{"type":"error","error":{"message":"Bad request","fields":{%q:[%s]}}}`, field, m))
	}
	// apply sets what the body names; it reports a field's error.
	apply := func(h *Hook) bool {
		if v, ok := doc["url"].(string); ok {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				fieldError("url", "Enter a valid URL.")
				return false
			}
			h.URL = v
		}
		if v, ok := doc["description"].(string); ok {
			h.Description = v
		}
		if v, ok := doc["active"].(bool); ok {
			h.Active = v
		}
		if list, ok := doc["events"].([]any); ok {
			h.Events = nil
			for _, e := range list {
				name, _ := e.(string)
				if !cloudEvents[name] {
					fieldError("events", fmt.Sprintf("%q is not a valid choice.", name))
					return false
				}
				h.Events = append(h.Events, name)
			}
		}
		if v, present := doc["secret"]; present {
			secret, _ := v.(string)
			if len(secret) > 128 {
				fieldError("secret", "Ensure this field has no more than 128 characters.")
				return false
			}
			h.Secret = secret
		}
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := ""
	if len(rest) == 1 {
		id = strings.TrimSuffix(strings.TrimPrefix(rest[0], "{00000000-0000-4000-8000-"), "}")
		id = strings.TrimLeft(id, "0")
	}
	switch {
	case r.Method == http.MethodGet && len(rest) == 0:
		values := []map[string]any{}
		for _, h := range s.hooks[strings.ToLower(repo)] {
			values = append(values, cloudHookJSON(h))
		}
		out, _ := json.Marshal(map[string]any{"pagelen": 100, "size": len(values), "page": 1, "values": values})
		writeJSON(w, http.StatusOK, string(out))
	case r.Method == http.MethodPost && len(rest) == 0:
		h := Hook{Active: true}
		if !apply(&h) {
			return
		}
		if h.URL == "" || len(h.Events) == 0 {
			fieldError("events", "This field is required.")
			return
		}
		made := s.addHook(repo, h)
		out, _ := json.Marshal(cloudHookJSON(&made))
		w.Header().Set("Location", requestURL(r)+"/"+url.PathEscape(cloudUUID(made.ID)))
		writeJSON(w, http.StatusCreated, string(out))
	case len(rest) == 1 && s.findHook(repo, id) == nil:
		writeJSON(w, http.StatusNotFound, `{"type":"error","error":{"message":"Resource not found"}}`)
	case r.Method == http.MethodGet && len(rest) == 1:
		out, _ := json.Marshal(cloudHookJSON(s.findHook(repo, id)))
		writeJSON(w, http.StatusOK, string(out))
	case r.Method == http.MethodPut && len(rest) == 1:
		h := s.findHook(repo, id)
		updated := *h
		if !apply(&updated) {
			return
		}
		*h = updated
		out, _ := json.Marshal(cloudHookJSON(h))
		writeJSON(w, http.StatusOK, string(out))
	case r.Method == http.MethodDelete && len(rest) == 1:
		s.removeHook(repo, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		writeJSON(w, http.StatusNotFound, `{"type":"error","error":{"message":"Resource not found"}}`)
	}
}

func dataCenterHookJSON(h *Hook) map[string]any {
	id, _ := strconv.Atoi(h.ID)
	events := append([]string(nil), h.Events...)
	sort.Strings(events)
	return map[string]any{"id": id, "name": h.Description, "url": h.URL, "active": h.Active, "events": events,
		"configuration": map[string]any{}, "scopeType": "repository", "sslVerificationRequired": true,
		"createdDate": 1764835200000, "updatedDate": 1764835200000}
}

// dataCenterHooks serves api/latest/projects/{key}/repos/{slug}/webhooks[/{id}].
func (s *Server) dataCenterHooks(w http.ResponseWriter, r *http.Request, repo string, rest []string, body []byte) {
	if strings.HasSuffix(repo, "/no-webhooks") {
		writeJSON(w, http.StatusUnauthorized, `{"errors":[{"context":null,"message":"You are not permitted to access this resource","exceptionName":"com.atlassian.bitbucket.AuthorisationException"}]}`)
		return
	}
	var doc struct {
		Name          *string         `json:"name"`
		URL           *string         `json:"url"`
		Active        *bool           `json:"active"`
		Events        []string        `json:"events"`
		Configuration json.RawMessage `json:"configuration"`
	}
	_ = json.Unmarshal(body, &doc)
	invalid := func(msg string) {
		m, _ := json.Marshal(msg)
		writeJSON(w, http.StatusBadRequest, `{"errors":[{"context":null,"message":`+string(m)+`,"exceptionName":"com.atlassian.bitbucket.validation.ArgumentValidationException"}]}`)
	}
	apply := func(h *Hook) bool {
		if doc.Name != nil {
			h.Description = *doc.Name
		}
		if doc.URL != nil {
			if u, err := url.Parse(*doc.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				invalid("The URL must be a valid HTTP or HTTPS URL.")
				return false
			}
			h.URL = *doc.URL
		}
		if doc.Active != nil {
			h.Active = *doc.Active
		}
		if doc.Events != nil {
			h.Events = doc.Events
		}
		if len(doc.Configuration) > 0 {
			var c struct {
				Secret string `json:"secret"`
			}
			_ = json.Unmarshal(doc.Configuration, &c)
			h.Secret = c.Secret
		}
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := ""
	if len(rest) == 1 {
		id = rest[0]
	}
	switch {
	case r.Method == http.MethodGet && len(rest) == 0:
		values := []map[string]any{}
		for _, h := range s.hooks[strings.ToLower(repo)] {
			values = append(values, dataCenterHookJSON(h))
		}
		out, _ := json.Marshal(map[string]any{"size": len(values), "limit": 100, "isLastPage": true, "start": 0, "values": values})
		writeJSON(w, http.StatusOK, string(out))
	case r.Method == http.MethodPost && len(rest) == 0:
		h := Hook{}
		if !apply(&h) {
			return
		}
		if h.Description == "" || h.URL == "" || len(h.Events) == 0 {
			invalid("A webhook needs a name, a URL and at least one event.")
			return
		}
		made := s.addHook(repo, h)
		out, _ := json.Marshal(dataCenterHookJSON(&made))
		writeJSON(w, http.StatusOK, string(out))
	case len(rest) == 1 && s.findHook(repo, id) == nil:
		noSuch(w, "Webhook "+id+" does not exist.", "webhook.NoSuchWebhookException")
	case r.Method == http.MethodGet && len(rest) == 1:
		out, _ := json.Marshal(dataCenterHookJSON(s.findHook(repo, id)))
		writeJSON(w, http.StatusOK, string(out))
	case r.Method == http.MethodPut && len(rest) == 1:
		h := s.findHook(repo, id)
		updated := *h
		if !apply(&updated) {
			return
		}
		*h = updated
		out, _ := json.Marshal(dataCenterHookJSON(h))
		writeJSON(w, http.StatusOK, string(out))
	case r.Method == http.MethodDelete && len(rest) == 1:
		s.removeHook(repo, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		s.unknownRoute(w, r)
	}
}
