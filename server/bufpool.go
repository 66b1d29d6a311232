package server

import (
	"math/bits"
	"sync"
)

// Upload buffers: each WriteRequest is decoded into one of these (codec.go)
// and handed, without a copy, through the upload's chunk pipe to the store,
// which gives it back once it has read it. A 1 GiB upload in 1 MiB messages
// then reuses a few buffers instead of leaving 1 GiB of garbage, which kept
// the heap (and the server's resident memory) well above what the upload
// holds at any moment. Buffers come in power-of-two size classes.
const (
	minUploadBufShift = 12 // 4 KiB
	maxUploadBufShift = 24 // 16 MiB, above the largest message (maxGRPCMessage)
)

var uploadBufs [maxUploadBufShift - minUploadBufShift + 1]sync.Pool

func uploadBufClass(n int) int {
	shift := max(bits.Len(uint(max(n, 1)-1)), minUploadBufShift)
	if shift > maxUploadBufShift {
		return -1
	}
	return shift - minUploadBufShift
}

// getUploadBuf returns a buffer of length n, pooled when n has a class.
func getUploadBuf(n int) *[]byte {
	c := uploadBufClass(n)
	if c < 0 {
		b := make([]byte, n)
		return &b
	}
	if b, ok := uploadBufs[c].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(c+minUploadBufShift))
	return &b
}

// putUploadBuf gives back a buffer from getUploadBuf; its bytes must no
// longer be used.
func putUploadBuf(b *[]byte) {
	c := uploadBufClass(cap(*b))
	if c < 0 || cap(*b) != 1<<(c+minUploadBufShift) {
		return
	}
	uploadBufs[c].Put(b)
}
