package s3

import (
	"io"
	"net/http"
	"strings"
	"sync"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// request is what a test sees of one HTTP request the store sent.
type request struct {
	Operation string // the S3 operation, such as "GetObject"
	Range     string // the Range header, if any
}

// recorder is an HTTP client for the store that records every request
// (every attempt, retries included) and can answer chosen ones with an
// error of its own instead of sending them.
type recorder struct {
	next s3.HTTPClient

	mu       sync.Mutex
	requests []request
	// refuse, if set, is asked before each request is sent; a non-empty
	// S3 error code makes the recorder answer "400 code" itself.
	refuse func(r request, count int) (code string)
}

// record returns a client option that routes the store's requests
// through a new recorder.
func record(c *Config) *recorder {
	r := &recorder{}
	c.clientOptions = append(c.clientOptions, func(o *s3.Options) {
		r.next = o.HTTPClient
		o.HTTPClient = r
	})
	return r
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	seen := request{Operation: awsmiddleware.GetOperationName(req.Context()), Range: req.Header.Get("Range")}
	r.mu.Lock()
	r.requests = append(r.requests, seen)
	count := 0
	for _, q := range r.requests {
		if q.Operation == seen.Operation {
			count++
		}
	}
	refuse := r.refuse
	r.mu.Unlock()
	if refuse != nil {
		if code := refuse(seen, count); code != "" {
			if req.Body != nil {
				io.Copy(io.Discard, req.Body)
				req.Body.Close()
			}
			body := "<Error><Code>" + code + "</Code><Message>refused by the test</Message></Error>"
			return &http.Response{
				StatusCode: http.StatusBadRequest,
				Status:     "400 Bad Request",
				Header:     http.Header{"Content-Type": {"application/xml"}},
				Body:       io.NopCloser(strings.NewReader(body)),
				Request:    req,
			}, nil
		}
	}
	return r.next.Do(req)
}

// take returns the requests recorded since the last take.
func (r *recorder) take() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	reqs := r.requests
	r.requests = nil
	return reqs
}

// operations counts the recorded requests per operation.
func operations(reqs []request) map[string]int {
	n := map[string]int{}
	for _, q := range reqs {
		n[q.Operation]++
	}
	return n
}

// patternReader yields n deterministic bytes without holding them in
// memory, so a test can upload far more than it allocates.
type patternReader struct {
	n, off int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if rem := p.n - p.off; int64(len(b)) > rem {
		b = b[:rem]
	}
	for i := range b {
		x := uint64(p.off + int64(i))
		b[i] = byte((x * 0x9e3779b97f4a7c15) >> 56)
	}
	p.off += int64(len(b))
	return len(b), nil
}
