package relay

import (
	"log/slog"
	"sort"
	"sync"
	"time"
)

// breakAfter is how many failures in a row (5xx, no answer) open a
// server's breaker.
const breakAfter = 3

// serverGates keeps one Bitbucket server from holding up the others: at
// most limit posts in flight to each server, and a breaker per server that
// opens after breakAfter failures in a row. While it is open, no row of
// that server is claimed; then one post at a time tries it (half open)
// until one succeeds. Each opening lasts twice the one before, from
// BITBUCKET_RELAY_RETRY_BASE up to retryMax.
type serverGates struct {
	mu    sync.Mutex
	limit int
	base  time.Duration
	log   *slog.Logger
	m     map[string]*serverGate
}

type serverGate struct {
	inflight  int
	failures  int
	openUntil time.Time
	backoff   time.Duration
	// Counted for the metrics and the status page.
	posts, failed int64
}

func newServerGates(limit int, base time.Duration, log *slog.Logger) *serverGates {
	return &serverGates{limit: max(limit, 1), base: base, log: log, m: map[string]*serverGate{}}
}

func (g *serverGates) gate(server string) *serverGate {
	s := g.m[server]
	if s == nil {
		s = &serverGate{}
		g.m[server] = s
	}
	return s
}

// allowed is how many posts the server may have in flight now: none while
// its breaker is open, one while it is half open.
func (g *serverGates) allowed(s *serverGate, now time.Time) int {
	switch {
	case s.failures < breakAfter:
		return g.limit
	case now.Before(s.openUntil):
		return 0
	}
	return 1
}

// skip lists the servers that can take no more posts now.
func (g *serverGates) skip() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	var out []string
	for server, s := range g.m {
		if s.inflight >= g.allowed(s, now) {
			out = append(out, server)
		}
	}
	sort.Strings(out)
	return out
}

// take reserves a post to server, if it may have one more in flight.
func (g *serverGates) take(server string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.gate(server)
	if s.inflight >= g.allowed(s, time.Now()) {
		return false
	}
	s.inflight++
	return true
}

// serverResult is what a post said about its server.
type serverResult int

const (
	// serverAnswered: any answer but a 5xx; the server works.
	serverAnswered serverResult = iota
	// serverFailed: a 5xx or no answer.
	serverFailed
	// serverUntried: the reservation was not used.
	serverUntried
)

// done returns a reservation with what the post said.
func (g *serverGates) done(server string, result serverResult) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.gate(server)
	s.inflight--
	switch result {
	case serverAnswered:
		s.posts++
		if s.failures >= breakAfter {
			g.log.Info("Bitbucket server answers again: its breaker is closed", "server", server)
		}
		s.failures, s.backoff, s.openUntil = 0, 0, time.Time{}
	case serverFailed:
		s.posts++
		s.failed++
		s.failures++
		if s.failures >= breakAfter && !time.Now().Before(s.openUntil) {
			s.backoff = min(max(s.backoff*2, g.base), retryMax)
			s.openUntil = time.Now().Add(jitter(s.backoff))
			g.log.Warn("Bitbucket server keeps failing: its breaker is open, its statuses wait", "server", server,
				"failures_in_a_row", s.failures, "until", s.openUntil.Format(time.RFC3339))
		}
	}
}

// serverState is one server's gate as the metrics and status page show it.
type serverState struct {
	Server        string
	InFlight      int
	Open          bool
	OpenUntil     time.Time
	Posts, Failed int64
}

func (g *serverGates) states() []serverState {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	var out []serverState
	for server, s := range g.m {
		out = append(out, serverState{Server: server, InFlight: s.inflight, Open: s.failures >= breakAfter && now.Before(s.openUntil),
			OpenUntil: s.openUntil, Posts: s.posts, Failed: s.failed})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Server < out[j].Server })
	return out
}
