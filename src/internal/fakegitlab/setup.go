package fakegitlab

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// What connect needs of GitLab: namespaces, projects created and updated,
// the pull mirror configured, CI/CD variables, branches.

// Group is a group projects may be created in.
type Group struct {
	ID   int64
	Path string
	// CreateProjects: the token's user may create projects in it.
	CreateProjects bool
}

// AddGroup adds a group.
func (s *Server) AddGroup(path string, createProjects bool) *Group {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups == nil {
		s.groups = map[string]*Group{}
	}
	s.nextID++
	g := &Group{ID: 500 + s.nextID, Path: path, CreateProjects: createProjects}
	s.groups[strings.ToLower(path)] = g
	return g
}

// Project returns the project of a path, nil if none (change it under Lock).
func (s *Server) Project(path string) *Project {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.project(url.PathEscape(path))
}

func (s *Server) version() string {
	if s.Version == "" {
		return "18.6.0-ee"
	}
	return s.Version
}

// atLeast reports whether the version is major.minor or later.
func (s *Server) atLeast(major, minor int) bool {
	var ma, mi int
	_, _ = fmt.Sscanf(s.version(), "%d.%d", &ma, &mi)
	return ma > major || (ma == major && mi >= minor)
}

func (p *Project) defaultBranch() string {
	if p.DefaultBranch == "" {
		return "main"
	}
	return p.DefaultBranch
}

// fetchError is what an update of m ends with: its FetchError, else git's
// answer to credentials the upstream refuses.
func (s *Server) fetchError(m *Mirror) string {
	if m.FetchError != "" {
		return m.FetchError
	}
	u := s.Upstream
	if u.User == "" && u.Password == "" {
		return ""
	}
	host := "bitbucket.org"
	if parsed, err := url.Parse(m.URL); err == nil {
		host = parsed.Host
		if i := strings.LastIndex(host, "@"); i >= 0 {
			host = host[i+1:]
		}
	}
	switch {
	case m.AuthUser == "":
		return "fatal: could not read Username for 'https://" + host + "': terminal prompts disabled"
	case m.AuthUser != u.User || m.AuthPassword != u.Password:
		return "remote: Invalid credentials\nfatal: Authentication failed for 'https://" + host + "/'"
	}
	return ""
}

func (s *Server) projectJSON(p *Project) map[string]any {
	out := map[string]any{"id": p.ID, "path_with_namespace": p.Path, "import_url": nil, "default_branch": p.defaultBranch(),
		"empty_repo": len(p.Branches) == 0, "visibility": p.Visibility, "mirror": p.Mirror != nil && p.Mirror.Enabled}
	for _, f := range accessLevels {
		out[f] = p.access(f)
	}
	if m := p.Mirror; m != nil {
		out["import_url"] = stripCredentials(m.URL)
		out["mirror_trigger_builds"], out["mirror_overwrites_diverged_branches"] = m.TriggerBuilds, m.OverwriteDiverged
		out["only_mirror_protected_branches"] = m.OnlyProtected
	}
	return out
}

var accessLevels = []string{"issues_access_level", "merge_requests_access_level", "wiki_access_level", "snippets_access_level"}

func (p *Project) access(feature string) string {
	if v := p.Access[feature]; v != "" {
		return v
	}
	return "enabled"
}

func stripCredentials(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = nil
	return u.String()
}

