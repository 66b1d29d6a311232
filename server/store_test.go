package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/internal/fakeclock"
	adminv1 "github.com/sealcache/sealcache/proto/sealcache/admin/v1"
	"github.com/sealcache/sealcache/proto/sealcache/admin/v1/adminv1connect"
)

// The storage stack as clients meet it (store.go): changes of an org's
// storage state racing uploads, the empty blob, objects corrupted at rest.

// slowUpload is a ByteStream Write the test drives by hand: it sends the
// first part of a blob, the test changes something, then it sends the rest.
type slowUpload struct {
	bs     bspb.ByteStreamClient
	stream bspb.ByteStream_WriteClient
	name   string
	data   []byte
	sent   int
}

// startSlowUpload sends first bytes of data and returns once the server
// has passed them to the store (QueryWriteStatus counts them).
func startSlowUpload(t *testing.T, bs bspb.ByteStreamClient, data []byte, first int) *slowUpload {
	t.Helper()
	ctx := context.Background()
	stream, err := bs.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	up := &slowUpload{bs: bs, stream: stream, name: uploadName("", sha(data), "slow"), data: data}
	if err := stream.Send(&bspb.WriteRequest{ResourceName: up.name, Data: data[:first]}); err != nil {
		t.Fatal(err)
	}
	up.sent = first
	for {
		st, err := bs.QueryWriteStatus(ctx, &bspb.QueryWriteStatusRequest{ResourceName: up.name})
		if err == nil && st.CommittedSize == int64(first) {
			return up
		}
		if err != nil && status.Code(err) != codes.NotFound { // NOT_FOUND: not attached yet
			t.Fatalf("QueryWriteStatus of the slow upload: %v", err)
		}
	}
}

// finish sends the rest of the blob with finish_write and returns the
// server's answer.
func (up *slowUpload) finish() error {
	const chunk = 64 << 10
	for off := up.sent; off < len(up.data); off += chunk {
		end := min(off+chunk, len(up.data))
		if err := up.stream.Send(&bspb.WriteRequest{WriteOffset: int64(off), Data: up.data[off:end], FinishWrite: end == len(up.data)}); err != nil {
			break // the server ended the stream; CloseAndRecv says why
		}
	}
	_, err := up.stream.CloseAndRecv()
	return err
}

func encryptionClient(env *testEnv) adminv1connect.EncryptionServiceClient {
	return adminv1connect.NewEncryptionServiceClient(h2cClient(), env.httpURL, connect.WithGRPC())
}

func operatorClient(env *testEnv) adminv1connect.OperatorServiceClient {
	return adminv1connect.NewOperatorServiceClient(h2cClient(), env.httpURL, connect.WithGRPC())
}

// withKey sets the API key of an admin API request.
func withKey[T any](key string, msg *T) *connect.Request[T] {
	req := connect.NewRequest(msg)
	req.Header().Set("x-api-key", key)
	return req
}

// setCMEK turns CMEK on (with keyURI) or off through the admin API, as the
// settings page and the CLI do.
func setCMEK(t *testing.T, env *testEnv, adminKey string, enabled bool, keyURI string) error {
	t.Helper()
	_, err := encryptionClient(env).SetEncryptionConfig(context.Background(),
		withKey(adminKey, &adminv1.SetEncryptionConfigRequest{Enabled: enabled, CustomerKeyUri: keyURI}))
	return err
}

