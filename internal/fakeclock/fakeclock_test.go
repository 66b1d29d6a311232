package fakeclock

import (
	"testing"
	"time"
)

func TestTheClockMovesOnlyWhenAdvanced(t *testing.T) {
	c := New()
	start := c.Now()
	if !c.Now().Equal(start) {
		t.Fatal("the clock moved by itself")
	}
	c.Advance(90 * time.Second)
	if got := c.Now().Sub(start); got != 90*time.Second {
		t.Fatalf("advanced by %v, want 90s", got)
	}
	if at := At(time.Unix(5, 0)); !at.Now().Equal(time.Unix(5, 0)) {
		t.Fatalf("At(5s) reads %v", at.Now())
	}
}
