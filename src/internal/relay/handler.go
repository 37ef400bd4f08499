package relay

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
)

// Handler serves POST /webhook, /healthz, /readyz and /metrics.
func (r *Relay) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhook", r.webhook)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", r.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.metrics.registry, promhttp.HandlerOpts{}))
	return mux
}

func (r *Relay) readyz(w http.ResponseWriter, req *http.Request) {
	if !r.ready.Load() {
		http.Error(w, "not ready: starting or shutting down", http.StatusServiceUnavailable)
		return
	}
	if err := r.store.Ping(req.Context()); err != nil {
		http.Error(w, "not ready: the store does not answer", http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

// answer writes a short plain-text answer; GitLab shows it under the
// webhook's Recent events.
func answer(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, text+"\n")
}

// webhook: authenticate, read, store durably, answer 202; the posting
// happens afterwards. Every event it chooses to ignore gets 200, since
// GitLab disables a hook that fails.
func (r *Relay) webhook(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	kind := "other"
	if req.Header.Get("X-Gitlab-Event") == gitlab.PipelineHook {
		kind = "pipeline"
	}
	count := func(outcome string) { r.metrics.events.WithLabelValues(kind, outcome).Inc() }
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.cfg.MaxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		count("too_large")
		answer(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes (BITBUCKET_RELAY_MAX_BODY)", r.cfg.MaxBody))
		return
	case err != nil:
		count("bad_request")
		answer(w, http.StatusBadRequest, "could not read the body")
		return
	}
	if reason := r.authenticate(req, body); reason != "" {
		count("unauthorized")
		r.log.Warn("webhook refused", "reason", reason, "remote", req.RemoteAddr, "event", req.Header.Get("X-Gitlab-Event"))
		answer(w, http.StatusUnauthorized, reason)
		return
	}
	if kind != "pipeline" {
		count("ignored")
		answer(w, http.StatusOK, "ignored: not a Pipeline Hook")
		return
	}
	p, err := gitlab.ParsePipelineHook(body)
	if err != nil {
		count("bad_request")
		r.log.Warn("webhook refused", "reason", err.Error(), "remote", req.RemoteAddr)
		answer(w, http.StatusBadRequest, "not a pipeline payload: "+err.Error())
		return
	}
	logAttrs := []any{"project", p.ProjectPath, "pipeline", p.ID, "commit", p.SHA, "gitlab_status", p.Status,
		"idempotency_key", req.Header.Get("Idempotency-Key")}
	changed, rep, err := r.accept(req.Context(), p)
	var skip *skipError
	switch {
	case errors.As(err, &skip):
		count("no_route")
		r.metrics.skipped.WithLabelValues(skip.reason).Inc()
		r.log.Info("pipeline not reported", append(logAttrs, "reason", skip.msg)...)
		answer(w, http.StatusOK, "not reported: "+skip.msg)
	case err != nil:
		count("store_error")
		r.log.Error("webhook not stored", append(logAttrs, "error", err.Error())...)
		answer(w, http.StatusServiceUnavailable, "not stored; the relay's store is unavailable")
	case !changed:
		count("unchanged")
		r.log.Info("event accepted", append(logAttrs, "status", rep.StatusID, "state", rep.State, "changed", false,
			"ms", time.Since(start).Milliseconds())...)
		answer(w, http.StatusAccepted, "accepted: nothing new for this status")
	default:
		count("accepted")
		r.log.Info("event accepted", append(logAttrs, "status", rep.StatusID, "state", rep.State, "changed", true,
			"ms", time.Since(start).Milliseconds())...)
		answer(w, http.StatusAccepted, "accepted")
	}
}

// authenticate checks the secret token and the signature, whichever are
// configured (both when both are); it returns why a request fails, or "".
func (r *Relay) authenticate(req *http.Request, body []byte) string {
	if r.cfg.WebhookToken != "" {
		got := req.Header.Get("X-Gitlab-Token")
		if got == "" {
			return "no X-Gitlab-Token: set the webhook's secret token to BITBUCKET_RELAY_WEBHOOK_TOKEN"
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(r.cfg.WebhookToken)) != 1 {
			return "wrong X-Gitlab-Token"
		}
	}
	if r.cfg.SigningKey != nil {
		if err := r.cfg.SigningKey.Verify(req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"),
			req.Header.Get("webhook-signature"), body, time.Now()); err != nil {
			return "signature: " + err.Error()
		}
	}
	return ""
}
