package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sealcache/sealcache/cas"
)

const (
	// readChunkSize is the payload of one ReadResponse: large enough to
	// amortise per-message cost, small enough to keep memory per stream flat.
	readChunkSize = 256 << 10
	// uploadResumeWindow is how long a broken-off upload waits for the
	// client to resume it (QueryWriteStatus + Write at the committed
	// offset) before it is dropped. A stream that stays open but sends
	// nothing is another matter: Config.UploadIdleTimeout ends it.
	uploadResumeWindow = time.Minute
)

// byteStreamServer serves ByteStream reads and (resumable) writes of CAS
// blobs over blobs.
type byteStreamServer struct {
	bspb.UnimplementedByteStreamServer
	blobs       cas.BlobStore
	uploads     *uploadTable
	blobLimit   BlobLimit
	idleTimeout time.Duration // a Write stream silent this long is ended
	metrics     *metrics
	log         *slog.Logger
}

func (b *byteStreamServer) Read(req *bspb.ReadRequest, stream bspb.ByteStream_ReadServer) error {
	ctx := stream.Context()
	rn, err := cas.ParseReadResourceName(req.ResourceName)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if err := checkInstanceName(rn.Instance); err != nil {
		return err
	}
	size := rn.Digest.Size
	if req.ReadOffset < 0 || req.ReadOffset > size {
		return status.Errorf(codes.OutOfRange, "read_offset %d is outside blob %s of %d bytes", req.ReadOffset, rn.Digest, size)
	}
	if req.ReadLimit < 0 {
		return status.Errorf(codes.InvalidArgument, "read_limit %d is negative; use 0 for no limit", req.ReadLimit)
	}
	rc, stored, err := b.blobs.Get(ctx, casKey(ctx, rn.Digest), req.ReadOffset)
	if err != nil {
		return storeError(err)
	}
	defer rc.Close()
	n := stored - req.ReadOffset
	if req.ReadLimit > 0 {
		n = min(n, req.ReadLimit)
	}
	out := &readSender{stream: stream, m: b.metrics}
	if rn.Compressor == repb.Compressor_ZSTD {
		defer out.release()
		enc := getZstdEncoder(out)
		err := readPieces(rc, n, func(piece *[]byte) error {
			_, err := enc.Write(*piece)
			readBufs.Put(piece)
			return err
		})
		if err == nil {
			err = enc.Close()
		}
		putZstdEncoder(enc)
		if err != nil {
			return storeError(err)
		}
		return out.flush()
	}
	return storeError(readPieces(rc, n, out.send))
}

// readPieces reads the first n bytes of src in pieces of at most
// readChunkSize, each in a buffer from readBufs that use then owns (it
// sends it or gives it back). A blob of one piece is read and used in
// turn; a larger one is read ahead in a goroutine of its own, so that
// reading (and the stores' checks) and using (compressing, sending) run
// on two cores. The stores below never hand out bytes they have not
// checked, so every piece has passed the integrity checks.
func readPieces(src io.Reader, n int64, use func(piece *[]byte) error) error {
	if n <= 0 {
		return nil
	}
	if n <= readChunkSize {
		piece := readBufs.Get(int(n))
		if _, err := io.ReadFull(src, *piece); err != nil {
			readBufs.Put(piece)
			return shortRead(err, n)
		}
		return use(piece)
	}
	ra := startReadAhead(io.LimitReader(src, n))
	defer ra.close()
	var sent int64
	for {
		piece, err := ra.next()
		if err == io.EOF {
			if sent < n {
				return shortRead(io.ErrUnexpectedEOF, n)
			}
			return nil
		}
		if err != nil {
			return err
		}
		sent += int64(len(*piece))
		if err := use(piece); err != nil {
			return err
		}
	}
}

// shortRead names a store that ended before the size it gave.
func shortRead(err error, n int64) error {
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return fmt.Errorf("the store ended before the %d bytes it announced: %w", n, io.ErrUnexpectedEOF)
	}
	return err
}

// readSender sends ReadResponse messages, each a buffer from readBufs sent
// as it is: the pieces of a blob (send), or writes (a zstd encoder's
// output) gathered into messages of readChunkSize.
type readSender struct {
	stream bspb.ByteStream_ReadServer
	m      *metrics
	buf    *[]byte // being filled; nil between messages
}

