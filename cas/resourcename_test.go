package cas

import (
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

func TestParseResourceNames(t *testing.T) {
	sha := strings.Repeat("a", 64)
	sha1 := strings.Repeat("b", 40)
	cases := []struct {
		name     string
		write    bool
		instance string
		upload   string
		comp     Compressor
		fn       DigestFunction
		size     int64
	}{
		{"blobs/" + sha + "/5", false, "", "", repb.Compressor_IDENTITY, repb.DigestFunction_SHA256, 5},
		{"main/linux/blobs/" + sha + "/5", false, "main/linux", "", repb.Compressor_IDENTITY, repb.DigestFunction_SHA256, 5},
		{"blobs/blake3/" + sha + "/7", false, "", "", repb.Compressor_IDENTITY, repb.DigestFunction_BLAKE3, 7},
		{"blobs/" + sha1 + "/1", false, "", "", repb.Compressor_IDENTITY, repb.DigestFunction_SHA1, 1},
		{"compressed-blobs/zstd/" + sha + "/9", false, "", "", repb.Compressor_ZSTD, repb.DigestFunction_SHA256, 9},
		{"i/uploads/u-1/blobs/" + sha + "/5", true, "i", "u-1", repb.Compressor_IDENTITY, repb.DigestFunction_SHA256, 5},
		{"uploads/u/blobs/" + sha + "/5/some/metadata", true, "", "u", repb.Compressor_IDENTITY, repb.DigestFunction_SHA256, 5},
		{"uploads/u/compressed-blobs/zstd/sha256/" + sha + "/5", true, "", "u", repb.Compressor_ZSTD, repb.DigestFunction_SHA256, 5},
	}
	for _, c := range cases {
		parse := ParseReadResourceName
		if c.write {
			parse = ParseWriteResourceName
		}
		rn, err := parse(c.name)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if rn.Instance != c.instance || rn.UploadID != c.upload || rn.Compressor != c.comp || rn.Digest.Function != c.fn || rn.Digest.Size != c.size {
			t.Errorf("%s: got %+v", c.name, rn)
		}
	}
}

func TestParseResourceNameErrorsSayWhatIsExpected(t *testing.T) {
	sha := strings.Repeat("a", 64)
	bad := []struct {
		name  string
		write bool
	}{
		{"", false},
		{"blobs/" + sha, false},
		{"blobs/" + sha + "/x", false},
		{"blobs/xyz/5", false},
		{"blobs/" + strings.ToUpper(sha) + "/5", false},
		{"compressed-blobs/gzip/" + sha + "/5", false},
		{"uploads/u/blobs/" + sha + "/5", false},
		{"blobs/" + sha + "/5", true},
		{"blobs/" + sha + "/-1", false},
	}
	for _, b := range bad {
		parse := ParseReadResourceName
		if b.write {
			parse = ParseWriteResourceName
		}
		_, err := parse(b.name)
		if err == nil || !strings.Contains(err.Error(), "expected") {
			t.Errorf("%q (write=%v): want an error naming the expected form, got %v", b.name, b.write, err)
		}
	}
}
