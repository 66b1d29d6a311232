package encryption

import (
	"crypto/rand"
	"encoding/hex"
)

// newKeyID returns 16 random bytes in lowercase hex: unguessable, and valid
// in a partition segment.
func newKeyID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func isKeyID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// newKeyHalf returns KeySize random bytes; the caller zeroes them.
func newKeyHalf() []byte {
	b := make([]byte, KeySize)
	rand.Read(b)
	return b
}
