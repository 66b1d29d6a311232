package disk

import (
	"fmt"
	"testing"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
)

// TestConformance runs the shared backend suite with objects on both sides
// of the inline threshold: with the default one, the suite's sizes around
// 64 KiB cross it; with a 4 KiB one, most objects are files.
func TestConformance(t *testing.T) {
	for _, inline := range []int64{DefaultInlineMaxSize, 4 << 10} {
		t.Run(fmt.Sprintf("inline%dKiB", inline>>10), func(t *testing.T) {
			castest.Run(t, castest.Options{}, func(t *testing.T) cas.Backend {
				return openStore(t, t.TempDir(), Options{MaxSize: 1 << 30, InlineMaxSize: inline})
			})
		})
	}
}
