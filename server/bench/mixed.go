package bench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"

	bspb "google.golang.org/genproto/googleapis/bytestream"

	"github.com/sealcache/sealcache/internal/loadgen"
)

// MixedOptions shape the mixed small-blob load (issue 12, target 1).
type MixedOptions struct {
	Instance string
	Blobs    int // distinct blobs written
	MinSize  int // smallest blob, bytes
	MaxSize  int // largest blob, bytes
	Clients  int // concurrent clients, one connection each
	Reads    int // times each blob is read back
	Chunk    int // largest WriteRequest data, bytes
	Seed     uint64
}

// DefaultMixed is issue 12's load: 3,000 blobs of 1 KB to 200 KB written
// by 32 clients, then each read 3 times.
func DefaultMixed() MixedOptions {
	return MixedOptions{Blobs: 3000, MinSize: 1000, MaxSize: 200_000, Clients: 32, Reads: 3, Chunk: 1 << 20}
}

// MixedReport has one phase for the writes and one for the reads.
type MixedReport struct {
	Write, Read Phase
}

// Mixed writes o.Blobs blobs with ByteStream Write (one stream per blob,
// as Bazel uploads) from o.Clients clients, then reads every blob o.Reads
// times with ByteStream Read, in a shuffled order, checking each byte.
func Mixed(ctx context.Context, dial Dialer, o MixedOptions) (MixedReport, error) {
	var r MixedReport
	blobs := randomBlobs(o.Seed, o.Blobs, o.MinSize, o.MaxSize)
	conns, closeAll, err := dialAll(dial, o.Clients)
	if err != nil {
		return r, err
	}
	defer closeAll()
	clients := make([]bspb.ByteStreamClient, len(conns))
	for i, c := range conns {
		clients[i] = bspb.NewByteStreamClient(c)
	}
	r.Write, err = loadgen.Run(o.Clients, len(blobs), func(c, i int) (int64, error) {
		b := blobs[i]
		return int64(len(b.data)), writeBlob(ctx, clients[c], o.Instance, b.digest, b.data, false, o.Chunk)
	})
	if err != nil {
		return r, fmt.Errorf("mixed load, writing: %w", err)
	}
	order := make([]int, 0, len(blobs)*o.Reads)
	rng := rand.New(rand.NewPCG(o.Seed, 7))
	for range o.Reads {
		order = append(order, rng.Perm(len(blobs))...)
	}
	bufs := sync.Pool{New: func() any { return new([]byte) }}
	r.Read, err = loadgen.Run(o.Clients, len(order), func(c, i int) (int64, error) {
		b := blobs[order[i]]
		buf := bufs.Get().(*[]byte)
		defer bufs.Put(buf)
		got, err := readBlob(ctx, clients[c], readName(o.Instance, b.digest, false), *buf)
		*buf = got
		if err != nil {
			return 0, err
		}
		if !bytes.Equal(got, b.data) {
			return 0, fmt.Errorf("blob %s/%d read back as %d different bytes", b.digest.Hash, b.digest.SizeBytes, len(got))
		}
		return int64(len(got)), nil
	})
	if err != nil {
		return r, fmt.Errorf("mixed load, reading: %w", err)
	}
	return r, nil
}
