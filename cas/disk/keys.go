package disk

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/sealcache/sealcache/cas"
)

// Pebble key layout. Every key starts with one byte naming its record type,
// then the partition, then what identifies the record inside it:
//
//	'm' PART 0x00 OBJ      meta: size, where the bytes are, last access
//	'v' PART 0x00 OBJ      the bytes of an object stored inline
//	'f' PART 0x00 FILEID   a large object's file (reverse index, for cleanup)
//	'u' PART 0x00          usage counters of exactly this partition
//	'r' FILEID             a file id reserved for an upload (fileids.go)
//
// PART is the partition's segments joined by 0x01 instead of "/". Segments
// only hold [A-Za-z0-9_-], so 0x00 and 0x01 never occur inside one, and the
// keys of a partition and of every partition below it form one contiguous
// range, [T PART 0x00, T PART 0x02): "org1" 0x00 (its own objects) and
// "org1" 0x01 "kX" ... (its sub-partitions) are in it, "org10" is not.
// Deleting a partition is a range delete per record type.
const (
	recordMeta  byte = 'm'
	recordValue byte = 'v'
	recordFile  byte = 'f'
	recordUsage byte = 'u'
)

// Bytes that structure the partition part of a key.
const (
	partitionEnd     byte = 0x00 // ends the partition
	segmentSeparator byte = 0x01 // stands for "/" between segments
	partitionLimit   byte = 0x02 // upper bound of a partition's range
)

// OBJ, the object part of a key, is laid out so that its first bytes are the
// digest's hash, which is uniformly distributed: seeking to a random position
// inside a partition then lands on a random object, which is how eviction
// samples. Everything of variable length is followed by its length, so the
// layout reads back from the end:
//
//	HASH (raw bytes) | INSTANCE | len(INSTANCE) uint16 | SIZE int64 | KIND | FUNCTION
//
// INSTANCE is only kept for AC keys: CAS content is the same whatever the
// instance, so every instance of a partition shares it.
const objectTrailerLen = 2 + 8 + 1 + 1

// maxInstanceLen bounds AC instance names. REAPI instance names are short
// paths; the bound keeps keys small and a hostile name from bloating them.
const maxInstanceLen = 1024

// hashLengths holds the raw hash length of every supported digest function.
var hashLengths = func() map[cas.DigestFunction]int {
	m := map[cas.DigestFunction]int{}
	for _, fn := range cas.SupportedDigestFunctions {
		m[fn] = len(cas.EmptyDigest(fn).Hash) / 2
	}
	return m
}()

// appendPartition appends PART 0x00 for a partition that has been validated.
func appendPartition(b []byte, p cas.Partition) []byte {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '/' {
			c = segmentSeparator
		}
		b = append(b, c)
	}
	return append(b, partitionEnd)
}

// validatePartition is cas.Partition.Validate without its allocations on
// the common path: Get and FindMissing check every key they are given.
// Only an invalid partition goes to Validate, for its error.
func validatePartition(p cas.Partition) error {
	rest := string(p)
	for {
		seg, after, more := strings.Cut(rest, "/")
		if !cas.ValidSegment(seg) {
			return p.Validate()
		}
		if !more {
			return nil
		}
		rest = after
	}
}

// partitionRange is the key range of record type t holding partition p and
// every partition below it.
func partitionRange(t byte, p cas.Partition) (lower, upper []byte) {
	lower = appendPartition([]byte{t}, p)
	upper = append(lower[:len(lower)-1:len(lower)-1], partitionLimit)
	return lower, upper
}

// exactPartitionRange is the key range of record type t holding partition p
// alone, without the partitions below it.
func exactPartitionRange(t byte, p cas.Partition) (lower, upper []byte) {
	lower = appendPartition([]byte{t}, p)
	upper = append(lower[:len(lower)-1:len(lower)-1], segmentSeparator)
	return lower, upper
}

// appendObjectKey appends the full key of record type t for k, validating
// every part of k first.
func appendObjectKey(b []byte, t byte, k cas.Key) ([]byte, error) {
	if err := validatePartition(k.Partition); err != nil {
		return b, err
	}
	start := len(b)
	return appendObjectPart(appendPartition(append(b, t), k.Partition), start, k)
}

