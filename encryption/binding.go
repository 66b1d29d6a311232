package encryption

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/sealcache/sealcache/cas"
)

// checkOrgPartition: keys that reach the sealing store name an org's own
// partition, one segment; the store adds the key-id segment.
func checkOrgPartition(p cas.Partition) error {
	if !cas.ValidSegment(string(p)) {
		return fmt.Errorf("%w: %q", ErrBadPartition, p)
	}
	return nil
}

// keySegmentPrefix starts the partition segment that holds a key id.
const keySegmentPrefix = "k"

// SealedPartition is where an org's data sealed under keyID lives:
// "acme" -> "acme/kKEYID". So one DeletePartition of it removes everything
// sealed under that key, and plain data of the org (partition "acme"
// itself) never meets sealed data.
func SealedPartition(orgID, keyID string) cas.Partition {
	return cas.Partition(orgID).Child(keySegmentPrefix + keyID)
}

// keyIDOfPartition returns the key id of a sealed partition, or "" for a
// plain one.
func keyIDOfPartition(p cas.Partition) string {
	segs := p.Segments()
	if len(segs) < 2 {
		return ""
	}
	if id, ok := strings.CutPrefix(segs[1], keySegmentPrefix); ok && isKeyID(id) {
		return id
	}
	return ""
}

func sealedKey(k cas.Key, keyID string) cas.Key {
	k.Partition = SealedPartition(k.Partition.Org(), keyID)
	return k
}

// binding describes the object for the chunks' associated data (the format
// version and key id are added by package stream):
//
//	1 byte   kind (cas.KindCAS or cas.KindAC)
//	4 bytes  length of the org id, then the org id
//	4 bytes  length of the instance name, then the instance name (AC only; empty for CAS)
//	4 bytes  digest function (REAPI enum value)
//	4 bytes  length of the hash, then the lowercase hex hash
//	8 bytes  digest size
//
// All integers big endian. The kind keeps an AC entry from passing as the
// CAS blob with the same digest.
func binding(orgID string, k cas.Key) []byte {
	instance := ""
	if k.Kind == cas.KindAC {
		instance = k.Instance
	}
	b := make([]byte, 0, 25+len(orgID)+len(instance)+len(k.Digest.Hash))
	b = append(b, byte(k.Kind))
	b = appendString(b, orgID)
	b = appendString(b, instance)
	b = binary.BigEndian.AppendUint32(b, uint32(k.Digest.Function))
	b = appendString(b, k.Digest.Hash)
	return binary.BigEndian.AppendUint64(b, uint64(k.Digest.Size))
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
