package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/memory"
)

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestByteStreamRoundTripForEveryDigestFunction(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	data := randomBytes(t, 300_000)
	for _, fn := range cas.SupportedDigestFunctions {
		t.Run(fn.String(), func(t *testing.T) {
			d := cas.DigestOf(fn, data)
			if _, err := writeBlob(ctx, env.bs(), "", d, data); err != nil {
				t.Fatalf("write: %v", err)
			}
			got, err := readBlob(ctx, env.bs(), readName("", d), 0, 0)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, err %v", len(got), err)
			}
			missing, err := env.cas().FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{DigestFunction: fn, BlobDigests: []*repb.Digest{d.Proto()}})
			if err != nil || len(missing.MissingBlobDigests) != 0 {
				t.Fatalf("FindMissing after write: %v %v", missing, err)
			}
		})
	}
}

func TestByteStreamWrongDigestIsRejectedAndNothingStored(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	data := []byte("hello, cache")
	wrong := cas.DigestOf(repb.DigestFunction_SHA256, []byte("something else"))
	wrong.Size = int64(len(data))
	_, err := writeBlob(ctx, env.bs(), "", wrong, data)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), wrong.Hash) {
		t.Fatalf("want INVALID_ARGUMENT naming the expected digest, got %v", err)
	}
	_, err = readBlob(ctx, env.bs(), readName("", wrong), 0, 0)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("the rejected blob must not be readable: %v", err)
	}

	tooLong := cas.DigestOf(repb.DigestFunction_SHA256, data)
	tooLong.Size = 3
	_, err = writeBlob(ctx, env.bs(), "", tooLong, data)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("more bytes than the digest's size: want INVALID_ARGUMENT, got %v", err)
	}
}

func TestByteStreamReadOffsetsAndLimits(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	data := randomBytes(t, 1<<20+17)
	d := cas.DigestOf(repb.DigestFunction_SHA256, data)
	if _, err := writeBlob(ctx, env.bs(), "", d, data); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ offset, limit int64 }{
		{0, 0}, {1, 0}, {100, 10}, {readChunkSize - 1, 2}, {readChunkSize, 0}, {d.Size - 1, 0}, {d.Size, 0}, {5, d.Size * 2},
	} {
		got, err := readBlob(ctx, env.bs(), readName("", d), c.offset, c.limit)
		end := d.Size
		if c.limit > 0 {
			end = min(d.Size, c.offset+c.limit)
		}
		if err != nil || !bytes.Equal(got, data[c.offset:end]) {
			t.Errorf("offset %d limit %d: got %d bytes, err %v", c.offset, c.limit, len(got), err)
		}
	}
	_, err := readBlob(ctx, env.bs(), readName("", d), d.Size+1, 0)
	if status.Code(err) != codes.OutOfRange {
		t.Errorf("offset past the end: want OUT_OF_RANGE, got %v", err)
	}
	_, err = readBlob(ctx, env.bs(), readName("", d), 0, -1)
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("negative limit: want INVALID_ARGUMENT, got %v", err)
	}
}

func TestByteStreamResumesAnInterruptedWrite(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	data := randomBytes(t, 1<<20)
	d := cas.DigestOf(repb.DigestFunction_SHA256, data)
	name := uploadName("", d, "resume-1")

	// The first stream sends half and ends without finish_write.
	stream, err := env.bs().Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	half := len(data) / 2
	if err := stream.Send(&bspb.WriteRequest{ResourceName: name, Data: data[:half]}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("stream closed without finish_write: want INVALID_ARGUMENT, got %v", err)
	}
	if _, err := readBlob(ctx, env.bs(), readName("", d), 0, 0); status.Code(err) != codes.NotFound {
		t.Fatalf("a half-written blob must not be readable: %v", err)
	}

	st, err := env.bs().QueryWriteStatus(ctx, &bspb.QueryWriteStatusRequest{ResourceName: name})
	if err != nil || st.CommittedSize != int64(half) || st.Complete {
		t.Fatalf("QueryWriteStatus = %v, %v; want committed %d, not complete", st, err, half)
	}

	stream, err = env.bs().Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&bspb.WriteRequest{ResourceName: name, WriteOffset: st.CommittedSize, Data: data[half:], FinishWrite: true}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil || resp.CommittedSize != d.Size {
		t.Fatalf("resumed write: %v, %v", resp, err)
	}
	got, err := readBlob(ctx, env.bs(), readName("", d), 0, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after resume: %d bytes, %v", len(got), err)
	}
	st, err = env.bs().QueryWriteStatus(ctx, &bspb.QueryWriteStatusRequest{ResourceName: name})
	if err != nil || !st.Complete || st.CommittedSize != d.Size {
		t.Fatalf("QueryWriteStatus after completion = %v, %v", st, err)
	}
}

