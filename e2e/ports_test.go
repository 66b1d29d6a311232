package e2e_test

import (
	"strings"
	"testing"

	"github.com/sealcache/sealcache/e2e/e2etest"
)

// A user who swaps the ports is told which one to use: Bazel with
// grpc:// on the HTTP port, Bazel with http:// on the gRPC port, and the
// CLI pointed at the gRPC port.
func TestWrongPortsAreExplained(t *testing.T) {
	server := e2etest.StartServer(t)
	key := server.AdminKey()
	_, grpcPort, _ := strings.Cut(server.GRPCAddr, ":")
	_, httpPort, _ := strings.Cut(server.HTTPAddr, ":")
	bazel := e2etest.NewBazel(t)

	grpcOnHTTP := bazel.Run("build", "--remote_cache=grpc://"+server.HTTPAddr, "--remote_header=x-api-key="+key, markerTarget)
	t.Logf("bazel with grpc:// on the HTTP port: exit %d\n%s", grpcOnHTTP.ExitCode, firstLineWith(grpcOnHTTP.RedactedOutput(), "ERROR"))
	checkOutputSays(t, grpcOnHTTP, "Bazel with grpc:// on the HTTP port",
		"UNIMPLEMENTED: this is Sealcache's HTTP port", "--remote_cache=grpc://HOST:"+grpcPort)

	httpOnGRPC := bazel.Run("build", "--remote_cache=http://bazel:"+key+"@"+server.GRPCAddr, "--verbose_failures", markerTarget)
	t.Logf("bazel with http:// on the gRPC port: exit %d\n%s", httpOnGRPC.ExitCode, firstLineWith(httpOnGRPC.RedactedOutput(), "400 Bad Request"))
	checkOutputSays(t, httpOnGRPC, "Bazel with http:// on the gRPC port", "400 Bad Request")

	r := server.CLI(server.OperatorKey(), "admin", "--server", "http://"+server.GRPCAddr, "orgs", "list")
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "is Sealcache's gRPC port") || !strings.Contains(r.Stderr, "use --server http://127.0.0.1:"+httpPort) {
		t.Errorf("%s: exit %d\n%s", r.Command(), r.ExitCode, r.Output())
	}
	t.Logf("%s:\n%s", r.Command(), r.Stderr)
}

func firstLineWith(output, s string) string {
	for _, line := range strings.Split(output, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}
