package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestCapabilitiesAdvertiseTheLimitsTheServerEnforces(t *testing.T) {
	env := startServer(t, func(c *Config) { c.MaxBlobSize = 1 << 30 })
	caps, err := env.caps().GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cc := caps.CacheCapabilities
	if cc.MaxBatchTotalSizeBytes != 4<<20 || cc.MaxCasBlobSizeBytes != 1<<30 {
		t.Errorf("max_batch_total_size_bytes %d, max_cas_blob_size_bytes %d; want 4 MiB and --max_blob_size (1 GiB)",
			cc.MaxBatchTotalSizeBytes, cc.MaxCasBlobSizeBytes)
	}
	// Without --max_blob_size, the disk budget is the limit: no larger blob fits.
	env = startServer(t, func(c *Config) { c.MaxSize = 3 << 30 })
	caps, err = env.caps().GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{})
	if err != nil || caps.CacheCapabilities.MaxCasBlobSizeBytes != 3<<30 {
		t.Errorf("max_cas_blob_size_bytes without --max_blob_size: %v %v; want --max_size (3 GiB)", caps, err)
	}
	t.Logf("gRPC message limit: %d bytes; a batch entry adds at most %d bytes to its blob; a digest takes at most %d bytes",
		maxGRPCMessage, maxBatchEntryOverhead, maxDigestEntrySize)
}

// Clients other than Bazel ask about all of an action's inputs at once.
func TestFindMissingTakesSeventyThousandDigestsInOneCall(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	digests := make([]*repb.Digest, 70_000)
	for i := range digests {
		digests[i] = sha([]byte(fmt.Sprintf("input file %d", i))).Proto()
	}
	present := []byte("input file 7")
	if _, err := writeBlob(ctx, env.bs(), "", sha(present), present); err != nil {
		t.Fatal(err)
	}
	req := &repb.FindMissingBlobsRequest{BlobDigests: digests}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	resp, err := env.cas().FindMissingBlobs(ctx, req)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("FindMissingBlobs of 70,000 digests: %v", err)
	}
	if len(resp.MissingBlobDigests) != len(digests)-1 {
		t.Errorf("%d missing of %d; want all but the one uploaded", len(resp.MissingBlobDigests), len(digests))
	}
	t.Logf("FindMissingBlobs of 70,000 digests (a %d-byte request): %d MiB allocated by client and server together",
		proto.Size(req), (after.TotalAlloc-before.TotalAlloc)>>20)

	tooMany := make([]*repb.Digest, maxFindMissingDigests+1)
	for i := range tooMany {
		tooMany[i] = digests[i%len(digests)]
	}
	_, err = env.cas().FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: tooMany})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "at most 100000") {
		t.Errorf("FindMissingBlobs of %d digests: %v; want INVALID_ARGUMENT naming the limit", len(tooMany), err)
	}
}

// serverSettings reads the SETTINGS frame a gRPC server sends first on a
// new HTTP/2 connection.
func serverSettings(t *testing.T, addr string) map[uint16]uint32 {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Client preface and an empty SETTINGS frame.
	if _, err := io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	for {
		var header [9]byte
		if _, err := io.ReadFull(r, header[:]); err != nil {
			t.Fatalf("reading the server's frames: %v", err)
		}
		length := int(header[0])<<16 | int(header[1])<<8 | int(header[2])
		payload := make([]byte, length)
		if _, err := io.ReadFull(r, payload); err != nil {
			t.Fatal(err)
		}
		const settingsFrame, ackFlag = 0x4, 0x1
		if header[3] != settingsFrame || header[4]&ackFlag != 0 {
			continue
		}
		settings := map[uint16]uint32{}
		for p := payload; len(p) >= 6; p = p[6:] {
			settings[binary.BigEndian.Uint16(p)] = binary.BigEndian.Uint32(p[2:])
		}
		return settings
	}
}

