package disk

import (
	"fmt"
	"testing"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
)

// TestConformance runs the shared backend suite with objects on both sides
// of the inline threshold: LargeSize is well past it, and the suite's sizes
// around 64 KiB and 1 MiB cross the small threshold used here.
func TestConformance(t *testing.T) {
	for _, inline := range []int64{DefaultInlineMaxSize, 64 << 10} {
		t.Run(fmt.Sprintf("inline%dKiB", inline>>10), func(t *testing.T) {
			castest.Run(t, castest.Options{}, func(t *testing.T) cas.Backend {
				return openStore(t, t.TempDir(), Options{MaxSize: 1 << 30, InlineMaxSize: inline})
			})
		})
	}
}
