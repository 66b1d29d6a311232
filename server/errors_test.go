package server

import (
	"context"
	"fmt"
	"net/http"
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

// When an org's key cannot be used, cache clients are told which key and
// what to do, but not where the server keeps its files: the local-kms
// key file's path goes to the server log and the org's audit log only.
func TestKeyErrorsNameTheKeyButNotTheServersFiles(t *testing.T) {
	clock := fakeclock.At(time.Unix(1_800_000_000, 0))
	env := startServer(t, func(c *Config) { c.Clock = clock.Now; c.KeyCacheTTL = time.Minute })
	ctx := context.Background()
	if err := kms.CreateLocalKey(env.s.cfg.LocalKMSDir, "customer-paths"); err != nil {
		t.Fatal(err)
	}
	if err := setCMEK(t, env, env.adminKey, true, "local-kms://customer-paths"); err != nil {
		t.Fatal(err)
	}
	blob := []byte("sealed under customer-paths")
	if _, err := writeBlob(ctx, env.bs(), "", sha(blob), blob); err != nil {
		t.Fatal(err)
	}
	if err := kms.DisableLocalKey(env.s.cfg.LocalKMSDir, "customer-paths"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute + time.Second)
	keyFile := filepath.Join(env.s.cfg.LocalKMSDir, "customer-paths")

	_, readErr := readBlob(ctx, env.bs(), readName("", sha(blob)), 0, 0)
	_, findErr := env.cas().FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{sha(blob).Proto()}})
	code, body := env.httpDo("GET", "/cas/"+sha(blob).Hash, env.adminKey, nil)
	messages := map[string]string{"ByteStream Read": status.Convert(readErr).Message(), "FindMissingBlobs": status.Convert(findErr).Message(), "HTTP GET": string(body)}
	if status.Code(readErr) != codes.Unavailable || status.Code(findErr) != codes.Unavailable || code != http.StatusServiceUnavailable {
		t.Fatalf("with the key disabled: read %v, FindMissing %v, HTTP %d; want UNAVAILABLE and 503", readErr, findErr, code)
	}
	for what, msg := range messages {
		if strings.Contains(msg, env.dataDir) || strings.Contains(msg, env.s.cfg.LocalKMSDir) {
			t.Errorf("%s tells the client a server path: %q", what, msg)
		}
		for _, want := range []string{"local-kms://customer-paths", "key disabled", "check that the key exists, is enabled"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: %q; want it to say %q", what, msg, want)
			}
		}
	}
	t.Logf("what a cache client reads: %s", messages["ByteStream Read"])

	// The operator and the org's admin still get the whole story.
	if line := env.logs.waitForLine(t, "encryption key is unavailable", keyFile); line == "" {
		t.Error("the server log does not name the key file")
	}
	events, _, err := env.s.orgs.ListAuditEvents(ctx, env.defaultOrg(), 20, "")
	if err != nil || !strings.Contains(fmt.Sprint(events), keyFile) {
		t.Errorf("the org's audit log does not name the key file %s: %v %v", keyFile, events, err)
	}
}
