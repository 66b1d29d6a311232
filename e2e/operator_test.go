package e2e_test

import (
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sealcache/sealcache/e2e/e2etest"
	"github.com/sealcache/sealcache/encryption/kms"
	adminv1 "github.com/sealcache/sealcache/proto/sealcache/admin/v1"
)

// keyRevocationTimeout bounds the wait for a deleted org's keys to stop
// working (the server's API key cache TTL, with a margin). A bound against
// hanging, not a speed check.
const keyRevocationTimeout = 90 * time.Second

// The operator onboards two customers with the CLI. Each builds with the
// first admin key it was handed; alpha turns CMEK on first. The caches are
// separate: beta's first build runs everything although alpha cached the same
// actions. The operator then deletes alpha: none of its files remain on disk,
// its key stops working, and beta's cache is untouched (a rebuild is all
// remote hits).
func TestOperatorDeletesAnOrgAndItsDataOnly(t *testing.T) {
	server := e2etest.StartServer(t)
	operator := server.OperatorKey()
	alpha := createOrg(t, server, "alpha")
	beta := createOrg(t, server, "beta")
	alphaID, alphaKey := alpha.GetOrg().GetId(), alpha.GetAdminKeySecret()
	betaID, betaKey := beta.GetOrg().GetId(), beta.GetAdminKeySecret()

	if err := kms.CreateLocalKey(filepath.Join(server.DataDir, "kms"), "alpha"); err != nil {
		t.Fatal(err)
	}
	enableCMEK(t, server, alphaKey, "local-kms://alpha")

	bazel := e2etest.NewBazel(t)
	bazel.Build(append(server.GRPCFlags(alphaKey), e2etest.Targets)...)
	bazel.CleanExpunge()
	betaCold := bazel.Build(append(server.GRPCFlags(betaKey), e2etest.Targets)...)
	if hits := betaCold.Processes.RemoteCacheHits(); hits != 0 {
		t.Errorf("beta's first build after alpha cached the same actions: %q, want no remote cache hits (orgs do not share a cache)", betaCold.Processes.Line)
	}

	alphaBefore, betaBefore := shredCheck(t, server, alphaID), shredCheck(t, server, betaID)
	if alphaBefore.Objects == 0 || betaBefore.Objects == 0 {
		t.Fatalf("after both builds, alpha has %d objects and beta %d; want both filled", alphaBefore.Objects, betaBefore.Objects)
	}
	t.Logf("before deleting alpha: %d objects of alpha, %d of beta", alphaBefore.Objects, betaBefore.Objects)

	// The confirmation must name the org.
	if r := server.CLI(operator, "admin", "orgs", "delete", alphaID, "--confirm", "beta"); r.ExitCode == 0 {
		t.Fatalf("%s succeeded, want it refused because the name does not match", r.Command())
	}
	server.Admin(operator, nil, "orgs", "delete", alphaID, "--confirm", "alpha")

	if got := shredCheck(t, server, betaID); got.Objects != betaBefore.Objects {
		t.Errorf("deleting alpha changed beta's objects: %d before, %d after", betaBefore.Objects, got.Objects)
	}

	var list adminv1.ListOrgsResponse
	server.Admin(operator, &list, "orgs", "list")
	for _, o := range list.GetOrgs() {
		if o.GetOrg().GetId() == alphaID {
			t.Errorf("orgs list still shows the deleted org alpha (%s)", alphaID)
		}
	}

	// Nothing of alpha is left for the shred check to open.
	if report := shredCheck(t, server, alphaID); report.Objects != 0 || !report.Shredded {
		t.Errorf("shred check of the deleted org alpha: %+v; want 0 objects, shredded", report)
	}

	e2etest.Eventually(t, keyRevocationTimeout, "the deleted org's admin key to stop working", func() string {
		err := server.FindMissingBlobs(alphaKey)
		if status.Code(err) == codes.Unauthenticated {
			return ""
		}
		return "FindMissingBlobs with alpha's key returned " + status.Code(err).String()
	})

	bazel.CleanExpunge()
	checkAllRemoteHits(t, "beta's rebuild after alpha was deleted",
		bazel.Build(append(server.GRPCFlags(betaKey), e2etest.Targets)...), betaCold)
}

// createOrg creates an org with the operator's CLI and returns the answer,
// which carries the org id and its first admin key.
func createOrg(t *testing.T, server *e2etest.Server, name string) *adminv1.CreateOrgResponse {
	t.Helper()
	var created adminv1.CreateOrgResponse
	server.Admin(server.OperatorKey(), &created, "orgs", "create", name)
	if created.GetOrg().GetId() == "" || created.GetAdminKeySecret() == "" || created.GetOrg().GetName() != name {
		t.Fatalf("orgs create %s answered org %q named %q, with a secret: %v; want the new org's id, its name and its first admin key",
			name, created.GetOrg().GetId(), created.GetOrg().GetName(), created.GetAdminKeySecret() != "")
	}
	return &created
}
