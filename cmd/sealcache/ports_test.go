package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealcache/sealcache/server"
)

// startRealServer runs a whole server on loopback ports and returns them
// with the initial admin key.
func startRealServer(t *testing.T) (grpcAddr, httpAddr, adminKey string) {
	t.Helper()
	cfg := server.Defaults()
	cfg.DataDir = t.TempDir()
	s, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListeners(ctx, grpcLis, httpLis) }()
	t.Cleanup(func() {
		cancel()
		<-done
		s.Close()
	})
	key, err := os.ReadFile(filepath.Join(cfg.DataDir, server.InitialAdminKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return grpcLis.Addr().String(), httpLis.Addr().String(), strings.TrimSpace(string(key))
}

// The CLI pointed at the gRPC port says so and names the HTTP port.
func TestAdminCLIPointedAtTheGRPCPort(t *testing.T) {
	grpcAddr, httpAddr, key := startRealServer(t)
	t.Setenv("SEALCACHE_API_KEY", "")
	t.Setenv("SEALCACHE_SERVER", "")
	var stdout, stderr bytes.Buffer
	code := runAdmin(t.Context(), []string{"--server", "http://" + grpcAddr, "--api_key", key, "keys", "list"}, &stdout, &stderr)
	_, httpPort, _ := net.SplitHostPort(httpAddr)
	r := cliResult{stdout.String(), stderr.String(), code}
	r.want(t, 1, "http://"+grpcAddr+" is Sealcache's gRPC port", "use --server http://127.0.0.1:"+httpPort)

	// The same command against the HTTP port works.
	stdout.Reset()
	stderr.Reset()
	if code := runAdmin(t.Context(), []string{"--server", "http://" + httpAddr, "--api_key", key, "keys", "list"}, &stdout, &stderr); code != 0 {
		t.Errorf("keys list on the HTTP port: exit %d: %s", code, stderr.String())
	}
}
