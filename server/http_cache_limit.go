package server

import (
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxBlobReader fails a streamed body once it passes the blob limit, so a
// PUT without Content-Length cannot store more than the limit allows.
type maxBlobReader struct {
	r     io.Reader
	left  int64
	limit BlobLimit
}

func (m *maxBlobReader) Read(p []byte) (int, error) {
	if int64(len(p)) > m.left+1 {
		p = p[:m.left+1]
	}
	n, err := m.r.Read(p)
	m.left -= int64(n)
	if m.left < 0 {
		return 0, status.Errorf(codes.InvalidArgument, "the body is larger than the server's %s of %d bytes", m.limit.Flag, m.limit.Bytes)
	}
	return n, err
}