func (r *readSender) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if r.buf == nil {
			r.buf = readBufs.Get(0)
		}
		take := min(len(p), readChunkSize-len(*r.buf))
		*r.buf = append(*r.buf, p[:take]...)
		p = p[take:]
		if len(*r.buf) == readChunkSize {
			if err := r.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// flush sends what has been written since the last message.
func (r *readSender) flush() error {
	if r.buf == nil || len(*r.buf) == 0 {
		return nil
	}
	buf := r.buf
	r.buf = nil
	return r.send(buf)
}

// send sends buf as one message, which hands it to gRPC.
func (r *readSender) send(buf *[]byte) error {
	size := len(*buf)
	if err := r.stream.SendMsg(&readChunk{buf}); err != nil {
		return err
	}
	r.m.bytesOut("grpc", int64(size))
	return nil
}

// release gives back a buffer that was never sent.
func (r *readSender) release() {
	if r.buf != nil {
		readBufs.Put(r.buf)
		r.buf = nil
	}
}

func (b *byteStreamServer) Write(stream bspb.ByteStream_WriteServer) error {
	ctx := stream.Context()
	in := newIdleReceiver(func() (*writeMsg, error) {
		m := &writeMsg{}
		return m, stream.RecvMsg(m) // into a pooled buffer: see writeMsg
	}, b.idleTimeout)
	defer in.stop()
	req, err := in.Recv()
	if errors.Is(err, errUploadIdle) {
		b.log.Info("ended a ByteStream Write stream that sent nothing", "idle", b.idleTimeout.String())
		return status.Errorf(codes.DeadlineExceeded, "the stream sent no WriteRequest within %s (--upload_idle_timeout); open a new stream and send the data", b.idleTimeout)
	}
	if err != nil {
		return err
	}
	name := req.ResourceName
	rn, err := cas.ParseWriteResourceName(name)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if err := checkInstanceName(rn.Instance); err != nil {
		return err
	}
	if err := b.blobLimit.Check("blob "+rn.Digest.String(), rn.Digest.Size); err != nil {
		return err
	}
	key := casKey(ctx, rn.Digest)
	compressed := rn.Compressor != repb.Compressor_IDENTITY
	doneResponse := &bspb.WriteResponse{CommittedSize: rn.Digest.Size}
	if compressed {
		doneResponse.CommittedSize = -1
	}
	// A blob that is already stored needs no upload: answer at once.
	if missing, err := b.blobs.FindMissing(ctx, []cas.Key{key}); err != nil {
		return storeError(err)
	} else if len(missing) == 0 {
		return stream.SendAndClose(doneResponse)
	}
	up, err := b.uploads.attach(ctx, key, rn, req.WriteOffset)
	if err != nil {
		return err
	}
	for {
		if req.WriteOffset != up.received.Load() {
			b.uploads.detach(up)
			return status.Errorf(codes.InvalidArgument, "write_offset %d does not follow the %d bytes received; ask QueryWriteStatus where to resume", req.WriteOffset, up.received.Load())
		}
		if !compressed && up.received.Load()+int64(len(req.Data)) > rn.Digest.Size {
			b.uploads.abort(up, errAborted)
			return status.Errorf(codes.InvalidArgument, "received more than the %d bytes of blob %s; nothing was stored", rn.Digest.Size, rn.Digest)
		}
		if n := len(req.Data); n > 0 {
			// The pipe takes the message's buffer and gives it back.
			_, err := up.pw.WriteBuf(req.Data, req.buf)
			req.buf = nil
			if err != nil {
				b.uploads.abort(up, err)
				return storeError(up.wait())
			}
			up.received.Add(int64(n))
			b.metrics.bytesIn("grpc", int64(n))
		}
		req.release()
		if req.FinishWrite {
			up.pw.Close()
			err := up.wait()
			b.uploads.remove(up)
			if err != nil {
				return storeError(err)
			}
			if compressed {
				doneResponse.CommittedSize = up.received.Load()
			}
			return stream.SendAndClose(doneResponse)
		}
		req, err = in.Recv()
		if errors.Is(err, errUploadIdle) {
			b.uploads.abort(up, errUploadIdle)
			b.log.Info("dropped an upload whose stream went silent", "resource_name", name, "received", up.received.Load(), "idle", b.idleTimeout.String())
			return status.Errorf(codes.DeadlineExceeded, "no data for %s (--upload_idle_timeout) after %d bytes of %s; the upload was dropped: write it again from offset 0", b.idleTimeout, up.received.Load(), name)
		}
		if err == io.EOF {
			b.uploads.detach(up)
			return status.Errorf(codes.InvalidArgument, "the client closed the stream after %d bytes without finish_write; resume at that offset", up.received.Load())
		}
		if err != nil {
			// The client went away; keep what it sent for a resumed write.
			b.uploads.detach(up)
			return err
		}
		if req.ResourceName != "" && req.ResourceName != name {
			b.uploads.detach(up)
			return status.Errorf(codes.InvalidArgument, "resource_name changed within one write stream")
		}
	}
}

func (b *byteStreamServer) QueryWriteStatus(ctx context.Context, req *bspb.QueryWriteStatusRequest) (*bspb.QueryWriteStatusResponse, error) {
	rn, err := cas.ParseWriteResourceName(req.ResourceName)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := checkInstanceName(rn.Instance); err != nil {
		return nil, err
	}
	key := casKey(ctx, rn.Digest)
	if missing, err := b.blobs.FindMissing(ctx, []cas.Key{key}); err != nil {
		return nil, storeError(err)
	} else if len(missing) == 0 {
		return &bspb.QueryWriteStatusResponse{CommittedSize: rn.Digest.Size, Complete: true}, nil
	}
	if received, ok := b.uploads.progress(key, rn); ok {
		return &bspb.QueryWriteStatusResponse{CommittedSize: received}, nil
	}
	return nil, status.Errorf(codes.NotFound, "no upload %s in progress; start again at offset 0", req.ResourceName)
}

// upload is one ByteStream write that may span several client streams.
// Its bytes flow through a pipe straight into store.Put, which runs in its
// own goroutine for the upload's whole life, so a resumed write continues
// the same temp file and memory stays flat whatever the blob size.
type upload struct {
	id         uploadID
	compressed bool
	pw         *chunkPipe // takes each message's data and buffer (WriteBuf)
	// received counts bytes from the client (compressed bytes for zstd);
	// QueryWriteStatus reads it while the writing stream adds to it.
	received atomic.Int64
	result   chan error
	err      error
	once     sync.Once
	attached bool
	idle     *time.Timer
}

type uploadID struct {
	partition cas.Partition
	uuid      string
	digest    cas.Digest
	comp      cas.Compressor
}

// newUploadID names the upload of rn into key.
func newUploadID(key cas.Key, rn cas.ResourceName) uploadID {
	return uploadID{key.Partition, rn.UploadID, rn.Digest, rn.Compressor}
}

func (u *upload) wait() error {
	u.once.Do(func() { u.err = <-u.result })
	return u.err
}

type uploadTable struct {
	blobs cas.BlobStore
	mu    sync.Mutex
	m     map[uploadID]*upload
	// ctx ends every upload when the server stops.
	ctx context.Context
	// running counts the Put goroutines, so shutdown can wait for them to
	// remove their temp files before the store closes.
	running sync.WaitGroup
}

func newUploadTable(ctx context.Context, blobs cas.BlobStore) *uploadTable {
	return &uploadTable{blobs: blobs, m: make(map[uploadID]*upload), ctx: ctx}
}

// attach returns the upload to continue at offset, or starts a new one at 0.
// A new upload's Put runs under the first stream's context values (the
// caller's org and key) but outlives that stream, so a client can resume;
// it ends when the upload is finished, dropped or the server stops.
func (t *uploadTable) attach(streamCtx context.Context, key cas.Key, rn cas.ResourceName, offset int64) (*upload, error) {
	id := newUploadID(key, rn)
	t.mu.Lock()
	defer t.mu.Unlock()
	if up, ok := t.m[id]; ok {
		if up.attached {
			return nil, status.Errorf(codes.Aborted, "upload %s is being written by another stream", rn.UploadID)
		}
		if offset == up.received.Load() && offset > 0 && !up.compressed {
			up.idle.Stop()
			up.attached = true
			return up, nil
		}
		t.abortLocked(up, errAborted)
	}
	if offset != 0 {
		return nil, status.Errorf(codes.InvalidArgument, "write_offset %d: no resumable upload %s here; start at offset 0", offset, rn.UploadID)
	}
	pipe := newChunkPipe(chunkPipeLimit)
	up := &upload{
		id: id, compressed: rn.Compressor != repb.Compressor_IDENTITY,
		pw: pipe, result: make(chan error, 1), attached: true,
	}
	var body io.Reader = pipe
	var decoded *decodingPipe
	if up.compressed {
		var err error
		if decoded, err = startDecoding(pipe, rn.Digest.Size); err != nil {
			return nil, err
		}
		body = decoded
	}
	putCtx, cancel := context.WithCancel(context.WithoutCancel(streamCtx))
	stopWithServer := context.AfterFunc(t.ctx, cancel)
	t.running.Add(1)
	go func() {
		defer t.running.Done()
		defer stopWithServer()
		defer cancel()
		err := t.blobs.Put(putCtx, key, rn.Digest.Size, body)
		// Unblock a writer still feeding the pipe after Put gave up early.
		pipe.CloseRead(errors.Join(errAborted, err))
		if decoded != nil {
			decoded.close(err)
		}
		up.result <- err
	}()
	up.idle = time.AfterFunc(uploadResumeWindow, func() { t.expire(up) })
	up.idle.Stop()
	t.m[id] = up
	return up, nil
}

// detach keeps an interrupted upload for a while so the client can resume.
func (t *uploadTable) detach(up *upload) {
	t.mu.Lock()
	defer t.mu.Unlock()
	up.attached = false
	if up.compressed {
		// A compressed upload cannot resume mid-stream: its offset is in
		// compressed bytes while the spec's resume offset is uncompressed.
		t.abortLocked(up, errAborted)
		return
	}
	up.idle.Reset(uploadResumeWindow)
}

// expire drops an upload whose resume window has passed, unless a stream
// has resumed it since: the timer may fire just as attach stops it, and
// then waits here for the lock until attach is done.
func (t *uploadTable) expire(up *upload) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !up.attached {
		t.abortLocked(up, errAborted)
	}
}

