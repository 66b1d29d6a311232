package completeness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/emptyblob"
	"github.com/sealcache/sealcache/cas/memory"
)

const sha256 = repb.DigestFunction_SHA256

// countingStore counts the Gets that reach the store below the checker.
type countingStore struct {
	cas.BlobStore
	gets atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, k cas.Key, off int64) (io.ReadCloser, int64, error) {
	c.gets.Add(1)
	return c.BlobStore.Get(ctx, k, off)
}

type fixture struct {
	t       *testing.T
	mem     *memory.Store
	below   *countingStore
	checked cas.BlobStore
}

func newFixture(t *testing.T, limits Limits) *fixture {
	mem := memory.New()
	below := &countingStore{BlobStore: emptyblob.New(mem)}
	return &fixture{t: t, mem: mem, below: below, checked: New(below, limits)}
}

// blob stores data in the CAS of org1 and returns its digest.
func (f *fixture) blob(data []byte) *repb.Digest {
	f.t.Helper()
	d := cas.DigestOf(sha256, data)
	if !d.IsEmpty() {
		k := cas.Key{Partition: "org1", Kind: cas.KindCAS, Digest: d}
		if err := f.mem.Put(context.Background(), k, d.Size, bytes.NewReader(data)); err != nil {
			f.t.Fatal(err)
		}
	}
	return d.Proto()
}

func (f *fixture) message(m proto.Message) *repb.Digest {
	data, err := proto.Marshal(m)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.blob(data)
}

func (f *fixture) putEntry(k cas.Key, data []byte) {
	f.t.Helper()
	if err := f.checked.Put(context.Background(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) get(k cas.Key) ([]byte, error) {
	rc, _, err := f.checked.Get(context.Background(), k, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func acKey(action string) cas.Key {
	return cas.Key{Partition: "org1", Kind: cas.KindAC, Digest: cas.DigestOf(sha256, []byte(action))}
}

func marshal(t *testing.T, m proto.Message) []byte {
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestCompleteResultIsServedAndIncompleteOneIsAMiss(t *testing.T) {
	f := newFixture(t, DefaultLimits)
	fileInTree := []byte("a file inside an output directory")
	tree := &repb.Tree{Root: &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: f.blob(fileInTree)}}}}
	result := &repb.ActionResult{
		OutputFiles:       []*repb.OutputFile{{Path: "out", Digest: f.blob([]byte("output"))}, {Path: "empty", Digest: f.blob(nil)}},
		OutputDirectories: []*repb.OutputDirectory{{Path: "dir", TreeDigest: f.message(tree)}},
		StdoutDigest:      f.blob([]byte("stdout")),
		StderrDigest:      f.blob([]byte("stderr")),
	}
	entry := marshal(t, result)
	k := acKey("action")
	f.putEntry(k, entry)
	if got, err := f.get(k); err != nil || !bytes.Equal(got, entry) {
		t.Fatalf("complete result: %d bytes, %v", len(got), err)
	}

	for _, gone := range []struct {
		what string
		data []byte
	}{{"output file", []byte("output")}, {"stderr", []byte("stderr")}, {"file inside a tree", fileInTree}, {"tree", marshal(t, tree)}} {
		t.Run(gone.what, func(t *testing.T) {
			k := cas.Key{Partition: "org1", Kind: cas.KindCAS, Digest: cas.DigestOf(sha256, gone.data)}
			f.mem.Delete(context.Background(), k)
			defer f.mem.Put(context.Background(), k, int64(len(gone.data)), bytes.NewReader(gone.data))
			_, err := f.get(acKey("action"))
			var incomplete *IncompleteError
			if !errors.As(err, &incomplete) || !errors.Is(err, cas.ErrNotFound) {
				t.Fatalf("with the %s gone: Get = %v; want an IncompleteError that is a miss", gone.what, err)
			}
		})
	}
}

func TestOpaqueEntriesAreServedAsTheyAre(t *testing.T) {
	f := newFixture(t, DefaultLimits)
	// What ccache stores under /ac/: its own result format.
	opaque := append([]byte("cCrS\x00\x01"), bytes.Repeat([]byte{0xfe, 0x03}, 500)...)
	if _, err := ParseActionResult(sha256, opaque); err == nil {
		t.Fatal("ccache bytes parsed as an ActionResult")
	}
	k := acKey("ccache key")
	k.Digest.Size = cas.SizeUnknown
	f.putEntry(k, opaque)
	if got, err := f.get(k); err != nil || !bytes.Equal(got, opaque) {
		t.Fatalf("opaque entry: %d bytes, %v", len(got), err)
	}
	big := bytes.Repeat([]byte("x"), MaxActionResultSize+10)
	f.putEntry(k, big)
	rc, size, err := f.checked.Get(context.Background(), k, 7)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if size != int64(len(big)) || !bytes.Equal(got, big[7:]) {
		t.Fatalf("large opaque entry at offset 7: %d of %d bytes", len(got), size)
	}
}

func TestParseActionResultRefusesUnknownFieldsAndBadDigests(t *testing.T) {
	good := marshal(t, &repb.ActionResult{ExitCode: 1, StdoutDigest: cas.DigestOf(sha256, []byte("x")).Proto()})
	if _, err := ParseActionResult(sha256, good); err != nil {
		t.Fatalf("a valid ActionResult: %v", err)
	}
	if _, err := ParseActionResult(sha256, nil); err != nil {
		t.Fatalf("the empty ActionResult: %v", err)
	}
	unknownField := append(bytes.Clone(good), 0xf8, 0x07, 0x01) // field 127, varint 1
	if _, err := ParseActionResult(sha256, unknownField); err == nil {
		t.Fatal("an unknown field was accepted")
	}
	badDigest := marshal(t, &repb.ActionResult{StdoutDigest: &repb.Digest{Hash: "nothex", SizeBytes: 1}})
	if _, err := ParseActionResult(sha256, badDigest); err == nil {
		t.Fatal("a bad digest was accepted")
	}
}

// The HTTP protocol names blobs by hash alone, so an HTTP entry's outputs
// are looked up in that namespace.
func TestHTTPEntriesAreCheckedInTheHTTPNamespace(t *testing.T) {
	f := newFixture(t, DefaultLimits)
	out := []byte("uploaded over HTTP")
	d := cas.DigestOf(sha256, out)
	httpBlob := cas.Key{Partition: "org1", Kind: cas.KindCAS, Digest: cas.Digest{Function: sha256, Hash: d.Hash, Size: cas.SizeUnknown}}
	k := acKey("http action")
	k.Digest.Size = cas.SizeUnknown
	f.putEntry(k, marshal(t, &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "o", Digest: d.Proto()}}}))
	if _, err := f.get(k); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("with the output missing from the HTTP namespace: %v; want a miss", err)
	}
	f.mem.Put(context.Background(), httpBlob, cas.SizeUnknown, bytes.NewReader(out))
	if _, err := f.get(k); err != nil {
		t.Fatalf("with the output present: %v", err)
	}
}

