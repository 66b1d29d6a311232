package emptyblob

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/memory"
	"github.com/sealcache/sealcache/cas/verify"
)

// nothingBelow fails every call: the empty blob must never reach it.
type nothingBelow struct{ cas.BlobStore }

var errReached = errors.New("the store below was asked")

func (nothingBelow) Get(context.Context, cas.Key, int64) (io.ReadCloser, int64, error) {
	return nil, 0, errReached
}
func (nothingBelow) Put(context.Context, cas.Key, int64, io.Reader) error { return errReached }
func (nothingBelow) FindMissing(context.Context, []cas.Key) ([]cas.Key, error) {
	return nil, errReached
}
func (nothingBelow) Delete(context.Context, cas.Key) error { return errReached }

func TestEmptyBlobIsAlwaysPresentWithoutAskingTheStoreBelow(t *testing.T) {
	ctx := context.Background()
	s := New(nothingBelow{})
	for _, fn := range cas.SupportedDigestFunctions {
		for _, d := range []cas.Digest{cas.EmptyDigest(fn), {Function: fn, Hash: cas.EmptyDigest(fn).Hash, Size: cas.SizeUnknown}} {
			k := cas.Key{Partition: "org1/kKEY", Kind: cas.KindCAS, Digest: d}
			rc, size, err := s.Get(ctx, k, 0)
			if err != nil {
				t.Fatalf("Get(%s): %v", k, err)
			}
			if data, _ := io.ReadAll(rc); len(data) != 0 || size != 0 {
				t.Fatalf("Get(%s) = %d bytes, size %d", k, len(data), size)
			}
			if missing, err := s.FindMissing(ctx, []cas.Key{k}); err != nil || len(missing) != 0 {
				t.Fatalf("FindMissing(%s) = %v, %v", k, missing, err)
			}
			if err := s.Put(ctx, k, 0, strings.NewReader("")); err != nil {
				t.Fatalf("Put(%s): %v", k, err)
			}
			if err := s.Delete(ctx, k); err != nil {
				t.Fatalf("Delete(%s): %v", k, err)
			}
		}
	}
}

func TestEmptyDigestWithDataIsAMismatch(t *testing.T) {
	k := cas.Key{Partition: "org1", Kind: cas.KindCAS, Digest: cas.EmptyDigest(repb.DigestFunction_SHA256)}
	err := New(nothingBelow{}).Put(context.Background(), k, cas.SizeUnknown, strings.NewReader("x"))
	if !errors.Is(err, verify.ErrDigestMismatch) {
		t.Fatalf("Put of data under the empty digest = %v; want a digest mismatch", err)
	}
}

func TestOtherKeysPassThrough(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	s := New(mem)
	empty := cas.Key{Partition: "org1", Kind: cas.KindCAS, Digest: cas.EmptyDigest(repb.DigestFunction_SHA256)}
	ac := cas.Key{Partition: "org1", Kind: cas.KindAC, Digest: cas.EmptyDigest(repb.DigestFunction_SHA256)}
	data := []byte("x")
	blob := cas.Key{Partition: "org1", Kind: cas.KindCAS, Digest: cas.DigestOf(repb.DigestFunction_SHA256, data)}
	missing, err := s.FindMissing(ctx, []cas.Key{empty, blob, ac})
	if err != nil || len(missing) != 2 || missing[0] != blob || missing[1] != ac {
		t.Fatalf("FindMissing = %v, %v; want the blob and the AC entry (an AC key with the empty hash is an ordinary key)", missing, err)
	}
	if err := s.Put(ctx, blob, 1, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if mem.Puts() != 1 {
		t.Fatalf("the store below saw %d Puts; want 1", mem.Puts())
	}
}
