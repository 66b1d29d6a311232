package server

import (
	"io"
	"sync"
)

// readAhead reads a source in a goroutine of its own, a few buffers ahead
// of the caller. The stores below a download do real work in Read (the
// integrity check of plain objects, opening sealed chunks, reading the
// file), and so does the caller with the bytes (compressing them, sending
// them through gRPC); with read-ahead the two run on different cores.
//
// Use it for sources longer than one buffer; next hands out whole buffers,
// so the caller can send each one without copying it first.
type readAhead struct {
	src  io.Reader
	full chan filled   // buffers read, in order
	free chan []byte   // buffers the caller is done with
	stop chan struct{} // closed by close: the reader goroutine ends
	done chan struct{} // closed when the reader goroutine has ended
	cur  []byte        // the buffer the caller holds
	err  error         // the source's error, once next has seen it
	bufs [][]byte      // every buffer, to give back to the pool
}

type filled struct {
	b   []byte
	err error
}

// readAheadDepth buffers are in flight: one being filled while the caller
// uses another, and one spare to absorb uneven speeds.
const readAheadDepth = 3

// readAheadBufs holds buffers of readChunkSize.
var readAheadBufs = sync.Pool{New: func() any { b := make([]byte, readChunkSize); return &b }}

func startReadAhead(src io.Reader) *readAhead {
	r := &readAhead{
		src:  src,
		full: make(chan filled, readAheadDepth),
		free: make(chan []byte, readAheadDepth),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for range readAheadDepth {
		b := *readAheadBufs.Get().(*[]byte)
		r.bufs = append(r.bufs, b)
		r.free <- b
	}
	go r.run()
	return r
}

func (r *readAhead) run() {
	defer close(r.done)
	for {
		var b []byte
		select {
		case b = <-r.free:
		case <-r.stop:
			return
		}
		n, err := io.ReadFull(r.src, b[:cap(b)])
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		select {
		case r.full <- filled{b[:n], err}:
		case <-r.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// next returns the next bytes of the source, valid until the next call,
// or the source's error (io.EOF at its end) once its bytes are all out.
func (r *readAhead) next() ([]byte, error) {
	if r.cur != nil {
		r.free <- r.cur[:cap(r.cur)] // never blocks: free has room for every buffer
		r.cur = nil
	}
	if r.err != nil {
		return nil, r.err
	}
	f := <-r.full
	r.err = f.err
	if len(f.b) > 0 {
		r.cur = f.b
		return f.b, nil // the error, if any, comes with the next call
	}
	r.free <- f.b[:cap(f.b)]
	return nil, r.err
}

// close stops the reader goroutine, waits for it (so the source may be
// closed after), and gives the buffers back.
func (r *readAhead) close() {
	close(r.stop)
	<-r.done
	for _, b := range r.bufs {
		readAheadBufs.Put(&b)
	}
	r.bufs = nil
}
