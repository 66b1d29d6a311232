package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	bspb "google.golang.org/genproto/googleapis/bytestream"
)

// ZstdOptions shape the compressed-transfer measurement (target 4).
type ZstdOptions struct {
	Instance   string
	StreamSize int // bytes of the blob sent and read with compressed ByteStream
	BatchBlobs int // blobs per batch
	Batches    int // batches written and read
	BatchMin   int // smallest batch blob
	BatchMax   int // largest batch blob
	Chunk      int // WriteRequest data size
	Seed       uint64
}

// DefaultZstd sends a 256 MiB blob and 8 batches of 100 blobs of 4 to
// 60 KB. The blob is large enough that the transfer, not its setup, is
// timed.
func DefaultZstd() ZstdOptions {
	return ZstdOptions{StreamSize: 256 << 20, BatchBlobs: 100, Batches: 8, BatchMin: 4000, BatchMax: 60_000, Chunk: 1 << 20}
}

// ZstdReport compares each compressed transfer with zstd alone on the same
// data, and with the same transfer uncompressed (of other data of the same
// kind and size). Every figure is in uncompressed MB/s. The "alone" figures
// are klauspost/compress on one goroutine with the options the server
// uses: the fastest level when the server compresses, decoding what a
// client compressed at the default level when it decompresses.
//
// A compressed transfer can go no faster than the slower of zstd and the
// server's uncompressed path: for reads zstd is the bound (encoding runs
// at a few hundred MB/s), for writes usually the store (decoding runs at
// over 1 GB/s, above SHA-256 and small-object writes).
type ZstdReport struct {
	Ratio                                  float64 // uncompressed/compressed, stream data at the fastest level
	EncodeAloneMBps, DecodeAloneMBps       float64
	StreamReadMBps, StreamWriteMBps        float64
	PlainStreamReadMBps, PlainStreamWrite  float64 // the same, uncompressed
	BatchEncodeAloneMBps, BatchDecodeAlone float64
	BatchReadMBps, BatchWriteMBps          float64
	PlainBatchReadMBps, PlainBatchWrite    float64 // the same, uncompressed
}

// The server's encoder settings (server/zstd.go): what "zstd alone" is
// measured with.
var (
	streamEncoderOptions = []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1 << 20)}
	batchEncoderOptions  = []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1)}
	decoderOptions       = []zstd.DOption{zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64 << 20)}
)

