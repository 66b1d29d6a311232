package server

import (
	"io"
	"sync"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// Downloads are read into pooled buffers of readChunkSize and each buffer
// is sent as one ReadResponse without copying it: the server codec hands
// the buffer itself to gRPC (readChunk), which gives it back to readBufs
// once it has written it to the connection. The standard codec would copy
// every byte once more into a buffer that gRPC's pool clears first.

// readBufPool is the pool of download buffers; it is a mem.BufferPool so
// that gRPC can give buffers back.
type readBufPool struct{ p sync.Pool }

var readBufs = &readBufPool{p: sync.Pool{New: func() any { b := make([]byte, readChunkSize); return &b }}}

// Get returns a buffer of length n <= readChunkSize.
func (r *readBufPool) Get(n int) *[]byte {
	b := r.p.Get().(*[]byte)
	*b = (*b)[:n]
	return b
}

// Put takes a buffer back; gRPC calls it when it has sent the buffer.
func (r *readBufPool) Put(b *[]byte) {
	if cap(*b) == readChunkSize {
		*b = (*b)[:readChunkSize]
		r.p.Put(b)
	}
}

// readChunk is a ReadResponse whose data is a pooled buffer from readBufs.
// Sending it (stream.SendMsg) gives the buffer to gRPC.
type readChunk struct{ buf *[]byte }

// marshal is the ReadResponse wire form: the data field's tag and length,
// then the buffer itself.
func (c *readChunk) marshal() mem.BufferSlice {
	if len(*c.buf) == 0 {
		readBufs.Put(c.buf)
		return nil // an empty ReadResponse
	}
	const dataField = 10 // ReadResponse.data
	hdr := protowire.AppendVarint(protowire.AppendTag(make([]byte, 0, 8), dataField, protowire.BytesType), uint64(len(*c.buf)))
	return mem.BufferSlice{mem.SliceBuffer(hdr), mem.NewBuffer(c.buf, readBufs)}
}

// readAhead reads a source in a goroutine of its own, a few buffers ahead
// of the caller. The stores below a download do real work in Read (the
// integrity check of plain objects, opening sealed chunks, reading the
// file), and so does the caller with the bytes (compressing them, sending
// them through gRPC); with read-ahead the two run on different cores.
type readAhead struct {
	src  io.Reader
	full chan filled   // buffers read, in order
	stop chan struct{} // closed by close: the reader goroutine ends
	done chan struct{} // closed when the reader goroutine has ended
	err  error         // the source's error, once next has seen it
}

type filled struct {
	buf *[]byte
	err error
}

// readAheadDepth buffers may wait for the caller, besides the one being
// filled: enough to absorb uneven speeds, few enough to keep memory per
// download flat.
const readAheadDepth = 2

func startReadAhead(src io.Reader) *readAhead {
	r := &readAhead{
		src:  src,
		full: make(chan filled, readAheadDepth),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go r.run()
	return r
}

func (r *readAhead) run() {
	defer close(r.done)
	for {
		b := readBufs.Get(readChunkSize)
		n, err := io.ReadFull(r.src, *b)
		*b = (*b)[:n]
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		select {
		case r.full <- filled{b, err}:
		case <-r.stop:
			readBufs.Put(b)
			return
		}
		if err != nil {
			return
		}
	}
}

// next returns a buffer with the next bytes of the source, which the
// caller then owns (it sends it, or gives it back to readBufs), or the
// source's error (io.EOF at its end) once its bytes are all out.
func (r *readAhead) next() (*[]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	f := <-r.full
	r.err = f.err
	if len(*f.buf) > 0 {
		return f.buf, nil // the error, if any, comes with the next call
	}
	readBufs.Put(f.buf)
	return nil, r.err
}

// close stops the reader goroutine and waits for it, so the source may be
// closed after; buffers read but not taken go back to the pool.
func (r *readAhead) close() {
	close(r.stop)
	<-r.done
	for {
		select {
		case f := <-r.full:
			readBufs.Put(f.buf)
		default:
			return
		}
	}
}
