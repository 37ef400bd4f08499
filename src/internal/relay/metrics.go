package relay

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

// metrics are registered once, here. Labels are bounded: no project, commit
// or credential names.
type metrics struct {
	registry *prometheus.Registry
	events   *prometheus.CounterVec
	posts    *prometheus.CounterVec
	latency  prometheus.Histogram
	skipped  *prometheus.CounterVec
	sweeps   *prometheus.CounterVec
}

func newMetrics(st store.Store) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_events_total",
			Help: "Webhook deliveries by event kind (pipeline, other) and outcome (accepted, unchanged, no_route, ignored, unauthorized, bad_request, too_large, store_error)."},
			[]string{"kind", "outcome"}),
		posts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_posts_total",
			Help: "Attempts to post a status, by outcome (posted, retry, refused, paused, dropped) and HTTP code (none without an answer)."},
			[]string{"outcome", "code"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bitbucket_relay_post_duration_seconds",
			Help: "Time to post one status to Bitbucket, GitLab re-read included.", Buckets: prometheus.DefBuckets}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_skipped_total",
			Help: "Pipelines not reported, by reason (subgroup, no_credential, skip_route, no_project_key, mirror_unknown)."}, []string{"reason"}),
		sweeps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitbucket_relay_sweeps_total",
			Help: "Sweeps of recent pipelines, by outcome (ok, error)."}, []string{"outcome"}),
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
	m.registry.MustRegister(m.events, m.posts, m.latency, m.skipped, m.sweeps, pending, oldest)
	return m
}
