// Package fakeclock is a clock that tests move by hand instead of sleeping.
// Code under test takes a func() time.Time; tests pass Clock.Now.
package fakeclock

import (
	"sync"
	"time"
)

// Clock stands still until Advance moves it. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock at a fixed time (2026-01-02 03:04:05 UTC), so that
// runs of a test see the same times.
func New() *Clock { return At(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

// At returns a clock at t.
func At(t time.Time) *Clock { return &Clock{now: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