// Zstd measures zstd alone, then the same data through the server:
// compressed ByteStream Write and Read of one blob, then BatchUpdateBlobs
// and BatchReadBlobs of zstd entries.
func Zstd(ctx context.Context, dial Dialer, o ZstdOptions) (ZstdReport, error) {
	var r ZstdReport
	conn, err := dial()
	if err != nil {
		return r, err
	}
	defer conn.Close()
	bs := bspb.NewByteStreamClient(conn)
	cas := repb.NewContentAddressableStorageClient(conn)
	rng := rand.New(rand.NewPCG(o.Seed, 11))
	words := vocabulary(rng)

	// ByteStream: one compressible blob.
	data := compressible(rng, words, o.StreamSize, o.Seed)
	d := sha256Digest(data)
	clientEnc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	upload := clientEnc.EncodeAll(data, nil)

	start := time.Now()
	enc, _ := zstd.NewWriter(io.Discard, streamEncoderOptions...)
	var counter countingWriter
	enc.Reset(&counter)
	enc.Write(data)
	enc.Close()
	r.EncodeAloneMBps = mbps(len(data), time.Since(start))
	r.Ratio = float64(len(data)) / float64(counter)

	start = time.Now()
	dec, _ := zstd.NewReader(bytes.NewReader(upload), decoderOptions...)
	n, err := io.Copy(io.Discard, dec)
	dec.Close()
	if err != nil || n != int64(len(data)) {
		return r, fmt.Errorf("zstd alone: decoded %d of %d bytes: %v", n, len(data), err)
	}
	r.DecodeAloneMBps = mbps(len(data), time.Since(start))

	start = time.Now()
	if err := writeBlob(ctx, bs, o.Instance, d, upload, true, o.Chunk); err != nil {
		return r, fmt.Errorf("compressed write: %w", err)
	}
	r.StreamWriteMBps = mbps(len(data), time.Since(start))

	start = time.Now()
	packed, err := readBlob(ctx, bs, readName(o.Instance, d, true), make([]byte, 0, len(data)))
	if err != nil {
		return r, fmt.Errorf("compressed read: %w", err)
	}
	r.StreamReadMBps = mbps(len(data), time.Since(start))
	if got, err := decodeAll(packed, len(data)); err != nil || !bytes.Equal(got, data) {
		return r, fmt.Errorf("compressed read: %d compressed bytes do not decode to the blob (%v)", len(packed), err)
	}

	// The same kind of blob, uncompressed.
	plain := compressible(rng, words, o.StreamSize, o.Seed+1)
	pd := sha256Digest(plain)
	start = time.Now()
	if err := writeBlob(ctx, bs, o.Instance, pd, plain, false, o.Chunk); err != nil {
		return r, fmt.Errorf("uncompressed write: %w", err)
	}
	r.PlainStreamWrite = mbps(len(plain), time.Since(start))
	start = time.Now()
	if _, err := readBlob(ctx, bs, readName(o.Instance, pd, false), packed[:0]); err != nil {
		return r, fmt.Errorf("uncompressed read: %w", err)
	}
	r.PlainStreamReadMBps = mbps(len(plain), time.Since(start))

	// Batches of small compressible blobs.
	batches := make([][]blob, o.Batches)
	plainBatches := make([][]blob, o.Batches) // as many blobs of the same sizes, sent uncompressed
	compressed := make([][][]byte, o.Batches)
	total := 0
	for i := range batches {
		for j := range o.BatchBlobs {
			size := o.BatchMin + rng.IntN(o.BatchMax-o.BatchMin+1)
			b := compressible(rng, words, size, o.Seed<<20|uint64(i<<10|j))
			batches[i] = append(batches[i], blob{digest: sha256Digest(b), data: b})
			compressed[i] = append(compressed[i], clientEnc.EncodeAll(b, nil))
			p := compressible(rng, words, size, (o.Seed+1)<<20|uint64(i<<10|j))
			plainBatches[i] = append(plainBatches[i], blob{digest: sha256Digest(p), data: p})
			total += len(b)
		}
	}
	batchEnc, _ := zstd.NewWriter(nil, batchEncoderOptions...)
	var scratch []byte
	start = time.Now()
	for _, batch := range batches {
		for _, b := range batch {
			scratch = batchEnc.EncodeAll(b.data, scratch[:0])
		}
	}
	r.BatchEncodeAloneMBps = mbps(total, time.Since(start))
	batchDec, _ := zstd.NewReader(nil, decoderOptions...)
	start = time.Now()
	for _, batch := range compressed {
		for _, c := range batch {
			if scratch, err = batchDec.DecodeAll(c, scratch[:0]); err != nil {
				return r, err
			}
		}
	}
	r.BatchDecodeAlone = mbps(total, time.Since(start))
	batchDec.Close()

	start = time.Now()
	for i, batch := range batches {
		req := &repb.BatchUpdateBlobsRequest{InstanceName: o.Instance}
		for j, b := range batch {
			req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: b.digest, Data: compressed[i][j], Compressor: repb.Compressor_ZSTD})
		}
		if err := checkBatchUpdate(cas.BatchUpdateBlobs(ctx, req)); err != nil {
			return r, fmt.Errorf("compressed batch: %w", err)
		}
	}
	r.BatchWriteMBps = mbps(total, time.Since(start))

	start = time.Now()
	for _, batch := range plainBatches {
		req := &repb.BatchUpdateBlobsRequest{InstanceName: o.Instance}
		for _, b := range batch {
			req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: b.digest, Data: b.data})
		}
		if err := checkBatchUpdate(cas.BatchUpdateBlobs(ctx, req)); err != nil {
			return r, fmt.Errorf("uncompressed batch: %w", err)
		}
	}
	r.PlainBatchWrite = mbps(total, time.Since(start))

	start = time.Now()
	var responses []*repb.BatchReadBlobsResponse
	for _, batch := range batches {
		req := &repb.BatchReadBlobsRequest{InstanceName: o.Instance, AcceptableCompressors: []repb.Compressor_Value{repb.Compressor_ZSTD}}
		for _, b := range batch {
			req.Digests = append(req.Digests, b.digest)
		}
		resp, err := cas.BatchReadBlobs(ctx, req)
		if err != nil {
			return r, fmt.Errorf("compressed batch read: %w", err)
		}
		responses = append(responses, resp)
	}
	r.BatchReadMBps = mbps(total, time.Since(start))
	start = time.Now()
	for _, batch := range plainBatches {
		req := &repb.BatchReadBlobsRequest{InstanceName: o.Instance}
		for _, b := range batch {
			req.Digests = append(req.Digests, b.digest)
		}
		if _, err := cas.BatchReadBlobs(ctx, req); err != nil {
			return r, fmt.Errorf("uncompressed batch read: %w", err)
		}
	}
	r.PlainBatchReadMBps = mbps(total, time.Since(start))
	for i, resp := range responses {
		if err := checkBatchRead(resp, batches[i]); err != nil {
			return r, fmt.Errorf("compressed batch read: %w", err)
		}
	}
	return r, nil
}

