package cas

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/zeebo/blake3"
)

// DigestFunction names a hash function from the REAPI enum.
type DigestFunction = repb.DigestFunction_Value

// SupportedDigestFunctions lists every digest function Sealcache accepts, in
// the order Capabilities advertises them.
var SupportedDigestFunctions = []DigestFunction{
	repb.DigestFunction_SHA256,
	repb.DigestFunction_SHA1,
	repb.DigestFunction_SHA384,
	repb.DigestFunction_SHA512,
	repb.DigestFunction_BLAKE3,
}

// Digest identifies a blob: the function that hashed it, the lowercase hex
// hash and the size in bytes.
type Digest struct {
	Function DigestFunction
	Hash     string
	Size     int64
}

// SizeUnknown is the Size of digests from Bazel's HTTP cache protocol,
// which names blobs by hash alone (/cas/HASH). Such blobs live in their own
// namespace: wrappers check only the hash of a SizeUnknown digest.
const SizeUnknown = -1

// NewHasher returns a fresh hash for fn, or an error for an unsupported function.
func NewHasher(fn DigestFunction) (hash.Hash, error) {
	switch fn {
	case repb.DigestFunction_SHA256:
		return sha256.New(), nil
	case repb.DigestFunction_SHA1:
		return sha1.New(), nil
	case repb.DigestFunction_SHA384:
		return sha512.New384(), nil
	case repb.DigestFunction_SHA512:
		return sha512.New(), nil
	case repb.DigestFunction_BLAKE3:
		return blake3.New(), nil
	}
	return nil, fmt.Errorf("digest function %s is not supported; use one of %s", fn, supportedNames())
}

// hexLength is the length of fn's hashes in hex, or 0 for an unsupported
// function. It is asked once per digest of every request (10,000 times for
// one large FindMissingBlobs), so it does not build a hasher to find out.
func hexLength(fn DigestFunction) int {
	switch fn {
	case repb.DigestFunction_SHA256, repb.DigestFunction_BLAKE3:
		return 64
	case repb.DigestFunction_SHA1:
		return 40
	case repb.DigestFunction_SHA384:
		return 96
	case repb.DigestFunction_SHA512:
		return 128
	}
	return 0
}

// isLowerHex[c] says whether byte c may appear in a hash.
var isLowerHex = func() (t [256]bool) {
	for _, c := range "0123456789abcdef" {
		t[c] = true
	}
	return t
}()

func supportedNames() string {
	names := make([]string, len(SupportedDigestFunctions))
	for i, fn := range SupportedDigestFunctions {
		names[i] = fn.String()
	}
	return strings.Join(names, ", ")
}

// ParseDigestFunction reads a lower- or upper-case function name as it
// appears in ByteStream resource names ("sha256", "blake3").
func ParseDigestFunction(name string) (DigestFunction, bool) {
	v, ok := repb.DigestFunction_Value_value[strings.ToUpper(name)]
	if !ok {
		return repb.DigestFunction_UNKNOWN, false
	}
	fn := DigestFunction(v)
	if _, err := NewHasher(fn); err != nil {
		return repb.DigestFunction_UNKNOWN, false
	}
	return fn, true
}

// InferDigestFunction picks the function for a request that did not name
// one. The REAPI says to infer it from the hash length; a 64-character hash
// is SHA-256 (BLAKE3 must always be named).
func InferDigestFunction(named DigestFunction, hashHex string) DigestFunction {
	if named != repb.DigestFunction_UNKNOWN {
		return named
	}
	switch len(hashHex) {
	case 40:
		return repb.DigestFunction_SHA1
	case 96:
		return repb.DigestFunction_SHA384
	case 128:
		return repb.DigestFunction_SHA512
	}
	return repb.DigestFunction_SHA256
}

// NewDigest validates a digest: a supported function, a lowercase hex hash of
// that function's length and a non-negative size.
func NewDigest(fn DigestFunction, hashHex string, size int64) (Digest, error) {
	want := hexLength(fn)
	if want == 0 {
		return Digest{}, fmt.Errorf("digest function %s is not supported; use one of %s", fn, supportedNames())
	}
	if len(hashHex) != want {
		return Digest{}, fmt.Errorf("hash %q has %d characters; %s hashes have %d hex characters", hashHex, len(hashHex), fn, want)
	}
	for i := 0; i < len(hashHex); i++ {
		if !isLowerHex[hashHex[i]] {
			return Digest{}, fmt.Errorf("hash %q is not lowercase hex", hashHex)
		}
	}
	if size < 0 {
		return Digest{}, fmt.Errorf("digest %s has negative size %d", hashHex, size)
	}
	return Digest{Function: fn, Hash: hashHex, Size: size}, nil
}

// FromProto validates a REAPI digest proto; fn is the request's digest
// function (UNKNOWN to infer from the hash length).
func FromProto(fn DigestFunction, d *repb.Digest) (Digest, error) {
	if d == nil {
		return Digest{}, fmt.Errorf("digest is missing")
	}
	return NewDigest(InferDigestFunction(fn, d.GetHash()), d.GetHash(), d.GetSizeBytes())
}

// Proto returns the REAPI form of d.
func (d Digest) Proto() *repb.Digest {
	return &repb.Digest{Hash: d.Hash, SizeBytes: d.Size}
}

// String gives the form used in logs and errors: "sha256:HASH/SIZE".
func (d Digest) String() string {
	return fmt.Sprintf("%s:%s/%d", strings.ToLower(d.Function.String()), d.Hash, d.Size)
}

// EmptyDigest is the digest of zero bytes under fn.
func EmptyDigest(fn DigestFunction) Digest {
	h, err := NewHasher(fn)
	if err != nil {
		return Digest{Function: fn}
	}
	return Digest{Function: fn, Hash: hex.EncodeToString(h.Sum(nil)), Size: 0}
}

// IsEmpty reports whether d is the empty blob, which every store always has.
func (d Digest) IsEmpty() bool {
	return d.Size == 0 && d == EmptyDigest(d.Function)
}

// DigestOf hashes data under fn; for tests and small in-memory blobs.
func DigestOf(fn DigestFunction, data []byte) Digest {
	h, err := NewHasher(fn)
	if err != nil {
		panic(err)
	}
	h.Write(data)
	return Digest{Function: fn, Hash: hex.EncodeToString(h.Sum(nil)), Size: int64(len(data))}
}
