package e2e_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sealcache/sealcache/e2e/e2etest"
	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/encryption/kmstest"
	adminv1 "github.com/sealcache/sealcache/proto/sealcache/admin/v1"
)

// keyCacheTTL is the derived-key cache TTL the CMEK tests give the server,
// so a revoked key takes effect quickly.
const keyCacheTTL = "--key_cache_ttl=2s"

// revocationTimeout bounds the wait for a revoked customer key to reach the
// server: the key cache TTL plus the KMS error cache, with a wide margin. It
// is a bound against hanging, not a speed check.
const revocationTimeout = 60 * time.Second

// markerTarget is the genrule whose output carries e2etest.Marker.
const markerTarget = "//e2e/testdata/workspace:marker_txt"

// An org admin turns CMEK on with a local-kms key through the CLI against the
// running server. Data cached before is a miss from then on; what is built
// next is cached sealed, so a rebuild is all remote hits while the marker
// string the build writes appears in no sealed file on disk. Turning CMEK off
// makes the sealed data unreadable at once, and the operator's shred check
// confirms that none of it opens.
func TestBazelWithLocalKMSCustomerKey(t *testing.T) {
	server := e2etest.StartServer(t, keyCacheTTL)
	admin := server.AdminKey()
	org := orgIDByName(t, server, "default")
	bazel := e2etest.NewBazel(t)
	build := append(server.GRPCFlags(admin), e2etest.Targets)

	plain := bazel.Build(build...)
	// Sanity check of the disk check below: unsealed, the marker is visible.
	if found := e2etest.FilesContaining(t, e2etest.StoredFiles(t, server.StoreDir()), e2etest.Marker); len(found) == 0 {
		t.Fatalf("before CMEK, no file under %s contains the marker %q: the disk check below would prove nothing", server.StoreDir(), e2etest.Marker)
	}

	if err := kms.CreateLocalKey(filepath.Join(server.DataDir, "kms"), "customer-a"); err != nil {
		t.Fatal(err)
	}
	keyID := enableCMEK(t, server, admin, "local-kms://customer-a")

	bazel.CleanExpunge()
	first := bazel.Build(build...)
	if hits := first.Processes.RemoteCacheHits(); hits != 0 || first.Processes.Cacheable() != plain.Processes.Cacheable() {
		t.Errorf("first build after enabling CMEK: %q; want all %d processes run again (data cached before CMEK is a miss)", first.Processes.Line, plain.Processes.Cacheable())
	}
	bazel.CleanExpunge()
	checkAllRemoteHits(t, "rebuild with CMEK on", bazel.Build(build...), plain)
	checkMarkerDownloaded(t, bazel)

	// Enabling deleted the plain copies; everything stored since is sealed,
	// so the marker is in no file of the store.
	if report := shredCheck(t, server, org); report.Sealed == 0 || report.Plain != 0 {
		t.Fatalf("after a build with CMEK on: %+v; want objects sealed under key %s only", report, keyID)
	}
	if found := e2etest.FilesContaining(t, e2etest.StoredFiles(t, server.StoreDir()), e2etest.Marker); len(found) != 0 {
		t.Errorf("files of the store contain the marker %q in plain text after CMEK was enabled: %v", e2etest.Marker, found)
	}

	// Data cached only while CMEK is on: --action_env gives the marker
	// action another key, so neither Bazel nor the plain cache has it.
	sealedOnly := append(server.GRPCFlags(admin), "--action_env=SEALCACHE_E2E_PHASE=sealed-only", markerTarget)
	if r := bazel.Build(sealedOnly...); r.Processes.RemoteCacheHits() != 0 {
		t.Fatalf("a new action with CMEK on: %q, want it run and cached sealed", r.Processes.Line)
	}

	server.Admin(admin, nil, "encryption", "disable", "--yes")
	bazel.CleanExpunge()
	after := bazel.Build(sealedOnly...)
	if hits := after.Processes.RemoteCacheHits(); hits != 0 || after.Processes.Cacheable() == 0 {
		t.Errorf("build after disabling CMEK: %q, want the action cached only under the deleted key run again", after.Processes.Line)
	}

	report := shredCheck(t, server, org)
	t.Logf("shred check after disabling CMEK: %+v", report)
	// Disabling deleted the sealed objects too; what is left was written
	// plain by the build after it.
	if !report.Shredded || report.Sealed != 0 || report.Opened != 0 {
		t.Errorf("shred check after disabling CMEK: %+v; want shredded, with no sealed object left", report)
	}
}

