package cas

import (
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

func TestEverySupportedFunctionHasItsHashLength(t *testing.T) {
	for _, fn := range SupportedDigestFunctions {
		h, err := NewHasher(fn)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := hexLength(fn), 2*h.Size(); got != want {
			t.Errorf("hexLength(%s) = %d, want %d", fn, got, want)
		}
	}
	if hexLength(repb.DigestFunction_MD5) != 0 {
		t.Error("an unsupported function has a hash length")
	}
}

func TestNewDigestAcceptsOnlyLowercaseHexOfTheRightLength(t *testing.T) {
	good := strings.Repeat("0123456789abcdef", 4)
	if _, err := NewDigest(repb.DigestFunction_SHA256, good, 1); err != nil {
		t.Fatalf("valid digest refused: %v", err)
	}
	for _, bad := range []string{
		strings.ToUpper(good),
		good[:63] + "g",
		good[:63] + "\u00e9"[:1], // half of a multi-byte character
		good[:63],
		good + "0",
	} {
		if _, err := NewDigest(repb.DigestFunction_SHA256, bad, 1); err == nil {
			t.Errorf("NewDigest accepted hash %q", bad)
		}
	}
	if _, err := NewDigest(repb.DigestFunction_SHA256, good, -1); err == nil {
		t.Error("NewDigest accepted a negative size")
	}
}
