package server

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/codes"
)

// Clients learn from Capabilities that batches may carry zstd, both ways.
func TestCapabilitiesListZstdForBatches(t *testing.T) {
	env := startServer(t)
	caps, err := env.caps().GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cc := caps.GetCacheCapabilities()
	if !slices.Contains(cc.GetSupportedBatchUpdateCompressors(), repb.Compressor_ZSTD) {
		t.Errorf("supported_batch_update_compressors = %v, want ZSTD listed", cc.GetSupportedBatchUpdateCompressors())
	}
	if !slices.Contains(cc.GetSupportedCompressors(), repb.Compressor_ZSTD) {
		t.Errorf("supported_compressors = %v, want ZSTD listed", cc.GetSupportedCompressors())
	}
}

func zstdCompress(t *testing.T, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

func zstdDecompress(t *testing.T, data []byte) []byte {
	t.Helper()
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out, err := dec.DecodeAll(data, nil)
	if err != nil {
		t.Fatalf("the server's zstd does not decode: %v", err)
	}
	return out
}

// A batch uploaded with zstd reads back the same, compressed for a client
// that accepts zstd and plain for one that does not; compressed and plain
// entries may share a batch.
func TestCompressedBatchRoundTrips(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	blobs := [][]byte{
		[]byte(strings.Repeat("a compressible line of build output\n", 2000)),
		[]byte("short"),
		{}, // the empty blob, compressed to a zstd frame of nothing
		[]byte("sent plain in the same batch"),
	}
	var reqs []*repb.BatchUpdateBlobsRequest_Request
	for i, b := range blobs {
		r := &repb.BatchUpdateBlobsRequest_Request{Digest: sha(b).Proto(), Data: zstdCompress(t, b), Compressor: repb.Compressor_ZSTD}
		if i == len(blobs)-1 {
			r.Data, r.Compressor = b, repb.Compressor_IDENTITY
		}
		reqs = append(reqs, r)
	}
	if len(reqs[0].Data) >= len(blobs[0]) {
		t.Fatalf("test data does not compress (%d -> %d bytes)", len(blobs[0]), len(reqs[0].Data))
	}
	up, err := env.cas().BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: reqs})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range up.GetResponses() {
		if r.GetStatus().GetCode() != 0 || r.GetDigest().GetHash() != sha(blobs[i]).Hash {
			t.Fatalf("update %d: %v %v", i, r.GetDigest(), r.GetStatus())
		}
	}

	digests := make([]*repb.Digest, len(blobs))
	for i, b := range blobs {
		digests[i] = sha(b).Proto()
	}
	for _, accept := range [][]repb.Compressor_Value{{repb.Compressor_ZSTD}, nil, {repb.Compressor_IDENTITY}} {
		read, err := env.cas().BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: digests, AcceptableCompressors: accept})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range read.GetResponses() {
			if r.GetStatus().GetCode() != 0 {
				t.Fatalf("accepting %v, read %d: %v", accept, i, r.GetStatus())
			}
			data := r.GetData()
			switch {
			case r.GetCompressor() == repb.Compressor_ZSTD && slices.Contains(accept, repb.Compressor_ZSTD):
				data = zstdDecompress(t, data)
			case r.GetCompressor() != repb.Compressor_IDENTITY:
				t.Fatalf("accepting %v, read %d came back with compressor %s", accept, i, r.GetCompressor())
			}
			if !bytes.Equal(data, blobs[i]) {
				t.Errorf("accepting %v, read %d: %d bytes that differ from the %d uploaded", accept, i, len(data), len(blobs[i]))
			}
		}
		if slices.Contains(accept, repb.Compressor_ZSTD) {
			if r := read.GetResponses()[0]; r.GetCompressor() != repb.Compressor_ZSTD || len(r.GetData()) >= len(blobs[0]) {
				t.Errorf("a client accepting zstd got the large blob as %s, %d bytes", r.GetCompressor(), len(r.GetData()))
			}
		}
	}
}

// One malformed zstd entry fails alone, with INVALID_ARGUMENT, and stores
// nothing; the entries around it are stored.
func TestMalformedZstdEntryFailsOnlyThatEntry(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	before := []byte("stored before the bad entry")
	garbled := []byte("this entry's bytes are not zstd")
	wrongContent := []byte("valid zstd, but of other bytes than the digest says")
	after := []byte("stored after the bad entry")

	up, err := env.cas().BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: sha(before).Proto(), Data: zstdCompress(t, before), Compressor: repb.Compressor_ZSTD},
		{Digest: sha(garbled).Proto(), Data: garbled, Compressor: repb.Compressor_ZSTD},
		{Digest: sha(wrongContent).Proto(), Data: zstdCompress(t, []byte("something else")), Compressor: repb.Compressor_ZSTD},
		{Digest: sha(after).Proto(), Data: after},
	}})
	if err != nil {
		t.Fatalf("a batch with one malformed entry failed as a whole: %v", err)
	}
	want := []codes.Code{codes.OK, codes.InvalidArgument, codes.InvalidArgument, codes.OK}
	for i, r := range up.GetResponses() {
		if got := codes.Code(r.GetStatus().GetCode()); got != want[i] {
			t.Errorf("entry %d: %s %q, want %s", i, got, r.GetStatus().GetMessage(), want[i])
		}
	}
	if msg := up.GetResponses()[1].GetStatus().GetMessage(); !strings.Contains(msg, "not valid zstd") {
		t.Errorf("the malformed entry's message %q does not say what is wrong", msg)
	}
	missing, err := env.cas().FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{
		sha(before).Proto(), sha(garbled).Proto(), sha(wrongContent).Proto(), sha(after).Proto()}})
	if err != nil {
		t.Fatal(err)
	}
	var missingHashes []string
	for _, d := range missing.GetMissingBlobDigests() {
		missingHashes = append(missingHashes, d.GetHash())
	}
	if !slices.Equal(missingHashes, []string{sha(garbled).Hash, sha(wrongContent).Hash}) {
		t.Errorf("missing after the batch: %v; want exactly the two bad entries", missingHashes)
	}
}
