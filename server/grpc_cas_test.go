package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/server/credentials"
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

// A batch read names its blobs by digest, sizes included: the server adds
// them up and refuses a batch over max_batch_total_size_bytes before it
// reads any blob. A negative size, or sizes whose sum overflows, cannot
// bring an oversized batch under the limit.
func TestBatchReadBlobsRefusesAnOversizedBatchBeforeReadingAnything(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	blob := randomBytes(t, 4<<20)
	d := sha(blob)
	if _, err := writeBlob(ctx, env.bs(), "", d, blob); err != nil {
		t.Fatal(err)
	}
	refs := make([]*repb.Digest, 250)
	for i := range refs {
		refs[i] = d.Proto()
	}
	bombs := map[string][]*repb.Digest{
		"a negative size that cancels the others": append(refs, &repb.Digest{Hash: sha([]byte("x")).Hash, SizeBytes: -250 * (4 << 20)}),
		"sizes whose sum overflows":               append(refs, &repb.Digest{Hash: sha([]byte("y")).Hash, SizeBytes: 1 << 62}, &repb.Digest{Hash: sha([]byte("z")).Hash, SizeBytes: 1 << 62}),
		"a thousand MiB in plain sight":           refs,
	}
	for name, digests := range bombs {
		hits, misses := env.s.storage.lookups.Org(env.defaultOrg())
		_, err := env.cas().BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: digests})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v; want INVALID_ARGUMENT", name, err)
		}
		if h, m := env.s.storage.lookups.Org(env.defaultOrg()); h != hits || m != misses {
			t.Errorf("%s: the server read %d blobs before refusing the batch; want none", name, h-hits+m-misses)
		}
	}
	// The limit itself is allowed: one 4 MiB blob.
	resp, err := env.cas().BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: refs[:1]})
	if err != nil || !bytes.Equal(resp.Responses[0].Data, blob) {
		t.Fatalf("a batch of exactly max_batch_total_size_bytes: %v", err)
	}
	tooMany := make([]*repb.Digest, maxBatchBlobs+1)
	for i := range tooMany {
		tooMany[i] = sha(nil).Proto()
	}
	if _, err := env.cas().BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: tooMany}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a batch of %d blobs: %v; want INVALID_ARGUMENT", len(tooMany), err)
	}
}

// Batches at the limit, many at once: the heap grows by a small multiple
// of what the batches carry, and a zstd batch keeps only compressed bytes.
func TestBatchReadBlobsAtTheLimitKeepMemoryBounded(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	kinds := map[string][]byte{
		"random":       randomBytes(t, 1<<20),
		"compressible": bytes.Repeat([]byte("a line of build output that compresses well\n"), (1<<20)/45),
	}
	for name, base := range kinds {
		var digests []*repb.Digest
		for i := range 4 {
			blob := append(bytes.Clone(base[:len(base)-8]), fmt.Sprintf("%08d", i)...)
			if _, err := writeBlob(ctx, env.bs(), "", sha(blob), blob); err != nil {
				t.Fatal(err)
			}
			digests = append(digests, sha(blob).Proto())
		}
		for _, compressors := range [][]repb.Compressor_Value{nil, {repb.Compressor_ZSTD}} {
			req := &repb.BatchReadBlobsRequest{Digests: digests, AcceptableCompressors: compressors}
			const clients, rounds = 8, 4
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			watch := watchHeap()
			var wg sync.WaitGroup
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range rounds {
						resp, err := env.cas().BatchReadBlobs(ctx, req)
						if err != nil || len(resp.Responses) != 4 || resp.Responses[3].Status.Code != 0 {
							t.Errorf("batch read: %v", err)
							return
						}
					}
				}()
			}
			wg.Wait()
			peak := watch.Stop()
			runtime.ReadMemStats(&after)
			perBatch := (after.TotalAlloc - before.TotalAlloc) / (clients * rounds)
			growth := int64(peak) - int64(before.HeapInuse)
			t.Logf("%s blobs, compressors %v: %d batches of 4 MiB, %d at once: heap peak +%d MiB, %.1f MiB allocated per batch (client and server)",
				name, compressors, clients*rounds, clients, growth>>20, float64(perBatch)/(1<<20))
			// Each batch in flight holds its blobs about four times over
			// (server read and marshal, client receive and unmarshal), and
			// the garbage collector lets the heap grow to twice what is live.
			if limit := int64(clients * 8 * maxBatchTotalSize); growth > limit {
				t.Errorf("heap grew by %d MiB for %d batches of 4 MiB in flight; want at most %d MiB", growth>>20, clients, limit>>20)
			}
			if compressors != nil && name == "compressible" && perBatch > maxBatchTotalSize*3/2 {
				t.Errorf("a zstd batch of 4 MiB of compressible blobs allocates %d MiB; want the blob read and compressed through reused buffers", perBatch>>20)
			}
		}
	}
}

