package cas

import (
	"fmt"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// Compressor names a ByteStream compression as it appears in resource names.
type Compressor = repb.Compressor_Value

// ResourceName is a parsed ByteStream resource name:
//
//	read:  {instance}/blobs/{function/}{hash}/{size}
//	       {instance}/compressed-blobs/{compressor}/{function/}{hash}/{size}
//	write: {instance}/uploads/{uuid}/blobs/{function/}{hash}/{size}{/metadata}
//	       {instance}/uploads/{uuid}/compressed-blobs/{compressor}/{function/}{hash}/{size}{/metadata}
type ResourceName struct {
	Instance   string
	UploadID   string // only for writes
	Compressor Compressor
	Digest     Digest
}

// reservedSegments cannot be part of an instance name (REAPI spec).
var reservedSegments = map[string]bool{
	"blobs": true, "uploads": true, "actions": true, "actionResults": true,
	"operations": true, "capabilities": true, "compressed-blobs": true,
}

// ParseReadResourceName parses the resource name of a ByteStream Read.
func ParseReadResourceName(name string) (ResourceName, error) {
	return parseResourceName(name, false)
}

// ParseWriteResourceName parses the resource name of a ByteStream Write.
func ParseWriteResourceName(name string) (ResourceName, error) {
	return parseResourceName(name, true)
}

func parseResourceName(name string, write bool) (ResourceName, error) {
	segs := strings.Split(name, "/")
	var rn ResourceName
	// Find the first reserved segment; everything before it is the instance.
	i := 0
	for i < len(segs) && !reservedSegments[segs[i]] {
		i++
	}
	if i == len(segs) {
		return rn, resourceError(name, write, "no blobs, compressed-blobs or uploads segment")
	}
	rn.Instance = strings.Join(segs[:i], "/")
	rest := segs[i:]
	if write {
		if rest[0] != "uploads" || len(rest) < 2 || rest[1] == "" {
			return rn, resourceError(name, write, "writes must start with {instance}/uploads/{uuid}/")
		}
		rn.UploadID = rest[1]
		rest = rest[2:]
	} else if rest[0] == "uploads" {
		return rn, resourceError(name, write, "reads use {instance}/blobs/..., not uploads/")
	}
	if len(rest) == 0 {
		return rn, resourceError(name, write, "missing blobs/ or compressed-blobs/")
	}
	switch rest[0] {
	case "blobs":
		rn.Compressor = repb.Compressor_IDENTITY
		rest = rest[1:]
	case "compressed-blobs":
		if len(rest) < 2 {
			return rn, resourceError(name, write, "missing compressor after compressed-blobs/")
		}
		c, ok := repb.Compressor_Value_value[strings.ToUpper(rest[1])]
		if !ok || (c != int32(repb.Compressor_ZSTD) && c != int32(repb.Compressor_IDENTITY)) {
			return rn, resourceError(name, write, fmt.Sprintf("compressor %q is not supported; use zstd", rest[1]))
		}
		rn.Compressor = Compressor(c)
		rest = rest[2:]
	default:
		return rn, resourceError(name, write, fmt.Sprintf("unexpected segment %q", rest[0]))
	}
	fn := repb.DigestFunction_UNKNOWN
	if len(rest) >= 3 {
		if f, ok := ParseDigestFunction(rest[0]); ok {
			fn = f
			rest = rest[1:]
		}
	}
	if len(rest) < 2 {
		return rn, resourceError(name, write, "missing {hash}/{size}")
	}
	if !write && len(rest) > 2 {
		return rn, resourceError(name, write, "unexpected segments after {hash}/{size}")
	}
	size, err := strconv.ParseInt(rest[1], 10, 64)
	if err != nil {
		return rn, resourceError(name, write, fmt.Sprintf("size %q is not a number", rest[1]))
	}
	d, err := NewDigest(InferDigestFunction(fn, rest[0]), rest[0], size)
	if err != nil {
		return rn, resourceError(name, write, err.Error())
	}
	rn.Digest = d
	return rn, nil
}

func resourceError(name string, write bool, why string) error {
	form := "{instance}/blobs/{hash}/{size} or {instance}/compressed-blobs/zstd/{hash}/{size}"
	if write {
		form = "{instance}/uploads/{uuid}/blobs/{hash}/{size} or {instance}/uploads/{uuid}/compressed-blobs/zstd/{hash}/{size}"
	}
	return fmt.Errorf("bad resource name %q: %s; expected %s", name, why, form)
}
