package kms_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sealcache/sealcache/encryption/kms"
)

// A wrapped key is 32 random bytes bound to an org id, as in the key hierarchy.
var (
	testKey = bytes.Repeat([]byte{0x5a}, 32)
	orgA    = []byte("org-a")
	orgB    = []byte("org-b")
)

// open opens uri with an Opener closed at the end of the test.
func open(t *testing.T, cfg kms.Config, uri string) kms.Wrapper {
	t.Helper()
	o := kms.NewOpener(cfg)
	t.Cleanup(func() { o.Close() })
	w, err := o.Open(context.Background(), uri)
	if err != nil {
		t.Fatalf("Open(%q): %v", uri, err)
	}
	return w
}

func wrap(t *testing.T, w kms.Wrapper, plaintext, ad []byte) []byte {
	t.Helper()
	ct, err := w.Wrap(context.Background(), plaintext, ad)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	if bytes.Contains(ct, plaintext) {
		t.Fatalf("wrapped key contains the plaintext")
	}
	return ct
}

func unwrapEquals(t *testing.T, w kms.Wrapper, ct, ad, want []byte) {
	t.Helper()
	got, err := w.Unwrap(context.Background(), ct, ad)
	if err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Unwrap = %x, want %x", got, want)
	}
}

// wantKind checks that err is a *kms.Error of kind whose message contains
// every one of msgs.
func wantKind(t *testing.T, err error, kind kms.ErrorKind, msgs ...string) *kms.Error {
	t.Helper()
	var kerr *kms.Error
	if !errors.As(err, &kerr) {
		t.Fatalf("error %v (%T) is not a *kms.Error", err, err)
	}
	if kerr.Kind != kind {
		t.Fatalf("error kind = %v, want %v; error: %v", kerr.Kind, kind, err)
	}
	for _, m := range msgs {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
	return kerr
}
