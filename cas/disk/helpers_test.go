package disk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
)

// openStore opens a store that is closed when the test ends.
func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if opts.seed == 0 {
		opts.seed = 1
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t testing.TB, s cas.BlobStore, k cas.Key, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Put %s: %v", k, err)
	}
}

func get(t testing.TB, s cas.BlobStore, k cas.Key) []byte {
	t.Helper()
	rc, size, err := s.Get(context.Background(), k, 0)
	if err != nil {
		t.Fatalf("Get %s: %v", k, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s: %v", k, err)
	}
	if int64(len(b)) != size {
		t.Fatalf("Get %s reported %d bytes and returned %d", k, size, len(b))
	}
	return b
}

func isMissing(t testing.TB, s cas.BlobStore, k cas.Key) bool {
	t.Helper()
	m, err := s.FindMissing(context.Background(), []cas.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	return len(m) == 1
}

func mustMiss(t testing.TB, s cas.BlobStore, k cas.Key) {
	t.Helper()
	_, _, err := s.Get(context.Background(), k, 0)
	if !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("Get %s = %v; want a miss", k, err)
	}
}

// blob is n deterministic bytes for seed and their CAS key in org1.
func blob(seed uint64, n int64) (cas.Key, []byte) {
	data := castest.Bytes(seed, n)
	return castest.CASKey("org1", data), data
}

// logBuffer collects what a store logs, for tests that check it; the
// store logs from its background goroutine too.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// textLogger logs everything to w.
func textLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
