package encryption

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/sealcache/sealcache/cas"
)

// orgOf returns the org id: the first segment of the partition.
func orgOf(partition string) (string, error) {
	org, _, _ := strings.Cut(partition, "/")
	if org == "" {
		return "", fmt.Errorf("%w: %q", ErrBadPartition, partition)
	}
	return org, nil
}

// keySegmentPrefix starts the partition segment that holds a key id.
const keySegmentPrefix = "k"

// sealedPartition puts the key-id segment right after the org id:
// "acme" -> "acme/kKEYID", "acme/x" -> "acme/kKEYID/x". So one
// DeletePartition("acme/kKEYID") removes everything sealed under that key,
// and plain data of the org ("acme/...") never meets sealed data.
func sealedPartition(partition, keyID string) string {
	org, rest, found := strings.Cut(partition, "/")
	p := org + "/" + keySegmentPrefix + keyID
	if found {
		p += "/" + rest
	}
	return p
}

// keyIDOfPartition returns the key id of a sealed partition, or "" for a
// plain one.
func keyIDOfPartition(partition string) string {
	_, rest, _ := strings.Cut(partition, "/")
	seg, _, _ := strings.Cut(rest, "/")
	if id, ok := strings.CutPrefix(seg, keySegmentPrefix); ok && isKeyID(id) {
		return id
	}
	return ""
}

func sealedKey(k cas.Key, keyID string) cas.Key {
	k.Partition = sealedPartition(k.Partition, keyID)
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
