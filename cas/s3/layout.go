package s3

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/sealcache/sealcache/cas"
)

// Object names. A key maps to exactly one name and every name this store
// writes maps back to its key, so the mapping can be used without a store
// (by an index that answers FindMissing, by tools that inspect a bucket):
//
//	[PREFIX/]PARTITION/@cas/FN/HH/HASH-SIZE
//	[PREFIX/]PARTITION/@ac/iINSTANCE/FN/HH/HASH-SIZE
//
// This is the disk store's layout under a bucket prefix. PARTITION is one or
// more segments of [A-Za-z0-9_-]+; "@cas" and "@ac" hold a character no
// segment may hold, so a name always parses back and the objects of a
// partition are exactly the names under "PARTITION/" (org1/ is not a prefix
// of org10/). INSTANCE is the AC instance name in lowercase hex (instance
// names may hold "/" or be empty). FN is the digest function ("sha256"), HH
// the first two hash characters, and SIZE the digest size, -1 for the HTTP
// cache protocol's hash-only blobs. HH adds no meaning; it keeps the layout
// that of the disk store and spreads objects over directories on S3
// servers that store names as file paths.

// Path elements of object names.
const (
	casElem        = "@cas"
	acElem         = "@ac"
	instancePrefix = "i" // keeps the empty instance name a non-empty element
	separator      = "/"
)

// MaxInstanceLen is the longest AC instance name this layout accepts. Its
// hex form (1 + 2*120 bytes) stays within the 255-byte file name limit of
// S3 servers that store names as file paths (versitygw, MinIO on a file
// system), as the disk store's does.
const MaxInstanceLen = 120

// maxObjectNameLen is the longest object name S3 accepts, in bytes.
const maxObjectNameLen = 1024

// digestDirNames is the FN element of each supported digest function.
var digestDirNames = func() map[cas.DigestFunction]string {
	names := map[cas.DigestFunction]string{}
	for _, fn := range cas.SupportedDigestFunctions {
		names[fn] = strings.ToLower(fn.String())
	}
	return names
}()

// Layout maps keys to object names under one bucket prefix. The zero
// Layout puts objects at the top of the bucket.
type Layout struct {
	prefix string // "" or "PREFIX/" with its trailing separator
}

// NewLayout returns the layout for prefix, which is "" or "/"-separated
// elements without empty, "." or ".." elements; surrounding "/" are
// ignored.
func NewLayout(prefix string) (Layout, error) {
	prefix = strings.Trim(prefix, separator)
	if prefix == "" {
		return Layout{}, nil
	}
	for _, elem := range strings.Split(prefix, separator) {
		if elem == "" || elem == "." || elem == ".." {
			return Layout{}, fmt.Errorf("bucket prefix %q has an empty, \".\" or \"..\" element; use names such as \"sealcache\" or \"cache/prod\"", prefix)
		}
	}
	return Layout{prefix: prefix + separator}, nil
}

// Prefix is the bucket prefix with its trailing "/", or "" for none.
func (l Layout) Prefix() string { return l.prefix }

// ObjectName returns the name of k's object. It validates every part of the
// key, so no key can name an object outside its partition.
func (l Layout) ObjectName(k cas.Key) (string, error) {
	if err := k.Partition.Validate(); err != nil {
		return "", err
	}
	d := k.Digest
	if d.Size < cas.SizeUnknown {
		return "", fmt.Errorf("key %s has size %d; want a size >= 0, or %d for a hash-only blob", k, d.Size, cas.SizeUnknown)
	}
	// cas.NewDigest checks the function and the hash; it refuses
	// SizeUnknown, which is valid here, hence the size of at least 0.
	if _, err := cas.NewDigest(d.Function, d.Hash, max(d.Size, 0)); err != nil {
		return "", fmt.Errorf("key %s: %w", k, err)
	}
	var b strings.Builder
	b.Grow(len(l.prefix) + len(k.Partition) + 2*len(k.Instance) + len(d.Hash) + 40)
	b.WriteString(l.prefix)
	b.WriteString(string(k.Partition))
	switch k.Kind {
	case cas.KindCAS:
		b.WriteString(separator + casElem + separator)
	case cas.KindAC:
		if len(k.Instance) > MaxInstanceLen {
			return "", fmt.Errorf("instance name of %d bytes is too long for the S3 store; use at most %d bytes", len(k.Instance), MaxInstanceLen)
		}
		b.WriteString(separator + acElem + separator + instancePrefix)
		b.WriteString(hex.EncodeToString([]byte(k.Instance)))
		b.WriteString(separator)
	default:
		return "", fmt.Errorf("key %s has unknown kind %d; want cas or ac", k, k.Kind)
	}
	b.WriteString(digestDirNames[d.Function])
	b.WriteString(separator)
	b.WriteString(d.Hash[:2])
	b.WriteString(separator)
	b.WriteString(d.Hash)
	b.WriteByte('-')
	b.WriteString(strconv.FormatInt(d.Size, 10))
	if b.Len() > maxObjectNameLen {
		return "", fmt.Errorf("key %s makes an object name of %d bytes, more than S3's %d; use a shorter bucket prefix or partition", k, b.Len(), maxObjectNameLen)
	}
	return b.String(), nil
}

