// Package completeness is the storage behaviour that keeps action cache
// hits usable: an AC entry that is an ActionResult is served only while
// every blob it names is still in the CAS (output files, stdout, stderr,
// and every file inside each output directory's Tree). Otherwise it is a
// miss, so Bazel runs the action again instead of failing to download an
// output. Opaque AC entries of HTTP cache clients (ccache) are served as
// they are: nothing in them names CAS blobs.
//
// It serves both protocols from one place: an AC key of the HTTP protocol
// (digest size cas.SizeUnknown) has its outputs looked up in the HTTP
// namespace, by hash alone.
//
// The work per lookup is bounded (Limits) so that no entry can make the
// server read or hold much: every Tree is read once however many output
// directories name it, and an entry whose check would exceed the limits is
// a miss.
package completeness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/sealcache/sealcache/cas"
)

// Limits bound the work of one check.
type Limits struct {
	// TreeBytes is the most Tree bytes read per check, all trees together.
	TreeBytes int64
	// Blobs is the most distinct blobs looked up per check.
	Blobs int
}

// DefaultLimits allow an entry with a few hundred thousand output files:
// far beyond real builds, far below what would hurt the server.
var DefaultLimits = Limits{TreeBytes: 64 << 20, Blobs: 500_000}

// findMissingBatch is how many keys one FindMissing call asks about.
const findMissingBatch = 10_000

type checker struct {
	inner  cas.BlobStore
	limits Limits
}

// New returns inner with completeness checks on AC reads.
func New(inner cas.BlobStore, limits Limits) cas.BlobStore {
	return &checker{inner: inner, limits: limits}
}

// IncompleteError says why an ActionResult was not served. It wraps
// cas.ErrNotFound: to the client it is a miss.
type IncompleteError struct {
	Action cas.Digest
	Reason string
}

func (e *IncompleteError) Error() string {
	return fmt.Sprintf("action result %s %s", e.Action, e.Reason)
}

func (e *IncompleteError) Unwrap() error { return cas.ErrNotFound }

func (c *checker) Get(ctx context.Context, key cas.Key, offset int64) (io.ReadCloser, int64, error) {
	if key.Kind != cas.KindAC {
		return c.inner.Get(ctx, key, offset)
	}
	rc, size, err := c.inner.Get(ctx, key, 0)
	if err != nil {
		return nil, 0, err
	}
	if offset < 0 || offset > size {
		rc.Close()
		return nil, 0, fmt.Errorf("reading %s: offset %d is outside the entry (0 to %d)", key, offset, size)
	}
	if size > MaxActionResultSize {
		// Too large for an ActionResult: an opaque entry, served as is.
		if _, err := io.CopyN(io.Discard, rc, offset); err != nil {
			rc.Close()
			return nil, 0, fmt.Errorf("reading %s: %w", key, err)
		}
		return rc, size, nil
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", key, err)
	}
	if result, err := ParseActionResult(key.Digest.Function, data); err == nil {
		if err := c.check(ctx, key, result); err != nil {
			return nil, 0, err
		}
	}
	return io.NopCloser(bytes.NewReader(data[offset:])), size, nil
}

// check returns nil when every output of result is in the CAS, an
// *IncompleteError when one is not or the check would exceed the limits,
// and other errors for storage trouble.
func (c *checker) check(ctx context.Context, key cas.Key, result *repb.ActionResult) error {
	w := &walk{c: c, ctx: ctx, acKey: key, seen: map[cas.Key]bool{}}
	for _, d := range outputDigests(result) {
		if err := w.add(d); err != nil {
			return err
		}
	}
	if err := w.flush(); err != nil {
		return err
	}
	trees := map[cas.Key]bool{}
	for _, dir := range result.OutputDirectories {
		k, ok := w.casKey(dir.TreeDigest)
		if !ok || trees[k] {
			continue
		}
		trees[k] = true
		if err := w.addTree(k); err != nil {
			return err
		}
	}
	return w.flush()
}

