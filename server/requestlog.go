package server

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// logInterval is how often at most one class of refused requests, or the
// eviction summary, gets a log line: enough for an operator to see what is
// going on, too little for a misconfigured client to flood the log.
const logInterval = 10 * time.Second

// flushTick is how often the summaries of ended intervals are written, so
// they appear soon after their interval, even when nothing more happens.
const flushTick = time.Second

// refusalLog writes refused and failed requests to the log at the default
// level, rate-limited per class (protocol and code): the first request of a
// class is logged at once with its method and message; the others within
// logInterval are counted, and one line later says how many there were and
// shows the last of them. Misses (NOT_FOUND, HTTP 404) and requests the
// client cancelled are normal and not logged.
type refusalLog struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	classes map[refusalClass]*refusalWindow
}

type refusalClass struct {
	protocol string // grpc or http
	code     string // the gRPC code name or the HTTP status
}

// refusalWindow is one class's current interval: when it started, and the
// requests held back since.
type refusalWindow struct {
	start      time.Time
	level      slog.Level
	held       int
	lastMethod string
	lastErr    string
}

func newRefusalLog(log *slog.Logger, now func() time.Time) *refusalLog {
	if now == nil {
		now = time.Now
	}
	return &refusalLog{log: log, interval: logInterval, now: now, classes: map[refusalClass]*refusalWindow{}}
}

// observeGRPC records the outcome of one gRPC call.
func (l *refusalLog) observeGRPC(method string, err error) {
	code := status.Code(err)
	level, logged := grpcLogLevel(code)
	if !logged {
		return
	}
	l.observe(refusalClass{"grpc", code.String()}, level, method, status.Convert(err).Message())
}

// observeHTTP records the outcome of one HTTP cache request.
func (l *refusalLog) observeHTTP(method string, code int, message string) {
	level, logged := httpLogLevel(code)
	if !logged {
		return
	}
	l.observe(refusalClass{"http", strconv.Itoa(code) + " " + http.StatusText(code)}, level, method, message)
}

func (l *refusalLog) observe(class refusalClass, level slog.Level, method, message string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.classes[class]
	if w != nil && now.Sub(w.start) < l.interval {
		w.held++
		w.lastMethod, w.lastErr = method, message
		return
	}
	if w != nil {
		l.summarize(class, w)
	}
	l.classes[class] = &refusalWindow{start: now, level: level}
	l.log.Log(context.Background(), level, describe(level), "protocol", class.protocol, "code", class.code,
		"method", method, "err", message,
		"note", "more like it in the next "+l.interval.String()+" are counted, not logged")
}

// flush writes the summary of every class whose interval has ended, so
// held-back requests are reported even when no more come.
func (l *refusalLog) flush() { l.flushOlderThan(l.interval) }

// flushAll writes every summary now, at shutdown.
func (l *refusalLog) flushAll() { l.flushOlderThan(0) }

func (l *refusalLog) flushOlderThan(age time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for class, w := range l.classes {
		if now.Sub(w.start) >= age {
			l.summarize(class, w)
			delete(l.classes, class)
		}
	}
}

func (l *refusalLog) summarize(class refusalClass, w *refusalWindow) {
	if w.held == 0 {
		return
	}
	l.log.Log(context.Background(), w.level, describe(w.level)+" (more of the same)", "protocol", class.protocol, "code", class.code,
		"count", w.held, "within", l.interval.String(), "last_method", w.lastMethod, "last_err", w.lastErr)
}

// run writes summaries as their intervals end, until ctx ends; the server
// then calls flushAll.
func (l *refusalLog) run(ctx context.Context) { flushEveryTick(ctx, l.flush) }

// flushEveryTick calls flush every flushTick until ctx ends.
func flushEveryTick(ctx context.Context, flush func()) {
	t := time.NewTicker(flushTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			flush()
		}
	}
}

func describe(level slog.Level) string {
	if level >= slog.LevelWarn {
		return "request failed"
	}
	return "request refused"
}

// grpcLogLevel says whether a code is logged, and at which level: the
// client's mistakes are refusals (info), the server's trouble is a failure
// (warn, or error when it is a bug).
func grpcLogLevel(c codes.Code) (slog.Level, bool) {
	switch c {
	case codes.OK, codes.NotFound, codes.Canceled:
		return 0, false
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return slog.LevelError, true
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return slog.LevelWarn, true
	}
	return slog.LevelInfo, true
}

func httpLogLevel(code int) (slog.Level, bool) {
	switch {
	case code < 400, code == http.StatusNotFound, code == 499:
		return 0, false
	case code == http.StatusInternalServerError:
		return slog.LevelError, true
	case code >= 500:
		return slog.LevelWarn, true
	}
	return slog.LevelInfo, true
}

// errorRecorder remembers the status and the start of the body of an
// error response, for the refusal log.
type errorRecorder struct {
	http.ResponseWriter
	code int
	body []byte
}

// maxRecordedError bounds what errorRecorder keeps of an error body.
const maxRecordedError = 512

func (e *errorRecorder) WriteHeader(code int) {
	e.code = code
	e.ResponseWriter.WriteHeader(code)
}

func (e *errorRecorder) Write(p []byte) (int, error) {
	if e.code >= 400 && len(e.body) < maxRecordedError {
		e.body = append(e.body, p[:min(len(p), maxRecordedError-len(e.body))]...)
	}
	return e.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection through the
// recorder: the idle-upload timeout sets read deadlines with it.
func (e *errorRecorder) Unwrap() http.ResponseWriter { return e.ResponseWriter }

func (e *errorRecorder) message() string {
	b := e.body
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return string(b)
}

// evictionLog sums up evictions: one info line at most every logInterval,
// "evicted N objects (M bytes) to stay under --max_size", so an operator
// sees the cache is under pressure without a line per object.
type evictionLog struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time
	maxSize  int64

	mu       sync.Mutex
	lastLine time.Time
	objects  int64
	bytes    int64
}

func newEvictionLog(log *slog.Logger, maxSize int64, now func() time.Time) *evictionLog {
	if now == nil {
		now = time.Now
	}
	return &evictionLog{log: log, interval: logInterval, now: now, maxSize: maxSize}
}

// evicted records objects evicted together, of bytes in all.
func (e *evictionLog) evicted(objects int, bytes int64) {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.objects += int64(objects)
	e.bytes += max(bytes, 0)
	if now.Sub(e.lastLine) >= e.interval {
		e.writeLocked(now)
	}
}

// flush writes what was evicted since the last line, once the interval
// has passed.
func (e *evictionLog) flush() { e.flushOlderThan(e.interval) }

// flushAll writes what was evicted since the last line now, at shutdown.
func (e *evictionLog) flushAll() { e.flushOlderThan(0) }

func (e *evictionLog) flushOlderThan(age time.Duration) {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.objects > 0 && now.Sub(e.lastLine) >= age {
		e.writeLocked(now)
	}
}

func (e *evictionLog) writeLocked(now time.Time) {
	e.log.Info("evicted "+strconv.FormatInt(e.objects, 10)+" objects ("+formatBytes(e.bytes)+") to stay under --max_size",
		"objects", e.objects, "bytes", e.bytes, "max_size", e.maxSize)
	e.objects, e.bytes, e.lastLine = 0, 0, now
}

// run writes what was evicted once the interval has passed, until ctx
// ends; the server then calls flushAll.
func (e *evictionLog) run(ctx context.Context) { flushEveryTick(ctx, e.flush) }

// formatBytes writes n in binary units with one decimal, e.g. "1.5 GiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTPE"[exp]) + "iB"
}