// PartitionPrefix is the name prefix of every object at or below p:
// "[PREFIX/]PARTITION/". Listing it never meets another partition's
// objects, as org1/ is no prefix of org10/.
func (l Layout) PartitionPrefix(p cas.Partition) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	return l.prefix + string(p) + separator, nil
}

// ParseObjectName is the inverse of ObjectName, for names met while
// listing. It fails for a name this layout does not produce.
func (l Layout) ParseObjectName(name string) (cas.Key, error) {
	rel, ok := strings.CutPrefix(name, l.prefix)
	if !ok {
		return cas.Key{}, fmt.Errorf("object %q is not under the bucket prefix %q", name, l.prefix)
	}
	parts := strings.Split(rel, separator)
	kindAt := -1
	for i, p := range parts {
		if p == casElem || p == acElem {
			kindAt = i
			break
		}
	}
	if kindAt < 1 {
		return cas.Key{}, fmt.Errorf("object %q has no partition and %s or %s element", name, casElem, acElem)
	}
	var k cas.Key
	k.Partition = cas.Partition(strings.Join(parts[:kindAt], separator))
	if err := k.Partition.Validate(); err != nil {
		return cas.Key{}, fmt.Errorf("object %q: %w", name, err)
	}
	rest := parts[kindAt+1:]
	if parts[kindAt] == casElem {
		k.Kind = cas.KindCAS
	} else {
		k.Kind = cas.KindAC
		if len(rest) == 0 || !strings.HasPrefix(rest[0], instancePrefix) {
			return cas.Key{}, fmt.Errorf("object %q has no instance element after %s", name, acElem)
		}
		instHex := strings.TrimPrefix(rest[0], instancePrefix)
		inst, err := hex.DecodeString(instHex)
		if err != nil || hex.EncodeToString(inst) != instHex {
			return cas.Key{}, fmt.Errorf("object %q has instance element %q; want %q and lowercase hex", name, rest[0], instancePrefix)
		}
		k.Instance = string(inst)
		rest = rest[1:]
	}
	if len(rest) != 3 {
		return cas.Key{}, fmt.Errorf("object %q does not end in FN/HH/HASH-SIZE", name)
	}
	fn, ok := cas.ParseDigestFunction(rest[0])
	if !ok || digestDirNames[fn] != rest[0] {
		return cas.Key{}, fmt.Errorf("object %q has unknown digest function %q", name, rest[0])
	}
	hash, sizeText, ok := strings.Cut(rest[2], "-")
	if !ok {
		return cas.Key{}, fmt.Errorf("object %q does not end in HASH-SIZE", name)
	}
	size, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil || size < cas.SizeUnknown || strconv.FormatInt(size, 10) != sizeText {
		return cas.Key{}, fmt.Errorf("object %q has size %q; want a decimal number >= -1", name, sizeText)
	}
	d, err := cas.NewDigest(fn, hash, max(size, 0))
	if err != nil {
		return cas.Key{}, fmt.Errorf("object %q: %w", name, err)
	}
	d.Size = size
	if rest[1] != hash[:2] {
		return cas.Key{}, fmt.Errorf("object %q is under fan-out element %q; want %q", name, rest[1], hash[:2])
	}
	k.Digest = d
	return k, nil
}
