package disk

import (
	"sync"
	"sync/atomic"
	"time"
)

// Access times order eviction. A hit does not write anything: it notes the
// time in memory (touchLog), and the maintenance loop writes the noted times
// into the objects' small records in one batch per lock stripe. A record is
// only rewritten when its time is older than touchResolution, so a hot
// object costs one small write per resolution period at most, and an
// object's bytes are never rewritten for a hit.
const (
	// touchResolution is how stale a recorded access time may be before a
	// hit updates it. It is the precision of the LRU order.
	touchResolution = time.Minute
	// maxPendingTouches bounds the noted times kept in memory. Reaching it
	// asks for an early write; past twice as many, hits are not noted
	// until the write is done (those objects only look older than they
	// are).
	maxPendingTouches = 1 << 20
)

// touchLog holds access times not written yet, in shards that match the
// lock stripes: the writer of shard i holds stripe i.
type touchLog struct {
	shards  [lockStripes]touchShard
	pending atomic.Int64
	full    func() // called when maxPendingTouches is reached
}

type touchShard struct {
	mu sync.Mutex
	at map[string]int64 // meta key -> Unix nanoseconds
}

func (t *touchLog) init() {
	for i := range t.shards {
		t.shards[i].at = map[string]int64{}
	}
}

// note records that the object with meta key mkey was used at.
func (t *touchLog) note(mkey []byte, at int64) {
	n := t.pending.Load()
	if n >= 2*maxPendingTouches {
		return
	}
	sh := &t.shards[stripeOf(mkey)]
	sh.mu.Lock()
	noted, ok := sh.at[string(mkey)] // a lookup with string(mkey) does not allocate
	switch {
	case !ok:
		n = t.pending.Add(1)
		sh.at[string(mkey)] = at
	case at-noted >= int64(touchResolution):
		sh.at[string(mkey)] = at
	}
	sh.mu.Unlock()
	if n == maxPendingTouches && t.full != nil {
		t.full()
	}
}

// lastUse returns the noted access time of mkey (Unix nanoseconds), or 0.
func (t *touchLog) lastUse(mkey []byte) int64 {
	sh := &t.shards[stripeOf(mkey)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.at[string(mkey)]
}

// take removes and returns the noted times of one shard.
func (t *touchLog) take(i int) map[string]int64 {
	sh := &t.shards[i]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.at) == 0 {
		return nil
	}
	taken := sh.at
	sh.at = map[string]int64{}
	t.pending.Add(-int64(len(taken)))
	return taken
}

// noteUse counts a hit on the object with record m as a use.
func (s *Store) noteUse(mkey []byte, m meta) {
	now := s.opts.now().UnixNano()
	if now-m.accessed >= int64(touchResolution) {
		s.touches.note(mkey, now)
	}
}

// flushTouches writes the noted access times into the objects' records.
// Each shard is written under its stripe lock, so no Put or delete of those
// objects can interleave: a record that was deleted or replaced meanwhile is
// seen as such and left alone.
func (s *Store) flushTouches() {
	for i := range lockStripes {
		s.partitionMu.RLock()
		s.stripes[i].Lock()
		if err := s.flushTouchShard(i); err != nil {
			s.log.Warn("disk store: writing access times failed; eviction order may be less precise", "error", err.Error())
		}
		s.stripes[i].Unlock()
		s.partitionMu.RUnlock()
	}
}

func (s *Store) flushTouchShard(i int) error {
	taken := s.touches.take(i)
	if len(taken) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for k, ns := range taken {
		mkey := []byte(k)
		m, found, err := s.readMeta(mkey)
		if err != nil {
			return err
		}
		if !found || ns-m.accessed < int64(touchResolution) {
			continue
		}
		m.accessed = ns
		b.Set(mkey, m.encode(), nil)
	}
	if b.Empty() {
		return nil
	}
	return s.db.Apply(b, writeOpts)
}