// Compressed batch entries are checked against the digest's size as they
// decompress: a small zstd frame that expands to far more than its digest
// says is refused once it passes that size, and the declared sizes of a
// batch count against max_batch_total_size_bytes, however small the
// compressed data. A blob compressed by a streaming encoder, with the
// usual 8 MiB window, is accepted.
func TestBatchUpdateBlobsCannotDecompressToMoreThanDeclared(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	var bomb bytes.Buffer
	enc, _ := zstd.NewWriter(&bomb) // a streaming frame: its content size is not declared
	if _, err := io.Copy(enc, io.LimitReader(zeroReader{}, 256<<20)); err != nil {
		t.Fatal(err)
	}
	enc.Close()
	declared := sha(make([]byte, 1000))

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	resp, err := env.cas().BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: declared.Proto(), Data: bomb.Bytes(), Compressor: repb.Compressor_ZSTD},
	}})
	runtime.ReadMemStats(&after)
	if err != nil || codes.Code(resp.Responses[0].Status.Code) != codes.InvalidArgument || !strings.Contains(resp.Responses[0].Status.Message, "more than its 1000 bytes") {
		t.Fatalf("%d bytes of zstd expanding to 256 MiB, declared as 1000 bytes: %v %v; want INVALID_ARGUMENT saying it is larger than declared", bomb.Len(), resp, err)
	}
	t.Logf("zstd bomb of %d bytes (256 MiB of zeros) declared as 1000 bytes: refused with %q after %d KiB allocated",
		bomb.Len(), resp.Responses[0].Status.Message, (after.TotalAlloc-before.TotalAlloc)>>10)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Errorf("refusing the zstd bomb allocated %d MiB; it must stop near the declared size", grew>>20)
	}

	// Two 3 MiB blobs of zeros compress to a few hundred bytes each, but
	// they are 6 MiB of blobs: over the batch limit.
	zeros := make([]byte, 3<<20)
	small := enc.EncodeAll(zeros, nil)
	_, err = env.cas().BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: sha(zeros).Proto(), Data: small, Compressor: repb.Compressor_ZSTD},
		{Digest: sha(append(zeros, 0)).Proto(), Data: enc.EncodeAll(append(zeros, 0), nil), Compressor: repb.Compressor_ZSTD},
	}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "max_batch_total_size_bytes") {
		t.Errorf("a batch declaring 6 MiB in %d compressed bytes: %v; want INVALID_ARGUMENT naming max_batch_total_size_bytes", 2*len(small), err)
	}
	if _, err := readBlob(ctx, env.bs(), readName("", sha(zeros)), 0, 0); status.Code(err) != codes.NotFound {
		t.Errorf("the refused batch stored a blob: %v", err)
	}

	// One 3 MiB blob compressed by a streaming encoder is fine.
	var streamed bytes.Buffer
	enc.Reset(&streamed)
	io.Copy(enc, bytes.NewReader(zeros))
	enc.Close()
	resp, err = env.cas().BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: sha(zeros).Proto(), Data: streamed.Bytes(), Compressor: repb.Compressor_ZSTD},
	}})
	if err != nil || resp.Responses[0].Status.Code != 0 {
		t.Fatalf("a 3 MiB blob from a streaming zstd encoder (8 MiB window): %v %v", resp, err)
	}
}

