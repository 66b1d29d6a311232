package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/server/credentials"
)

// testEnv is a real server on 127.0.0.1 with a fresh data dir, and clients
// that carry the initial admin key of org "default".
type testEnv struct {
	t           testing.TB
	s           *Server
	dataDir     string
	grpcAddr    string
	httpURL     string
	adminKey    string
	operatorKey string
	bootOut     *syncBuffer
	logs        *syncBuffer
	conn        *grpc.ClientConn
	stop        func() // shuts the server down as SIGTERM does; idempotent
}

func startServer(t testing.TB, configure ...func(*Config)) *testEnv {
	t.Helper()
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	cfg.MaxSize = 8 << 30
	for _, f := range configure {
		f(&cfg)
	}
	return startServerWith(t, cfg)
}

func startServerWith(t testing.TB, cfg Config) *testEnv {
	t.Helper()
	env := &testEnv{t: t, dataDir: cfg.DataDir, bootOut: &syncBuffer{}, logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(context.Background(), cfg, log, env.bootOut)
	if err != nil {
		t.Fatal(err)
	}
	env.s = s
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	env.grpcAddr = grpcLis.Addr().String()
	env.httpURL = "http://" + httpLis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListeners(ctx, grpcLis, httpLis) }()
	var once sync.Once
	env.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server: %v", err)
			}
			s.Close()
		})
	}
	t.Cleanup(env.stop)
	env.adminKey = initialKey(cfg.DataDir, InitialAdminKeyFile)
	env.operatorKey = initialKey(cfg.DataDir, InitialOperatorKeyFile)
	env.conn = env.dial(env.adminKey)
	return env
}

func (e *testEnv) dial(key string) *grpc.ClientConn {
	e.t.Helper()
	conn, err := grpc.NewClient(e.grpcAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(credentials.PerRPC(key)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxGRPCMessage), grpc.MaxCallSendMsgSize(maxGRPCMessage)))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

func (e *testEnv) cas() repb.ContentAddressableStorageClient {
	return repb.NewContentAddressableStorageClient(e.conn)
}
func (e *testEnv) ac() repb.ActionCacheClient    { return repb.NewActionCacheClient(e.conn) }
func (e *testEnv) bs() bspb.ByteStreamClient     { return bspb.NewByteStreamClient(e.conn) }
func (e *testEnv) caps() repb.CapabilitiesClient { return repb.NewCapabilitiesClient(e.conn) }

// httpDo sends an HTTP request with key as x-api-key ("" for none).
func (e *testEnv) httpDo(method, path, key string, body []byte) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.httpURL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("x-api-key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// writeBlob uploads data with one ByteStream Write.
func writeBlob(ctx context.Context, bs bspb.ByteStreamClient, instance string, d cas.Digest, data []byte) (*bspb.WriteResponse, error) {
	stream, err := bs.Write(ctx)
	if err != nil {
		return nil, err
	}
	name := uploadName(instance, d, "u1")
	const chunk = 64 << 10
	for off := 0; ; off += chunk {
		end := min(off+chunk, len(data))
		err := stream.Send(&bspb.WriteRequest{ResourceName: name, WriteOffset: int64(off), Data: data[off:end], FinishWrite: end == len(data)})
		if err != nil || end == len(data) {
			break
		}
	}
	return stream.CloseAndRecv()
}

func uploadName(instance string, d cas.Digest, uuid string) string {
	prefix := ""
	if instance != "" {
		prefix = instance + "/"
	}
	fn := ""
	if d.Function != repb.DigestFunction_SHA256 {
		fn = strings.ToLower(d.Function.String()) + "/"
	}
	return prefix + "uploads/" + uuid + "/blobs/" + fn + d.Hash + "/" + itoa(d.Size)
}

func readName(instance string, d cas.Digest) string {
	prefix := ""
	if instance != "" {
		prefix = instance + "/"
	}
	fn := ""
	if d.Function != repb.DigestFunction_SHA256 {
		fn = strings.ToLower(d.Function.String()) + "/"
	}
	return prefix + "blobs/" + fn + d.Hash + "/" + itoa(d.Size)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func readBlob(ctx context.Context, bs bspb.ByteStreamClient, name string, offset, limit int64) ([]byte, error) {
	stream, err := bs.Read(ctx, &bspb.ReadRequest{ResourceName: name, ReadOffset: offset, ReadLimit: limit})
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, resp.Data...)
	}
}

// syncBuffer collects the server's log for assertions.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{} // closed and replaced on every Write
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitForLine blocks until one line of the log contains every one of
// want, and returns it. It wakes on each write; the timeout is a bound
// against a hung test, not a synchronisation.
func (b *syncBuffer) waitForLine(t testing.TB, want ...string) string {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		b.mu.Lock()
		text := b.buf.String()
		if b.written == nil {
			b.written = make(chan struct{})
		}
		written := b.written
		b.mu.Unlock()
	lines:
		for _, line := range strings.Split(text, "\n") {
			for _, w := range want {
				if !strings.Contains(line, w) {
					continue lines
				}
			}
			return line
		}
		select {
		case <-written:
		case <-timeout:
			t.Fatalf("the server logged no line with all of %q within a minute; its log:\n%s", want, text)
		}
	}
}

func (e *testEnv) defaultOrg() string { return e.s.defaultOrgID }

// initialKey reads a key the first start wrote into the data dir ("" if none).
func initialKey(dataDir, name string) string {
	data, _ := os.ReadFile(filepath.Join(dataDir, name))
	return strings.TrimSpace(string(data))
}
