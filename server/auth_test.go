package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sealcache/sealcache/orgs"
)

// tenant is one org with a key per role.
type tenant struct {
	org                   orgs.Org
	admin, writer, reader string
}

func newTenant(t *testing.T, env *testEnv, name string) tenant {
	t.Helper()
	ctx := context.Background()
	org, err := env.s.orgs.GetOrgByName(ctx, name)
	if err != nil {
		org, err = env.s.orgs.CreateOrg(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
	}
	tn := tenant{org: org}
	for role, dst := range map[orgs.Role]*string{orgs.RoleAdmin: &tn.admin, orgs.RoleWriter: &tn.writer, orgs.RoleReader: &tn.reader} {
		_, secret, err := env.s.orgs.CreateAPIKey(ctx, org.ID, role, string(role)+" of "+name)
		if err != nil {
			t.Fatal(err)
		}
		*dst = secret
	}
	return tn
}

// cacheCall is one REAPI call made with some key against org A's data.
type cacheCall struct {
	name  string
	write bool
	call  func(ctx context.Context, conn *grpc.ClientConn) error
}

func TestIsolationMatrix(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	a := newTenant(t, env, "default")
	b := newTenant(t, env, "beta")
	operatorKey := env.operatorKey
	if operatorKey == "" {
		t.Fatal("no initial operator key")
	}

	// Org A stores a blob, a directory and an action result.
	blob := []byte("org A's secret artifact")
	dirData, _ := proto.Marshal(&repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: sha(blob).Proto()}}})
	action := sha([]byte("org A action"))
	resultA := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "out", Digest: sha(blob).Proto()}}, ExitCode: 0}
	aConn := env.dial(a.writer)
	if _, err := writeBlob(ctx, bspb.NewByteStreamClient(aConn), "", sha(blob), blob); err != nil {
		t.Fatal(err)
	}
	if _, err := repb.NewContentAddressableStorageClient(aConn).BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: sha(dirData).Proto(), Data: dirData}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := repb.NewActionCacheClient(aConn).UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: resultA}); err != nil {
		t.Fatal(err)
	}

	fresh := []byte("a new blob")
	calls := []cacheCall{
		{"GetCapabilities", false, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := repb.NewCapabilitiesClient(c).GetCapabilities(ctx, &repb.GetCapabilitiesRequest{})
			return err
		}},
		{"FindMissingBlobs", false, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := repb.NewContentAddressableStorageClient(c).FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{sha(blob).Proto()}})
			return err
		}},
		{"BatchReadBlobs", false, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := repb.NewContentAddressableStorageClient(c).BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{sha(blob).Proto()}})
			return err
		}},
		{"GetTree", false, func(ctx context.Context, c *grpc.ClientConn) error {
			s, err := repb.NewContentAddressableStorageClient(c).GetTree(ctx, &repb.GetTreeRequest{RootDigest: sha(dirData).Proto()})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}},
		{"GetActionResult", false, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := repb.NewActionCacheClient(c).GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.Proto()})
			return err
		}},
		{"ByteStream.Read", false, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := readBlob(ctx, bspb.NewByteStreamClient(c), readName("", sha(blob)), 0, 0)
			return err
		}},
		{"BatchUpdateBlobs", true, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := repb.NewContentAddressableStorageClient(c).BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: sha(fresh).Proto(), Data: fresh}}})
			return err
		}},
		{"UpdateActionResult", true, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := repb.NewActionCacheClient(c).UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: sha([]byte("other action")).Proto(), ActionResult: &repb.ActionResult{}})
			return err
		}},
		{"ByteStream.Write", true, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := writeBlob(ctx, bspb.NewByteStreamClient(c), "", sha(fresh), fresh)
			return err
		}},
		{"ByteStream.QueryWriteStatus", true, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := bspb.NewByteStreamClient(c).QueryWriteStatus(ctx, &bspb.QueryWriteStatusRequest{ResourceName: uploadName("", sha(fresh), "q")})
			if status.Code(err) == codes.NotFound {
				return nil // allowed to ask; there is simply no such upload
			}
			return err
		}},
	}

	callers := []struct {
		name string
		key  string
		org  string // "" for no org
		role orgs.Role
	}{
		{"A admin", a.admin, "A", orgs.RoleAdmin},
		{"A writer", a.writer, "A", orgs.RoleWriter},
		{"A reader", a.reader, "A", orgs.RoleReader},
		{"B admin", b.admin, "B", orgs.RoleAdmin},
		{"B writer", b.writer, "B", orgs.RoleWriter},
		{"B reader", b.reader, "B", orgs.RoleReader},
		{"operator", operatorKey, "", orgs.RoleOperator},
		{"no key", "", "", ""},
		{"bad key", "sck_kaaaaaaaaaaaa_" + strings.Repeat("x", 43), "", ""},
	}
	for _, caller := range callers {
		conn := env.dial(caller.key)
		for _, c := range calls {
			want := codes.OK
			switch {
			case caller.role == "":
				want = codes.Unauthenticated
			case c.name == "GetCapabilities":
				want = codes.OK
			case caller.role == orgs.RoleOperator:
				want = codes.PermissionDenied
			case c.write && caller.role == orgs.RoleReader:
				want = codes.PermissionDenied
			case caller.org == "B" && (c.name == "GetTree" || c.name == "GetActionResult" || c.name == "ByteStream.Read"):
				want = codes.NotFound // org A's data does not exist for org B
			}
			if got := status.Code(c.call(ctx, conn)); got != want {
				t.Errorf("%s %s: got %v, want %v", caller.name, c.name, got, want)
			}
		}
	}

	// What org B sees of org A's data: nothing.
	bConn := env.dial(b.admin)
	missing, err := repb.NewContentAddressableStorageClient(bConn).FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{sha(blob).Proto()}})
	if err != nil || len(missing.MissingBlobDigests) != 1 {
		t.Errorf("org B's FindMissing must report org A's blob missing: %v %v", missing, err)
	}
	batch, err := repb.NewContentAddressableStorageClient(bConn).BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{sha(blob).Proto()}})
	if err != nil || codes.Code(batch.Responses[0].Status.Code) != codes.NotFound {
		t.Errorf("org B's BatchRead of org A's blob: %v %v", batch, err)
	}
	// Org B writing the same action digest does not touch org A's entry.
	resultB := &repb.ActionResult{ExitCode: 42}
	if _, err := repb.NewActionCacheClient(bConn).UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: resultB}); err != nil {
		t.Fatal(err)
	}
	got, err := repb.NewActionCacheClient(aConn).GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.Proto()})
	if err != nil || got.ExitCode != 0 {
		t.Errorf("org A's action result was changed by org B: %v %v", got, err)
	}

	// The HTTP cache protocol: the same rules.
	httpCases := []struct {
		method, path, key string
		body              []byte
		want              int
	}{
		{"GET", "/cas/" + sha(blob).Hash, "", nil, http.StatusUnauthorized},
		{"GET", "/cas/" + sha(blob).Hash, "sck_bad", nil, http.StatusUnauthorized},
		{"PUT", "/cas/" + sha(blob).Hash, a.writer, blob, http.StatusOK},
		{"GET", "/cas/" + sha(blob).Hash, a.reader, nil, http.StatusOK},
		{"HEAD", "/cas/" + sha(blob).Hash, a.reader, nil, http.StatusOK},
		{"PUT", "/cas/" + sha(blob).Hash, a.reader, blob, http.StatusForbidden},
		{"GET", "/cas/" + sha(blob).Hash, b.admin, nil, http.StatusNotFound},
		{"HEAD", "/cas/" + sha(blob).Hash, b.writer, nil, http.StatusNotFound},
		{"GET", "/cas/" + sha(blob).Hash, operatorKey, nil, http.StatusForbidden},
		{"PUT", "/ac/" + action.Hash, a.writer, must(proto.Marshal(resultA)), http.StatusOK},
		{"GET", "/ac/" + action.Hash, a.reader, nil, http.StatusOK},
		{"GET", "/ac/" + action.Hash, b.reader, nil, http.StatusNotFound},
		{"PUT", "/ac/" + action.Hash, b.reader, must(proto.Marshal(resultB)), http.StatusForbidden},
		{"PUT", "/ac/" + action.Hash, operatorKey, must(proto.Marshal(resultB)), http.StatusForbidden},
		{"GET", "/ac/" + action.Hash, "", nil, http.StatusUnauthorized},
	}
	for _, c := range httpCases {
		if code, body := env.httpDo(c.method, c.path, c.key, c.body); code != c.want {
			t.Errorf("HTTP %s %s with key %.8s: %d %s, want %d", c.method, c.path, c.key, code, body, c.want)
		}
	}
	// Basic auth with the key as password and Bearer work like x-api-key.
	for _, set := range []func(*http.Request){
		func(r *http.Request) { r.SetBasicAuth("bazel", a.reader) },
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+a.reader) },
	} {
		req, _ := http.NewRequest("GET", env.httpURL+"/cas/"+sha(blob).Hash, nil)
		set(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("basic/bearer auth: %v %v", resp, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestReadersAreToldUpdatesAreOffExceptOldBazel(t *testing.T) {
	env := startServer(t)
	reader := newTenant(t, env, "default").reader
	caps := repb.NewCapabilitiesClient(env.dial(reader))
	bazelHeader := func(version string) context.Context {
		rm, _ := proto.Marshal(&repb.RequestMetadata{ToolDetails: &repb.ToolDetails{ToolName: "bazel", ToolVersion: version}})
		return metadata.AppendToOutgoingContext(context.Background(), requestMetadataHeader, string(rm))
	}
	for _, c := range []struct {
		name string
		ctx  context.Context
		want bool
	}{
		{"plain client", context.Background(), false},
		{"Bazel 4.2.3", bazelHeader("4.2.3"), true},
		{"Bazel development version", bazelHeader("development version"), true},
		{"Bazel 7.1.0", bazelHeader("7.1.0"), false},
	} {
		got, err := caps.GetCapabilities(c.ctx, &repb.GetCapabilitiesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if got.CacheCapabilities.ActionCacheUpdateCapabilities.UpdateEnabled != c.want {
			t.Errorf("%s: update_enabled = %v, want %v", c.name, !c.want, c.want)
		}
	}
}

func TestAnonymousAccess(t *testing.T) {
	env := startServer(t, func(c *Config) { c.AnonymousAccess = AnonymousRead })
	ctx := context.Background()
	blob := []byte("public")
	if _, err := writeBlob(ctx, env.bs(), "", sha(blob), blob); err != nil {
		t.Fatal(err)
	}
	anon := env.dial("")
	if _, err := readBlob(ctx, bspb.NewByteStreamClient(anon), readName("", sha(blob)), 0, 0); err != nil {
		t.Errorf("anonymous read of org default: %v", err)
	}
	if _, err := writeBlob(ctx, bspb.NewByteStreamClient(anon), "", sha([]byte("x")), []byte("x")); status.Code(err) != codes.PermissionDenied {
		t.Errorf("anonymous write with --anonymous_access=read: %v", err)
	}
}

func TestFirstStartPrintsKeysOnceAndNeverLogsThem(t *testing.T) {
	dir := t.TempDir()
	cfg := Defaults()
	cfg.DataDir = dir
	cfg.GRPCAddress = "127.0.0.1:1985"
	first := startServerWith(t, cfg)
	adminKey := first.adminKey
	operatorKey := first.operatorKey
	if adminKey == "" || operatorKey == "" {
		t.Fatal("the first start must write both initial key files")
	}
	for _, name := range []string{InitialAdminKeyFile, InitialOperatorKeyFile} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want mode 0600", name, err, info.Mode().Perm())
		}
	}
	out := first.bootOut.String()
	for _, want := range []string{adminKey, operatorKey, "--remote_cache=grpc://127.0.0.1:1985", "--remote_header=x-api-key=" + adminKey} {
		if !strings.Contains(out, want) {
			t.Errorf("first start output lacks %q:\n%s", want, out)
		}
	}
	// Use the key so it would show up in request logs, if there were any.
	if _, err := first.cas().FindMissingBlobs(context.Background(), &repb.FindMissingBlobsRequest{}); err != nil {
		t.Fatal(err)
	}
	// A second server on the same data dir (after the first stops).
	first.stop()
	os.Remove(filepath.Join(dir, InitialAdminKeyFile))
	second := startServerWith(t, cfg)
	if second.bootOut.Len() != 0 {
		t.Errorf("second start printed:\n%s", second.bootOut)
	}
	if _, err := os.Stat(filepath.Join(dir, InitialAdminKeyFile)); !os.IsNotExist(err) {
		t.Errorf("second start wrote the key file again: %v", err)
	}
	for _, logs := range []string{first.logs.String(), second.logs.String()} {
		if strings.Contains(logs, adminKey) || strings.Contains(logs, operatorKey) || bytes.Contains([]byte(logs), []byte(adminKey[len(adminKey)-20:])) {
			t.Errorf("a key appears in the log:\n%s", logs)
		}
	}
}

// Authorization denies by default: every method the gRPC server registers
// has an explicit rule, and a method without one is refused for every key.
func TestEveryRegisteredMethodHasAnAccessRule(t *testing.T) {
	// A server that is not serving: building a second gRPC server beside a
	// serving one would race with ServeListeners.
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	srv, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	g := srv.newGRPCServer(nil)
	registered := 0
	for service, info := range g.GetServiceInfo() {
		for _, m := range info.Methods {
			registered++
			full := "/" + service + "/" + m.Name
			if _, ok := methodAccess[full]; !ok {
				t.Errorf("%s is registered but has no rule in methodAccess", full)
			}
		}
	}
	if registered < len(methodAccess) {
		t.Errorf("methodAccess lists %d methods but only %d are registered: remove rules of methods that are gone", len(methodAccess), registered)
	}
	_, err = srv.grpcPrincipal(context.Background(), "/build.bazel.remote.execution.v2.Execution/Execute")
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a method without a rule: %v; want PERMISSION_DENIED", err)
	}
}
