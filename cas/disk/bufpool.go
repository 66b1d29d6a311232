package disk

import (
	"bytes"
	"io"
	"math/bits"
	"sync"
)

// Inline objects are copied out of Pebble into pooled buffers: allocating a
// fresh buffer for every read of a 100 KB object costs more than the copy
// (page faults on new memory, then garbage collection). Buffers come in
// power-of-two size classes from minPooledBuf up; larger ones are not
// pooled.
const (
	minPooledBufShift = 12 // 4 KiB
	maxPooledBufShift = 24 // 16 MiB
)

var bufPools [maxPooledBufShift - minPooledBufShift + 1]sync.Pool

// poolClass is the size class holding n bytes, or -1 if none does.
func poolClass(n int) int {
	shift := max(bits.Len(uint(max(n, 1)-1)), minPooledBufShift)
	if shift > maxPooledBufShift {
		return -1
	}
	return shift - minPooledBufShift
}

// getBuf returns a buffer of length n, from the pool if it can.
func getBuf(n int) []byte {
	c := poolClass(n)
	if c < 0 {
		return make([]byte, n)
	}
	if b, ok := bufPools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<(c+minPooledBufShift))
}

// putBuf gives a buffer from getBuf back.
func putBuf(b []byte) {
	c := poolClass(cap(b))
	if c < 0 || cap(b) != 1<<(c+minPooledBufShift) {
		return
	}
	b = b[:0]
	bufPools[c].Put(&b)
}

// inlineReader serves an inline object from a pooled copy; Close returns
// the copy to the pool.
type inlineReader struct {
	bytes.Reader
	buf []byte
}

func newInlineReader(v []byte) *inlineReader {
	r := &inlineReader{buf: getBuf(len(v))}
	copy(r.buf, v)
	r.Reader.Reset(r.buf)
	return r
}

func (r *inlineReader) Close() error {
	if r.buf != nil {
		r.Reader.Reset(nil)
		putBuf(r.buf)
		r.buf = nil
	}
	return nil
}

var _ io.ReadSeekCloser = (*inlineReader)(nil)