// 100 output directories naming one large Tree cost one read of it, not
// 100 (the check used to re-read and re-parse it for each).
func TestATreeNamedManyTimesIsReadOnce(t *testing.T) {
	f := newFixture(t, DefaultLimits)
	var files []*repb.FileNode
	for i := range 20_000 {
		files = append(files, &repb.FileNode{Name: fmt.Sprint(i), Digest: f.blob([]byte(fmt.Sprint("file ", i)))})
	}
	tree := f.message(&repb.Tree{Root: &repb.Directory{Files: files}})
	result := &repb.ActionResult{}
	for i := range 100 {
		result.OutputDirectories = append(result.OutputDirectories, &repb.OutputDirectory{Path: fmt.Sprint("d", i), TreeDigest: tree})
	}
	k := acKey("many dirs")
	f.putEntry(k, marshal(t, result))
	before := f.below.gets.Load()
	if _, err := f.get(k); err != nil {
		t.Fatal(err)
	}
	if reads := f.below.gets.Load() - before; reads != 2 {
		t.Fatalf("the check made %d reads; want 2 (the entry and the tree once)", reads)
	}
}

func TestEntriesBeyondTheLimitsAreMisses(t *testing.T) {
	f := newFixture(t, Limits{TreeBytes: 1000, Blobs: 10})
	var files []*repb.FileNode
	for i := range 50 {
		files = append(files, &repb.FileNode{Name: fmt.Sprint(i), Digest: f.blob([]byte(fmt.Sprint("file ", i)))})
	}
	bigTree := f.message(&repb.Tree{Root: &repb.Directory{Files: files}})
	small := f.message(&repb.Tree{Root: &repb.Directory{Files: files[:2]}})
	cases := map[string]*repb.ActionResult{
		"tree bytes": {OutputDirectories: []*repb.OutputDirectory{{Path: "d", TreeDigest: bigTree}}},
		"blobs":      {OutputDirectories: []*repb.OutputDirectory{{Path: "d", TreeDigest: small}}, OutputFiles: filesOf(files[10:30])},
	}
	for name, result := range cases {
		t.Run(name, func(t *testing.T) {
			k := acKey(name)
			f.putEntry(k, marshal(t, result))
			_, err := f.get(k)
			var incomplete *IncompleteError
			if !errors.As(err, &incomplete) {
				t.Fatalf("Get = %v; want a miss for exceeding the limits", err)
			}
		})
	}
}

func filesOf(nodes []*repb.FileNode) []*repb.OutputFile {
	var out []*repb.OutputFile
	for _, n := range nodes {
		out = append(out, &repb.OutputFile{Path: n.Name, Digest: n.Digest})
	}
	return out
}
