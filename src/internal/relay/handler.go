package relay

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
)

// Handler serves POST /webhook, /healthz, /readyz, /metrics and, with
// BITBUCKET_RELAY_STATUS_TOKEN, the status page.
func (r *Relay) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhook", r.webhook)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", r.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.metrics.registry, promhttp.HandlerOpts{}))
	if r.cfg.StatusToken != "" {
		// Off unless configured: without the token these paths are 404.
		r.statusPages(mux)
	}
	if r.cfg.PushSecret != "" {
		mux.HandleFunc("POST /bitbucket", r.push)
	}
	return mux
}

// readyz answers whether this replica can take webhooks. Anyone may ask,
// so the answer says no more than that: why the store fails (a database's
// user, host and name) goes to the log.
func (r *Relay) readyz(w http.ResponseWriter, req *http.Request) {
	if !r.ready.Load() {
		http.Error(w, "not ready: starting or shutting down", http.StatusServiceUnavailable)
		return
	}
	if err := r.storeReady(req.Context()); err != nil {
		if _, ok := r.readyLog.allow(time.Now()); ok {
			r.log.Warn("not ready: the store is unreachable or cannot write", "error", err.Error())
		}
		http.Error(w, "not ready: the store is unreachable or cannot write (the relay's log says why)", http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

// readyWriteEvery is how often readiness commits a write to the store; in
// between, it only reads. Probes come every few seconds from several
// places (the load balancer, the orchestrator): a write for each would be
// load for nothing.
const readyWriteEvery = 10 * time.Second

// storeReady reads from the store every time, and commits a small write
// when the last one is older than readyWriteEvery or failed: a full disk
// or a read-only database shows within that time, an unreachable one at
// once.
func (r *Relay) storeReady(ctx context.Context) error {
	if err := r.store.Reachable(ctx); err != nil {
		return err
	}
	r.readyMu.Lock()
	defer r.readyMu.Unlock()
	if r.readyErr == nil && time.Since(r.readyWrote) < readyWriteEvery {
		return nil
	}
	r.readyErr = r.store.Ping(ctx)
	r.readyWrote = time.Now()
	return r.readyErr
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
// GitLab disables a hook that fails. Nothing of a stranger's request is
// read: the secret token (and a signature's headers) are checked before
// the body, and bodies that must be read to check a signature share a
// bounded budget of memory.
func (r *Relay) webhook(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	kind := "other"
	if req.Header.Get("X-Gitlab-Event") == gitlab.PipelineHook {
		kind = "pipeline"
	}
	count := func(outcome string) { r.metrics.events.WithLabelValues(kind, outcome).Inc() }
	refuse := func(reason string) {
		count("unauthorized")
		if n, ok := r.refusals.allow(time.Now()); ok {
			// One line per 10 s at most: a flood of strangers must not
			// become a flood of log lines.
			r.log.Warn("webhook refused", "reason", reason, "remote", req.RemoteAddr, "event", req.Header.Get("X-Gitlab-Event"),
				"refused_since_last_line", n)
		}
		// The body is left unread: the connection closes after the answer.
		w.Header().Set("Connection", "close")
		answer(w, http.StatusUnauthorized, reason)
	}
	if reason := r.checkHeaders(req); reason != "" {
		refuse(reason)
		return
	}
	body, release, ok := r.readBody(w, req, r.cfg.MaxBody, fmt.Sprintf("body over %d bytes (BITBUCKET_RELAY_MAX_BODY)", r.cfg.MaxBody),
		" (BITBUCKET_RELAY_READ_BUDGET)", count)
	defer release()
	if !ok {
		return
	}
	if r.cfg.SigningKey != nil {
		if err := r.cfg.SigningKey.Verify(req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"),
			req.Header.Get("webhook-signature"), body, time.Now()); err != nil {
			refuse("signature: " + err.Error())
			return
		}
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
	logAttrs := []any{"project", p.ProjectPath, "pipeline", p.ID, "commit", p.SHA, "gitlab_status", p.Status, "source", p.Source,
		"idempotency_key", req.Header.Get("Idempotency-Key")}
	changed, rep, err := r.accept(context.WithValue(req.Context(), webhookContext{}, true), p)
	var skip *skipError
	var unresolved *unresolvedError
	switch {
	case errors.As(err, &skip):
		count("no_route")
		r.metrics.skipped.WithLabelValues(skip.reason).Inc()
		r.log.Info("pipeline not reported", append(logAttrs, "reason", skip.msg)...)
		r.noteSkip(req.Context(), p, skip)
		answer(w, http.StatusOK, "not reported: "+skip.msg)
	case errors.As(err, &unresolved):
		count("accepted")
		r.log.Info("event accepted", append(logAttrs, "status", rep.StatusID, "state", rep.State, "changed", changed,
			"waiting_for", unresolved.Error(), "ms", time.Since(start).Milliseconds())...)
		answer(w, http.StatusAccepted, "accepted; "+unresolved.Error())
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

// checkHeaders checks what can be checked before reading a byte of the
// body: the secret token, and that a signature's headers are there and
// fresh. It returns why a request fails, or "".
func (r *Relay) checkHeaders(req *http.Request) string {
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
		if _, err := gitlab.CheckHeaders(req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"),
			req.Header.Get("webhook-signature"), time.Now()); err != nil {
			return "signature: " + err.Error()
		}
	}
	return ""
}

// sampler lets one log line through per interval and counts the others.
type sampler struct {
	mu       sync.Mutex
	interval time.Duration
	last     time.Time
	skipped  int
}

// allow reports whether to log now, and how many were not logged since
// the last line.
func (s *sampler) allow(now time.Time) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.last) < s.interval {
		s.skipped++
		return 0, false
	}
	n := s.skipped
	s.last, s.skipped = now, 0
	return n, true
}
