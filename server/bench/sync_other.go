//go:build !unix

package bench

// syncDisks does nothing where sync(2) is not available.
func syncDisks() {}
