package disk

import (
	"bytes"
	"cmp"
	"context"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sealcache/sealcache/cas"
)

// Eviction is sampled LRU: there is no list of objects in memory. A round
// seeks to a few random positions in the object records (partitions picked
// in proportion to how many objects they hold; inside a partition, records
// are in hash order, which is random), reads a few records at each, and
// evicts the least recently used of that sample. With 32 samples a round,
// what is evicted is almost always among the oldest few percent.
const (
	sampleSeeks    = 4 // random positions per round
	samplesPerSeek = 8 // records read at each position
	evictPerRound  = 4 // oldest of the sample evicted per round, at most
	// fruitlessRounds rounds in a row without an eviction end an eviction:
	// everything sampled was used or replaced since it was sampled.
	fruitlessRounds = 32
	// diskFullSlack is evicted beyond what a write that met a full disk
	// needed, so the next writes do not meet it at once (at most 1/16 of
	// the budget).
	diskFullSlack = 64 << 20
)

// candidate is one sampled object.
type candidate struct {
	partition cas.Partition
	mkey      []byte
	meta      meta
	lastUse   int64 // Unix nanoseconds, including a use noted but not written yet
}

// evictUntil evicts objects, least recently used first, until
// done(freed, pending) holds, nothing is left to evict, or ctx ends. freed
// counts the bytes evicted so far by this call, pending the bytes chosen
// for the batch being built, not yet applied (and so not yet out of the
// usage counters). It returns the bytes freed and whether it stopped for
// want of anything to evict. One eviction runs at a time: Puts that need
// room at once queue here instead of each evicting for itself.
func (s *Store) evictUntil(ctx context.Context, done func(freed, pending int64) bool) (freed int64, exhausted bool) {
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	fruitless := 0
	for !done(freed, 0) && ctx.Err() == nil {
		if fruitless == fruitlessRounds {
			return freed, true
		}
		sample, err := s.sample()
		if err != nil {
			s.log.Warn("disk store: sampling objects to evict failed", "error", err.Error())
			return freed, true
		}
		if len(sample) == 0 {
			return freed, true
		}
		slices.SortFunc(sample, func(a, b candidate) int { return cmp.Compare(a.lastUse, b.lastUse) })
		n := s.evictRound(sample, func(pending int64) bool { return done(freed, pending) })
		if n == 0 {
			fruitless++ // everything chosen was used or replaced since the sample
		} else {
			fruitless = 0
		}
		freed += n
	}
	return freed, false
}

// evictRound evicts the oldest of a sample (sorted oldest first), up to
// evictPerRound and no more than enough(pending) asks for, in one batch.
// It holds the chosen objects' locks, taken in stripe order, until the
// batch is applied, and skips an object used or replaced since it was
// sampled. It returns the bytes freed.
func (s *Store) evictRound(sample []candidate, enough func(pending int64) bool) int64 {
	var chosen []candidate
	var pending int64
	for _, c := range sample {
		if len(chosen) == evictPerRound || (len(chosen) > 0 && enough(pending)) {
			break
		}
		chosen = append(chosen, c)
		pending += c.meta.size
	}
	stripes := make([]int, 0, len(chosen))
	for _, c := range chosen {
		stripes = append(stripes, stripeOf(c.mkey))
	}
	slices.Sort(stripes)
	stripes = slices.Compact(stripes)
	s.partitionMu.RLock()
	defer s.partitionMu.RUnlock()
	for _, i := range stripes {
		s.stripes[i].Lock()
		defer s.stripes[i].Unlock()
	}

	b := s.db.NewBatch()
	defer b.Close()
	type change struct {
		p cas.Partition
		d counts
	}
	var changes []change
	var freed int64
	for _, c := range chosen {
		cur, found, err := s.readMeta(c.mkey)
		if err != nil || !found || cur != c.meta || s.touches.lastUse(c.mkey) > c.lastUse {
			continue
		}
		d, err := s.addDelete(b, c.partition, c.mkey, cur)
		if err != nil {
			s.log.Warn("disk store: evicting an object failed", "partition", string(c.partition), "error", err.Error())
			continue
		}
		changes = append(changes, change{c.partition, d})
		freed += cur.size
	}
	if len(changes) == 0 {
		return 0
	}
	if err := s.db.Apply(b, writeOpts); err != nil {
		// The files are gone; their records now read as misses.
		s.log.Warn("disk store: evicting objects failed", "error", err.Error())
		return 0
	}
	for _, ch := range changes {
		s.applyUsage(ch.p, ch.d)
	}
	s.evictions.Add(uint64(len(changes)))
	if s.onEvict != nil {
		s.onEvict(len(changes), freed)
	}
	return freed
}

