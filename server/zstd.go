package server

import (
	"errors"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sealcache/sealcache/cas"
)

// zstd on the wire. Building an encoder or decoder allocates its tables
// and buffers (an 8 MiB window decoder allocates the window), which cost
// more than compressing a small blob: so streams take theirs from pools,
// and batch entries share one encoder and one decoder that are safe for
// concurrent use. Levels are the fastest: zstd costs far more CPU than
// hashing and sealing together (README, "Storage").

// zstdStreamWindow is the window of compressed ByteStream reads: enough for
// the fastest level's matches, small enough to keep a stream's memory low.
const zstdStreamWindow = 1 << 20

// maxZstdWindow bounds the window any compressed upload may declare.
const maxZstdWindow = 64 << 20

var zstdEncoders = sync.Pool{New: func() any {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(zstdStreamWindow))
	if err != nil {
		panic(err) // the options are constant: this is a bug
	}
	return enc
}}

// getZstdEncoder returns a pooled encoder writing a new stream to w. Close
// it, then give it back with putZstdEncoder.
func getZstdEncoder(w io.Writer) *zstd.Encoder {
	enc := zstdEncoders.Get().(*zstd.Encoder)
	enc.Reset(w)
	return enc
}

func putZstdEncoder(enc *zstd.Encoder) {
	enc.Reset(io.Discard) // drop the reference to the stream's writer
	zstdEncoders.Put(enc)
}

var zstdDecoders = sync.Pool{New: func() any {
	// Concurrency 1 decodes in the reading goroutine, with no goroutines
	// of the decoder's own to stop.
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxZstdWindow))
	if err != nil {
		panic(err)
	}
	return dec
}}

// zstdUploadWindow is the largest window a compressed upload of a blob of
// blobSize bytes may declare.
//
// The decoder allocates a frame's whole window when the frame starts,
// whatever the blob's size, so the window is bounded by the blob: any blob
// may use the 8 MiB the zstd format asks decoders to support, larger
// windows (long-distance matching) need a blob at least as large, and
// 64 MiB is the most.
func zstdUploadWindow(blobSize int64) uint64 {
	return uint64(min(max(blobSize, 8<<20), maxZstdWindow))
}

// zstdBody decompresses an upload with a pooled decoder and reports a
// malformed zstd stream as a client error. Close gives the decoder back.
type zstdBody struct {
	d         *zstd.Decoder
	maxWindow uint64
}

// newZstdBody decompresses r, an upload of a blob of blobSize bytes.
// Decompressing past the blob's size is stopped by the digest check below
// it (cas/verify, or the sealing store's), one block at most past it.
func newZstdBody(r io.Reader, blobSize int64) (*zstdBody, error) {
	maxWindow := zstdUploadWindow(blobSize)
	dec := zstdDecoders.Get().(*zstd.Decoder)
	if err := dec.ResetWithOptions(r, zstd.WithDecoderMaxWindow(maxWindow)); err != nil {
		return nil, status.Errorf(codes.Internal, "zstd: %v", err)
	}
	return &zstdBody{d: dec, maxWindow: maxWindow}, nil
}

// WriteTo writes the decompressed upload to w in the decoder's own
// blocks, without copying them into a buffer first.
func (z *zstdBody) WriteTo(w io.Writer) (int64, error) {
	n, err := z.d.WriteTo(w)
	return n, zstdError(err, z.maxWindow)
}

// Close returns the decoder to the pool. The body must not be used after.
func (z *zstdBody) Close() {
	if z.d == nil {
		return
	}
	z.d.Reset(nil) // drop the reference to the upload
	zstdDecoders.Put(z.d)
	z.d = nil
}

// zstdError turns a decoder error into the status the client gets.
func zstdError(err error, maxWindow uint64) error {
	switch {
	case err == nil || err == io.EOF:
		return err
	case errors.Is(err, zstd.ErrWindowSizeExceeded):
		return status.Errorf(codes.InvalidArgument, "the zstd frame declares a window larger than the %d bytes this server allows for a blob of this size: compress with a smaller window (zstd levels up to 19, without --long)", maxWindow)
	case status.Code(err) != codes.Unknown:
		return err // already a status: from the stream the bytes come from
	}
	return status.Errorf(codes.InvalidArgument, "compressed data is not valid zstd: %v", err)
}

// batchZstd compresses and decompresses the entries of batch requests,
// which are whole blobs in memory: EncodeAll and DecodeAll on one shared
// encoder and decoder, each safe for concurrent use and running at most
// GOMAXPROCS calls at a time (their own pools of block coders), which also
// bounds the CPU that concurrent batch entries spend on zstd.
var batchZstd = sync.OnceValue(func() (z struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}) {
	var err error
	n := runtime.GOMAXPROCS(0)
	if z.enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(n)); err != nil {
		panic(err)
	}
	// DecodeAll decodes into the output buffer, which is also its
	// history: no window is allocated, and WithDecodeAllCapLimit stops a
	// frame that decodes past the buffer's capacity (the blob's size plus
	// one byte) after at most one block.
	if z.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(n), zstd.WithDecoderMaxWindow(zstdUploadWindow(maxBatchTotalSize)), zstd.WithDecodeAllCapLimit(true)); err != nil {
		panic(err)
	}
	return z
})

// decodeBatchEntry decompresses one batch entry, a blob of digest d.
func decodeBatchEntry(data []byte, d cas.Digest) ([]byte, error) {
	out, err := batchZstd().dec.DecodeAll(data, make([]byte, 0, d.Size+1))
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return nil, status.Errorf(codes.InvalidArgument, "blob %s does not match its digest: received more than its %d bytes once decompressed; nothing was stored", d, d.Size)
	}
	return out, zstdError(err, zstdUploadWindow(maxBatchTotalSize))
}
