package e2e_test

import (
	"testing"

	"github.com/sealcache/sealcache/e2e/e2etest"
)

func TestMain(m *testing.M) { e2etest.Main(m) }
