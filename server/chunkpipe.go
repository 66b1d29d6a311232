package server

import (
	"io"
	"sync"
)

// chunkPipe connects a goroutine that receives an upload with the one that
// stores it, like io.Pipe, but it queues: Write hands its slice over
// without copying it and returns at once while fewer than limit bytes wait,
// so the two sides run at the same time instead of in lock step (io.Pipe's
// Write waits until the reader has copied everything). That is what lets
// receiving, decompressing, hashing and writing an upload use both cores.
//
// Write takes ownership of p: the writer must not change p afterwards.
// Upload data (a WriteRequest's bytes, in the pooled buffer the server
// codec decoded the message into) is handed over as is with WriteBuf,
// and the pipe gives the buffer back once it has been read; a writer
// whose buffer is reused wraps the pipe in a copyingWriter.
type chunkPipe struct {
	mu     sync.Mutex
	cond   sync.Cond
	queue  []chunk // written, not yet read
	queued int     // bytes in queue
	limit  int
	cur    chunk // the reader's current chunk, partly read
	werr   error // the writer closed the pipe: io.EOF, or why not
	rerr   error // the reader closed the pipe: why
}

// chunk is a written slice and the buffer to give back (putUploadBuf) once
// it has been read, if it came from the pool.
type chunk struct {
	b   []byte
	buf *[]byte
}

func (c chunk) release() {
	if c.buf != nil {
		putUploadBuf(c.buf)
	}
}

// chunkPipeLimit is how many bytes may wait in an upload's pipe: a few
// messages of the 1 MiB clients commonly send, bounded so that memory per
// upload stays flat whatever the blob size.
const chunkPipeLimit = 4 << 20

func newChunkPipe(limit int) *chunkPipe {
	p := &chunkPipe{limit: limit}
	p.cond.L = &p.mu
	return p
}

// Write queues b for the reader. It waits while the queue is full, and
// fails once the reader has closed the pipe or the writer has.
func (p *chunkPipe) Write(b []byte) (int, error) { return p.WriteBuf(b, nil) }

// WriteBuf is Write of b, a slice of the pooled buffer buf (or nil), which
// the pipe gives back once b has been read or dropped; also when WriteBuf
// fails.
func (p *chunkPipe) WriteBuf(b []byte, buf *[]byte) (int, error) {
	c := chunk{b, buf}
	if len(b) == 0 {
		c.release()
		return 0, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.queued >= p.limit && p.rerr == nil && p.werr == nil {
		p.cond.Wait()
	}
	switch {
	case p.rerr != nil:
		c.release()
		return 0, p.rerr
	case p.werr != nil:
		c.release()
		return 0, io.ErrClosedPipe
	}
	p.queue = append(p.queue, c)
	p.queued += len(b)
	p.cond.Broadcast()
	return len(b), nil
}

// Read copies queued bytes into b, waiting while none are queued. After the
// writer's CloseWithError it returns the queued bytes, then the error
// (io.EOF for a nil error).
func (p *chunkPipe) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.cur.b) == 0 && len(p.queue) == 0 && p.werr == nil && p.rerr == nil {
		p.cond.Wait()
	}
	if p.rerr != nil {
		return 0, p.rerr
	}
	n := 0
	for n < len(b) {
		if len(p.cur.b) == 0 {
			p.cur.release()
			p.cur = chunk{}
			if len(p.queue) == 0 {
				break
			}
			p.cur = p.queue[0]
			p.queue[0] = chunk{}
			p.queue = p.queue[1:]
		}
		c := copy(b[n:], p.cur.b)
		p.cur.b = p.cur.b[c:]
		p.queued -= c
		n += c
	}
	if len(p.cur.b) == 0 {
		p.cur.release()
		p.cur = chunk{}
	}
	if n > 0 {
		p.cond.Broadcast() // room for the writer
		return n, nil
	}
	return 0, p.werr
}

// CloseWithError ends the writer's side: the reader gets what is queued,
// then err (io.EOF when err is nil).
func (p *chunkPipe) CloseWithError(err error) error {
	if err == nil {
		err = io.EOF
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.werr == nil {
		p.werr = err
	}
	p.cond.Broadcast()
	return nil
}

// Close is CloseWithError(nil).
func (p *chunkPipe) Close() error { return p.CloseWithError(nil) }

// CloseRead ends the reader's side: queued bytes are dropped, and Write
// and Read fail with err from now on.
func (p *chunkPipe) CloseRead(err error) {
	if err == nil {
		err = io.ErrClosedPipe
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rerr == nil {
		p.rerr = err
	}
	p.cur.release()
	for _, c := range p.queue {
		c.release()
	}
	p.queue, p.cur, p.queued = nil, chunk{}, 0
	p.cond.Broadcast()
}

// copyingWriter copies each write into a pooled buffer before handing it to
// a chunkPipe, for writers that reuse their buffer (a zstd decoder's
// WriteTo does).
type copyingWriter struct{ p *chunkPipe }

func (w copyingWriter) Write(b []byte) (int, error) {
	buf := getUploadBuf(len(b))
	copy(*buf, b)
	return w.p.WriteBuf(*buf, buf)
}