func (t *uploadTable) abort(up *upload, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.abortLocked(up, err)
}

func (t *uploadTable) abortLocked(up *upload, err error) {
	up.pw.CloseWithError(err)
	t.removeLocked(up)
}

func (t *uploadTable) remove(up *upload) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocked(up)
}

func (t *uploadTable) removeLocked(up *upload) {
	up.idle.Stop()
	if t.m[up.id] == up {
		delete(t.m, up.id)
	}
}

func (t *uploadTable) progress(key cas.Key, rn cas.ResourceName) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	up, ok := t.m[newUploadID(key, rn)]
	if !ok {
		return 0, false
	}
	if up.compressed {
		return 0, true
	}
	return up.received.Load(), true
}

// abortAll drops every unfinished upload and waits until their Puts have
// given up; used at shutdown.
func (t *uploadTable) abortAll() {
	t.mu.Lock()
	for _, up := range t.m {
		t.abortLocked(up, errAborted)
	}
	t.mu.Unlock()
	t.running.Wait()
}

// decodingPipe decompresses a zstd upload in a goroutine of its own, so
// that decompressing and the stores' work on the result (hashing, sealing,
// writing) run on two cores: a compressed upload then goes at about the
// speed of zstd alone rather than of zstd plus the rest.
type decodingPipe struct {
	*chunkPipe
	dec  *zstdBody
	done chan struct{}
}

// startDecoding decompresses src, an upload of a blob of blobSize bytes.
func startDecoding(src io.Reader, blobSize int64) (*decodingPipe, error) {
	dec, err := newZstdBody(src, blobSize)
	if err != nil {
		return nil, err
	}
	d := &decodingPipe{chunkPipe: newChunkPipe(chunkPipeLimit), dec: dec, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		// The decoder reuses its block buffer: each block is copied.
		_, err := dec.WriteTo(copyingWriter{d.chunkPipe})
		d.chunkPipe.CloseWithError(err) // nil: io.EOF for the reader
	}()
	return d, nil
}

// close ends the decoding, once the store is done with the upload (err
// is why, if it did not finish), and gives the decoder back. src must be
// closed first, so a decoder waiting for compressed bytes gives up.
func (d *decodingPipe) close(err error) {
	d.chunkPipe.CloseRead(errors.Join(errAborted, err))
	<-d.done
	d.dec.Close()
}