// createOrg creates an org as the operator and returns its id and admin key.
func createOrg(t *testing.T, env *testEnv, name string) (orgID, adminKey string) {
	t.Helper()
	resp, err := operatorClient(env).CreateOrg(context.Background(), withKey(env.operatorKey, &adminv1.CreateOrgRequest{Name: name}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.GetOrg().GetId(), resp.Msg.GetAdminKeySecret()
}

// An upload that started while the org's data was plain and finishes after
// the org admin enabled CMEK must not land as plaintext: enabling deleted
// the org's plain data, and a plain object landing after it would stay on
// disk and come back when CMEK is disabled.
func TestEnablingCMEKDuringAPlainUploadLeavesNoPlaintext(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	marker := []byte("SEALCACHE-IN-FLIGHT-PLAINTEXT ")
	blob := bytes.Repeat(marker, (2<<20)/len(marker)) // 2 MB
	up := startSlowUpload(t, env.bs(), blob, 1<<20)

	if err := kms.CreateLocalKey(env.s.cfg.LocalKMSDir, "customer-inflight"); err != nil {
		t.Fatal(err)
	}
	if err := setCMEK(t, env, env.adminKey, true, "local-kms://customer-inflight"); err != nil {
		t.Fatal(err)
	}
	switch err := up.finish(); {
	case err == nil: // stored sealed: it must read back
		got, err := readBlob(ctx, env.bs(), readName("", sha(blob)), 0, 0)
		if err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("the upload succeeded but does not read back: %d bytes, %v", len(got), err)
		}
	case status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "upload it again"):
		t.Logf("the upload spanning the enable failed as it should: %v", err)
	default:
		t.Fatalf("upload spanning the enable: %v; want success (sealed) or UNAVAILABLE asking for a retry", err)
	}
	if filesContain(t, env.dataDir, marker) {
		t.Fatal("plaintext of the upload that spanned enabling CMEK is on disk")
	}

	// A later disable brings nothing back.
	if err := setCMEK(t, env, env.adminKey, false, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := readBlob(ctx, env.bs(), readName("", sha(blob)), 0, 0); status.Code(err) != codes.NotFound {
		t.Fatalf("the blob after disabling CMEK: %v; want NOT_FOUND", err)
	}
	if filesContain(t, env.dataDir, marker) {
		t.Fatal("plaintext of the upload is on disk after disabling CMEK")
	}
}

// Deleting an org while one of its uploads is in flight leaves no file of
// that upload behind.
func TestDeletingAnOrgDuringAnUploadLeavesNothingOfIt(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	orgID, adminKey := createOrg(t, env, "acme")
	acme := bspb.NewByteStreamClient(env.dial(adminKey))
	stored := bytes.Repeat([]byte("SEALCACHE-ACME-STORED "), 1000)
	if _, err := writeBlob(ctx, acme, "", sha(stored), stored); err != nil {
		t.Fatal(err)
	}
	marker := []byte("SEALCACHE-ACME-IN-FLIGHT ")
	blob := bytes.Repeat(marker, (2<<20)/len(marker))
	up := startSlowUpload(t, acme, blob, 1<<20)

	if _, err := operatorClient(env).DeleteOrg(ctx, withKey(env.operatorKey, &adminv1.DeleteOrgRequest{OrgId: orgID, ConfirmName: "acme"})); err != nil {
		t.Fatal(err)
	}
	if err := up.finish(); status.Code(err) != codes.Unavailable {
		t.Errorf("upload of a deleted org: %v; want UNAVAILABLE", err)
	}
	for _, m := range [][]byte{marker, []byte("SEALCACHE-ACME-STORED")} {
		if filesContain(t, env.dataDir, m) {
			t.Errorf("a file holding %q is left after the org was deleted", m)
		}
	}
	if report, err := env.s.ShredCheck(ctx, orgID); err != nil || report.Objects != 0 {
		t.Errorf("objects of the deleted org: %+v %v; want none", report, err)
	}
}

// The empty blob is present for every org in every encryption state,
// even with the customer's key revoked, over every read path: clients
// never upload it, and it holds nothing to protect.
func TestTheEmptyBlobIsPresentForEveryOrgAndEncryptionState(t *testing.T) {
	clock := fakeclock.At(time.Unix(1_800_000_000, 0))
	env := startServer(t, func(c *Config) { c.Clock = clock.Now; c.KeyCacheTTL = time.Minute })
	ctx := context.Background()
	_, otherKey := createOrg(t, env, "other")
	empty := sha(nil)
	nonEmpty := []byte("a blob that needs the key")

	check := func(state string) {
		t.Helper()
		for org, key := range map[string]string{"default": env.adminKey, "other": otherKey} {
			conn := env.dial(key)
			got, err := readBlob(ctx, bspb.NewByteStreamClient(conn), readName("", empty), 0, 0)
			if err != nil || len(got) != 0 {
				t.Errorf("%s, org %s: ByteStream Read of the empty blob: %d bytes, %v", state, org, len(got), err)
			}
			cas := repb.NewContentAddressableStorageClient(conn)
			rd, err := cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{empty.Proto()}})
			if err != nil || rd.Responses[0].Status.Code != 0 || len(rd.Responses[0].Data) != 0 {
				t.Errorf("%s, org %s: BatchReadBlobs of the empty blob: %v %v", state, org, rd, err)
			}
			fm, err := cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{empty.Proto()}})
			if err != nil || len(fm.MissingBlobDigests) != 0 {
				t.Errorf("%s, org %s: FindMissingBlobs of the empty blob: %v %v", state, org, fm, err)
			}
			for _, method := range []string{"GET", "HEAD"} {
				if code, body := env.httpDo(method, "/cas/"+empty.Hash, key, nil); code != http.StatusOK || len(body) != 0 {
					t.Errorf("%s, org %s: HTTP %s of the empty blob: %d %q", state, org, method, code, body)
				}
			}
		}
	}
	check("CMEK off")

	if err := kms.CreateLocalKey(env.s.cfg.LocalKMSDir, "customer-empty"); err != nil {
		t.Fatal(err)
	}
	if err := setCMEK(t, env, env.adminKey, true, "local-kms://customer-empty"); err != nil {
		t.Fatal(err)
	}
	if _, err := writeBlob(ctx, env.bs(), "", sha(nonEmpty), nonEmpty); err != nil {
		t.Fatal(err)
	}
	check("CMEK on")

	if err := kms.DisableLocalKey(env.s.cfg.LocalKMSDir, "customer-empty"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute + time.Second)
	if _, err := readBlob(ctx, env.bs(), readName("", sha(nonEmpty)), 0, 0); status.Code(err) != codes.Unavailable {
		t.Fatalf("test setup: a blob of the org with its key revoked: %v; want UNAVAILABLE", err)
	}
	check("customer key revoked")

	if err := setCMEK(t, env, env.adminKey, false, ""); err != nil {
		t.Fatal(err)
	}
	check("CMEK disabled again")
}