func TestByteStreamWriteOfAnExistingBlobReturnsAtOnce(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	data := randomBytes(t, 200_000)
	d := cas.DigestOf(repb.DigestFunction_SHA256, data)
	if _, err := writeBlob(ctx, env.bs(), "", d, data); err != nil {
		t.Fatal(err)
	}
	// Send only the first chunk: the server must answer without the rest.
	stream, err := env.bs().Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&bspb.WriteRequest{ResourceName: uploadName("", d, "again"), Data: data[:1000]}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil || resp.CommittedSize != d.Size {
		t.Fatalf("want committed_size %d at once, got %v %v", d.Size, resp, err)
	}

	// For compressed uploads the spec says committed_size is -1.
	stream, err = env.bs().Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	zname := strings.Replace(uploadName("", d, "again-z"), "/blobs/", "/compressed-blobs/zstd/", 1)
	if err := stream.Send(&bspb.WriteRequest{ResourceName: zname, Data: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.CloseAndRecv()
	if err != nil || resp.CommittedSize != -1 {
		t.Fatalf("compressed: want committed_size -1, got %v %v", resp, err)
	}
}

func TestByteStreamZstdCompressedWriteAndRead(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	data := bytes.Repeat([]byte("compressible build output line\n"), 20_000)
	d := cas.DigestOf(repb.DigestFunction_SHA256, data)
	enc, _ := zstd.NewWriter(nil)
	compressed := enc.EncodeAll(data, nil)

	stream, err := env.bs().Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	zname := strings.Replace(uploadName("", d, "z1"), "/blobs/", "/compressed-blobs/zstd/", 1)
	if err := stream.Send(&bspb.WriteRequest{ResourceName: zname, Data: compressed, FinishWrite: true}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil || resp.CommittedSize != int64(len(compressed)) {
		t.Fatalf("compressed write: %v %v (sent %d compressed bytes)", resp, err, len(compressed))
	}
	// Stored uncompressed: a plain read returns the original bytes.
	got, err := readBlob(ctx, env.bs(), readName("", d), 0, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("plain read: %d bytes, %v", len(got), err)
	}
	// A compressed read returns zstd that decodes to the original, from an offset too.
	zread := strings.Replace(readName("", d), "blobs/", "compressed-blobs/zstd/", 1)
	for _, offset := range []int64{0, 12345} {
		z, err := readBlob(ctx, env.bs(), zread, offset, 0)
		if err != nil {
			t.Fatal(err)
		}
		dec, _ := zstd.NewReader(nil)
		plain, err := dec.DecodeAll(z, nil)
		if err != nil || !bytes.Equal(plain, data[offset:]) {
			t.Fatalf("compressed read at %d decodes to %d bytes, %v", offset, len(plain), err)
		}
		if len(z) >= len(data) {
			t.Errorf("compressed read is not smaller: %d >= %d", len(z), len(data))
		}
	}
	// Garbage that is not zstd is refused and nothing is stored.
	other := cas.DigestOf(repb.DigestFunction_SHA256, []byte("other"))
	stream, _ = env.bs().Write(ctx)
	_ = stream.Send(&bspb.WriteRequest{ResourceName: strings.Replace(uploadName("", other, "z2"), "/blobs/", "/compressed-blobs/zstd/", 1), Data: []byte("not zstd"), FinishWrite: true})
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad zstd: want INVALID_ARGUMENT, got %v", err)
	}
}

func TestByteStreamBadResourceNames(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	_, err := readBlob(ctx, env.bs(), "blobs/nothex/12", 0, 0)
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad hash: %v", err)
	}
	stream, _ := env.bs().Write(ctx)
	_ = stream.Send(&bspb.WriteRequest{ResourceName: "blobs/" + strings.Repeat("a", 64) + "/1", Data: []byte("x"), FinishWrite: true})
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "uploads/{uuid}") {
		t.Errorf("write without uploads/: %v", err)
	}
}

