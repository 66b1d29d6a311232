// Package e2e holds the end-to-end tests: a real sealcache binary serving a
// real Bazel client that builds the targets in e2e/testdata/workspace.
// The helpers the tests share live in the importable package e2e/e2etest.
package e2e
