//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package disk

import "errors"

// statDisk cannot read file system figures on this platform; Open then keeps
// the configured budget as it is.
func statDisk(dir string) (diskSpace, error) {
	return diskSpace{}, errors.New("free space is not known on this platform")
}