// checkBatchRead checks that every entry came back whole, in either form.
func checkBatchRead(resp *repb.BatchReadBlobsResponse, want []blob) error {
	if len(resp.Responses) != len(want) {
		return fmt.Errorf("%d responses for %d digests", len(resp.Responses), len(want))
	}
	for j, e := range resp.Responses {
		if e.Status.GetCode() != 0 {
			return fmt.Errorf("blob %s: %s", e.Digest.GetHash(), e.Status.GetMessage())
		}
		data := e.Data
		if e.Compressor == repb.Compressor_ZSTD {
			var err error
			if data, err = decodeAll(e.Data, len(want[j].data)); err != nil {
				return fmt.Errorf("blob %s: %v", e.Digest.GetHash(), err)
			}
		}
		if !bytes.Equal(data, want[j].data) {
			return fmt.Errorf("blob %s came back different", e.Digest.GetHash())
		}
	}
	return nil
}

func decodeAll(packed []byte, size int) ([]byte, error) {
	dec, err := zstd.NewReader(nil, decoderOptions...)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	return dec.DecodeAll(packed, make([]byte, 0, size))
}

func mbps(n int, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// vocabulary is a few hundred made-up words: text built from them
// compresses about as well as source code and build logs (3-4x at the
// fastest level).
func vocabulary(rng *rand.Rand) []string {
	words := make([]string, 400)
	for i := range words {
		b := make([]byte, 2+rng.IntN(9))
		for j := range b {
			b[j] = "abcdefghijklmnopqrstuvwxyz_"[rng.IntN(27)]
		}
		words[i] = string(b)
	}
	return words
}

// compressible makes size bytes of text from words, starting with id so
// that every blob differs.
func compressible(rng *rand.Rand, words []string, size int, id uint64) []byte {
	b := make([]byte, 0, size+16)
	b = strconv.AppendUint(b, id, 16)
	for len(b) < size {
		b = append(b, words[rng.IntN(len(words))]...)
		switch rng.IntN(8) {
		case 0:
			b = append(b, '\n')
		case 1:
			b = append(b, "();"[rng.IntN(3)])
		default:
			b = append(b, ' ')
		}
	}
	return b[:size]
}
