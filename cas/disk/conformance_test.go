package disk

import (
	"testing"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
)

func TestConformance(t *testing.T) {
	castest.Run(t, castest.Options{}, func(t *testing.T) cas.Backend {
		s, err := Open(t.TempDir(), 1<<30, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
