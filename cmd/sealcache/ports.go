package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/sealcache/sealcache/server"
)

// wrongPortHint explains a failed admin call when --server names the
// server's gRPC port: that port answers HTTP/1 requests with a header that
// says so (server/ports.go), which the admin API's client reports only as
// an odd error. Errors that are the server's real answer pass unchanged.
func wrongPortHint(ctx context.Context, serverURL string, err error) error {
	switch connect.CodeOf(err) {
	case connect.CodeUnauthenticated, connect.CodePermissionDenied, connect.CodeInvalidArgument,
		connect.CodeNotFound, connect.CodeFailedPrecondition, connect.CodeAlreadyExists:
		return err
	}
	if port, ok := isGRPCPort(ctx, serverURL); ok {
		host := "HOST"
		if u, perr := url.Parse(serverURL); perr == nil && u.Hostname() != "" {
			host = u.Hostname()
		}
		return fmt.Errorf("%s is Sealcache's gRPC port (for Bazel's --remote_cache=grpc://); the CLI talks to the HTTP port: use --server http://%s (or set SEALCACHE_SERVER)",
			serverURL, net.JoinHostPort(host, port))
	}
	return err
}

// isGRPCPort asks serverURL whether it is a Sealcache gRPC port, and if so
// returns the HTTP port it names.
func isGRPCPort(ctx context.Context, serverURL string) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(serverURL, "/")+"/healthz", nil)
	if err != nil {
		return "", false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", false
	}
	resp.Body.Close()
	if resp.Header.Get(server.SealcachePortHeader) != "grpc" {
		return "", false
	}
	port := resp.Header.Get(server.SealcacheHTTPPortHeader)
	if port == "" {
		port = "8080"
	}
	return port, true
}
