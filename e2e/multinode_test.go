package e2e_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sealcache/sealcache/cas/pgindex/pgindextest"
	"github.com/sealcache/sealcache/e2e/e2etest"
	"github.com/sealcache/sealcache/encryption/kms"
	adminv1 "github.com/sealcache/sealcache/proto/sealcache/admin/v1"
)

// changeTimeout bounds the wait for a change made through one node to
// reach the others: a bound against hanging, not the figure measured.
const changeTimeout = 30 * time.Second

// Three nodes share one PostgreSQL and one bucket behind (what stands for)
// a load balancer: a build through node A is all remote cache hits when
// rebuilt through node B. Node A is then killed with SIGKILL while one
// client builds through it and another client builds the same new actions
// through node C: C's build completes, and a rebuild through B from
// scratch is all hits again: nothing half-written is visible anywhere.
func TestMultiNodeBuildsThroughAnyNode(t *testing.T) {
	shared := e2etest.NewShared(t)
	nodes := e2etest.StartNodes(t, shared, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	key := a.AdminKey()

	bazel := e2etest.NewBazel(t)
	cold := bazel.Test(append(a.GRPCFlags(key), e2etest.Targets)...)
	bazel.CleanExpunge()
	checkAllRemoteHits(t, "rebuild through node B of a build through node A", bazel.Test(append(b.GRPCFlags(key), e2etest.Targets)...), cold)

	// New actions (another action environment), built by two clients at
	// once: one through A, which dies, one through C.
	phase := "--action_env=SEALCACHE_E2E_PHASE=node-a-killed"
	throughA, throughC := e2etest.NewBazel(t), e2etest.NewBazel(t)
	var wg sync.WaitGroup
	var resultA, resultC *e2etest.Result
	wg.Go(func() { resultA = throughA.Run("test", append(a.GRPCFlags(key), phase, e2etest.Targets)...) })
	wg.Go(func() { resultC = throughC.Run("test", append(c.GRPCFlags(key), phase, e2etest.Targets)...) })
	e2etest.PollUntil(t, 20*time.Millisecond, 5*time.Minute, "node A to receive an upload", func() string {
		if n := requestCount(a, "Write"); n == 0 {
			return "no ByteStream Write yet"
		}
		return ""
	})
	a.Kill()
	t.Logf("killed node A with SIGKILL after its first upload")
	wg.Wait()
	t.Logf("the build through node A, which was killed: exit code %d, %q", resultA.ExitCode, resultA.Processes.Line)
	if resultC.ExitCode != 0 {
		t.Fatalf("the build through node C failed (exit code %d):\n%s", resultC.ExitCode, resultC.RedactedOutput())
	}
	t.Logf("the build through node C: %q", resultC.Processes.Line)

	// What the builds uploaded is whole wherever it is read: a rebuild
	// through B from scratch takes every action from the cache.
	throughC.CleanExpunge()
	full := throughC.Test(append(c.GRPCFlags(key), phase, e2etest.Targets)...) // fills in what A's client never uploaded
	throughC.CleanExpunge()
	checkAllRemoteHits(t, "rebuild through node B after node A died", throughC.Test(append(b.GRPCFlags(key), phase, e2etest.Targets)...), cold)
	t.Logf("after A died: build through C %q, rebuild through B all hits", full.Processes.Line)
}

// CMEK across nodes: an admin enables it through node A, builds through
// node B, and disables it through node C. Nodes A and B stop serving the
// org's sealed data as soon as the change reaches them (measured), the
// wrapped key halves are gone from every live row in PostgreSQL, and no
// sealed object of the org is left in the bucket or on any node's disk.
// Then the operator deletes an org through one node: its objects leave
// the bucket and every node's disk tier.
func TestMultiNodeCMEKAndOrgDeletion(t *testing.T) {
	shared := e2etest.NewShared(t)
	nodes := e2etest.StartNodes(t, shared, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	key, operator := a.AdminKey(), a.OperatorKey()
	org := orgIDByName(t, a, "default")
	if err := kms.CreateLocalKey(shared.KMSDir, "customer"); err != nil {
		t.Fatal(err)
	}
	keyID := enableCMEK(t, a, key, "local-kms://customer")

	bazel := e2etest.NewBazel(t)
	build := append(b.GRPCFlags(key), e2etest.Targets)
	cold := bazel.Build(build...)
	bazel.CleanExpunge()
	checkAllRemoteHits(t, "rebuild through node B with CMEK on", bazel.Build(build...), cold)
	marker, err := os.ReadFile(bazel.BinFile(e2etest.MarkerFile))
	if err != nil {
		t.Fatal(err)
	}
	sealedBlob := e2etest.DigestOf(marker)
	sealedPrefix := fmt.Sprintf("%s/k%s", org, keyID)
	if objs := shared.Objects(t, sealedPrefix); len(objs) == 0 {
		t.Fatalf("no object under %s/%s after a build with CMEK on", shared.Prefix, sealedPrefix)
	}
	for _, n := range []*e2etest.Server{a, b} {
		if missing, err := n.Client(key).Missing(sealedBlob); err != nil || len(missing) != 0 {
			t.Fatalf("before disabling: node %s finds the sealed marker blob: missing %v, %v", n.GRPCAddr, missing, err)
		}
	}
	halves := wrappedHalves(t, shared.MetadataURL, keyID)

	invoked := time.Now()
	c.Admin(key, nil, "encryption", "disable", "--yes")
	committed := time.Now()
	var wg sync.WaitGroup
	for name, n := range map[string]*e2etest.Server{"A": a, "B": b} {
		client := n.Client(key)
		wg.Go(func() {
			took := e2etest.PollUntil(t, 5*time.Millisecond, changeTimeout, "node "+name+" to refuse the org's sealed data", func() string {
				missing, err := client.Missing(sealedBlob)
				if err == nil && len(missing) == 1 {
					return ""
				}
				return fmt.Sprintf("missing %v, err %v", missing, err)
			})
			t.Logf("node %s refused the org's sealed data %v after the disable through node C returned (%v after the CLI was started; %v of polling)",
				name, time.Since(committed).Round(time.Millisecond), time.Since(invoked).Round(time.Millisecond), took.Round(time.Millisecond))
		})
	}
	wg.Wait()
	if found := liveRowsHolding(t, shared.MetadataURL, halves); len(found) != 0 {
		t.Errorf("after disabling, live rows in PostgreSQL still hold a wrapped key half: %v", found)
	}
	e2etest.PollUntil(t, 50*time.Millisecond, changeTimeout, "the sealed objects to leave the bucket and every node to apply the disable", func() string {
		if objs := shared.Objects(t, sealedPrefix); len(objs) != 0 {
			return fmt.Sprintf("%d sealed objects in the bucket", len(objs))
		}
		for _, n := range nodes {
			// One line for the enable, one for the disable.
			if applied := n.LogLines(deletedOnNode, "org="+org, `why="encryption changed"`); applied < 2 {
				return fmt.Sprintf("node %s applied %d of the 2 changes", n.GRPCAddr, applied)
			}
		}
		return ""
	})

	// Org deletion through one node.
	var created adminv1.CreateOrgResponse
	a.Admin(operator, &created, "orgs", "create", "acme")
	acme, acmeKey := created.GetOrg().GetId(), created.GetAdminKeySecret()
	acmeBazel := e2etest.NewBazel(t)
	acmeBazel.Build(append(b.GRPCFlags(acmeKey), e2etest.Targets)...)
	for _, n := range []*e2etest.Server{a, c} { // read through the others: their tiers fill
		acmeBazel.CleanExpunge()
		acmeBazel.Build(append(n.GRPCFlags(acmeKey), e2etest.Targets)...)
	}
	objectsBefore := make([]float64, len(nodes))
	for i, n := range nodes {
		objectsBefore[i] = metricValue(n.Metrics(), "sealcache_disk_objects")
	}
	if len(shared.Objects(t, acme)) == 0 {
		t.Fatal("the bucket has no object of org acme before the deletion")
	}
	c.Admin(operator, nil, "orgs", "delete", acme, "--confirm", "acme")
	deleted := time.Now()
	e2etest.PollUntil(t, 20*time.Millisecond, changeTimeout, "org acme's objects to leave the bucket and every disk tier", func() string {
		if objs := shared.Objects(t, acme); len(objs) != 0 {
			return fmt.Sprintf("%d objects in the bucket", len(objs))
		}
		for _, n := range nodes {
			if n.LogLines(deletedOnNode, "org="+acme, `why="org deleted"`) == 0 {
				return fmt.Sprintf("node %s has not deleted the org's objects yet", n.GRPCAddr)
			}
		}
		return ""
	})
	t.Logf("org acme's objects were gone from the bucket and all three disk tiers %v after the deletion through node C returned", time.Since(deleted).Round(time.Millisecond))
	for i, n := range nodes {
		if after := metricValue(n.Metrics(), "sealcache_disk_objects"); after >= objectsBefore[i] {
			t.Errorf("node %s's disk tier holds %v objects after the deletion, %v before; want fewer", n.GRPCAddr, after, objectsBefore[i])
		}
	}
	// What each disk tier holds, read by opening it once its node stopped.
	for _, n := range nodes {
		n.Stop()
		if got := e2etest.DiskObjects(t, n, acme); got != 0 {
			t.Errorf("the disk tier of node %s holds %d objects of the deleted org", n.GRPCAddr, got)
		}
		if got := e2etest.DiskObjects(t, n, org+"/k"+keyID); got != 0 {
			t.Errorf("the disk tier of node %s holds %d objects sealed under the disabled key", n.GRPCAddr, got)
		}
	}
}

// deletedOnNode is what a node logs once it has deleted an org's objects
// after a change made through any node.
const deletedOnNode = "deleted an org's objects on this node"

// evictionBudget is the --shared_max_size of the eviction test: far below
// the load it writes, above what one build of the workspace stores.
const evictionBudget = 8 << 20

// Eviction keeps the shared store within --shared_max_size across nodes,
// and never takes what was used within --min_retention (1h): a Bazel build
// with --remote_download_minimal, which was told its outputs exist, can
// still download them after a load several times the budget went through.
// An hour passes in the index, not on the clock: tests move access times
// back (pgindextest.AgeObjects).
func TestMultiNodeEvictionKeepsBudgetAndRetention(t *testing.T) {
	shared := e2etest.NewShared(t)
	nodes := e2etest.StartNodes(t, shared, 2, fmt.Sprintf("--shared_max_size=%d", evictionBudget))
	a, b := nodes[0], nodes[1]
	key, operator := a.AdminKey(), a.OperatorKey()
	bazel := e2etest.NewBazel(t)
	bazel.Test(append(a.GRPCFlags(key), e2etest.Targets)...)

	// Hours later, a build without the bytes: every action is a hit, no
	// output is downloaded, and the outputs the action results name are
	// used again (the completeness check), so they are inside the
	// retention once more.
	pgindextest.AgeObjects(t, shared.MetadataURL, 2*time.Hour)
	bazel.CleanExpunge()
	minimal := bazel.Test(append(b.GRPCFlags(key), "--remote_download_minimal", e2etest.Targets)...)
	if got := minimal.TestStatus(e2etest.HelloTest); got != "(cached) PASSED" {
		t.Fatalf("build without the bytes: %s is %q; want (cached) PASSED", e2etest.HelloTest, got)
	}
	// Reads of action results are uses too, written with the next batch.
	e2etest.PollUntil(t, 100*time.Millisecond, changeTimeout, "the reads of the action results to be recorded", func() string {
		if n := oldActionResults(t, shared.MetadataURL); n > 0 {
			return fmt.Sprintf("%d action results not used within the hour", n)
		}
		return ""
	})
	protected := recentlyUsed(t, shared.MetadataURL)
	if len(protected) == 0 {
		t.Fatal("no object was used within the retention by the build without the bytes; the checks below would prove nothing")
	}
	t.Logf("%d objects used by the build without the bytes, %d bytes in the bucket", len(protected), shared.BucketBytes(t, ""))

	// Another org's load, three times the budget, each third of it an
	// hour old by the time the next comes.
	var created adminv1.CreateOrgResponse
	a.Admin(operator, &created, "orgs", "create", "load")
	loadOrg, loadKey := created.GetOrg().GetId(), created.GetAdminKeySecret()
	seed := 0
	for round := range 3 {
		client := nodes[round%2].Client(loadKey)
		for range 3 { // 3 calls of 4 blobs of 512 KiB: 6 MiB a round
			var blobs [][]byte
			for range 4 {
				seed++
				blobs = append(blobs, loadBlob(seed, 512<<10))
			}
			client.Upload(blobs...)
		}
		pgindextest.AgeObjects(t, shared.MetadataURL, 2*time.Hour, loadOrg)
		e2etest.PollUntil(t, 100*time.Millisecond, 2*time.Minute, "the evictor to bring the bucket within the budget", func() string {
			if n := shared.BucketBytes(t, ""); n > evictionBudget {
				return fmt.Sprintf("%d bytes in the bucket, budget %d", n, evictionBudget)
			}
			return ""
		})
		t.Logf("after load round %d (%d MiB written so far): %d bytes in the bucket (budget %d), %d of them the load's",
			round+1, seed/2, shared.BucketBytes(t, ""), evictionBudget, shared.BucketBytes(t, loadOrg))
		if lost := lostObjects(t, shared, protected); len(lost) != 0 {
			t.Fatalf("eviction took %d objects used within the retention, such as %s", len(lost), lost[0])
		}
	}
	evicted := 0.0
	for _, n := range nodes {
		evicted += metricValue(n.Metrics(), "sealcache_shared_evicted_bytes_total")
	}
	if over := float64(int64(seed)*512<<10 - evictionBudget); evicted < over {
		t.Errorf("the nodes evicted %v bytes in all; want at least the %v the load brought over the budget", evicted, over)
	}

	// The same Bazel server, after the eviction: the test runs again
	// (another test environment), so Bazel downloads the binary and the
	// marker it was only told about. With objects gone it would fail with
	// a missing digest.
	rerun := bazel.Test(append(a.GRPCFlags(key), "--remote_download_minimal", "--test_env=SEALCACHE_E2E_RUN=after-eviction", e2etest.Targets)...)
	if got := rerun.TestStatus(e2etest.HelloTest); got != "PASSED" {
		t.Fatalf("the test run after the eviction: %s is %q; want PASSED (run, with its inputs downloaded)\n%s", e2etest.HelloTest, got, rerun.RedactedOutput())
	}
	// Only the test (and its XML report) ran: every other action result and
	// the outputs they name were kept.
	if ran := rerun.Processes.Cacheable() - rerun.Processes.RemoteCacheHits(); ran > 2 {
		t.Errorf("after the eviction, %d actions ran again (%q); want only the test and its report: the rest was used within the retention", ran, rerun.Processes.Line)
	}
	t.Logf("build without the bytes after eviction: %q; %d bytes in the bucket, %v evicted in all", rerun.Processes.Line, shared.BucketBytes(t, ""), evicted)
}

// loadBlob is n bytes of load, distinct for each seed.
func loadBlob(seed, n int) []byte {
	b := []byte(strings.Repeat(fmt.Sprintf("load blob %08d ", seed), n/18+1))
	return b[:n]
}

// indexedObject names an object by its index columns.
type indexedObject struct {
	partition string
	hash      string
	size      int64
}

func (o indexedObject) String() string { return fmt.Sprintf("%s/%s-%d", o.partition, o.hash, o.size) }

// recentlyUsed lists the objects the index says were used within the hour.
func recentlyUsed(t *testing.T, url string) []indexedObject {
	t.Helper()
	conn := pgConnect(t, url)
	rows, err := conn.Query(t.Context(), `SELECT partition, encode(hash, 'hex'), size FROM sealcache_objects WHERE last_access > now() - interval '1 hour'`)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (indexedObject, error) {
		var o indexedObject
		err := r.Scan(&o.partition, &o.hash, &o.size)
		return o, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// oldActionResults counts the action results the index says were not used
// within the hour.
func oldActionResults(t *testing.T, url string) int {
	t.Helper()
	var n int
	if err := pgConnect(t, url).QueryRow(t.Context(), `SELECT count(*) FROM sealcache_objects WHERE kind = 2 AND last_access < now() - interval '1 hour'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// lostObjects returns those of objs no longer in the bucket.
func lostObjects(t *testing.T, shared *e2etest.Shared, objs []indexedObject) []indexedObject {
	t.Helper()
	names := map[string]bool{}
	for _, o := range shared.Objects(t, "") {
		names[o.Name[strings.LastIndexByte(o.Name, '/')+1:]] = true
	}
	var lost []indexedObject
	for _, o := range objs {
		if !names[fmt.Sprintf("%s-%d", o.hash, o.size)] {
			lost = append(lost, o)
		}
	}
	return lost
}

// metricValue sums the samples of a metric on a /metrics page, only those
// whose line holds every one of labels when any are given.
func metricValue(page, name string, labels ...string) float64 {
	var n float64
	for _, line := range strings.Split(page, "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		matches := true
		for _, l := range labels {
			matches = matches && strings.Contains(line, l)
		}
		if matches {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			n += v
		}
	}
	return n
}

// requestCount sums sealcache_requests_total for a gRPC method on the
// server's /metrics.
func requestCount(s *e2etest.Server, method string) float64 {
	return metricValue(s.Metrics(), "sealcache_requests_total", `method="`+method+`"`)
}

// wrappedHalves reads the key record's wrapped halves from PostgreSQL.
func wrappedHalves(t *testing.T, url, keyID string) [][]byte {
	t.Helper()
	conn := pgConnect(t, url)
	var customer, operator []byte
	if err := conn.QueryRow(t.Context(), `SELECT wrapped_customer_key, wrapped_operator_key FROM key_records WHERE key_id = $1`, keyID).Scan(&customer, &operator); err != nil {
		t.Fatalf("reading the key record %s: %v", keyID, err)
	}
	return [][]byte{customer, operator}
}

// liveRowsHolding returns the tables with a live row that holds any of the
// byte strings.
func liveRowsHolding(t *testing.T, url string, needles [][]byte) []string {
	t.Helper()
	conn := pgConnect(t, url)
	rows, err := conn.Query(t.Context(), `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, table := range tables {
		rows, err := conn.Query(t.Context(), fmt.Sprintf(`SELECT row_to_json(t)::text FROM %s t`, pgx.Identifier{table}.Sanitize()))
		if err != nil {
			t.Fatal(err)
		}
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, text := range texts {
			for _, n := range needles {
				if strings.Contains(text, hex.EncodeToString(n)) {
					found = append(found, table)
				}
			}
		}
	}
	return found
}

func pgConnect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
