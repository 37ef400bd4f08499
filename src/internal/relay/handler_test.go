package relay

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"gitlab.com/bitbucket-status/bitbucket-status/src/internal/store"
)

// pingCounter is a store whose writes for readiness are counted, and
// fail when told to.
type pingCounter struct {
	store.Store
	pings atomic.Int64
	fail  atomic.Bool
}

func (p *pingCounter) Ping(ctx context.Context) error {
	p.pings.Add(1)
	if p.fail.Load() {
		return errors.New("disk full (SQLITE_FULL) in /data/relay.db as user relay")
	}
	return p.Store.Ping(ctx)
}

// TestReadinessWritesNowAndThen: /readyz reads the store on every call and
// commits a write at most every readyWriteEvery, or after one failed; its
// answer never says why (the log does).
func TestReadinessWritesNowAndThen(t *testing.T) {
	t.Parallel()
	st, err := store.OpenSQLite(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	counted := &pingCounter{Store: st}
	tr := startRelay(t, nil, counted, nil)
	tr.ready.Store(true)
	h := tr.Handler()
	probe := func() (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return w.Code, w.Body.String()
	}
	for range 20 {
		if code, _ := probe(); code != 200 {
			t.Fatalf("readyz: %d", code)
		}
	}
	if n := counted.pings.Load(); n != 1 {
		t.Errorf("20 probes wrote %d times, want once", n)
	}
	// A write that fails is tried again at the next probe, until one works.
	tr.readyMu.Lock()
	tr.readyWrote = tr.readyWrote.Add(-readyWriteEvery)
	tr.readyMu.Unlock()
	counted.fail.Store(true)
	for range 3 {
		code, text := probe()
		if code != 503 || text != "not ready: the store is unreachable or cannot write (the relay's log says why)\n" {
			t.Fatalf("readyz with a store that cannot write: %d %q", code, text)
		}
	}
	if !logHas(tr.log, "disk full (SQLITE_FULL)") {
		t.Errorf("the log does not say why:\n%s", tr.log.String())
	}
	counted.fail.Store(false)
	if code, _ := probe(); code != 200 {
		t.Fatalf("readyz once writes work again: %d", code)
	}
	if n := counted.pings.Load(); n != 5 {
		t.Errorf("writes: %d, want 5 (one, three failing, one that worked)", n)
	}
}