// appendObjectPart appends OBJ, the part of k's key after its record type
// and partition, to b, which holds those from start on. It validates k's
// digest and kind; on an error it returns b[:start]. FindMissing uses it to
// encode the partition once for a list of keys of one partition.
func appendObjectPart(b []byte, start int, k cas.Key) ([]byte, error) {
	hashLen, ok := hashLengths[k.Digest.Function]
	if !ok || len(k.Digest.Hash) != 2*hashLen || k.Digest.Size < cas.SizeUnknown {
		if _, err := cas.NewDigest(k.Digest.Function, k.Digest.Hash, max(k.Digest.Size, 0)); err != nil {
			return b[:start], fmt.Errorf("key %s: %w", k, err)
		}
		return b[:start], fmt.Errorf("key %s: size %d is neither a size nor unknown (-1)", k, k.Digest.Size)
	}
	instance := ""
	switch k.Kind {
	case cas.KindCAS:
	case cas.KindAC:
		if len(k.Instance) > maxInstanceLen {
			return b[:start], fmt.Errorf("instance name of %d bytes is too long for the disk store; use at most %d bytes", len(k.Instance), maxInstanceLen)
		}
		instance = k.Instance
	default:
		return b[:start], fmt.Errorf("key %s has unknown kind %d; want cas or ac", k, k.Kind)
	}
	var ok2 bool
	if b, ok2 = appendLowerHex(b, k.Digest.Hash); !ok2 {
		return b[:start], fmt.Errorf("key %s: hash is not lowercase hex", k)
	}
	b = append(b, instance...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(instance)))
	b = binary.BigEndian.AppendUint64(b, uint64(k.Digest.Size))
	b = append(b, byte(k.Kind), byte(k.Digest.Function))
	return b, nil
}

// hexValues maps a lowercase hex digit to its value and every other byte
// to invalidHex.
var hexValues = func() (t [256]byte) {
	for i := range t {
		t[i] = invalidHex
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()

const invalidHex = 0xff

// appendLowerHex appends the bytes that the lowercase hex string h spells,
// in one pass (FindMissing encodes thousands of keys per call). It reports
// false for anything but lowercase hex of even length.
func appendLowerHex(b []byte, h string) ([]byte, bool) {
	if len(h)%2 != 0 {
		return b, false
	}
	for i := 0; i < len(h); i += 2 {
		hi, lo := hexValues[h[i]], hexValues[h[i+1]]
		if hi == invalidHex || lo == invalidHex {
			return b, false
		}
		b = append(b, hi<<4|lo)
	}
	return b, true
}

// objectKey returns the key of record type t for k.
func objectKey(t byte, k cas.Key) ([]byte, error) {
	return appendObjectKey(make([]byte, 0, 1+len(k.Partition)+1+len(k.Digest.Hash)/2+len(k.Instance)+objectTrailerLen), t, k)
}

// withRecordType returns a copy of an object key with another record type
// ('m' key to 'v' key and back).
func withRecordType(key []byte, t byte) []byte {
	out := make([]byte, len(key))
	copy(out, key)
	out[0] = t
	return out
}

// splitKey splits any record key into its partition and the part after it.
func splitKey(key []byte) (cas.Partition, []byte, error) {
	if len(key) < 2 {
		return "", nil, fmt.Errorf("record key of %d bytes is too short", len(key))
	}
	for i := 1; i < len(key); i++ {
		if key[i] == partitionEnd {
			p := strings.ReplaceAll(string(key[1:i]), string(segmentSeparator), "/")
			return cas.Partition(p), key[i+1:], nil
		}
	}
	return "", nil, fmt.Errorf("record key has no partition end")
}

// decodeObjectKey reads a cas.Key back from an 'm' or 'v' record key.
func decodeObjectKey(key []byte) (cas.Key, error) {
	p, obj, err := splitKey(key)
	if err != nil {
		return cas.Key{}, err
	}
	if err := validatePartition(p); err != nil {
		return cas.Key{}, err
	}
	if len(obj) < objectTrailerLen {
		return cas.Key{}, fmt.Errorf("object key of %d bytes is too short", len(obj))
	}
	n := len(obj)
	fn := cas.DigestFunction(obj[n-1])
	kind := cas.Kind(obj[n-2])
	size := int64(binary.BigEndian.Uint64(obj[n-10 : n-2]))
	instLen := int(binary.BigEndian.Uint16(obj[n-12 : n-10]))
	hashLen, ok := hashLengths[fn]
	if !ok || n != hashLen+instLen+objectTrailerLen || (kind != cas.KindCAS && kind != cas.KindAC) || size < cas.SizeUnknown {
		return cas.Key{}, fmt.Errorf("object key does not follow the layout")
	}
	return cas.Key{
		Partition: p,
		Kind:      kind,
		Instance:  string(obj[hashLen : hashLen+instLen]),
		Digest:    cas.Digest{Function: fn, Hash: hex.EncodeToString(obj[:hashLen]), Size: size},
	}, nil
}

// stripeOf picks the lock stripe of an object key from its hash bytes, which
// are uniformly distributed. It runs for every hit and every write, so it
// finds the partition's end without decoding the partition (splitKey
// allocates).
func stripeOf(key []byte) int {
	if len(key) < 2 {
		return 0
	}
	end := bytes.IndexByte(key[1:], partitionEnd)
	if end < 0 || len(key[1+end+1:]) < 2 {
		return 0
	}
	return int(binary.BigEndian.Uint16(key[1+end+1:])) % lockStripes
}

// fileKey is the reverse-index key of a large object's file.
func fileKey(p cas.Partition, id fileID) []byte {
	b := appendPartition([]byte{recordFile}, p)
	return append(b, id[:]...)
}

// usageKey is the key of a partition's usage counters.
func usageKey(p cas.Partition) []byte {
	return appendPartition([]byte{recordUsage}, p)
}
