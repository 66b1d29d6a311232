package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// A second server started on a busy port fails at once and leaves nothing
// behind: no data directory, no keys, nothing printed.
func TestBusyPortFailsBeforeCreatingAnything(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, c := range []struct{ flag, grpc, http string }{
		{"--grpc_address", busy.Addr().String(), "127.0.0.1:0"},
		{"--http_address", "127.0.0.1:0", busy.Addr().String()},
	} {
		cfg := Defaults()
		cfg.DataDir = filepath.Join(t.TempDir(), "data")
		cfg.GRPCAddress, cfg.HTTPAddress = c.grpc, c.http
		out := &syncBuffer{}
		log, logs := infoLogger()
		err := Run(context.Background(), cfg, log, out)
		if err == nil || !strings.Contains(err.Error(), c.flag+" "+busy.Addr().String()) || !strings.Contains(err.Error(), "in use by another process") {
			t.Errorf("%s busy: Run returned %v; want an error naming the flag and saying the port is in use", c.flag, err)
		}
		if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
			t.Errorf("%s busy: the data directory was created (%v)", c.flag, err)
		}
		if out.String() != "" || logs.String() != "" {
			t.Errorf("%s busy: printed %q and logged %q; want nothing", c.flag, out, logs)
		}
	}
}

// The first start prints its keys once both ports are bound, with the
// ports really bound.
func TestFirstStartBannerNamesTheBoundPorts(t *testing.T) {
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	cfg.GRPCAddress, cfg.HTTPAddress = "127.0.0.1:0", "127.0.0.1:0"
	out := &syncBuffer{}
	log, logs := infoLogger()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, log, out) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	serving := regexp.MustCompile(`msg=serving grpc_address=127\.0\.0\.1:(\d+) http_address=127\.0\.0\.1:(\d+)`)
	var ports []string
	waitFor(t, "the serving log line", func() bool {
		ports = serving.FindStringSubmatch(logs.String())
		return ports != nil
	})
	banner := out.String()
	for _, want := range []string{"--remote_cache=grpc://127.0.0.1:" + ports[1], "http://127.0.0.1:" + ports[2] + "/", "admin key of org \"default\""} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner lacks %q:\n%s", want, banner)
		}
	}
}

// waitFor polls a real condition (see waitUntil).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitUntil(t, what, func() string {
		if cond() {
			return ""
		}
		return "not yet"
	})
}

// curl, a browser, Bazel's HTTP cache or the CLI pointed at the gRPC port
// get a short HTTP/1.1 answer naming the HTTP port; gRPC on that port
// keeps working.
func TestHTTP1OnTheGRPCPortIsToldTheHTTPPort(t *testing.T) {
	env := startServer(t)
	_, httpPort, _ := net.SplitHostPort(strings.TrimPrefix(env.httpURL, "http://"))
	for _, method := range []string{"GET", "PUT"} {
		req, _ := http.NewRequest(method, "http://"+env.grpcAddr+"/cas/"+sha([]byte("x")).Hash, strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s on the gRPC port: %v", method, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(SealcachePortHeader) != "grpc" ||
			!strings.Contains(string(body), "This is Sealcache's gRPC port") || !strings.Contains(string(body), "http://HOST:"+httpPort+"/") {
			t.Errorf("%s on the gRPC port: %d %v %q", method, resp.StatusCode, resp.Header, body)
		}
	}
	if _, err := env.caps().GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{}); err != nil {
		t.Errorf("gRPC after HTTP/1 requests on the same port: %v", err)
	}
}

// A gRPC client (Bazel with --remote_cache=grpc://HOST:8080) pointed at
// the HTTP port gets a gRPC error naming the gRPC port.
func TestGRPCOnTheHTTPPortIsToldTheGRPCPort(t *testing.T) {
	env := startServer(t)
	_, grpcPort, _ := net.SplitHostPort(env.grpcAddr)
	conn, err := grpc.NewClient(strings.TrimPrefix(env.httpURL, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = repb.NewCapabilitiesClient(conn).GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "this is Sealcache's HTTP port") ||
		!strings.Contains(err.Error(), "--remote_cache=grpc://HOST:"+grpcPort) {
		t.Errorf("gRPC on the HTTP port: %v; want UNIMPLEMENTED naming the gRPC port", err)
	}
}

func TestGRPCPercentEncode(t *testing.T) {
	if got := grpcPercentEncode("100% sure: é\n"); got != "100%25 sure: %C3%A9%0A" {
		t.Errorf("grpcPercentEncode = %q", got)
	}
}