func TestGRPCCapsConcurrentStreamsPerConnectionAndClientsQueueTheRest(t *testing.T) {
	env := startServer(t, func(c *Config) { c.MaxConcurrentStreams = 3 })
	const maxConcurrentStreams = 0x3 // HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
	if got, ok := serverSettings(t, env.grpcAddr)[maxConcurrentStreams]; !ok || got != 3 {
		t.Fatalf("the server announces max concurrent streams %d (set: %v), want 3", got, ok)
	}
	if got := serverSettings(t, startServer(t).grpcAddr)[maxConcurrentStreams]; got != 100 {
		t.Errorf("default max concurrent streams: %d, want 100", got)
	}

	// More calls than streams at once on one connection: the client queues
	// them, none fails.
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			blob := randomBytes(t, 200_000+i)
			_, err := writeBlob(ctx, env.bs(), "", sha(blob), blob)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("upload beyond the stream limit: %v", err)
		}
	}
}

func TestConnectionsPerPortAreCappedAndLaterClientsWait(t *testing.T) {
	env := startServer(t, func(c *Config) { c.MaxConnectionsPerPort = 2 })
	ctx := context.Background()
	for _, port := range []struct {
		name string
		addr string
		call func() error // on a new connection
	}{
		{"grpc", env.grpcAddr, func() error {
			_, err := repb.NewCapabilitiesClient(env.dial(env.adminKey)).GetCapabilities(ctx, &repb.GetCapabilitiesRequest{})
			return err
		}},
		{"http", strings.TrimPrefix(env.httpURL, "http://"), func() error {
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := client.Get(env.httpURL + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("GET /healthz: %s", resp.Status)
				}
			}
			return err
		}},
	} {
		t.Run(port.name, func(t *testing.T) {
			// Fill the port with connections that send nothing.
			var held []net.Conn
			for range 2 {
				c, err := net.Dial("tcp", port.addr)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, c)
			}
			env.logs.waitForLine(t, "connection limit reached", "port="+port.name, "open_connections=2")

			done := make(chan error, 1)
			go func() { done <- port.call() }()
			for _, c := range held {
				c.Close() // slots open: the waiting client is served
			}
			if err := <-done; err != nil {
				t.Fatalf("a client that waited for a free connection slot: %v", err)
			}
		})
	}
}

// A writer that opens uploads and then sends nothing must not hold them:
// each silent stream and stalled body is ended after --upload_idle_timeout
// with an error that says so, and nothing of it is stored.
func TestUploadsThatGoSilentAreEnded(t *testing.T) {
	env := startServer(t, func(c *Config) { c.UploadIdleTimeout = 300 * time.Millisecond })
	ctx := context.Background()
	blob := randomBytes(t, 100_000)
	d := sha(blob)

	var wg sync.WaitGroup
	errs := make(chan error, 300)
	// 200 Write streams over two connections: half send a first chunk and
	// fall silent, half send nothing at all.
	conns := []bspb.ByteStreamClient{bspb.NewByteStreamClient(env.dial(env.adminKey)), bspb.NewByteStreamClient(env.dial(env.adminKey))}
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- silentWrite(ctx, conns[i%2], uploadName("", d, fmt.Sprintf("silent-%d", i)), blob[:1000*(i%2)])
		}()
	}
	// 100 PUTs whose body stops after 10 of 1,000 bytes.
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- stalledPut(env, "/cas/"+d.Hash, blob[:10], 1000)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for i := range 2 {
		name := uploadName("", d, fmt.Sprintf("silent-%d", i))
		if _, err := env.bs().QueryWriteStatus(ctx, &bspb.QueryWriteStatusRequest{ResourceName: name}); status.Code(err) != codes.NotFound {
			t.Errorf("QueryWriteStatus of a silent upload after it was ended: %v; want NOT_FOUND (dropped)", err)
		}
	}
	if _, err := readBlob(ctx, env.bs(), readName("", d), 0, 0); status.Code(err) != codes.NotFound {
		t.Errorf("a silent upload left a readable blob: %v", err)
	}
	if code, _ := env.httpDo("GET", "/cas/"+d.Hash, env.adminKey, nil); code != http.StatusNotFound {
		t.Errorf("a stalled PUT left a readable blob: %d", code)
	}
	env.logs.waitForLine(t, "dropped an upload whose stream went silent", "received=1000")
	env.logs.waitForLine(t, "ended an HTTP PUT whose body stalled", "received=10")
	env.stop() // waits for dropped uploads to clean up
	if tmp := tempFiles(env.dataDir); len(tmp) != 0 {
		t.Errorf("temp files left behind by ended uploads: %v", tmp)
	}
}