// A compressed ByteStream upload may not make the server reserve a large
// zstd window for a small blob: the frame is refused before its window is
// allocated, with an error that says what to change.
func TestByteStreamRefusesAZstdWindowLargerThanTheBlobNeeds(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	blob := bytes.Repeat([]byte("small blob "), 100)
	var frame bytes.Buffer
	enc, _ := zstd.NewWriter(&frame, zstd.WithWindowSize(64<<20))
	enc.Write(blob[:500])
	enc.Flush() // the header goes out before the size is known: it declares the window
	enc.Write(blob[500:])
	enc.Close()

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	stream, err := env.bs().Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Replace(uploadName("", sha(blob), "wide-window"), "/blobs/", "/compressed-blobs/zstd/", 1)
	if err := stream.Send(&bspb.WriteRequest{ResourceName: name, Data: frame.Bytes(), FinishWrite: true}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.CloseAndRecv()
	runtime.ReadMemStats(&after)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "smaller window") {
		t.Fatalf("a %d-byte blob compressed with a 64 MiB window: %v; want INVALID_ARGUMENT asking for a smaller window", len(blob), err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
		t.Errorf("refusing the frame allocated %d MiB; the 64 MiB window must not be allocated", grew>>20)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// GetTree pages by bytes as well as by count: a tree whose first 1,000
// directories would not fit in one gRPC message arrives whole, page by
// page, to a client with gRPC's default 4 MiB receive limit.
func TestGetTreePagesByBytesSoEveryPageFitsAClient(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	const leaves = 1199
	root := &repb.Directory{}
	var batch []*repb.BatchUpdateBlobsRequest_Request
	var batchBytes int
	flush := func() {
		resp, err := env.cas().BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: batch})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.Responses {
			if r.Status.Code != 0 {
				t.Fatalf("uploading a directory: %v", r.Status)
			}
		}
		batch, batchBytes = nil, 0
	}
	var leafBytes int
	for i := range leaves {
		leaf := &repb.Directory{}
		for f := range 150 {
			name := fmt.Sprintf("dir-%04d-file-%03d-%s", i, f, strings.Repeat("n", 40))
			leaf.Files = append(leaf.Files, &repb.FileNode{Name: name, Digest: sha([]byte(name)).Proto()})
		}
		data, _ := proto.Marshal(leaf)
		leafBytes = len(data)
		if batchBytes+len(data) > maxBatchTotalSize {
			flush()
		}
		batch = append(batch, &repb.BatchUpdateBlobsRequest_Request{Digest: sha(data).Proto(), Data: data})
		batchBytes += len(data)
		root.Directories = append(root.Directories, &repb.DirectoryNode{Name: fmt.Sprintf("d%04d", i), Digest: sha(data).Proto()})
	}
	flush()
	rootDigest := uploadDirectory(t, env, root)
	if 1000*leafBytes <= maxGRPCMessage {
		t.Fatalf("test setup: 1,000 directories of %d bytes fit in one gRPC message of %d bytes", leafBytes, maxGRPCMessage)
	}

	// A client with gRPC's defaults.
	conn, err := grpc.NewClient(env.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(credentials.PerRPC(env.adminKey)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := repb.NewContentAddressableStorageClient(conn)
	seen := map[string]int{}
	token := ""
	var pageSizes []int
	for {
		stream, err := client.GetTree(ctx, &repb.GetTreeRequest{RootDigest: rootDigest.Proto(), PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("page %d (token %q): %v", len(pageSizes)+1, token, err)
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("a GetTree call sends one page, then ends: %v", err)
		}
		pageSizes = append(pageSizes, proto.Size(resp))
		for _, dir := range resp.Directories {
			data, _ := proto.Marshal(dir)
			seen[sha(data).Hash]++
		}
		if resp.NextPageToken == "" {
			break
		}
		token = resp.NextPageToken
	}
	t.Logf("%d directories of %d bytes in %d pages of %v bytes", leaves+1, leafBytes, len(pageSizes), pageSizes)
	if len(seen) != leaves+1 || seen[rootDigest.Hash] != 1 {
		t.Fatalf("the pages hold %d distinct directories, want %d with the root", len(seen), leaves+1)
	}
	for hash, n := range seen {
		if n != 1 {
			t.Errorf("directory %s arrived %d times", hash, n)
		}
	}

	// A directory larger than any page is refused, as the root or below it.
	huge := &repb.Directory{}
	for f := 0; f == 0 || len(huge.Files)*proto.Size(&repb.Directory{Files: huge.Files[:1]}) <= maxTreePageBytes; f++ {
		name := fmt.Sprintf("file-%06d", f)
		huge.Files = append(huge.Files, &repb.FileNode{Name: name, Digest: sha([]byte(name)).Proto()})
	}
	data, _ := proto.Marshal(huge)
	if _, err := writeBlob(ctx, env.bs(), "", sha(data), data); err != nil {
		t.Fatal(err)
	}
	parent := uploadDirectory(t, env, &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "huge", Digest: sha(data).Proto()}}})
	for name, d := range map[string]cas.Digest{"root": sha(data), "child": parent} {
		stream, err := client.GetTree(ctx, &repb.GetTreeRequest{RootDigest: d.Proto()})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "larger than") || !strings.Contains(err.Error(), "ByteStream") {
			t.Errorf("a %d-byte directory as the %s: %v; want INVALID_ARGUMENT saying it is larger than a page and to use ByteStream", len(data), name, err)
		}
	}
}