// outputDigests lists the blobs an ActionResult names directly.
func outputDigests(r *repb.ActionResult) []*repb.Digest {
	var ds []*repb.Digest
	for _, f := range r.OutputFiles {
		ds = append(ds, f.Digest)
	}
	for _, d := range r.OutputDirectories {
		ds = append(ds, d.TreeDigest)
	}
	return append(ds, r.StdoutDigest, r.StderrDigest)
}

// walk collects the blobs of one check, deduplicated, and asks the CAS
// about them in batches.
type walk struct {
	c         *checker
	ctx       context.Context
	acKey     cas.Key
	seen      map[cas.Key]bool
	pending   []cas.Key
	treeBytes int64
}

func (w *walk) incomplete(format string, args ...any) error {
	return &IncompleteError{Action: w.acKey.Digest, Reason: fmt.Sprintf(format, args...)}
}

// casKey is where an output blob lives: the AC entry's org, and the HTTP
// namespace for entries of the HTTP protocol.
func (w *walk) casKey(d *repb.Digest) (cas.Key, bool) {
	digest, err := cas.FromProto(w.acKey.Digest.Function, d)
	if err != nil {
		return cas.Key{}, false
	}
	if w.acKey.Digest.Size == cas.SizeUnknown {
		digest.Size = cas.SizeUnknown
	}
	return cas.Key{Partition: w.acKey.Partition, Kind: cas.KindCAS, Digest: digest}, true
}

func (w *walk) add(d *repb.Digest) error {
	if d == nil {
		return nil
	}
	k, ok := w.casKey(d)
	if !ok || w.seen[k] {
		return nil
	}
	if len(w.seen) >= w.c.limits.Blobs {
		return w.incomplete("names more than %d blobs, more than the cache checks; treated as a miss", w.c.limits.Blobs)
	}
	w.seen[k] = true
	w.pending = append(w.pending, k)
	if len(w.pending) >= findMissingBatch {
		return w.flush()
	}
	return nil
}

func (w *walk) flush() error {
	if len(w.pending) == 0 {
		return nil
	}
	missing, err := w.c.inner.FindMissing(w.ctx, w.pending)
	w.pending = w.pending[:0]
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return w.incomplete("refers to blob %s, which is no longer in the CAS", missing[0].Digest)
	}
	return nil
}

// addTree reads one output directory's Tree and adds every file in it.
func (w *walk) addTree(k cas.Key) error {
	budget := w.c.limits.TreeBytes - w.treeBytes
	data, err := cas.ReadAll(w.ctx, w.c.inner, k, budget)
	switch {
	case errors.Is(err, cas.ErrNotFound):
		return w.incomplete("refers to tree %s, which is no longer in the CAS", k.Digest)
	case errors.Is(err, cas.ErrTooLarge):
		return w.incomplete("has output trees of more than %d bytes together, more than the cache checks; treated as a miss", w.c.limits.TreeBytes)
	case err != nil:
		return err
	}
	w.treeBytes += int64(len(data))
	tree := &repb.Tree{}
	if err := proto.Unmarshal(data, tree); err != nil {
		return w.incomplete("has output tree %s, which is not a Tree message", k.Digest)
	}
	for _, dir := range append([]*repb.Directory{tree.Root}, tree.Children...) {
		for _, f := range dir.GetFiles() {
			if err := w.add(f.Digest); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *checker) Put(ctx context.Context, key cas.Key, size int64, r io.Reader) error {
	return c.inner.Put(ctx, key, size, r)
}

func (c *checker) FindMissing(ctx context.Context, keys []cas.Key) ([]cas.Key, error) {
	return c.inner.FindMissing(ctx, keys)
}

func (c *checker) Delete(ctx context.Context, key cas.Key) error {
	return c.inner.Delete(ctx, key)
}
