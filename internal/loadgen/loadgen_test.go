package loadgen

import (
	"bytes"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunCallsEveryIndexOnceAndSumsBytes(t *testing.T) {
	const n = 1000
	var seen [n]atomic.Int32
	p, err := Run(8, n, func(_, i int) (int64, error) {
		seen[i].Add(1)
		return 3, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range seen {
		if c := seen[i].Load(); c != 1 {
			t.Fatalf("index %d called %d times, want once", i, c)
		}
	}
	if p.Ops != n || p.Bytes != 3*n {
		t.Fatalf("got %d ops and %d bytes, want %d and %d", p.Ops, p.Bytes, n, 3*n)
	}
}

func TestRunStopsAtTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	var calls atomic.Int32
	_, err := Run(4, 1_000_000, func(_, i int) (int64, error) {
		calls.Add(1)
		if i == 10 {
			return 0, boom
		}
		return 0, nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the op's error", err)
	}
	if c := calls.Load(); c > 100_000 {
		t.Fatalf("%d calls after an error at the 11th; the clients should stop", c)
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(101-i)*time.Millisecond)
	}
	p50, p99 := Percentiles(d)
	if p50 != 51*time.Millisecond || p99 != 100*time.Millisecond {
		t.Fatalf("p50 %v p99 %v, want 51ms and 100ms", p50, p99)
	}
	if p50, p99 := Percentiles(nil); p50 != 0 || p99 != 0 {
		t.Fatalf("empty: %v %v", p50, p99)
	}
}

func TestRandomDataIsSizedDistinctAndDeterministic(t *testing.T) {
	a := RandomData(7, 200, 10, 5000)
	if len(a) != 200 {
		t.Fatalf("%d blobs, want 200", len(a))
	}
	seen := map[string]bool{}
	for i, b := range a {
		if len(b) < 10 || len(b) > 5000 {
			t.Fatalf("blob %d has %d bytes, outside [10, 5000]", i, len(b))
		}
		if len(b) >= 16 && seen[string(b)] {
			t.Fatalf("blob %d repeats an earlier one", i)
		}
		seen[string(b)] = true
	}
	again, other := RandomData(7, 200, 10, 5000), RandomData(8, 200, 10, 5000)
	for i := range a {
		if !bytes.Equal(a[i], again[i]) {
			t.Fatalf("blob %d differs between two calls with the same seed", i)
		}
		if len(a[i]) >= 16 && bytes.Equal(a[i], other[i]) {
			t.Fatalf("blob %d is the same for seeds 7 and 8", i)
		}
	}
}
