package relay

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// smallBody is the size up to which a body draws on the budget kept for
// small bodies: a pipeline webhook is a few kilobytes, so floods of large
// bodies never crowd out the real ones.
const (
	smallBody       = 256 << 10
	smallBodyBudget = 8 << 20
)

// bodyDeadline bounds reading one body: GitLab gives up on a webhook after
// 10 s, so a sender slower than that is not GitLab.
const bodyDeadline = 10 * time.Second

// readChunk is how much of a body is reserved and read at a time when its
// length is not announced.
const readChunk = 64 << 10

// budget is a number of bytes, taken without waiting.
type budget struct {
	limit int64
	used  atomic.Int64
}

func (b *budget) take(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

func (b *budget) give(n int64) { b.used.Add(-n) }

// readBudget bounds the webhook bodies held in memory at once, over all
// requests: a body must be read whole to check a signature, and 25 MB
// bodies from strangers must not take the pod's memory. Past the first
// smallBody bytes, bodies are also read at most at the large budget's size
// per second: reading and hashing forged megabytes as fast as strangers
// send them would take the CPU the genuine webhooks need.
type readBudget struct {
	small, large budget
	largeRate    rate
}

func newReadBudget(small, large int64) *readBudget {
	return &readBudget{small: budget{limit: small}, large: budget{limit: large}, largeRate: rate{perSecond: float64(large), level: float64(large)}}
}

// rate is a token bucket of bytes, refilled at perSecond up to perSecond.
type rate struct {
	mu        sync.Mutex
	perSecond float64
	level     float64
	at        time.Time
}

func (r *rate) take(n int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if !r.at.IsZero() {
		r.level = min(r.perSecond, r.level+now.Sub(r.at).Seconds()*r.perSecond)
	}
	r.at = now
	if r.level < float64(n) {
		return false
	}
	r.level -= float64(n)
	return true
}

// errBusy: the budget is spent; the sender should try again later.
var errBusy = errors.New("the relay is reading as many webhook bodies as it may at once")

// read reads req's body, at most max bytes, holding its size against the
// budget until release is called. *http.MaxBytesError: over max; errBusy:
// no budget left now.
func (rb *readBudget) read(w http.ResponseWriter, req *http.Request, max int64) (body []byte, release func(), err error) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyDeadline))
	if req.ContentLength > max {
		return nil, func() {}, &http.MaxBytesError{Limit: max}
	}
	var held, fromSmall, fromLarge int64
	release = func() {
		rb.small.give(fromSmall)
		rb.large.give(fromLarge)
	}
	reserve := func(n int64) bool {
		// Within the first smallBody bytes, the small bodies' budget; past
		// them, the large one.
		switch {
		case held+n <= smallBody && rb.small.take(n):
			fromSmall += n
		case !rb.largeRate.take(n):
			return false
		case rb.large.take(n):
			fromLarge += n
		default:
			return false
		}
		held += n
		return true
	}
	src := http.MaxBytesReader(w, req.Body, max)
	if req.ContentLength >= 0 {
		// Announced: reserved at once, read into a buffer of that size.
		if !reserve(req.ContentLength) {
			return nil, release, errBusy
		}
		body = make([]byte, req.ContentLength)
		if _, err := io.ReadFull(src, body); err != nil {
			return nil, release, err
		}
		return body, release, nil
	}
	for {
		if !reserve(readChunk) {
			return nil, release, errBusy
		}
		n := len(body)
		body = append(body, make([]byte, readChunk)...)
		got, err := io.ReadFull(src, body[n:])
		body = body[:n+got]
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
			return body, release, nil
		case err != nil:
			return nil, release, err
		}
	}
}

// readBody reads a request's body within max and the read budget, or
// answers for it: 413 (tooLarge says why) over max, 503 with Retry-After
// when the budget is spent (busyHint names the setting), 400 when it
// cannot be read; count hears which. The caller defers release.
func (r *Relay) readBody(w http.ResponseWriter, req *http.Request, max int64, tooLarge, busyHint string, count func(string)) (body []byte, release func(), ok bool) {
	body, release, err := r.bodies.read(w, req, max)
	var over *http.MaxBytesError
	switch {
	case errors.As(err, &over):
		count("too_large")
		w.Header().Set("Connection", "close")
		answer(w, http.StatusRequestEntityTooLarge, tooLarge)
	case errors.Is(err, errBusy):
		count("busy")
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "5")
		answer(w, http.StatusServiceUnavailable, "busy: "+errBusy.Error()+busyHint+"; send it again in a few seconds")
	case err != nil:
		count("bad_request")
		answer(w, http.StatusBadRequest, "could not read the body")
	default:
		return body, release, true
	}
	return nil, release, false
}