// sample reads up to sampleSeeks*samplesPerSeek object records from random
// positions. Call with evictMu held (it owns rng).
func (s *Store) sample() ([]candidate, error) {
	type weight struct {
		partition cas.Partition
		upTo      int64 // objects in this and the partitions before it
	}
	s.usageMu.Lock()
	weights := make([]weight, 0, len(s.usage.byPartition))
	var total int64
	for p, c := range s.usage.byPartition {
		if c.objects > 0 {
			total += c.objects
			weights = append(weights, weight{p, total})
		}
	}
	s.usageMu.Unlock()
	if total == 0 {
		return nil, nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []candidate
	seen := map[string]bool{}
	for range sampleSeeks {
		pick := s.rng.Int64N(total)
		i, _ := slices.BinarySearchFunc(weights, pick, func(w weight, v int64) int {
			if w.upTo <= v {
				return -1
			}
			return 1
		})
		p := weights[i].partition
		lower, upper := exactPartitionRange(recordMeta, p)
		it.SetBounds(lower, upper)
		start := append(bytes.Clone(lower), byte(s.rng.Uint32()), byte(s.rng.Uint32()), byte(s.rng.Uint32()))
		valid := it.SeekGE(start)
		for range samplesPerSeek {
			if !valid {
				if valid = it.First(); !valid {
					break // the partition emptied since the weights were taken
				}
			}
			if seen[string(it.Key())] {
				break // wrapped around a small partition
			}
			mkey := bytes.Clone(it.Key())
			seen[string(mkey)] = true
			v, err := it.ValueAndErr()
			if err != nil {
				return nil, err
			}
			m, err := decodeMeta(v)
			if err != nil {
				return nil, err
			}
			out = append(out, candidate{partition: p, mkey: mkey, meta: m, lastUse: max(m.accessed, s.touches.lastUse(mkey))})
			valid = it.Next()
		}
	}
	return out, it.Error()
}

// overBudget reports whether stored and reserved bytes, less pending bytes
// about to be evicted, exceed the budget.
func (s *Store) overBudget(pending int64) bool {
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	return s.overBudgetLocked(-pending)
}

// overBudgetLocked reports whether stored and reserved bytes plus extra
// exceed the budget. The caller holds usageMu.
func (s *Store) overBudgetLocked(extra int64) bool {
	return s.usage.total.bytes+s.usage.reserved+extra > s.maxSize
}

// evictToBudget evicts until the store fits its budget again: after Open
// with a smaller budget than the store holds (configured lower, or clamped
// on a fuller disk).
func (s *Store) evictToBudget() {
	if !s.overBudget(0) {
		return
	}
	freed, _ := s.evictUntil(context.Background(), func(_, pending int64) bool { return !s.overBudget(pending) })
	s.log.Info("disk store: evicted down to the budget", "freed_bytes", freed, "max_bytes", s.Stats().MaxBytes)
}

// makeDiskRoom evicts at least need bytes (and some slack) after a write met
// a full disk. Large objects' files free their space at once; inline bytes
// are freed when Pebble compacts, which this starts if files were not
// enough.
func (s *Store) makeDiskRoom(ctx context.Context, need int64) int64 {
	target := need + min(diskFullSlack, s.maxSize/16)
	freed, _ := s.evictUntil(ctx, func(freed, pending int64) bool { return freed+pending >= target })
	s.log.Warn("disk store: the disk is full; evicted objects to make room", "needed_bytes", need, "freed_bytes", freed)
	if space, err := s.opts.diskUse(s.dir); err == nil && space.available < need {
		lower, upper := []byte{recordValue}, []byte{recordValue + 1}
		if err := s.db.Compact(ctx, lower, upper, false); err != nil {
			s.log.Warn("disk store: compacting to free disk space failed", "error", err.Error())
		}
	}
	return freed
}

// relieveFullDisk runs in the maintenance loop: after a full disk made the
// ballast go, evict until there is room to make it again.
func (s *Store) relieveFullDisk() {
	if !s.ballast.wasReleased() {
		return
	}
	space, err := s.opts.diskUse(s.dir)
	if err != nil {
		return
	}
	want := s.ballast.size + memTablesInMargin*s.opts.MemTableSize
	if space.available >= want {
		return
	}
	s.makeDiskRoom(context.Background(), want-space.available)
}

// restoreBallast makes the ballast again once there is room for it.
func (s *Store) restoreBallast() {
	space, err := s.opts.diskUse(s.dir)
	if err != nil {
		return
	}
	made, err := s.ballast.restore(space.available, memTablesInMargin*s.opts.MemTableSize)
	if err != nil {
		s.log.Warn("disk store: making the ballast file failed; a full disk may stop the store", "error", err.Error())
	}
	if made && s.ballast.size > 0 {
		s.log.Info("disk store: ballast in place", "bytes", s.ballast.size)
	}
}

// removeOrphanFiles runs after an unclean shutdown. A crash between
// deleting an object's record and removing its file leaves the file; its
// 'f' record tells where, so no directory is walked. (Files of uploads that
// never committed are removed at Open: see fileids.go.)
func (s *Store) removeOrphanFiles() {
	if err := s.enter(); err != nil {
		return
	}
	defer s.lifeMu.RUnlock()
	removed, err := s.removeUnreferencedFiles([]byte{recordFile}, []byte{recordFile + 1})
	if err != nil {
		s.log.Warn("disk store: looking for files left by an unclean shutdown failed", "error", err.Error())
	}
	if removed > 0 {
		s.log.Info("disk store: removed files left by an unclean shutdown", "files", removed)
	}
}
