package server

import (
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxBlobReader fails a streamed body once it passes --max_blob_size, so a
// PUT without Content-Length cannot store more than the limit allows.
type maxBlobReader struct {
	r     io.Reader
	left  int64
	limit int64
}

func (m *maxBlobReader) Read(p []byte) (int, error) {
	if int64(len(p)) > m.left+1 {
		p = p[:m.left+1]
	}
	n, err := m.r.Read(p)
	m.left -= int64(n)
	if m.left < 0 {
		return 0, status.Errorf(codes.InvalidArgument, "body is larger than the server's --max_blob_size of %d bytes", m.limit)
	}
	return n, err
}
