// Package e2etest runs a real sealcache server and a real Bazel client for
// end-to-end tests.
//
// StartServer builds cmd/sealcache once per test binary, starts it on free
// loopback ports with a fresh data directory and stops it when the test ends.
// NewBazel gives a test its own Bazel output root and runs builds of the
// targets in e2e/testdata/workspace against that server. Both are meant to be
// used from any package's tests, so every helper takes a testing.TB and fails
// or skips the test itself.
package e2etest
