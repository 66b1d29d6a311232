package server

import (
	"context"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/sealcache/sealcache/cas"
)

func sha(data []byte) cas.Digest { return cas.DigestOf(repb.DigestFunction_SHA256, data) }

func TestCapabilitiesAdvertiseWhatTheServerDoes(t *testing.T) {
	env := startServer(t)
	caps, err := env.caps().GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cc := caps.CacheCapabilities
	if len(cc.DigestFunctions) != 5 || !cc.ActionCacheUpdateCapabilities.UpdateEnabled ||
		cc.MaxBatchTotalSizeBytes != maxBatchTotalSize || cc.SupportedCompressors[0] != repb.Compressor_ZSTD {
		t.Errorf("capabilities = %v", cc)
	}
	if caps.LowApiVersion.Major != 2 || caps.HighApiVersion.Minor != 3 {
		t.Errorf("API versions %v-%v, want 2.0-2.3", caps.LowApiVersion, caps.HighApiVersion)
	}
}

func TestBatchUpdateAndReadReportEachBlob(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	good := []byte("good blob")
	bad := []byte("bad blob")
	badDigest := sha([]byte("claims to be something else"))
	badDigest.Size = int64(len(bad))
	compressedBlob := []byte(strings.Repeat("zstd inside a batch ", 100))
	enc, _ := zstd.NewWriter(nil)

	up, err := env.cas().BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: sha(good).Proto(), Data: good},
		{Digest: badDigest.Proto(), Data: bad},
		{Digest: &repb.Digest{Hash: "xyz", SizeBytes: 1}, Data: []byte("x")},
		{Digest: sha(compressedBlob).Proto(), Data: enc.EncodeAll(compressedBlob, nil), Compressor: repb.Compressor_ZSTD},
	}})
	if err != nil {
		t.Fatal(err)
	}
	wantCodes := []codes.Code{codes.OK, codes.InvalidArgument, codes.InvalidArgument, codes.OK}
	for i, r := range up.Responses {
		if codes.Code(r.Status.Code) != wantCodes[i] {
			t.Errorf("update %d: %v, want %v", i, r.Status, wantCodes[i])
		}
	}

	missing := sha([]byte("never uploaded"))
	rd, err := env.cas().BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{
		Digests: []*repb.Digest{sha(good).Proto(), missing.Proto(), badDigest.Proto(), sha(compressedBlob).Proto()},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantCodes = []codes.Code{codes.OK, codes.NotFound, codes.NotFound, codes.OK}
	for i, r := range rd.Responses {
		if codes.Code(r.Status.Code) != wantCodes[i] {
			t.Errorf("read %d: %v, want %v", i, r.Status, wantCodes[i])
		}
	}
	if string(rd.Responses[0].Data) != string(good) || string(rd.Responses[3].Data) != string(compressedBlob) {
		t.Errorf("read data mismatch")
	}

	// A client that accepts zstd gets compressed data back.
	rd, err = env.cas().BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{
		Digests:               []*repb.Digest{sha(compressedBlob).Proto()},
		AcceptableCompressors: []repb.Compressor_Value{repb.Compressor_ZSTD},
	})
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil)
	plain, err := dec.DecodeAll(rd.Responses[0].Data, nil)
	if rd.Responses[0].Compressor != repb.Compressor_ZSTD || err != nil || string(plain) != string(compressedBlob) {
		t.Errorf("zstd batch read: compressor %v, err %v", rd.Responses[0].Compressor, err)
	}
}

func TestFindMissingAlwaysHasTheEmptyBlob(t *testing.T) {
	env := startServer(t)
	resp, err := env.cas().FindMissingBlobs(context.Background(), &repb.FindMissingBlobsRequest{
		BlobDigests: []*repb.Digest{sha(nil).Proto(), sha([]byte("absent")).Proto()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.MissingBlobDigests) != 1 || resp.MissingBlobDigests[0].Hash != sha([]byte("absent")).Hash {
		t.Errorf("missing = %v, want only the absent blob", resp.MissingBlobDigests)
	}
}

// uploadDirectory stores dir in the CAS and returns its digest.
func uploadDirectory(t *testing.T, env *testEnv, dir *repb.Directory) cas.Digest {
	t.Helper()
	data, _ := proto.Marshal(dir)
	d := sha(data)
	resp, err := env.cas().BatchUpdateBlobs(context.Background(), &repb.BatchUpdateBlobsRequest{
		Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d.Proto(), Data: data}},
	})
	if err != nil || resp.Responses[0].Status.Code != 0 {
		t.Fatalf("upload directory: %v %v", resp, err)
	}
	return d
}

func TestGetTreePagesThroughTheWholeTree(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	// root -> a, b; a -> a1, a2; b -> (empty)
	a1 := uploadDirectory(t, env, &repb.Directory{Files: []*repb.FileNode{{Name: "x", Digest: sha([]byte("x")).Proto()}}})
	a2 := uploadDirectory(t, env, &repb.Directory{Files: []*repb.FileNode{{Name: "y", Digest: sha([]byte("y")).Proto()}}})
	a := uploadDirectory(t, env, &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a1", Digest: a1.Proto()}, {Name: "a2", Digest: a2.Proto()}}})
	b := uploadDirectory(t, env, &repb.Directory{Files: []*repb.FileNode{{Name: "z", Digest: sha([]byte("z")).Proto()}}})
	root := uploadDirectory(t, env, &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a", Digest: a.Proto()}, {Name: "b", Digest: b.Proto()}}})

	var got []*repb.Directory
	token := ""
	pages := 0
	for {
		stream, err := env.cas().GetTree(ctx, &repb.GetTreeRequest{RootDigest: root.Proto(), PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, resp.Directories...)
		if resp.NextPageToken == "" {
			break
		}
		token = resp.NextPageToken
	}
	if len(got) != 5 || pages != 3 {
		t.Fatalf("got %d directories in %d pages, want 5 in 3", len(got), pages)
	}
	if len(got[0].Directories) != 2 {
		t.Errorf("the root comes first")
	}
	stream, _ := env.cas().GetTree(ctx, &repb.GetTreeRequest{RootDigest: root.Proto(), PageToken: "garbage!"})
	if _, err := stream.Recv(); codes.Code(statusCode(err)) != codes.InvalidArgument {
		t.Errorf("bad page token: %v", err)
	}
}