// The same with the AWS KMS protocol: the server talks to an AWS-compatible
// KMS through the official SDK. When the customer revokes the server's
// access to the key, Bazel's next build prints UNAVAILABLE naming the key,
// instead of treating the cache as empty.
func TestBazelWithAWSKMSCustomerKeyThatIsRevoked(t *testing.T) {
	awsKMS := kmstest.NewAWS(t)
	server := e2etest.StartServer(t, keyCacheTTL,
		"--aws_kms_endpoint="+awsKMS.Endpoint(),
		"--aws_region="+awsKMS.Region,
		"--aws_access_key_id="+awsKMS.AccessKeyID,
		"--aws_secret_access_key="+awsKMS.SecretAccessKey)
	admin := server.AdminKey()
	arn := awsKMS.CreateKey()
	enableCMEK(t, server, admin, "aws-kms://"+arn)

	bazel := e2etest.NewBazel(t)
	build := append(server.GRPCFlags(admin), e2etest.Targets)
	cold := bazel.Build(build...)
	bazel.CleanExpunge()
	checkAllRemoteHits(t, "rebuild with an AWS KMS key", bazel.Build(build...), cold)

	awsKMS.Revoke(arn)
	// The server keeps the derived key until its TTL ends; wait until a real
	// request sees the revocation.
	e2etest.Eventually(t, revocationTimeout, "the revoked key to make the cache UNAVAILABLE", func() string {
		err := server.FindMissingBlobs(admin)
		if status.Code(err) == codes.Unavailable {
			if !strings.Contains(err.Error(), arn) {
				t.Errorf("FindMissingBlobs with a revoked key: %v; want the message to name the key %s", err, arn)
			}
			return ""
		}
		return "FindMissingBlobs returned " + status.Code(err).String()
	})

	bazel.CleanExpunge()
	// Bazel retries UNAVAILABLE 5 times with backoff by default (about 25 s
	// more per build); the retries print nothing else, so skip them here.
	revoked := bazel.Run("build", append(build, "--remote_retries=0")...)
	t.Logf("build with the key revoked: exit code %d, %q", revoked.ExitCode, revoked.Processes.Line)
	checkOutputSays(t, revoked, "a build with the customer key revoked",
		"WARNING: Reading from Remote Cache:",
		"UNAVAILABLE: ",
		"aws-kms://"+arn)
	if hits := revoked.Processes.RemoteCacheHits(); hits != 0 {
		t.Errorf("build with the key revoked: %q, want no remote cache hits", revoked.Processes.Line)
	}
}

// enableCMEK turns CMEK on for the org of adminKey with the CLI and returns
// the new key id.
func enableCMEK(t *testing.T, server *e2etest.Server, adminKey, keyURI string) string {
	t.Helper()
	var resp adminv1.SetEncryptionConfigResponse
	server.Admin(adminKey, &resp, "encryption", "enable", "--key_uri", keyURI)
	cfg := resp.GetConfig()
	if !cfg.GetEnabled() || cfg.GetKeyId() == "" || cfg.GetCustomerKeyUri() != keyURI {
		t.Fatalf("encryption enable --key_uri %s answered enabled=%v key id %q key URI %q; want enabled with a key id and that URI",
			keyURI, cfg.GetEnabled(), cfg.GetKeyId(), cfg.GetCustomerKeyUri())
	}
	return cfg.GetKeyId()
}

// checkAllRemoteHits checks that every process of r was a remote cache hit,
// as many as ran in the cold build.
func checkAllRemoteHits(t *testing.T, what string, r, cold *e2etest.Result) {
	t.Helper()
	hits := r.Processes.RemoteCacheHits()
	if hits == 0 || hits != r.Processes.Cacheable() || hits != cold.Processes.Cacheable() {
		t.Errorf("%s: %q; want all %d processes of the cold build (%q) to be remote cache hits\n%s",
			what, r.Processes.Line, cold.Processes.Cacheable(), cold.Processes.Line, r.RedactedOutput())
	}
}

// checkMarkerDownloaded checks that the marker output Bazel took from the
// cache arrived whole.
func checkMarkerDownloaded(t *testing.T, bazel *e2etest.Bazel) {
	t.Helper()
	marker, err := os.ReadFile(bazel.BinFile(e2etest.MarkerFile))
	if err != nil {
		t.Fatalf("the marker genrule's output is not on disk after a build from the cache: %v", err)
	}
	if n := strings.Count(string(marker), e2etest.Marker+" line "); n != e2etest.MarkerLines {
		t.Errorf("marker.txt from the cache has %d marker lines, want %d", n, e2etest.MarkerLines)
	}
}

// shredReport is the JSON `sealcache shred-check --json` prints.
type shredReport struct {
	OrgID    string `json:"org_id"`
	Objects  int64  `json:"objects"`
	Plain    int64  `json:"plain"`
	Sealed   int64  `json:"sealed"`
	Opened   int64  `json:"opened"`
	Shredded bool   `json:"shredded"`
	KeyError string `json:"key_error"`
}

// shredCheck runs `sealcache shred-check` as the operator, checks that it
// exits 0 exactly when it reports the org shredded, and returns its report.
func shredCheck(t *testing.T, server *e2etest.Server, orgID string) shredReport {
	t.Helper()
	r := server.CLI(server.OperatorKey(), "shred-check", "--org", orgID, "--json")
	var report shredReport
	if err := json.Unmarshal([]byte(r.Stdout), &report); err != nil {
		t.Fatalf("%s: exit code %d, no JSON report (%v):\n%s", r.Command(), r.ExitCode, err, r.Output())
	}
	if (r.ExitCode == 0) != report.Shredded {
		t.Errorf("%s: exit code %d with shredded=%v; want exit 0 exactly when shredded", r.Command(), r.ExitCode, report.Shredded)
	}
	return report
}

// orgIDByName finds an org's id with the operator's `orgs list`.
func orgIDByName(t *testing.T, server *e2etest.Server, name string) string {
	t.Helper()
	var list adminv1.ListOrgsResponse
	server.Admin(server.OperatorKey(), &list, "orgs", "list")
	for _, o := range list.GetOrgs() {
		if o.GetOrg().GetName() == name {
			return o.GetOrg().GetId()
		}
	}
	t.Fatalf("orgs list has no org named %q", name)
	return ""
}
