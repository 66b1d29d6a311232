package fence

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/memory"
)

func key(org cas.Partition, data []byte) cas.Key {
	return cas.Key{Partition: org, Kind: cas.KindCAS, Digest: cas.DigestOf(repb.DigestFunction_SHA256, data)}
}

// gatedReader yields its data, then waits for release before its EOF, so a
// test can hold an upload just before it would publish.
type gatedReader struct {
	data    []byte
	waiting chan struct{} // closed when the data is all read
	release chan struct{}
}

func newGatedReader(data []byte) *gatedReader {
	return &gatedReader{data: data, waiting: make(chan struct{}), release: make(chan struct{})}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if len(g.data) > 0 {
		n := copy(p, g.data)
		g.data = g.data[n:]
		return n, nil
	}
	close(g.waiting)
	<-g.release
	return 0, io.EOF
}

// An upload that spans a fence of its org publishes nothing.
func TestUploadSpanningAFenceIsRefused(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	f := New(mem)
	data := []byte("plaintext uploaded before CMEK was enabled")
	k := key("acme", data)
	r := newGatedReader(data)
	done := make(chan error, 1)
	go func() { done <- f.Put(ctx, k, int64(len(data)), r) }()
	<-r.waiting

	ran := false
	if err := f.Fence(ctx, "acme", func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("Fence = %v, ran %v", err, ran)
	}
	close(r.release)
	if err := <-done; !errors.Is(err, ErrFenced) {
		t.Fatalf("Put spanning the fence = %v; want ErrFenced", err)
	}
	if mem.Puts() != 0 || len(mem.Keys("acme")) != 0 {
		t.Fatal("the fenced upload was published")
	}
	// A new upload after the fence goes through.
	if err := f.Put(ctx, k, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Put after the fence: %v", err)
	}
}

// publishingStore lets a test hold a Put after it read EOF, as if the
// store were still renaming the file into place.
type publishingStore struct {
	cas.BlobStore
	atEOF   chan struct{}
	publish chan struct{}
}

func (p *publishingStore) Put(ctx context.Context, k cas.Key, size int64, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	close(p.atEOF)
	<-p.publish
	return p.BlobStore.Put(ctx, k, size, bytes.NewReader(data))
}

// A fence waits for a publish in progress, so its deletes see the object.
func TestFenceWaitsForAPublishInProgress(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	store := &publishingStore{BlobStore: mem, atEOF: make(chan struct{}), publish: make(chan struct{})}
	f := New(store)
	data := []byte("finished just before the fence")
	k := key("acme", data)
	done := make(chan error, 1)
	go func() { done <- f.Put(ctx, k, int64(len(data)), bytes.NewReader(data)) }()
	<-store.atEOF

	fenced := make(chan []cas.Key, 1)
	go func() {
		f.Fence(ctx, "acme", func(ctx context.Context) error {
			fenced <- mem.Keys("acme")
			_, err := mem.DeletePartition(ctx, "acme")
			return err
		})
	}()
	close(store.publish)
	if err := <-done; err != nil {
		t.Fatalf("Put that reached EOF before the fence = %v; want success", err)
	}
	if seen := <-fenced; len(seen) != 1 {
		t.Fatalf("the fence ran while the publish was in progress (it saw %d objects)", len(seen))
	}
	if len(mem.Keys("acme")) != 0 {
		t.Fatal("the object published before the fence survived its delete")
	}
}

func TestFencesAreCountedPerOrg(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	f := New(mem)
	data := []byte("another org's upload")
	k := key("other", data)
	r := newGatedReader(data)
	done := make(chan error, 1)
	go func() { done <- f.Put(ctx, k, int64(len(data)), r) }()
	<-r.waiting
	f.Fence(ctx, "acme", func(context.Context) error { return nil })
	close(r.release)
	if err := <-done; err != nil {
		t.Fatalf("fencing acme failed an upload of another org: %v", err)
	}
}

// pausedReader yields first, then waits for resume before it yields rest.
type pausedReader struct {
	first, rest []byte
	paused      chan struct{} // closed when first is all read
	resume      chan struct{}
	restRead    bool
}

func (r *pausedReader) Read(p []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(p, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	if !r.restRead {
		close(r.paused)
		<-r.resume
		r.restRead = true
	}
	if len(r.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// An upload fenced halfway fails at its next read: the store stops
// writing it then, not when the client has sent the rest.
func TestUploadFencedHalfwayStopsAtItsNextRead(t *testing.T) {
	ctx := context.Background()
	store := &countingStore{BlobStore: memory.New()}
	f := New(store)
	data := bytes.Repeat([]byte("plaintext "), 1000)
	r := &pausedReader{first: data[:5000], rest: data[5000:], paused: make(chan struct{}), resume: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- f.Put(ctx, key("acme", data), int64(len(data)), r) }()
	<-r.paused
	f.Fence(ctx, "acme", func(context.Context) error { return nil })
	close(r.resume)
	if err := <-done; !errors.Is(err, ErrFenced) {
		t.Fatalf("Put fenced halfway = %v; want ErrFenced", err)
	}
	if store.read > 5000 {
		t.Errorf("the store read %d bytes of the fenced upload; want it stopped at the 5000 before the fence", store.read)
	}
}

// countingStore counts the bytes its Puts read before they fail.
type countingStore struct {
	cas.BlobStore
	read int
}

func (c *countingStore) Put(ctx context.Context, k cas.Key, size int64, r io.Reader) error {
	buf := make([]byte, 1000)
	for {
		n, err := r.Read(buf)
		c.read += n
		if err == io.EOF {
			return c.BlobStore.Put(ctx, k, size, bytes.NewReader(nil))
		}
		if err != nil {
			return err
		}
	}
}
