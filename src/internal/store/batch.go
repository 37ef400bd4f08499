package store

import (
	"context"
	"errors"
	"sync"
)

// maxBatch bounds one transaction: large enough to carry a burst in one
// fsync, small enough that the first caller is not kept long.
const maxBatch = 512

// submission is one Accept call waiting for its transaction.
type submission struct {
	reports []Report
	keep    Keep
	changed []bool
	done    chan error
}

// batcher is group commit: one goroutine takes every submission waiting,
// writes them in one transaction, and answers each. Under load the batches
// grow by themselves, so a single fsync serves many webhooks; alone, a
// webhook waits for its own transaction only.
type batcher struct {
	write func(context.Context, []*submission) error
	queue chan *submission
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

var errClosed = errors.New("the store is closed")

func newBatcher(write func(context.Context, []*submission) error) *batcher {
	b := &batcher{write: write, queue: make(chan *submission, maxBatch), stop: make(chan struct{})}
	b.wg.Add(1)
	go b.run()
	return b
}

func (b *batcher) submit(ctx context.Context, reports []Report, keep Keep) ([]bool, error) {
	sub := &submission{reports: reports, keep: keep, done: make(chan error, 1)}
	select {
	case b.queue <- sub:
	case <-b.stop:
		return nil, errClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Once queued, the write happens: wait for it even if the caller gives
	// up, so a late answer never hides a stored event.
	if err := <-sub.done; err != nil {
		return nil, err
	}
	return sub.changed, nil
}

func (b *batcher) run() {
	defer b.wg.Done()
	for {
		var subs []*submission
		select {
		case sub := <-b.queue:
			subs = append(subs, sub)
		case <-b.stop:
			b.drain()
			return
		}
	fill:
		for len(subs) < maxBatch {
			select {
			case sub := <-b.queue:
				subs = append(subs, sub)
			default:
				break fill
			}
		}
		b.flush(subs)
	}
}

func (b *batcher) flush(subs []*submission) {
	err := b.write(context.Background(), subs)
	for _, sub := range subs {
		sub.done <- err
	}
}

// drain writes what was queued before close.
func (b *batcher) drain() {
	for {
		select {
		case sub := <-b.queue:
			b.flush([]*submission{sub})
		default:
			return
		}
	}
}

func (b *batcher) close() {
	b.once.Do(func() { close(b.stop) })
	b.wg.Wait()
}
