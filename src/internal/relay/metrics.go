package relay

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/gitlab"
	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

// metrics are registered once, here. Labels are bounded: no project, commit
// or credential names; servers are the configured ones.
type metrics struct {
	registry     *prometheus.Registry
	events       *prometheus.CounterVec
	posts        *prometheus.CounterVec
	latency      prometheus.Histogram
	skipped      *prometheus.CounterVec
	sweeps       *prometheus.CounterVec
	gitlabErrors *prometheus.CounterVec
	verified     *prometheus.CounterVec
	pruned       *prometheus.CounterVec
	reports      *prometheus.CounterVec
	logins       *prometheus.CounterVec
	// The first mile: pushes received, mirror starts, mirror updates after
	// a push, and the time from a push to GitLab being asked.
	pushes, mirrorStarts, mirrorUpdates *prometheus.CounterVec
	pushToStart                         prometheus.Histogram
}

func newMetrics(st store.Store, servers *serverGates) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_events_total",
			Help: "Webhook deliveries by event kind (pipeline, other) and outcome (accepted, unchanged, no_route, ignored, unauthorized, bad_request, too_large, busy, store_error)."},
			[]string{"kind", "outcome"}),
		posts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_posts_total",
			Help: "Attempts to post a status, by outcome (posted, retry, refused, paused, dropped, rearmed) and HTTP code (none without an answer)."},
			[]string{"outcome", "code"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bitbucket_relay_post_duration_seconds",
			Help: "Time to post one status to Bitbucket, GitLab re-read included.", Buckets: prometheus.DefBuckets}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_skipped_total",
			Help: "Pipelines not reported, by reason (subgroup, no_credential, skip_route, no_project_key, mirror_unknown, mirror_not_allowed, child_pipeline, child_unnamed, unknown_status, bad_route)."},
			[]string{"reason"}),
		sweeps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_sweeps_total",
			Help: "Sweeps of recent pipelines, by outcome (ok, error)."}, []string{"outcome"}),
		gitlabErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_gitlab_errors_total",
			Help: "GitLab API calls that failed, by call (pipeline, mirror, bridges, list, projects, test_report_summary, test_report) and HTTP code (none without an answer)."},
			[]string{"call", "code"}),
		verified: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_verified_total",
			Help: "Statuses the sweep read back from Bitbucket, by outcome (same, differs, error, over_budget)."}, []string{"outcome"}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_pruned_total",
			Help: "Rows deleted past BITBUCKET_RELAY_RETENTION, by kind (posted, abandoned, project)."}, []string{"kind"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_test_reports_total",
			Help: "Test reports published to Bitbucket, by outcome (published, partial: without the failed tests, failed, paused, dropped)."}, []string{"outcome"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_pushes_total",
			Help: "Bitbucket push webhooks (POST /bitbucket), by result (accepted, no_project, ignored, ping, unauthorized, bad_request, too_large, busy, store_error)."},
			[]string{"result"}),
		mirrorStarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_mirror_starts_total",
			Help: "Pull mirror updates the relay asked GitLab for after a push, by result (started, paused, not_mirrored, no_project, refused, error)."},
			[]string{"result"}),
		mirrorUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_mirror_updates_total",
			Help: "Pull mirror updates that ran after a push, by result (finished, failed, timed_out: none ran)."}, []string{"result"}),
		pushToStart: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bitbucket_relay_push_to_start_seconds",
			Help: "Time from a push's arrival to the relay asking GitLab to update the mirror.", Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_status_logins_total",
			Help: "Requests to the status page with a password, by outcome (accepted, refused: a wrong password)."}, []string{"outcome"}),
	}
	stats := func() store.Stats {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, _ := st.Stats(ctx)
		return s
	}
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bitbucket_relay_pending_statuses",
		Help: "Statuses accepted and not yet posted."}, func() float64 { return float64(stats().Pending) })
	oldest := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bitbucket_relay_oldest_pending_seconds",
		Help: "Age of the oldest status waiting to be posted; 0 when none is."}, func() float64 {
		s := stats()
		if s.OldestPending.IsZero() {
			return 0
		}
		return time.Since(s.OldestPending).Seconds()
	})
	m.registry.MustRegister(m.events, m.posts, m.latency, m.skipped, m.sweeps, m.gitlabErrors, m.verified, m.pruned, m.reports, m.logins, m.pushes, m.mirrorStarts,
		m.mirrorUpdates, m.pushToStart, pending, oldest,
		&serverCollector{servers: servers})
	return m
}

// serverCollector shows each Bitbucket server's gate: posts in flight and
// whether its breaker is open.
type serverCollector struct{ servers *serverGates }

var (
	inFlightDesc = prometheus.NewDesc("bitbucket_relay_server_posts_in_flight", "Posts in flight to each Bitbucket server (this replica).", []string{"server"}, nil)
	breakerDesc  = prometheus.NewDesc("bitbucket_relay_server_breaker_open", "1 while a Bitbucket server's breaker is open: it failed 3 times in a row and its statuses wait (this replica).", []string{"server"}, nil)
)

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) { ch <- inFlightDesc; ch <- breakerDesc }

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.servers.states() {
		open := 0.0
		if s.Open {
			open = 1
		}
		ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(s.InFlight), s.Server)
		ch <- prometheus.MustNewConstMetric(breakerDesc, prometheus.GaugeValue, open, s.Server)
	}
}

// countGitLabError counts a failed GitLab call.
func (r *Relay) countGitLabError(call string, err error) {
	code := "none"
	var ae *gitlab.APIError
	if errors.As(err, &ae) {
		code = strconv.Itoa(ae.StatusCode)
	}
	r.metrics.gitlabErrors.WithLabelValues(call, code).Inc()
}