// With --http_ac_strict the server reads an /ac/ body whole before storing
// it; a body that stalls there is ended the same way.
func TestStalledActionCachePutIsEndedWhenTheServerChecksTheBody(t *testing.T) {
	env := startServer(t, func(c *Config) { c.UploadIdleTimeout = 100 * time.Millisecond; c.HTTPACStrict = true })
	if err := stalledPut(env, "/ac/"+sha([]byte("action")).Hash, []byte("\x0a\x02"), 100); err != nil {
		t.Fatal(err)
	}
	env.logs.waitForLine(t, "ended an HTTP PUT whose body stalled", "received=2")
}

// silentWrite opens a Write stream, sends first (if any) without finishing,
// then waits for the server to end the stream; it returns an error unless
// the server ended it as idle.
func silentWrite(ctx context.Context, bs bspb.ByteStreamClient, name string, first []byte) error {
	stream, err := bs.Write(ctx)
	if err != nil {
		return err
	}
	if len(first) > 0 {
		if err := stream.Send(&bspb.WriteRequest{ResourceName: name, Data: first}); err != nil {
			return err
		}
	}
	// No CloseSend: the client stays silent with the stream open.
	err = stream.RecvMsg(&bspb.WriteResponse{})
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "--upload_idle_timeout") {
		return fmt.Errorf("silent Write stream (%d bytes sent): %v; want DEADLINE_EXCEEDED naming --upload_idle_timeout", len(first), err)
	}
	return nil
}

// stalledPut sends a PUT announcing size bytes, sends only part, and
// returns an error unless the server answers 408 Request Timeout.
func stalledPut(env *testEnv, path string, part []byte, size int) error {
	conn, err := net.Dial("tcp", strings.TrimPrefix(env.httpURL, "http://"))
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: sealcache\r\nx-api-key: %s\r\nContent-Length: %d\r\n\r\n", path, env.adminKey, size)
	conn.Write(part)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return fmt.Errorf("stalled PUT: no response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "--upload_idle_timeout") {
		return fmt.Errorf("stalled PUT: %s %q; want 408 naming --upload_idle_timeout", resp.Status, body)
	}
	return nil
}

// Resuming a broken-off upload is not affected by the idle timeout: the
// upload waits for its client for the resume window, well past it.
func TestResumingStillWorksWithAShortIdleTimeout(t *testing.T) {
	env := startServer(t, func(c *Config) { c.UploadIdleTimeout = 100 * time.Millisecond })
	ctx := context.Background()
	data := randomBytes(t, 300_000)
	d := sha(data)
	name := uploadName("", d, "resume-after-idle")
	stream, err := env.bs().Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&bspb.WriteRequest{ResourceName: name, Data: data[:100_000]}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("stream closed without finish_write: %v", err)
	}
	// Let more than the idle timeout pass, measured by the server itself:
	// a silent stream opened now is ended only after it.
	if err := silentWrite(ctx, env.bs(), uploadName("", sha([]byte("other")), "clock"), nil); err != nil {
		t.Fatal(err)
	}
	st, err := env.bs().QueryWriteStatus(ctx, &bspb.QueryWriteStatusRequest{ResourceName: name})
	if err != nil || st.CommittedSize != 100_000 {
		t.Fatalf("QueryWriteStatus after the idle timeout: %v %v; want 100000 bytes committed", st, err)
	}
	stream, err = env.bs().Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&bspb.WriteRequest{ResourceName: name, WriteOffset: 100_000, Data: data[100_000:], FinishWrite: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatalf("resumed write: %v", err)
	}
	if got, err := readBlob(ctx, env.bs(), readName("", d), 0, 0); err != nil || string(got) != string(data) {
		t.Fatalf("read after resume: %d bytes, %v", len(got), err)
	}
}

// tempFiles lists the disk store's temp files.
func tempFiles(dataDir string) []string {
	entries, _ := os.ReadDir(filepath.Join(dataDir, "cas", "tmp"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