func TestShutdownDropsUnfinishedUploadsWithoutTraces(t *testing.T) {
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	first := startServerWith(t, cfg)
	ctx := context.Background()
	data := randomBytes(t, 300_000)
	d := sha(data)
	stream, err := first.bs().Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&bspb.WriteRequest{ResourceName: uploadName("", d, "cut"), Data: data[:100_000]}); err != nil {
		t.Fatal(err)
	}
	// The client stops without finish_write: the upload waits for a resume.
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("want INVALID_ARGUMENT for a stream without finish_write, got %v", err)
	}
	first.stop()

	second := startServerWith(t, cfg)
	if _, err := readBlob(ctx, second.bs(), readName("", d), 0, 0); status.Code(err) != codes.NotFound {
		t.Fatalf("a dropped upload must leave no blob: %v", err)
	}
	if _, err := second.bs().QueryWriteStatus(ctx, &bspb.QueryWriteStatusRequest{ResourceName: uploadName("", d, "cut")}); status.Code(err) != codes.NotFound {
		t.Fatalf("a dropped upload is not resumable after a restart: %v", err)
	}
	tmp, _ := os.ReadDir(filepath.Join(cfg.DataDir, "cas", "tmp"))
	if len(tmp) != 0 {
		t.Fatalf("temp files left behind: %v", tmp)
	}
}

func TestConcurrentWritesOfTheSameAndOfDifferentBlobs(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	same := randomBytes(t, 500_000)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			stream, err := env.bs().Write(ctx)
			if err == nil {
				name := uploadName("", sha(same), fmt.Sprintf("same-%d", i))
				for off := 0; off < len(same) && err == nil; off += 100_000 {
					err = stream.Send(&bspb.WriteRequest{ResourceName: name, WriteOffset: int64(off), Data: same[off : off+100_000], FinishWrite: off+100_000 == len(same)})
				}
				_, err = stream.CloseAndRecv()
			}
			errs <- err
		}()
		go func() {
			defer wg.Done()
			own := randomBytes(t, 50_000+i)
			_, err := writeBlob(ctx, env.bs(), "", sha(own), own)
			if err == nil {
				var got []byte
				got, err = readBlob(ctx, env.bs(), readName("", sha(own)), 0, 0)
				if err == nil && !bytes.Equal(got, own) {
					err = fmt.Errorf("blob %d reads back different", i)
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	got, err := readBlob(ctx, env.bs(), readName("", sha(same)), 0, 0)
	if err != nil || !bytes.Equal(got, same) {
		t.Fatalf("the blob written 8 times at once: %d bytes, %v", len(got), err)
	}
}

// The resume window's timer can fire just as a stream resumes the upload
// (attach stops it too late) and then runs after attach: it must leave the
// resumed upload alone, and drop only one that is still detached.
func TestResumeWindowExpiryLeavesAResumedUploadAlone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := memory.New()
	table := newUploadTable(ctx, store)
	defer table.abortAll()
	data := randomBytes(t, 1000)
	d := cas.DigestOf(repb.DigestFunction_SHA256, data)
	key := cas.Key{Partition: "org1", Kind: cas.KindCAS, Digest: d}
	rn := cas.ResourceName{UploadID: "resumed", Digest: d}

	up, err := table.attach(ctx, key, rn, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.pw.Write(data[:500]); err != nil {
		t.Fatal(err)
	}
	up.received.Store(500)
	table.detach(up)
	if resumed, err := table.attach(ctx, key, rn, 500); err != nil || resumed != up {
		t.Fatalf("resuming at 500: %v (the same upload: %v)", err, resumed == up)
	}
	table.expire(up) // the timer, late
	if received, ok := table.progress(key, rn); !ok || received != 500 {
		t.Fatalf("after a late expiry the resumed upload is known: %v, with %d bytes; want 500", ok, received)
	}
	if _, err := up.pw.Write(data[500:]); err != nil {
		t.Fatalf("writing to the resumed upload after a late expiry: %v", err)
	}
	up.pw.Close()
	if err := up.wait(); err != nil {
		t.Fatalf("finishing the resumed upload: %v", err)
	}
	table.remove(up)
	if missing, err := store.FindMissing(ctx, []cas.Key{key}); err != nil || len(missing) != 0 {
		t.Fatalf("the resumed upload is not stored: missing %v, %v", missing, err)
	}

	other := cas.ResourceName{UploadID: "detached", Digest: d}
	up, err = table.attach(ctx, key, other, 0)
	if err != nil {
		t.Fatal(err)
	}
	table.detach(up)
	table.expire(up)
	if _, ok := table.progress(key, other); ok {
		t.Fatal("a detached upload is still known after its resume window")
	}
}
