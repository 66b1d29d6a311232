package server

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// Idle timeouts for uploads (Config.UploadIdleTimeout): a client that opens
// an upload and then sends nothing would otherwise hold a stream, a
// goroutine, a temp file and a connection slot for as long as it likes.
// An upload that makes progress is never cut, however long it takes: the
// clock restarts with every message or body read.

// errUploadIdle ends an upload whose client sent nothing for the timeout.
var errUploadIdle = errors.New("the client sent nothing for --upload_idle_timeout")

// idleReceiver receives a client stream's messages in a goroutine of its
// own, so that a handler can stop waiting for a client that has gone
// silent. gRPC offers no way to interrupt a blocked Recv but ending the
// call: the handler returns, gRPC ends the stream, the pending Recv fails
// and the goroutine exits. Messages are received only when asked for, so
// none is read ahead of the handler.
type idleReceiver[T any] struct {
	recv    func() (T, error)
	timeout time.Duration
	asks    chan struct{}
	results chan idleResult[T]
	timer   *time.Timer
}

type idleResult[T any] struct {
	msg T
	err error
}

func newIdleReceiver[T any](recv func() (T, error), timeout time.Duration) *idleReceiver[T] {
	r := &idleReceiver[T]{
		recv:    recv,
		timeout: timeout,
		asks:    make(chan struct{}, 1),
		results: make(chan idleResult[T], 1), // the last result may find no taker
		timer:   time.NewTimer(timeout),
	}
	r.timer.Stop()
	go r.run()
	return r
}

func (r *idleReceiver[T]) run() {
	for range r.asks {
		msg, err := r.recv()
		r.results <- idleResult[T]{msg, err}
		if err != nil {
			return
		}
	}
}

// Recv returns the client's next message, or errUploadIdle when none came
// within the timeout. After an error, the caller must not call Recv again.
func (r *idleReceiver[T]) Recv() (T, error) {
	r.asks <- struct{}{}
	r.timer.Reset(r.timeout)
	defer r.timer.Stop()
	select {
	case res := <-r.results:
		return res.msg, res.err
	case <-r.timer.C:
		var zero T
		return zero, errUploadIdle
	}
}

// stop lets the goroutine exit once its pending Recv, if any, returns.
func (r *idleReceiver[T]) stop() { close(r.asks) }

// idleBody is an HTTP request body that fails with errUploadIdle when the
// client sends nothing for the timeout: every Read first moves the
// connection's read deadline to now + timeout.
type idleBody struct {
	r       io.Reader
	conn    *http.ResponseController
	timeout time.Duration
	idle    bool // the body stalled: answer 408
}

func newIdleBody(w http.ResponseWriter, body io.Reader, timeout time.Duration) *idleBody {
	return &idleBody{r: body, conn: http.NewResponseController(w), timeout: timeout}
}

func (b *idleBody) Read(p []byte) (int, error) {
	// ErrNotSupported (a ResponseWriter without deadlines) leaves only
	// the server's own timeouts; nothing better can be done here.
	_ = b.conn.SetReadDeadline(time.Now().Add(b.timeout))
	n, err := b.r.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		b.idle = true
		return n, errUploadIdle
	}
	return n, err
}