// setup answers connect's routes; it reports whether it did.
func (s *Server) setup(w http.ResponseWriter, r *http.Request, parts []string, body []byte) bool {
	var doc map[string]any
	_ = json.Unmarshal(body, &doc)
	switch {
	case len(parts) == 2 && parts[0] == "namespaces" && r.Method == http.MethodGet:
		path, _ := url.PathUnescape(parts[1])
		g := s.groups[strings.ToLower(path)]
		if g == nil {
			message(w, http.StatusNotFound, "404 Namespace Not Found")
			return true
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": g.ID, "path": g.Path[strings.LastIndex(g.Path, "/")+1:], "full_path": g.Path, "kind": "group"})
	case len(parts) == 1 && parts[0] == "projects" && r.Method == http.MethodPost:
		s.createProject(w, doc)
	case len(parts) < 2 || parts[0] != "projects" || (len(parts) == 2 && r.Method != http.MethodPut):
		return false
	default:
		p := s.project(parts[1])
		if p == nil {
			return false
		}
		switch {
		case len(parts) == 2 && r.Method == http.MethodPut:
			s.updateProject(w, p, doc)
		case len(parts) >= 3 && parts[2] == "variables":
			s.variables(w, r, p, parts[3:], doc)
		case len(parts) == 5 && parts[2] == "repository" && parts[3] == "branches" && r.Method == http.MethodGet:
			name, _ := url.PathUnescape(parts[4])
			commit, ok := p.Branches[name]
			if !ok {
				message(w, http.StatusNotFound, "404 Branch Not Found")
				return true
			}
			writeJSON(w, http.StatusOK, map[string]any{"name": name, "commit": map[string]any{"id": commit, "short_id": commit[:min(8, len(commit))]}})
		default:
			return false
		}
	}
	return true
}

func str(doc map[string]any, key string) string { v, _ := doc[key].(string); return v }

func flag(doc map[string]any, key string) (bool, bool) {
	v, ok := doc[key].(bool)
	return v, ok
}

func (s *Server) createProject(w http.ResponseWriter, doc map[string]any) {
	id, _ := doc["namespace_id"].(float64)
	var group *Group
	for _, g := range s.groups {
		if float64(g.ID) == id {
			group = g
		}
	}
	path := str(doc, "path")
	switch {
	case group == nil || !group.CreateProjects:
		// What GitLab answers a user who may not create projects there.
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": map[string]any{"namespace": []string{"is not valid"}}})
		return
	case path == "":
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "path is missing"})
		return
	case s.project(url.PathEscape(group.Path+"/"+path)) != nil:
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": map[string]any{"path": []string{"has already been taken"}}})
		return
	}
	s.nextID++
	p := &Project{ID: 100 + s.nextID, Path: group.Path + "/" + path, Maintainer: true, Visibility: str(doc, "visibility"), Access: map[string]string{}}
	for _, f := range accessLevels {
		p.Access[f] = str(doc, f)
	}
	if s.projects == nil {
		s.projects = map[int64]*Project{}
	}
	s.projects[p.ID] = p
	writeJSON(w, http.StatusCreated, s.projectJSON(p))
}

