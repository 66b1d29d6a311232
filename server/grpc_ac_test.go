package server

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sealcache/sealcache/cas"
)

func statusCode(err error) codes.Code { return status.Code(err) }

func TestActionCacheCompletenessCheck(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	out := []byte("output file contents")
	stdout := []byte("compiler said hello")
	if _, err := env.cas().BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: sha(out).Proto(), Data: out},
		{Digest: sha(stdout).Proto(), Data: stdout},
	}}); err != nil {
		t.Fatal(err)
	}
	action := sha([]byte("action"))
	result := &repb.ActionResult{
		OutputFiles:  []*repb.OutputFile{{Path: "bin/out", Digest: sha(out).Proto()}},
		StdoutDigest: sha(stdout).Proto(),
	}
	if _, err := env.ac().UpdateActionResult(ctx, &repb.UpdateActionResultRequest{InstanceName: "linux", ActionDigest: action.Proto(), ActionResult: result}); err != nil {
		t.Fatal(err)
	}

	got, err := env.ac().GetActionResult(ctx, &repb.GetActionResultRequest{
		InstanceName: "linux", ActionDigest: action.Proto(), InlineStdout: true, InlineOutputFiles: []string{"bin/out"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.StdoutRaw) != string(stdout) || string(got.OutputFiles[0].Contents) != string(out) {
		t.Errorf("inlining: stdout %q, contents %q", got.StdoutRaw, got.OutputFiles[0].Contents)
	}
	// Results are per instance name.
	if _, err := env.ac().GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: "mac", ActionDigest: action.Proto()}); status.Code(err) != codes.NotFound {
		t.Errorf("other instance: want NOT_FOUND, got %v", err)
	}

	// Remove a referenced blob: the entry is no longer a hit.
	if err := env.s.storage.backend.Delete(ctx, cas.Key{Partition: cas.Partition(env.defaultOrg()), Kind: cas.KindCAS, Digest: sha(out)}); err != nil {
		t.Fatal(err)
	}
	_, err = env.ac().GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: "linux", ActionDigest: action.Proto()})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("entry with a missing output: want NOT_FOUND, got %v", err)
	}
}

func TestUpdateActionResultValidates(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	action := sha([]byte("action"))
	for name, r := range map[string]*repb.ActionResult{
		"file without digest": {OutputFiles: []*repb.OutputFile{{Path: "a"}}},
		"bad digest":          {OutputFiles: []*repb.OutputFile{{Path: "a", Digest: &repb.Digest{Hash: "zz"}}}},
		"dir without tree":    {OutputDirectories: []*repb.OutputDirectory{{Path: "d"}}},
	} {
		_, err := env.ac().UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: r})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: want INVALID_ARGUMENT, got %v", name, err)
		}
	}
	if _, err := env.ac().UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.Proto()}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("missing result: %v", err)
	}
}

// uploadBigTree stores an output directory's Tree of about size bytes:
// files with distinct names that all hold one small blob, which it also
// stores. name makes the tree distinct.
func uploadBigTree(t testing.TB, env *testEnv, name string, size int) cas.Digest {
	t.Helper()
	ctx := context.Background()
	content := []byte("every file of the big tree holds this")
	if _, err := writeBlob(ctx, env.bs(), "", sha(content), content); err != nil {
		t.Fatal(err)
	}
	file := func(i int) *repb.FileNode {
		return &repb.FileNode{Name: fmt.Sprintf("%s-file-%07d.o", name, i), Digest: sha(content).Proto()}
	}
	perFile := proto.Size(&repb.Directory{Files: []*repb.FileNode{file(0)}})
	root := &repb.Directory{Files: make([]*repb.FileNode, size/perFile)}
	for i := range root.Files {
		root.Files[i] = file(i)
	}
	data, err := proto.Marshal(&repb.Tree{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writeBlob(ctx, env.bs(), "", sha(data), data); err != nil {
		t.Fatal(err)
	}
	return sha(data)
}

// actionWithOutputDirs stores an ActionResult whose output directories
// name trees, and returns the action's digest.
func actionWithOutputDirs(t testing.TB, env *testEnv, name string, trees ...cas.Digest) cas.Digest {
	t.Helper()
	result := &repb.ActionResult{}
	for i, tree := range trees {
		result.OutputDirectories = append(result.OutputDirectories, &repb.OutputDirectory{Path: fmt.Sprintf("out/d%03d", i), TreeDigest: tree.Proto()})
	}
	action := sha([]byte(name))
	if _, err := env.ac().UpdateActionResult(context.Background(), &repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: result}); err != nil {
		t.Fatal(err)
	}
	return action
}

// The completeness check reads each Tree once, however many output
// directories name it, and an entry whose trees are too large to check is
// a miss rather than a long stall.
func TestCompletenessCheckReadsEachTreeOnceAndHasLimits(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	const treeSize = 17 << 20
	tree := uploadBigTree(t, env, "shared", treeSize)
	same := make([]cas.Digest, 100)
	for i := range same {
		same[i] = tree
	}
	action := actionWithOutputDirs(t, env, "100 directories, one tree", same...)

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	if _, err := env.ac().GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.Proto()}); err != nil {
		t.Fatalf("GetActionResult of 100 output directories with one %d-byte tree: %v", tree.Size, err)
	}
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("GetActionResult, 100 output directories naming one tree of %.1f MB: %v, %d MiB allocated (client and server)",
		float64(tree.Size)/1e6, took.Round(time.Millisecond), alloc>>20)
	if alloc > 10*treeSize {
		t.Errorf("one completeness check allocated %d MiB for a %d MiB tree named 100 times; want the tree read once", alloc>>20, treeSize>>20)
	}

	// Five distinct trees are more than the check reads (64 MiB): a miss.
	var distinct []cas.Digest
	for i := range 5 {
		distinct = append(distinct, uploadBigTree(t, env, fmt.Sprintf("distinct-%d", i), treeSize))
	}
	action = actionWithOutputDirs(t, env, "five big trees", distinct...)
	_, err := env.ac().GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.Proto()})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "more than the cache checks") {
		t.Fatalf("an entry with 5 trees of %d MiB: %v; want NOT_FOUND saying it is more than the cache checks", treeSize>>20, err)
	}
}

// BenchmarkCompletenessCheck measures GetActionResult of an entry with 100
// output directories that name one 17 MB Tree.
func BenchmarkCompletenessCheck(b *testing.B) {
	env := startServer(b)
	tree := uploadBigTree(b, env, "shared", 17<<20)
	same := make([]cas.Digest, 100)
	for i := range same {
		same[i] = tree
	}
	action := actionWithOutputDirs(b, env, "100 directories, one tree", same...)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := env.ac().GetActionResult(context.Background(), &repb.GetActionResultRequest{ActionDigest: action.Proto()}); err != nil {
			b.Fatal(err)
		}
	}
}
