package memory

import (
	"testing"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
)

// The fake keeps the same promises as the real backends, so tests of the
// wrappers above it mean something.
func TestConformance(t *testing.T) {
	castest.Run(t, castest.Options{}, func(t *testing.T) cas.Backend { return New() })
}