// A plain action cache entry changed on disk is never served: it is a miss
// (Bazel runs the action again) and it is deleted.
func TestActionCacheEntriesCorruptedAtRestAreMissesAndDeleted(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	org := cas.Partition(env.defaultOrg())
	stdout := []byte("SEALCACHE-AC-STDOUT compiled 3 files")
	result := &repb.ActionResult{StdoutRaw: stdout}

	grpcAction := sha([]byte("action stored over gRPC"))
	if _, err := env.ac().UpdateActionResult(ctx, &repb.UpdateActionResultRequest{InstanceName: "linux", ActionDigest: grpcAction.Proto(), ActionResult: result}); err != nil {
		t.Fatal(err)
	}
	httpAction := sha([]byte("action stored over HTTP"))
	body, _ := proto.Marshal(result)
	if code, msg := env.httpDo("PUT", "/ac/"+httpAction.Hash, env.adminKey, body); code != http.StatusOK {
		t.Fatalf("PUT /ac/: %d %s", code, msg)
	}
	httpKeyDigest := httpAction
	httpKeyDigest.Size = cas.SizeUnknown
	stored := map[string]cas.Key{
		"gRPC": {Partition: org, Kind: cas.KindAC, Instance: "linux", Digest: grpcAction},
		"HTTP": {Partition: org, Kind: cas.KindAC, Digest: httpKeyDigest},
	}
	// Both serve before the damage.
	if _, err := env.ac().GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: "linux", ActionDigest: grpcAction.Proto()}); err != nil {
		t.Fatal(err)
	}
	if code, _ := env.httpDo("GET", "/ac/"+httpAction.Hash, env.adminKey, nil); code != http.StatusOK {
		t.Fatalf("GET /ac/ before the damage: %d", code)
	}

	for _, key := range stored {
		flipByteAtRest(t, env, key, stdout)
	}
	_, err := env.ac().GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: "linux", ActionDigest: grpcAction.Proto()})
	if status.Code(err) != codes.NotFound {
		t.Errorf("GetActionResult of an entry changed at rest: %v; want NOT_FOUND", err)
	}
	if code, body := env.httpDo("GET", "/ac/"+httpAction.Hash, env.adminKey, nil); code != http.StatusNotFound {
		t.Errorf("GET /ac/ of an entry changed at rest: %d %q; want 404", code, body)
	}
	for name, key := range stored {
		missing, err := env.s.storage.backend.FindMissing(ctx, []cas.Key{key})
		if err != nil || len(missing) != 1 {
			t.Errorf("the entry stored over %s is still stored after it was found corrupt (%v)", name, err)
		}
	}
	env.logs.waitForLine(t, "deleted corrupt object")
}

// flipByteAtRest changes one byte of the stored object, inside marker,
// by rewriting its raw bytes in the backend.
func flipByteAtRest(t *testing.T, env *testEnv, key cas.Key, marker []byte) {
	t.Helper()
	ctx := context.Background()
	rc, size, err := env.s.storage.backend.Get(ctx, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(raw, marker)
	if i < 0 {
		t.Fatalf("%s: the stored bytes do not hold %q", key, marker)
	}
	raw[i] ^= 0x20 // 'S' becomes 's': still a valid ActionResult
	if err := env.s.storage.backend.Put(ctx, key, size, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
}
