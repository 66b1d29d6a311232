package pgindex

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealcache/sealcache/cas"
)

// flushTimeout bounds one write of recorded uses.
const flushTimeout = 30 * time.Second

// toucher collects uses in memory and writes them every FlushInterval with
// one statement. Rows locked by another statement are skipped: whatever
// holds the lock (a write committing, another node's flush, an urgent use,
// the evictor deleting the row) either sets the access time itself or
// removes the row.
type toucher struct {
	ix *Index

	mu      sync.Mutex
	pending map[cas.Key]struct{}

	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}

	dropped atomic.Uint64 // uses not recorded because too many were pending
	written atomic.Uint64 // rows whose access time a flush set
}

func newToucher(ix *Index) *toucher {
	t := &toucher{
		ix:      ix,
		pending: map[cas.Key]struct{}{},
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go t.run()
	return t
}

// add records uses. When half the bound is reached the flush starts early.
func (t *toucher) add(keys ...cas.Key) {
	if len(keys) == 0 {
		return
	}
	max := t.ix.cfg.MaxPendingTouches
	t.mu.Lock()
	for _, k := range keys {
		if len(t.pending) >= max {
			t.dropped.Add(1)
			continue
		}
		t.pending[k] = struct{}{}
	}
	full := len(t.pending) >= max/2
	t.mu.Unlock()
	if full {
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
}

func (t *toucher) run() {
	defer close(t.stopped)
	tick := time.NewTicker(t.ix.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		case <-t.kick:
		}
		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		if err := t.flush(ctx); err != nil {
			t.ix.cfg.Logger.Warn("writing object access times to the index failed; they are kept for the next try", "err", err)
		}
		cancel()
	}
}

// flush writes every pending use. On failure the uses go back to the set.
func (t *toucher) flush(ctx context.Context) error {
	t.mu.Lock()
	batch := t.pending
	t.pending = make(map[cas.Key]struct{}, len(batch))
	t.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	var cols keyCols
	for k := range batch {
		if err := cols.add(k); err != nil {
			continue // keys come from stores that validated them
		}
	}
	args := append(cols.args(), seconds(t.ix.cfg.TouchAfter))
	var written int64
	err := t.ix.pool.QueryRow(ctx, `SELECT sealcache_touch($1, $2, $3, $4, $5, $6, $7)`, args...).Scan(&written)
	if err != nil {
		t.add(slices.Collect(maps.Keys(batch))...)
		return failed("writing access times", err)
	}
	t.written.Add(uint64(written))
	return nil
}

// close stops the loop and writes what is pending.
func (t *toucher) close() {
	close(t.stop)
	<-t.stopped
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if err := t.flush(ctx); err != nil {
		t.ix.cfg.Logger.Warn("writing object access times at close failed", "err", err)
	}
}

// FlushTouches writes the recorded uses now (tests, shutdown).
func (ix *Index) FlushTouches(ctx context.Context) error { return ix.touches.flush(ctx) }

// TouchStats are counters of recorded uses.
type TouchStats struct {
	Written uint64 // rows whose access time was written
	Dropped uint64 // uses not recorded: too many were pending
}

// TouchStats returns the use counters since Open.
func (ix *Index) TouchStats() TouchStats {
	return TouchStats{Written: ix.touches.written.Load(), Dropped: ix.touches.dropped.Load()}
}
