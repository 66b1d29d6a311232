package disk

import (
	"context"
	"fmt"

	"github.com/sealcache/sealcache/cas"
)

// unknownSizeReserveStep is how much of the budget an upload of unknown size
// reserves at a time as its bytes arrive.
const unknownSizeReserveStep = 1 << 20

// reservation is the part of the budget one Put holds while it receives its
// bytes: used + reserved never exceeds the budget, so uploads in flight
// cannot together overfill the disk.
type reservation struct {
	bytes int64
}

// reserve takes n bytes of the budget for a Put that is starting, evicting
// to make room. When the room is held by other uploads in flight rather than
// by stored objects, it waits for them to finish (or for ctx to end).
func (s *Store) reserve(ctx context.Context, r *reservation, n int64) error {
	return s.growReservation(ctx, r, n, true)
}

// growReservation adds n bytes to r. An upload of unknown size grows its
// reservation without waiting: two such uploads waiting for each other
// would never finish, so it fails with ErrFull instead.
func (s *Store) growReservation(ctx context.Context, r *reservation, n int64, mayWait bool) error {
	for {
		s.usageMu.Lock()
		u := s.usage
		if !s.overBudgetLocked(n) {
			u.reserved += n
			r.bytes += n
			u.notePeak()
			s.usageMu.Unlock()
			return nil
		}
		stored, othersInFlight, limit := u.total.bytes, u.reserved-r.bytes, s.maxSize
		roomFreed := s.roomFreed
		s.usageMu.Unlock()

		if stored > 0 {
			fits := func(_, pending int64) bool { return !s.overBudget(pending - n) }
			// Another Put may take the room just made before this one
			// looks again: only running out of objects to evict is final.
			if _, exhausted := s.evictUntil(ctx, fits); !exhausted && ctx.Err() == nil {
				continue
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("making room in the disk store: %w", err)
		}
		if !mayWait || othersInFlight == 0 {
			return fmt.Errorf("%w: the disk store's budget of %d bytes is taken by %d bytes of uploads in flight and %d stored bytes that cannot be evicted; retry later or raise the size limit",
				cas.ErrFull, limit, othersInFlight, stored)
		}
		select {
		case <-roomFreed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for room in the disk store: %w", ctx.Err())
		case <-s.closing:
			return errClosed
		}
	}
}

// release gives back what r still holds.
func (s *Store) release(r *reservation) {
	if r.bytes == 0 {
		return
	}
	s.usageMu.Lock()
	s.usage.reserved -= r.bytes
	r.bytes = 0
	s.signalRoomLocked()
	s.usageMu.Unlock()
}

// commitUsage records a committed object in memory and turns the Put's
// reservation into used bytes in one step, so used + reserved never
// overshoots in between.
func (s *Store) commitUsage(p cas.Partition, d counts, r *reservation) {
	s.usageMu.Lock()
	s.usage.reserved -= r.bytes
	r.bytes = 0
	s.usage.apply(p, d)
	s.signalRoomLocked()
	s.usageMu.Unlock()
}

// signalRoomLocked wakes the Puts waiting for room. Caller holds usageMu.
func (s *Store) signalRoomLocked() {
	close(s.roomFreed)
	s.roomFreed = make(chan struct{})
}
