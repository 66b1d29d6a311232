package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/internal/fakeclock"
)

// filesContain reports whether any file under dir holds marker.
func filesContain(t *testing.T, dir string, marker []byte) bool {
	found := false
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if data, _ := os.ReadFile(path); bytes.Contains(data, marker) {
				found = true
			}
		}
		return nil
	})
	return found
}

func TestCMEKLifecycleThroughTheCache(t *testing.T) {
	clock := fakeclock.At(time.Unix(1_800_000_000, 0))
	env := startServer(t, func(c *Config) { c.Clock = clock.Now; c.KeyCacheTTL = time.Minute })
	ctx := context.Background()
	org := env.defaultOrg()
	marker := []byte("SEALCACHE-CMEK-TEST-MARKER")
	blob := bytes.Repeat(marker, 1000)
	d := sha(blob)

	// Before CMEK: stored plain.
	if _, err := writeBlob(ctx, env.bs(), "", d, blob); err != nil {
		t.Fatal(err)
	}
	if !filesContain(t, env.dataDir, marker) {
		t.Fatal("plain data should be readable on disk before CMEK (test sanity)")
	}

	// Enable with a customer key in local-kms.
	if err := kms.CreateLocalKey(env.s.cfg.LocalKMSDir, "customer-a"); err != nil {
		t.Fatal(err)
	}
	rec, err := env.s.storage.manager.Enable(ctx, org, "test", "local-kms://customer-a")
	if err != nil {
		t.Fatal(err)
	}

	// Old plain data is now a miss.
	if _, err := readBlob(ctx, env.bs(), readName("", d), 0, 0); status.Code(err) != codes.NotFound {
		t.Fatalf("plain data after enabling CMEK: want NOT_FOUND, got %v", err)
	}
	// New writes are sealed: they read back, and the marker is in no new file.
	if _, err := writeBlob(ctx, env.bs(), "", d, blob); err != nil {
		t.Fatal(err)
	}
	action := sha([]byte("sealed action"))
	if _, err := env.ac().UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{StdoutRaw: marker, OutputFiles: []*repb.OutputFile{{Path: "o", Digest: d.Proto()}}}}); err != nil {
		t.Fatal(err)
	}
	got, err := readBlob(ctx, env.bs(), readName("", d), 5000, 100)
	if err != nil || !bytes.Equal(got, blob[5000:5100]) {
		t.Fatalf("sealed offset read: %d bytes, %v", len(got), err)
	}
	if _, err := env.ac().GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.Proto()}); err != nil {
		t.Fatalf("sealed action result: %v", err)
	}
	if filesContain(t, filepath.Join(env.dataDir, "cas"), marker) {
		t.Fatal("the marker is readable on disk after CMEK was enabled")
	}

	// The customer disables their key: cached keys keep serving until the
	// TTL ends, then requests fail closed with UNAVAILABLE naming the key.
	if err := kms.DisableLocalKey(env.s.cfg.LocalKMSDir, "customer-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := readBlob(ctx, env.bs(), readName("", d), 0, 0); err != nil {
		t.Fatalf("within the TTL a cached key still serves: %v", err)
	}
	clock.Advance(time.Minute + time.Second)
	_, err = readBlob(ctx, env.bs(), readName("", d), 0, 0)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "local-kms://customer-a") {
		t.Fatalf("revoked key after the TTL: want UNAVAILABLE naming the key, got %v", err)
	}
	_, err = env.cas().FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{d.Proto()}})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("FindMissing with a revoked key: want UNAVAILABLE, got %v", err)
	}

	// The key comes back: after the error cache time, data is readable again.
	if err := kms.EnableLocalKey(env.s.cfg.LocalKMSDir, "customer-a"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second)
	if _, err := readBlob(ctx, env.bs(), readName("", d), 0, 0); err != nil {
		t.Fatalf("after the key is enabled again: %v", err)
	}

	// Disable CMEK: the key records go, the data is shredded.
	if err := env.s.storage.manager.Disable(ctx, org, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := readBlob(ctx, env.bs(), readName("", d), 0, 0); status.Code(err) != codes.NotFound {
		t.Fatalf("after disabling: want NOT_FOUND, got %v", err)
	}
	// Disabling deleted the sealed objects too: nothing waits for eviction.
	report, err := env.s.ShredCheck(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	if report.Objects != 0 || !report.Shredded() {
		t.Fatalf("shred check after disabling: %+v; want no object of the org left", report)
	}
	if used, err := env.s.storage.backend.OrgUsage(ctx, org); err != nil || used != 0 {
		t.Fatalf("the org still uses %d bytes of storage after disabling key %s (%v)", used, rec.KeyID, err)
	}
}

func TestEnablingCMEKDeletesPlainDataSoDisablingCannotBringItBack(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	org := env.defaultOrg()
	blob := []byte("written while CMEK was off")
	if _, err := writeBlob(ctx, env.bs(), "", sha(blob), blob); err != nil {
		t.Fatal(err)
	}
	if err := kms.CreateLocalKey(env.s.cfg.LocalKMSDir, "customer-b"); err != nil {
		t.Fatal(err)
	}
	control := env.s.storage.manager
	if _, err := control.Enable(ctx, org, "test", "local-kms://customer-b"); err != nil {
		t.Fatal(err)
	}
	if filesContain(t, filepath.Join(env.dataDir, "cas"), blob) {
		t.Error("plaintext written before CMEK is still on disk after enabling it")
	}
	if err := control.Disable(ctx, org, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := readBlob(ctx, env.bs(), readName("", sha(blob)), 0, 0); status.Code(err) != codes.NotFound {
		t.Errorf("pre-CMEK data came back after disabling: %v", err)
	}
	events, _, err := env.s.orgs.ListAuditEvents(ctx, org, 10, "")
	if err != nil || !strings.Contains(fmt.Sprint(events), "data stored before enabling") {
		t.Errorf("audit log lacks the deletion of the data stored before enabling: %v %v", events, err)
	}
}

func TestHTTPCacheProtocolWithCMEK(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	if err := kms.CreateLocalKey(env.s.cfg.LocalKMSDir, "customer-http"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.s.storage.manager.Enable(ctx, env.defaultOrg(), "test", "local-kms://customer-http"); err != nil {
		t.Fatal(err)
	}
	blob := []byte("SEALCACHE-HTTP-CMEK-MARKER sealed over http")
	hash := sha(blob).Hash
	if code, body := env.httpDo("PUT", "/cas/"+hash, env.adminKey, blob); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if code, body := env.httpDo("GET", "/cas/"+hash, env.adminKey, nil); code != 200 || !bytes.Equal(body, blob) {
		t.Fatalf("GET: %d %q", code, body)
	}
	if code, _ := env.httpDo("PUT", "/cas/"+sha([]byte("other")).Hash, env.adminKey, blob); code != 400 {
		t.Fatalf("PUT with the wrong hash under CMEK: %d, want 400", code)
	}
	if filesContain(t, filepath.Join(env.dataDir, "cas"), []byte("SEALCACHE-HTTP-CMEK-MARKER")) {
		t.Fatal("HTTP-stored blob is readable on disk under CMEK")
	}
}

// Crypto-shredding holds at rest: after disabling CMEK and stopping the
// server, no file under the data directory holds either wrapped half of
// the deleted key (SQLite erases deleted bytes and truncates its WAL), and
// the shred check, which also searches the metadata store, says shredded.
func TestDisabledKeyMaterialIsGoneFromEveryFileOfTheDataDir(t *testing.T) {
	env := startServer(t)
	ctx := context.Background()
	org := env.defaultOrg()
	if err := kms.CreateLocalKey(env.s.cfg.LocalKMSDir, "customer-shred"); err != nil {
		t.Fatal(err)
	}
	rec, err := env.s.storage.manager.Enable(ctx, org, "test", "local-kms://customer-shred")
	if err != nil {
		t.Fatal(err)
	}
	blob := bytes.Repeat([]byte("sealed before the shred "), 500)
	if _, err := writeBlob(ctx, env.bs(), "", sha(blob), blob); err != nil {
		t.Fatal(err)
	}
	// A re-wrap replaces both halves; the replaced versions must go too.
	if err := env.s.storage.manager.RewrapAll(ctx); err != nil {
		t.Fatal(err)
	}
	rewrapped, err := env.s.orgs.CurrentKey(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	halves := map[string][]byte{
		"customer half": rec.WrappedCustomerKey, "operator half": rec.WrappedOperatorKey,
		"re-wrapped customer half": rewrapped.WrappedCustomerKey, "re-wrapped operator half": rewrapped.WrappedOperatorKey,
	}
	if err := env.s.storage.manager.Disable(ctx, org, "test"); err != nil {
		t.Fatal(err)
	}

	code, body := env.httpDo("GET", "/v1/shred-check?org_id="+org, env.operatorKey, nil)
	var report ShredCheckResponse
	if err := json.Unmarshal(body, &report); code != http.StatusOK || err != nil {
		t.Fatalf("shred check: %d %s", code, body)
	}
	if !report.Shredded || len(report.KeyMaterialLeft) != 0 || report.Objects != 0 {
		t.Fatalf("shred check after disabling: %+v", report)
	}

	env.stop()
	for what, half := range halves {
		if found := filesWith(t, env.dataDir, half); len(found) > 0 {
			t.Errorf("the deleted key's %s (%d bytes) is still in %v", what, len(half), found)
		}
	}
}

// filesWith lists the files under dir that contain b.
func filesWith(t *testing.T, dir string, b []byte) []string {
	t.Helper()
	var found []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if data, _ := os.ReadFile(path); bytes.Contains(data, b) {
				found = append(found, path)
			}
		}
		return nil
	})
	return found
}
