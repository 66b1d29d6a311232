package s3

import (
	"context"
	"sync"

	"golang.org/x/sync/semaphore"
)

// uploadMemory is the store-wide budget for upload buffers: every byte an
// upload buffers is reserved here first, so all uploads together never hold
// more than Config.UploadMemory. Part-size buffers are recycled between
// uploads so that a stream of large uploads does not churn the heap.
type uploadMemory struct {
	budget   *semaphore.Weighted
	partSize int64
	parts    sync.Pool // *[]byte of partSize bytes
}

func newUploadMemory(limit, partSize int64) *uploadMemory {
	return &uploadMemory{budget: semaphore.NewWeighted(limit), partSize: partSize}
}

// reserve waits until n bytes of the budget are free or ctx ends.
func (m *uploadMemory) reserve(ctx context.Context, n int64) error {
	return m.budget.Acquire(ctx, n)
}

// tryReserve reserves n bytes if they are free now.
func (m *uploadMemory) tryReserve(n int64) bool { return m.budget.TryAcquire(n) }

func (m *uploadMemory) release(n int64) { m.budget.Release(n) }

// newPart returns a part-size buffer; its bytes must be reserved already.
func (m *uploadMemory) newPart() []byte {
	if b, ok := m.parts.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, m.partSize)
}

// recyclePart takes back a buffer from newPart.
func (m *uploadMemory) recyclePart(b []byte) {
	b = b[:cap(b)]
	m.parts.Put(&b)
}

// partBuffers is one multipart upload's share of the budget: at most limit
// part buffers, each either being filled from the client (one at a time),
// being sent, or free for the next part.
type partBuffers struct {
	memory *uploadMemory
	limit  int
	held   int         // buffers reserved and allocated so far
	free   chan []byte // buffers whose part was sent
}

func newPartBuffers(m *uploadMemory, limit int) *partBuffers {
	return &partBuffers{memory: m, limit: limit, free: make(chan []byte, limit)}
}

// get returns a buffer to fill: a free one of this upload's, else a new one
// while the upload is under its limit and the budget has room, else the
// next one of this upload's to come back. Only the first buffer waits for
// the budget: an upload that holds buffers has parts being sent, which
// return them, so uploads never wait on each other in a cycle.
func (p *partBuffers) get(ctx context.Context) ([]byte, error) {
	select {
	case b := <-p.free:
		return b, nil
	default:
	}
	switch {
	case p.held == 0:
		if err := p.memory.reserve(ctx, p.memory.partSize); err != nil {
			return nil, err
		}
	case p.held >= p.limit || !p.memory.tryReserve(p.memory.partSize):
		select {
		case b := <-p.free:
			return b, nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	p.held++
	return p.memory.newPart(), nil
}

// put hands back a buffer whose part was sent (or never will be).
func (p *partBuffers) put(b []byte) { p.free <- b }

// releaseAll returns every buffer to the store once all of them are back:
// call it after every send has finished.
func (p *partBuffers) releaseAll() {
	for ; p.held > 0; p.held-- {
		p.memory.recyclePart(<-p.free)
		p.memory.release(p.memory.partSize)
	}
}