// updateProject is PUT /projects/:id: feature access levels, and the
// pull mirror the deprecated way (import_url with its credentials, mirror).
func (s *Server) updateProject(w http.ResponseWriter, p *Project, doc map[string]any) {
	if !p.Maintainer {
		message(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	for _, f := range accessLevels {
		if v := str(doc, f); v != "" {
			if p.Access == nil {
				p.Access = map[string]string{}
			}
			p.Access[f] = v
		}
	}
	if raw := str(doc, "import_url"); raw != "" {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			writeJSON(w, http.StatusBadRequest, map[string]any{"message": map[string]any{"import_url": []string{"is blocked: Only allowed schemes are http, https, ssh, git"}}})
			return
		}
		if p.Mirror == nil {
			p.Mirror = &Mirror{UpdateStatus: "none"}
		}
		p.Mirror.URL = raw
		if u.User != nil {
			p.Mirror.AuthUser = u.User.Username()
			p.Mirror.AuthPassword, _ = u.User.Password()
		}
	}
	if p.Mirror != nil {
		if v, ok := flag(doc, "mirror"); ok {
			p.Mirror.Enabled = v
		}
		p.Mirror.applySettings(doc)
	}
	writeJSON(w, http.StatusOK, s.projectJSON(p))
}

func (m *Mirror) applySettings(doc map[string]any) {
	if v, ok := flag(doc, "mirror_trigger_builds"); ok {
		m.TriggerBuilds = v
	}
	if v, ok := flag(doc, "mirror_overwrites_diverged_branches"); ok {
		m.OverwriteDiverged = v
	}
	if v, ok := flag(doc, "only_mirror_protected_branches"); ok {
		m.OnlyProtected = v
	}
}

// configureMirror is PUT /projects/:id/mirror/pull (17.6+).
func (s *Server) configureMirror(w http.ResponseWriter, p *Project, doc map[string]any) {
	switch {
	case !s.atLeast(17, 6):
		message(w, http.StatusNotFound, "404 Not Found")
		return
	case !p.Maintainer:
		message(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	if raw := str(doc, "url"); raw != "" {
		if u, err := url.Parse(raw); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			writeJSON(w, http.StatusBadRequest, map[string]any{"message": "Url is blocked: Only allowed schemes are http, https, ssh, git"})
			return
		}
		if p.Mirror == nil {
			p.Mirror = &Mirror{UpdateStatus: "none"}
		}
		p.Mirror.URL = raw
	}
	if p.Mirror == nil {
		message(w, http.StatusBadRequest, "The project is not mirrored")
		return
	}
	m := p.Mirror
	if v, ok := doc["auth_user"].(string); ok {
		m.AuthUser = v
	}
	if v, ok := doc["auth_password"].(string); ok {
		m.AuthPassword = v
	}
	if v, ok := flag(doc, "enabled"); ok {
		m.Enabled = v
	}
	m.applySettings(doc)
	s.mirror(w, &http.Request{Method: http.MethodGet}, p)
}

func variableJSON(v *Variable) map[string]any {
	value := any(v.Value)
	if v.Hidden {
		value = nil
	}
	return map[string]any{"key": v.Key, "value": value, "description": v.Description, "masked": v.Masked, "hidden": v.Hidden,
		"protected": v.Protected, "raw": v.Raw, "variable_type": "env_var", "environment_scope": "*"}
}

// maskable is GitLab's rule for a masked value: one line, no spaces, 8
// characters or more.
func maskable(v string) bool {
	return len(v) >= 8 && !strings.ContainsAny(v, " \t\r\n")
}

func (s *Server) variables(w http.ResponseWriter, r *http.Request, p *Project, rest []string, doc map[string]any) {
	if !p.Maintainer {
		message(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	if p.Variables == nil {
		p.Variables = map[string]*Variable{}
	}
	key := ""
	if len(rest) == 1 {
		key, _ = url.PathUnescape(rest[0])
	}
	invalid := func(field, msg string) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": map[string]any{field: []string{msg}}})
	}
	set := func(v *Variable) bool {
		if value, ok := doc["value"].(string); ok {
			v.Value = value
		}
		if d, ok := doc["description"].(string); ok {
			v.Description = d
		}
		for name, field := range map[string]*bool{"masked": &v.Masked, "protected": &v.Protected, "raw": &v.Raw} {
			if b, ok := flag(doc, name); ok {
				*field = b
			}
		}
		if v.Masked && !maskable(v.Value) {
			invalid("value", "is invalid")
			return false
		}
		return true
	}
	switch {
	case r.Method == http.MethodGet && key == "":
		list := []map[string]any{}
		for _, v := range p.Variables {
			list = append(list, variableJSON(v))
		}
		writeJSON(w, http.StatusOK, list)
	case r.Method == http.MethodGet:
		v := p.Variables[key]
		if v == nil {
			message(w, http.StatusNotFound, "404 Variable Not Found")
			return
		}
		writeJSON(w, http.StatusOK, variableJSON(v))
	case r.Method == http.MethodPost && key == "":
		k := str(doc, "key")
		if p.Variables[k] != nil {
			invalid("key", "("+k+") has already been taken")
			return
		}
		v := &Variable{Key: k}
		if hidden, _ := flag(doc, "masked_and_hidden"); hidden && s.atLeast(17, 6) {
			v.Masked, v.Hidden = true, true
		}
		if !set(v) {
			return
		}
		p.Variables[k] = v
		writeJSON(w, http.StatusCreated, variableJSON(v))
	case r.Method == http.MethodPut && key != "":
		v := p.Variables[key]
		if v == nil {
			message(w, http.StatusNotFound, "404 Variable Not Found")
			return
		}
		updated := *v
		if !set(&updated) {
			return
		}
		*v = updated
		writeJSON(w, http.StatusOK, variableJSON(v))
	case r.Method == http.MethodDelete && key != "":
		if p.Variables[key] == nil {
			message(w, http.StatusNotFound, "404 Variable Not Found")
			return
		}
		delete(p.Variables, key)
		w.WriteHeader(http.StatusNoContent)
	default:
		message(w, http.StatusNotFound, "404 Not Found")
	}
}
