package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// maxBatch bounds one transaction: large enough to carry a burst in one
// fsync, small enough that the first caller is not kept long.
const maxBatch = 512

// submission is one write waiting for its transaction: an accept, a claim
// or a finish.
type submission struct {
	apply func(context.Context, *sql.Tx) error
	// keys are the statuses the write changes, locked first (see prelock).
	keys []string
	done chan error
}

// batcher is group commit: one goroutine takes every write waiting, applies
// them in one transaction, and answers each. Under load the batches grow by
// themselves, so one fsync serves many webhooks and posts; alone, a write
// waits for its own transaction only.
type batcher struct {
	db *sql.DB
	// prelock, when set, locks every key of a batch, in one order, before
	// any write: two replicas' batches then never deadlock.
	prelock func(context.Context, *sql.Tx, []string) error
	// savepoints isolate each write of a batch, so that one failing fails
	// alone (SQLite, in-process); over a network each costs two round trips,
	// so PostgreSQL fails the batch instead.
	savepoints bool
	queue      chan *submission
	stop       chan struct{}
	wg         sync.WaitGroup
	once       sync.Once
}

var errClosed = errors.New("the store is closed")

// newBatcher starts writers goroutines, each writing one batch at a time:
// one for SQLite, which has one writer anyway; several for PostgreSQL,
// where a batch spends most of its time waiting for round trips.
func newBatcher(db *sql.DB, writers int, savepoints bool, prelock func(context.Context, *sql.Tx, []string) error) *batcher {
	b := &batcher{db: db, prelock: prelock, savepoints: savepoints, queue: make(chan *submission, maxBatch), stop: make(chan struct{})}
	for range writers {
		b.wg.Add(1)
		go b.run()
	}
	return b
}

// submit applies a write durably, in the next transaction.
func (b *batcher) submit(ctx context.Context, keys []string, apply func(context.Context, *sql.Tx) error) error {
	sub := &submission{apply: apply, keys: keys, done: make(chan error, 1)}
	select {
	case b.queue <- sub:
	case <-b.stop:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, the write happens: wait for it even if the caller gives
	// up, so a late answer never hides a stored event.
	return <-sub.done
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
	ctx := context.Background()
	errs := make([]error, len(subs))
	err := func() error {
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
		if b.prelock != nil {
			var keys []string
			for _, sub := range subs {
				keys = append(keys, sub.keys...)
			}
			if err := b.prelock(ctx, tx, keys); err != nil {
				return err
			}
		}
		for i, sub := range subs {
			if !b.savepoints {
				if err := sub.apply(ctx, tx); err != nil {
					return err
				}
				continue
			}
			if _, err := tx.ExecContext(ctx, "SAVEPOINT one"); err != nil {
				return err
			}
			if errs[i] = sub.apply(ctx, tx); errs[i] != nil {
				if _, err := tx.ExecContext(ctx, "ROLLBACK TO one"); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, "RELEASE one"); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	for i, sub := range subs {
		if err != nil {
			errs[i] = err
		}
		sub.done <- errs[i]
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
