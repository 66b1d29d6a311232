package e2etest

import (
	"context"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// probeTimeout bounds one probe call: a safety net, not a performance check.
const probeTimeout = 30 * time.Second

// FindMissingBlobs asks the server's CAS, with apiKey, whether one small blob
// that no test stores is missing, and returns the call's error (nil, or a
// gRPC status error). It is the cheapest real request that needs an org's
// key material, so tests poll it to learn when a key change has reached the
// server, e.g. until a revoked CMEK key makes it UNAVAILABLE.
func (s *Server) FindMissingBlobs(apiKey string) error {
	s.t.Helper()
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.t.Fatalf("connecting to %s: %v", s.GRPCAddr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-api-key", apiKey)
	probe := DigestOf([]byte("sealcache e2e probe: never stored"))
	_, err = repb.NewContentAddressableStorageClient(conn).FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{probe}})
	return err
}

// pollInterval is how often Eventually checks its condition.
const pollInterval = 100 * time.Millisecond

// Eventually checks cond until it returns "" or timeout passes, and then
// fails the test with what cond last returned. cond returns why the awaited
// state is not reached yet, or "" once it is. Use it to wait for a real
// condition (a TTL ending, say) instead of sleeping for a guessed time; the
// timeout is a bound against hanging, never an assertion about speed.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	PollUntil(t, pollInterval, timeout, what, cond)
}

// PollUntil checks cond every interval until it returns "", and returns how
// long that took; after timeout it fails the test with what cond last
// said. For measuring how soon a change reaches a server: the interval is
// the resolution of the figure, the timeout a bound against hanging.
func PollUntil(t testing.TB, interval, timeout time.Duration, what string, cond func() string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		why := cond()
		if why == "" {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("waited %v for %s: %s", timeout, what, why)
		}
		time.Sleep(interval)
	}
}
