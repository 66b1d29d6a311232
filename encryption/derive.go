package encryption

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"golang.org/x/crypto/hkdf"

	"github.com/sealcache/sealcache/encryption/stream"
)

// KeySize is the size of the customer key, the operator key and the derived key.
const KeySize = 32

// DeriveKey computes the org's data key from the two unwrapped halves:
//
//	HKDF-Expand(SHA-256, PRK = customer || operator, info)
//	info = format version (1 byte)
//	       || len(orgID) (2 bytes, big endian) || orgID
//	       || len(keyID) (2 bytes, big endian) || keyID
//
// The length prefixes keep ("ab", "c") and ("a", "bc") apart. HKDF-Extract
// is skipped because the PRK is already 64 uniformly random bytes.
//
// The caller owns (and must zero) the result. The concatenated PRK is zeroed
// here; the HMAC state inside hkdf cannot be reached and is left to the
// garbage collector.
func DeriveKey(customer, operator []byte, orgID, keyID string) ([]byte, error) {
	if len(customer) != KeySize || len(operator) != KeySize {
		return nil, fmt.Errorf("key halves must be %d bytes each, got %d and %d", KeySize, len(customer), len(operator))
	}
	prk := make([]byte, 0, 2*KeySize)
	prk = append(append(prk, customer...), operator...)
	defer clear(prk)

	key := make([]byte, KeySize)
	if _, err := io.ReadFull(hkdf.Expand(sha256.New, prk, deriveInfo(orgID, keyID)), key); err != nil {
		return nil, fmt.Errorf("deriving the data key: %w", err)
	}
	return key, nil
}

func deriveInfo(orgID, keyID string) []byte {
	info := make([]byte, 0, 5+len(orgID)+len(keyID))
	info = append(info, stream.Version)
	info = binary.BigEndian.AppendUint16(info, uint16(len(orgID)))
	info = append(info, orgID...)
	info = binary.BigEndian.AppendUint16(info, uint16(len(keyID)))
	return append(info, keyID...)
}
