package disk

import (
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sealcache/sealcache/cas"
)

// Directory names for the two kinds. '@' is not allowed in partition
// segments, so these can never be mistaken for one.
const (
	casDir = "@cas"
	acDir  = "@ac"
)

// instancePrefix starts every encoded AC instance directory, so that the
// empty instance name still has a non-empty directory.
const instancePrefix = "i"

// maxInstanceLen keeps the encoded instance name (1 + 2*len bytes) inside the
// 255-byte file name limit of common file systems.
const maxInstanceLen = 120

// hexLengths holds the hash length of every supported digest function and
// dirNames its directory name, computed once: relPath is on every request's
// path.
var hexLengths, dirNames = func() (map[cas.DigestFunction]int, map[cas.DigestFunction]string) {
	lengths := map[cas.DigestFunction]int{}
	names := map[cas.DigestFunction]string{}
	for _, fn := range cas.SupportedDigestFunctions {
		lengths[fn] = len(cas.EmptyDigest(fn).Hash)
		names[fn] = strings.ToLower(fn.String())
	}
	return lengths, names
}()

// validateDigest is cas.NewDigest's check without its allocations.
func validateDigest(k cas.Key) error {
	d := k.Digest
	want, ok := hexLengths[d.Function]
	if !ok || len(d.Hash) != want || d.Size < cas.SizeUnknown || !isLowerHex(d.Hash) {
		// Let cas.NewDigest say what exactly is wrong.
		if _, err := cas.NewDigest(d.Function, d.Hash, d.Size); err != nil {
			return fmt.Errorf("key %s: %w", k, err)
		}
		return fmt.Errorf("key %s: invalid digest", k)
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// relPath returns the object's path relative to DIR/objects, using the OS
// separator. It validates every part of the key, so nothing in a key can
// escape the directory.
func relPath(k cas.Key) (string, error) {
	if err := k.Partition.Validate(); err != nil {
		return "", err
	}
	if err := validateDigest(k); err != nil {
		return "", err
	}
	var b strings.Builder
	b.Grow(len(k.Partition) + 2*len(k.Instance) + len(k.Digest.Hash) + 40)
	b.WriteString(string(k.Partition))
	switch k.Kind {
	case cas.KindCAS:
		b.WriteString("/" + casDir + "/")
	case cas.KindAC:
		if len(k.Instance) > maxInstanceLen {
			return "", fmt.Errorf("instance name of %d bytes is too long for the disk store; use at most %d bytes", len(k.Instance), maxInstanceLen)
		}
		b.WriteString("/" + acDir + "/" + instancePrefix)
		b.WriteString(hex.EncodeToString([]byte(k.Instance)))
		b.WriteByte('/')
	default:
		return "", fmt.Errorf("key %s has unknown kind %d; want cas or ac", k, k.Kind)
	}
	b.WriteString(dirNames[k.Digest.Function])
	b.WriteByte('/')
	b.WriteString(k.Digest.Hash[:2])
	b.WriteByte('/')
	b.WriteString(k.Digest.Hash)
	b.WriteByte('-')
	b.WriteString(strconv.FormatInt(k.Digest.Size, 10))
	return filepath.FromSlash(b.String()), nil
}

// parseRelPath is the inverse of relPath, used when rebuilding the index.
func parseRelPath(rel string) (cas.Key, error) {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	kindAt := -1
	for i, p := range parts {
		if p == casDir || p == acDir {
			kindAt = i
			break
		}
	}
	if kindAt < 1 {
		return cas.Key{}, fmt.Errorf("no partition and kind directory in %q", rel)
	}
	var k cas.Key
	k.Partition = cas.Partition(strings.Join(parts[:kindAt], "/"))
	if err := k.Partition.Validate(); err != nil {
		return cas.Key{}, err
	}
	rest := parts[kindAt+1:]
	if parts[kindAt] == casDir {
		k.Kind = cas.KindCAS
	} else {
		k.Kind = cas.KindAC
		if len(rest) == 0 || !strings.HasPrefix(rest[0], instancePrefix) {
			return cas.Key{}, fmt.Errorf("no instance directory in %q", rel)
		}
		inst, err := hex.DecodeString(strings.TrimPrefix(rest[0], instancePrefix))
		if err != nil {
			return cas.Key{}, fmt.Errorf("bad instance directory in %q: %w", rel, err)
		}
		k.Instance = string(inst)
		rest = rest[1:]
	}
	if len(rest) != 3 {
		return cas.Key{}, fmt.Errorf("want FN/HH/HASH-SIZE after the kind in %q", rel)
	}
	fn, ok := cas.ParseDigestFunction(rest[0])
	if !ok {
		return cas.Key{}, fmt.Errorf("unknown digest function %q in %q", rest[0], rel)
	}
	hash, sizeText, ok := strings.Cut(rest[2], "-")
	if !ok {
		return cas.Key{}, fmt.Errorf("file name %q is not HASH-SIZE", rest[2])
	}
	size, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil {
		return cas.Key{}, fmt.Errorf("file name %q is not HASH-SIZE: %w", rest[2], err)
	}
	d, err := cas.NewDigest(fn, hash, max(size, 0))
	if err != nil {
		return cas.Key{}, err
	}
	d.Size = size // cas.SizeUnknown for blobs of the HTTP cache protocol
	if rest[1] != hash[:2] {
		return cas.Key{}, fmt.Errorf("%q is in the wrong fan-out directory", rel)
	}
	k.Digest = d
	return k, nil
}
