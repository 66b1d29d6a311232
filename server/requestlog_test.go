package server

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/internal/fakeclock"
)

// infoLogger logs at the default level into a buffer.
func infoLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo})), buf
}

func logLines(buf *syncBuffer) []string {
	s := strings.TrimSpace(buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// A client that keeps sending a bad key gets one log line at once, then
// one line per interval that counts the rest; misses are not logged.
func TestRefusedRequestsAreLoggedOncePerClassAndInterval(t *testing.T) {
	log, buf := infoLogger()
	clock := fakeclock.New()
	l := newRefusalLog(log, clock.Now)
	bad := status.Error(codes.Unauthenticated, "API key is not valid")

	l.observeGRPC("/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs", bad)
	lines := logLines(buf)
	if len(lines) != 1 || !strings.Contains(lines[0], "level=INFO") || !strings.Contains(lines[0], `msg="request refused"`) ||
		!strings.Contains(lines[0], "code=Unauthenticated") || !strings.Contains(lines[0], "FindMissingBlobs") || !strings.Contains(lines[0], "API key is not valid") {
		t.Fatalf("first refusal: %q; want one info line with the code, method and message", lines)
	}

	for range 5 {
		clock.Advance(time.Second)
		l.observeGRPC("/google.bytestream.ByteStream/Read", bad)
	}
	l.observeGRPC("/x/Y", status.Error(codes.NotFound, "a miss"))
	l.observeGRPC("/x/Y", status.Error(codes.Canceled, "client went away"))
	l.observeGRPC("/x/Y", nil)
	l.flush() // within the interval: nothing yet
	if n := len(logLines(buf)); n != 1 {
		t.Fatalf("within the interval the log grew to %d lines:\n%s", n, buf)
	}

	clock.Advance(logInterval)
	l.flush()
	lines = logLines(buf)
	if len(lines) != 2 || !strings.Contains(lines[1], "count=5") || !strings.Contains(lines[1], "last_method=/google.bytestream.ByteStream/Read") {
		t.Fatalf("after the interval: %q; want a second line counting the 5 held back", lines)
	}
	// The class starts afresh: the next refusal is logged at once.
	l.observeGRPC("/x/Y", bad)
	if n := len(logLines(buf)); n != 3 {
		t.Fatalf("a refusal after the summary: %d lines, want 3:\n%s", n, buf)
	}

	// Other classes have their own window; the server's own trouble is a
	// failure, logged above info.
	l.observeGRPC("/x/Y", status.Error(codes.PermissionDenied, "role reader"))
	l.observeGRPC("/x/Y", status.Error(codes.Internal, "bug"))
	l.observeHTTP("PUT /ac", http.StatusBadRequest, "body is not an ActionResult message")
	l.observeHTTP("GET /cas", http.StatusNotFound, "miss")
	lines = logLines(buf)
	if len(lines) != 6 || !strings.Contains(lines[3], "code=PermissionDenied") ||
		!strings.Contains(lines[4], "level=ERROR") || !strings.Contains(lines[4], `msg="request failed"`) ||
		!strings.Contains(lines[5], `code="400 Bad Request"`) || !strings.Contains(lines[5], "protocol=http") {
		t.Fatalf("other classes:\n%s", strings.Join(lines, "\n"))
	}
}

// Evictions are summed up: one line at once, then at most one per
// interval, naming the flag that sets the budget.
func TestEvictionsAreSummedUp(t *testing.T) {
	log, buf := infoLogger()
	clock := fakeclock.New()
	e := newEvictionLog(log, 1<<30, clock.Now)

	e.evicted(1, 1536)
	for range 3 {
		e.evicted(1, 1<<20)
	}
	e.flush()
	lines := logLines(buf)
	if len(lines) != 1 || !strings.Contains(lines[0], `msg="evicted 1 objects (1.5 KiB) to stay under --max_size"`) {
		t.Fatalf("first eviction: %q", lines)
	}
	clock.Advance(logInterval)
	e.flush()
	lines = logLines(buf)
	if len(lines) != 2 || !strings.Contains(lines[1], `msg="evicted 3 objects (3.0 MiB) to stay under --max_size"`) || !strings.Contains(lines[1], "bytes=3145728") {
		t.Fatalf("after the interval: %q", lines)
	}
	clock.Advance(logInterval)
	e.flush()
	if n := len(logLines(buf)); n != 2 {
		t.Errorf("nothing evicted, yet the log grew to %d lines", n)
	}
}

// Against the real server: a full store evicts, and the operator's log
// says so at the default level.
func TestServerLogsEvictionsUnderPressure(t *testing.T) {
	env := startServer(t, func(c *Config) { c.MaxSize = 256 << 10 })
	ctx := context.Background()
	for i := range 8 {
		blob := bytes.Repeat([]byte{byte(i)}, 64<<10)
		if _, err := writeBlob(ctx, env.bs(), "", sha(blob), blob); err != nil {
			t.Fatal(err)
		}
	}
	env.s.evictions.flush()
	if logs := env.logs.String(); !strings.Contains(logs, "level=INFO") || !strings.Contains(logs, "to stay under --max_size") {
		t.Errorf("after evictions, the log has no summary line:\n%s", logs)
	}
}

// Against the real server: a request with a bad key is logged, without
// the key.
func TestServerLogsRefusedRequests(t *testing.T) {
	env := startServer(t)
	const badKey = "sck_kaaaaaaaaaaaa_NotAKeyThisServerEverIssued0000000000000000"
	conn := env.dial(badKey)
	_, err := repb.NewContentAddressableStorageClient(conn).FindMissingBlobs(context.Background(), &repb.FindMissingBlobsRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("bad key: %v", err)
	}
	if code, _ := env.httpDo("PUT", "/ac/"+sha([]byte("x")).Hash, env.adminKey, []byte("\xff not a proto")); code != http.StatusOK {
		t.Fatalf("opaque /ac/ entry: %d", code)
	}
	if code, _ := env.httpDo("PUT", "/cas/"+sha([]byte("y")).Hash, env.adminKey, []byte("not y")); code != http.StatusBadRequest {
		t.Fatalf("wrong hash: %d", code)
	}
	logs := env.logs.String()
	for _, want := range []string{"code=Unauthenticated", `code="400 Bad Request"`, `method="PUT /cas"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, badKey) {
		t.Error("the log contains the API key")
	}
}

// Turning CMEK on and off is in the operator's log, with the org, the key
// and who did it.
func TestServerLogsCMEKEnableAndDisable(t *testing.T) {
	env := startServer(t)
	if err := kms.CreateLocalKey(env.s.cfg.LocalKMSDir, "logged"); err != nil {
		t.Fatal(err)
	}
	set := func(body string) {
		t.Helper()
		req, _ := http.NewRequest("POST", env.httpURL+"/sealcache.admin.v1.EncryptionService/SetEncryptionConfig", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-api-key", env.adminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("SetEncryptionConfig %s: %s", body, resp.Status)
		}
	}
	set(`{"enabled": true, "customerKeyUri": "local-kms://logged"}`)
	set(`{"enabled": false}`)
	logs := env.logs.String()
	for _, want := range []string{
		`msg="CMEK enabled; the org's objects stored before were deleted" org=` + env.defaultOrg(),
		`msg="CMEK disabled; the key records and the sealed objects were deleted" org=` + env.defaultOrg(),
		"key_uri=local-kms://logged",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
}

// At shutdown, what was held back is written, whatever its age.
func TestHeldBackLinesAreWrittenAtShutdown(t *testing.T) {
	log, buf := infoLogger()
	clock := fakeclock.New()
	l := newRefusalLog(log, clock.Now)
	e := newEvictionLog(log, 1<<20, clock.Now)
	bad := status.Error(codes.PermissionDenied, "role reader")
	l.observeGRPC("/x/Y", bad)
	l.observeGRPC("/x/Y", bad)
	e.evicted(1, 10)
	e.evicted(1, 20)
	l.flushAll()
	e.flushAll()
	lines := logLines(buf)
	if len(lines) != 4 || !strings.Contains(lines[2], "count=1") || !strings.Contains(lines[3], "evicted 1 objects (20 B)") {
		t.Errorf("after flushAll:\n%s", buf)
	}
}
