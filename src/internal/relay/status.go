package relay

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"time"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/relaystatus"
)

// statusPages serves GET /status (the overview, and a search with ?q=) and
// its stylesheet, behind BITBUCKET_RELAY_STATUS_TOKEN: HTTP Basic with any
// user name, compared in constant time. Read-only; no script at all.
func (r *Relay) statusPages(mux *http.ServeMux) {
	mux.HandleFunc("GET /status", r.authorized(r.statusPage))
	mux.HandleFunc("GET /status/style.css", r.authorized(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = w.Write(relaystatus.Style)
	}))
}

// pageHeaders keep the page from running or loading anything but its own
// stylesheet, from being framed, and from being cached.
func pageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func (r *Relay) authorized(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		pageHeaders(w.Header())
		_, token, ok := req.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(token), []byte(r.cfg.StatusToken)) != 1 {
			// A browser's first request carries no password: only a wrong
			// one is a failed login, counted and logged (never what was
			// tried), once per 10 s at most with a count.
			if ok {
				r.metrics.logins.WithLabelValues("refused").Inc()
				if n, log := r.logins.allow(time.Now()); log {
					r.log.Warn("status page login refused: wrong password", "remote", req.RemoteAddr, "path", req.URL.Path,
						"refused_since_last_line", n)
				}
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="bitbucket-status-relay", charset="UTF-8"`)
			http.Error(w, "the status page needs BITBUCKET_RELAY_STATUS_TOKEN as the password (any user name)", http.StatusUnauthorized)
			return
		}
		r.metrics.logins.WithLabelValues("accepted").Inc()
		next(w, req)
	}
}

func (r *Relay) statusPage(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	local := r.local(now)
	o, err := relaystatus.ReadOverview(req.Context(), r.store, now, local)
	if err != nil {
		r.log.Warn("status page: the store cannot be read", "error", err.Error())
		http.Error(w, "the store cannot be read (the relay's log says why)", http.StatusServiceUnavailable)
		return
	}
	var result *relaystatus.Result
	var searchErr error
	q := req.URL.Query().Get("q")
	if q != "" {
		pageNumber, _ := strconv.Atoi(req.URL.Query().Get("page"))
		res, err := relaystatus.Search(req.Context(), r.store, q, pageNumber, now, local)
		switch {
		case errors.Is(err, relaystatus.ErrQuery):
			searchErr = err
		case err != nil:
			r.log.Warn("status page: the store cannot be read", "error", err.Error())
			http.Error(w, "the store cannot be read (the relay's log says why)", http.StatusServiceUnavailable)
			return
		default:
			result = &res
		}
	}
	var page bytes.Buffer
	if err := relaystatus.WriteHTML(&page, o, q, result, searchErr); err != nil {
		http.Error(w, "rendering the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Whatever an older relay stored unscrubbed, no secret it knows leaves.
	_, _ = io.WriteString(w, r.secrets.Scrub(page.String()))
}

// local is what this replica alone knows: its servers' gates and its
// credentials' rate-limit pauses.
func (r *Relay) local(now time.Time) *relaystatus.Local {
	l := &relaystatus.Local{Replica: r.owner}
	for _, s := range r.servers.states() {
		l.Servers = append(l.Servers, relaystatus.LocalServer{Server: s.Server, InFlight: s.InFlight, BreakerOpen: s.Open, OpenUntil: s.OpenUntil})
	}
	r.pauseMu.Lock()
	for name, p := range r.pauses {
		if p.until.After(now) {
			l.Pauses = append(l.Pauses, relaystatus.CredentialPause{Credential: name, Until: p.until})
		}
	}
	r.pauseMu.Unlock()
	sort.Slice(l.Pauses, func(i, j int) bool { return l.Pauses[i].Credential < l.Pauses[j].Credential })
	return l
}
