package bench

import (
	"regexp"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

func TestResourceNames(t *testing.T) {
	d := &repb.Digest{Hash: "ab12", SizeBytes: 42}
	for _, tc := range []struct {
		instance   string
		compressed bool
		read       string
		upload     string
	}{
		{"", false, "blobs/ab12/42", `^uploads/[0-9a-f]+-\d+/blobs/ab12/42$`},
		{"", true, "compressed-blobs/zstd/ab12/42", `^uploads/[0-9a-f]+-\d+/compressed-blobs/zstd/ab12/42$`},
		{"main", false, "main/blobs/ab12/42", `^main/uploads/[0-9a-f]+-\d+/blobs/ab12/42$`},
		{"main", true, "main/compressed-blobs/zstd/ab12/42", `^main/uploads/[0-9a-f]+-\d+/compressed-blobs/zstd/ab12/42$`},
	} {
		if got := readName(tc.instance, d, tc.compressed); got != tc.read {
			t.Errorf("readName(%q, compressed %v) = %q, want %q", tc.instance, tc.compressed, got, tc.read)
		}
		if got := uploadName(tc.instance, d, tc.compressed); !regexp.MustCompile(tc.upload).MatchString(got) {
			t.Errorf("uploadName(%q, compressed %v) = %q, want it to match %s", tc.instance, tc.compressed, got, tc.upload)
		}
	}
	if a, b := uploadName("", d, false), uploadName("", d, false); a == b {
		t.Errorf("two uploads of the same blob share the name %s", a)
	}
}
