package pgindex

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
	"github.com/sealcache/sealcache/internal/pgtest"
)

// openIndex opens an index on a fresh database. The flush loop's interval
// is long, so tests decide when uses are written (FlushTouches).
func openIndex(t testing.TB, edit ...func(*Config)) (*Index, string) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	cfg := Config{URL: url, MinRetention: time.Hour, FlushInterval: time.Hour}
	for _, e := range edit {
		e(&cfg)
	}
	ix, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ix.Close)
	return ix, url
}

func key(partition cas.Partition, seed uint64) cas.Key {
	return castest.CASKey(partition, castest.Bytes(seed, 40))
}

// commit records key as written with a fresh ticket.
func commit(t testing.TB, ix *Index, k cas.Key, stored int64) {
	t.Helper()
	tk, err := ix.BeginWrite(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.CommitWrite(t.Context(), tk, k, stored); err != nil {
		t.Fatalf("CommitWrite(%s): %v", k, err)
	}
}

func present(t testing.TB, ix *Index, keys ...cas.Key) []bool {
	t.Helper()
	got, err := ix.Present(t.Context(), keys)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// age moves the last access of every row back by d, as if d had passed.
func age(t testing.TB, ix *Index, d time.Duration) {
	t.Helper()
	if _, err := ix.pool.Exec(t.Context(), `UPDATE sealcache_objects SET last_access = last_access - $1 * interval '1 second'`, d.Seconds()); err != nil {
		t.Fatal(err)
	}
}

// setAge sets the last access of k's row to d ago.
func setAge(t testing.TB, ix *Index, k cas.Key, d time.Duration) {
	t.Helper()
	args, _ := keyArgs(k)
	tag, err := ix.pool.Exec(t.Context(), `UPDATE sealcache_objects SET last_access = now() - $7 * interval '1 second'
		WHERE partition = $1 AND kind = $2 AND instance = $3 AND digest_fn = $4 AND hash = $5 AND size = $6`, append(args, d.Seconds())...)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("setting the age of %s: %v (%d rows)", k, err, tag.RowsAffected())
	}
}

// lastAccessAge is how long ago the row of k was last used.
func lastAccessAge(t testing.TB, ix *Index, k cas.Key) time.Duration {
	t.Helper()
	args, _ := keyArgs(k)
	var secs float64
	err := ix.pool.QueryRow(t.Context(), `SELECT extract(epoch FROM now() - last_access)::float8 FROM sealcache_objects
		WHERE partition = $1 AND kind = $2 AND instance = $3 AND digest_fn = $4 AND hash = $5 AND size = $6`, args...).Scan(&secs)
	if err != nil {
		t.Fatalf("last access of %s: %v", k, err)
	}
	return time.Duration(secs * float64(time.Second))
}

func TestWritesAreFoundInInputOrderAndWalked(t *testing.T) {
	ix, _ := openIndex(t)
	a, b, c := key("org1", 1), key("org1/kA", 2), key("org10", 3)
	ac := castest.ACKey("org1", "linux/x86", 4)
	http := a
	http.Digest.Size = cas.SizeUnknown
	for i, k := range []cas.Key{a, b, c, ac, http} {
		commit(t, ix, k, int64(100*(i+1)))
	}
	missing := key("org1", 99)
	got := present(t, ix, missing, c, a, missing, ac, http, b, a)
	if want := []bool{false, true, true, false, true, true, true, true}; !slices.Equal(got, want) {
		t.Fatalf("Present = %v, want %v", got, want)
	}
	other := ac
	other.Instance = ""
	if got := present(t, ix, other); got[0] {
		t.Fatal("an AC key with another instance name was found")
	}

	size, found, err := ix.Lookup(t.Context(), ac)
	if err != nil || !found || size != 400 {
		t.Fatalf("Lookup(%s) = %d, %v, %v; want 400 bytes found", ac, size, found, err)
	}
	if _, found, _ := ix.Lookup(t.Context(), missing); found {
		t.Fatal("Lookup of a missing key found it")
	}

	var walked []cas.Key
	if err := ix.Walk(t.Context(), "org1", func(o cas.StoredObject) error {
		walked = append(walked, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []cas.Key{a, b, ac, http} {
		if !slices.Contains(walked, k) {
			t.Errorf("Walk(org1) did not see %s", k)
		}
	}
	if slices.Contains(walked, c) || len(walked) != 4 {
		t.Errorf("Walk(org1) saw %d objects %v; want the 4 of org1 and org1/kA, not org10's", len(walked), walked)
	}
}

// More rows than one page of Walk: every row once.
func TestWalkPagesThroughLargePartitions(t *testing.T) {
	ix, _ := openIndex(t)
	var cols keyCols
	n := walkPage*2 + 7
	for i := range n {
		cols.add(key("org1", uint64(i)))
	}
	_, err := ix.pool.Exec(t.Context(), `INSERT INTO sealcache_objects (`+keyColumns+`, stored_size, created, last_access)
		SELECT partition, kind, instance, digest_fn, hash, size, 1, now(), now() FROM `+unnestKeys, cols.args()...)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[cas.Key]int{}
	ix.Walk(t.Context(), "org1", func(o cas.StoredObject) error { seen[o.Key]++; return nil })
	if len(seen) != n {
		t.Fatalf("Walk saw %d distinct objects; want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("Walk saw %s %d times", k, c)
		}
	}
}

func TestUsageCountersFollowWritesOverwritesAndDeletes(t *testing.T) {
	ix, _ := openIndex(t)
	usage := func(org string) int64 {
		t.Helper()
		n, err := ix.OrgUsage(t.Context(), org)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	ac := castest.ACKey("org1", "", 1)
	commit(t, ix, key("org1", 1), 1000)
	commit(t, ix, key("org1/kA", 2), 2000)
	commit(t, ix, ac, 50)
	commit(t, ix, key("org2", 3), 7000)
	if n := usage("org1"); n != 3050 {
		t.Fatalf("org1 uses %d bytes; want 3050", n)
	}
	commit(t, ix, ac, 80) // an overwritten action result
	commit(t, ix, key("org1", 1), 1000)
	if n := usage("org1"); n != 3080 {
		t.Fatalf("after overwriting: org1 uses %d bytes; want 3080", n)
	}
	d, err := ix.DeleteKey(t.Context(), key("org1/kA", 2))
	if err != nil || d.Bytes() != 2000 {
		t.Fatalf("DeleteKey = %+v, %v; want 2000 bytes deleted", d, err)
	}
	if n := usage("org1"); n != 1080 {
		t.Fatalf("after a delete: org1 uses %d bytes; want 1080", n)
	}
	pd, err := ix.DeletePartition(t.Context(), "org1")
	if err != nil || pd.Objects != 2 || pd.Bytes != 1080 {
		t.Fatalf("DeletePartition = %+v, %v; want 2 objects of 1080 bytes", pd, err)
	}
	if n := usage("org1"); n != 0 {
		t.Fatalf("after deleting the partition: org1 uses %d bytes", n)
	}
	objects, bytes, err := ix.Usage(t.Context())
	if err != nil || objects != 1 || bytes != 7000 {
		t.Fatalf("Usage = %d objects, %d bytes, %v; want org2's one object of 7000", objects, bytes, err)
	}
	over, err := ix.OrgsOver(t.Context(), 5000)
	if err != nil || len(over) != 1 || over[0] != (OrgBytes{"org2", 7000}) {
		t.Fatalf("OrgsOver(5000) = %v, %v", over, err)
	}
}

// A write whose ticket was taken before a delete of its key finished may
// have had its bytes deleted: it is refused. A write that starts after the
// delete finished is not.
func TestWritesOverlappingADeleteAreRefused(t *testing.T) {
	ix, _ := openIndex(t)
	ctx := t.Context()
	k := key("org1", 1)
	commit(t, ix, k, 10)

	before, _ := ix.BeginWrite(ctx)
	d, err := ix.DeleteKey(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	during, _ := ix.BeginWrite(ctx)
	if err := ix.CommitWrite(ctx, during, k, 10); !errors.Is(err, ErrDeletedWhileWriting) {
		t.Fatalf("commit while the delete is in progress = %v; want ErrDeletedWhileWriting", err)
	}
	if err := ix.FinishKeys(ctx, d); err != nil {
		t.Fatal(err)
	}
	for name, tk := range map[string]Ticket{"before the delete": before, "during the delete": during} {
		if err := ix.CommitWrite(ctx, tk, k, 10); !errors.Is(err, ErrDeletedWhileWriting) {
			t.Fatalf("commit of a write that started %s = %v; want ErrDeletedWhileWriting", name, err)
		}
	}
	if present(t, ix, k)[0] {
		t.Fatal("a refused commit left a row")
	}
	commit(t, ix, k, 10) // started after the delete finished
	if !present(t, ix, k)[0] {
		t.Fatal("a write after the delete is not found")
	}
}

func TestWritesOverlappingAPartitionDeleteAreRefused(t *testing.T) {
	ix, _ := openIndex(t)
	ctx := t.Context()
	sealed, plain, other := key("org1/kA", 1), key("org1", 2), key("org10", 3)
	tickets := map[cas.Key]Ticket{}
	for _, k := range []cas.Key{sealed, plain, other} {
		tickets[k], _ = ix.BeginWrite(ctx)
	}
	d, err := ix.DeletePartition(ctx, "org1")
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.FinishPartition(ctx, d); err != nil {
		t.Fatal(err)
	}
	for _, k := range []cas.Key{sealed, plain} {
		if err := ix.CommitWrite(ctx, tickets[k], k, 1); !errors.Is(err, ErrDeletedWhileWriting) {
			t.Errorf("commit of %s that overlapped deleting org1 = %v; want ErrDeletedWhileWriting", k, err)
		}
	}
	if err := ix.CommitWrite(ctx, tickets[other], other, 1); err != nil {
		t.Errorf("commit of %s: %v; deleting org1 must not touch org10", other, err)
	}
	commit(t, ix, sealed, 1)
	if !present(t, ix, sealed)[0] {
		t.Fatal("a write after the partition delete is not found")
	}
}

func TestEvictionTakesLeastRecentlyUsedOutsideRetention(t *testing.T) {
	ix, _ := openIndex(t)
	ctx := t.Context()
	var keys []cas.Key
	for i := range 6 {
		k := key(cas.Partition(fmt.Sprintf("org%d", i%2+1)), uint64(i))
		commit(t, ix, k, 100)
		keys = append(keys, k)
		age(t, ix, time.Minute) // keys[0] is the oldest
	}
	if d, err := ix.EvictLRU(ctx, "", 10); d != nil || err != nil {
		t.Fatalf("EvictLRU inside the retention = %+v, %v; want nothing", d, err)
	}
	age(t, ix, 56*time.Minute+30*time.Second) // keys 0..2 (63, 62, 61 minutes) are now outside the hour
	d, err := ix.EvictLRU(ctx, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Keys, keys[:2]) || d.Bytes() != 200 {
		t.Fatalf("EvictLRU(2) took %v (%d bytes); want the two oldest %v", d.Keys, d.Bytes(), keys[:2])
	}
	if err := ix.FinishKeys(ctx, d); err != nil {
		t.Fatal(err)
	}
	// keys 1, 3 and 5 are org2's: the old one is gone.
	if d, _ := ix.EvictLRU(ctx, "org2", 10); d != nil {
		t.Fatalf("EvictLRU(org2) took %v; org2's only old object was evicted already", d.Keys)
	}
	d, err = ix.EvictLRU(ctx, "org1", 10)
	if err != nil || d == nil || !slices.Equal(d.Keys, keys[2:3]) {
		t.Fatalf("EvictLRU(org1) = %+v, %v; want org1's old object %s", d, err, keys[2])
	}
	if got := present(t, ix, keys...); !slices.Equal(got, []bool{false, false, false, true, true, true}) {
		t.Fatalf("after eviction Present = %v", got)
	}
}

// Present records uses: at once for objects close to eviction, with the
// next flush for others, and not at all for recently used ones.
func TestUsesAreRecordedUrgentlyOrInBatches(t *testing.T) {
	ix, _ := openIndex(t)
	ctx := t.Context()
	near, stale, fresh := key("org1", 1), key("org1", 2), key("org1", 3)
	for _, k := range []cas.Key{near, stale, fresh} {
		commit(t, ix, k, 1)
	}
	setAge(t, ix, near, 50*time.Minute)
	setAge(t, ix, stale, 10*time.Minute)

	if got := present(t, ix, near, stale, fresh); !slices.Equal(got, []bool{true, true, true}) {
		t.Fatalf("Present = %v", got)
	}
	if a := lastAccessAge(t, ix, near); a > time.Minute {
		t.Errorf("an object last used 50 minutes ago (retention 1h) was found but its use was not written at once: age %v", a)
	}
	if a := lastAccessAge(t, ix, stale); a < 9*time.Minute {
		t.Errorf("an object last used 10 minutes ago had its use written at once (age %v); it should wait for the flush", a)
	}
	if err := ix.FlushTouches(ctx); err != nil {
		t.Fatal(err)
	}
	if a := lastAccessAge(t, ix, stale); a > time.Minute {
		t.Errorf("after the flush, the use of an object last used 10 minutes ago is not written: age %v", a)
	}
	if st := ix.TouchStats(); st.Written != 1 {
		t.Errorf("the flush wrote %d rows; want 1 (the recently used object needs no write)", st.Written)
	}
	// Reads count too, by the same rules.
	setAge(t, ix, fresh, 10*time.Minute)
	setAge(t, ix, near, 50*time.Minute)
	for _, k := range []cas.Key{fresh, near} {
		if _, found, _ := ix.Lookup(ctx, k); !found {
			t.Fatal("Lookup did not find a written object")
		}
	}
	if a := lastAccessAge(t, ix, near); a > time.Minute {
		t.Errorf("a read of an object close to eviction was not written at once: age %v", a)
	}
	if a := lastAccessAge(t, ix, fresh); a < 9*time.Minute {
		t.Errorf("a read of an object used 10 minutes ago was written at once (age %v); it should wait for the flush", a)
	}
	ix.FlushTouches(ctx)
	if a := lastAccessAge(t, ix, fresh); a > time.Minute {
		t.Errorf("a read was not recorded as a use: age %v", a)
	}
}

// Whatever the interleaving, an object Present or Lookup reported found is
// not evicted afterwards while inside the retention: the urgent use and
// the evictor's delete lock the same row.
func TestFoundObjectsSurviveConcurrentEviction(t *testing.T) {
	ix, _ := openIndex(t)
	ctx := t.Context()
	var keys []cas.Key
	for i := range 400 {
		k := key("org1", uint64(i))
		keys = append(keys, k)
		commit(t, ix, k, 10)
	}
	age(t, ix, 2*time.Hour)

	var mu sync.Mutex
	found := map[cas.Key]bool{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(keys); i += 4 {
				var hit bool
				var err error
				if w%2 == 0 {
					var got []bool
					got, err = ix.Present(ctx, keys[i:i+1])
					hit = err == nil && got[0]
				} else {
					_, hit, err = ix.Lookup(ctx, keys[i])
				}
				if err != nil {
					t.Error(err)
					return
				}
				if hit {
					mu.Lock()
					found[keys[i]] = true
					mu.Unlock()
				}
			}
		})
	}
	wg.Go(func() {
		for {
			d, err := ix.EvictLRU(ctx, "", 7)
			if err != nil {
				t.Error(err)
				return
			}
			if d == nil {
				return
			}
			ix.FinishKeys(ctx, d)
		}
	})
	wg.Wait()
	still := present(t, ix, keys...)
	lost := 0
	for i, k := range keys {
		if found[k] && !still[i] {
			lost++
		}
	}
	t.Logf("%d of %d objects were found before the evictor reached them", len(found), len(keys))
	if lost > 0 {
		t.Fatalf("%d objects reported found were evicted afterwards", lost)
	}
}

func TestUnfinishedDeletesAreListedAndForgotten(t *testing.T) {
	ix, _ := openIndex(t)
	ctx := t.Context()
	k := key("org1", 1)
	commit(t, ix, k, 10)
	if _, err := ix.DeleteKey(ctx, k); err != nil { // its node "dies" here
		t.Fatal(err)
	}
	if _, err := ix.DeletePartition(ctx, "org2"); err != nil {
		t.Fatal(err)
	}
	keys, parts, err := ix.unfinished(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !slices.Equal(keys[0].Keys, []cas.Key{k}) || len(parts) != 1 || parts[0].Partition != "org2" {
		t.Fatalf("unfinished = %+v, %+v; want the key delete and the partition delete", keys, parts)
	}
	tk, _ := ix.BeginWrite(ctx)
	if err := ix.CommitWrite(ctx, tk, k, 10); !errors.Is(err, ErrDeletedWhileWriting) {
		t.Fatalf("a write of a key whose delete is unfinished = %v; want ErrDeletedWhileWriting", err)
	}
	ix.FinishKeys(ctx, keys[0])
	ix.FinishPartition(ctx, parts[0])
	if keys, parts, _ := ix.unfinished(ctx, 0); len(keys)+len(parts) != 0 {
		t.Fatalf("after finishing: unfinished = %+v, %+v", keys, parts)
	}
	ix.pool.Exec(ctx, `UPDATE sealcache_deleted_objects SET done_at = done_at - interval '7 hours'`)
	if n, err := ix.ForgetFinished(ctx); err != nil || n != 1 {
		t.Fatalf("ForgetFinished = %d, %v; want the one old tombstone", n, err)
	}
}

// A partition delete whose node died after writing the tombstone and
// before deleting the rows is listed with its rows gone: the caller is
// about to delete the objects, and no row may outlive its object.
func TestUnfinishedPartitionDeletesLoseTheirRows(t *testing.T) {
	ix, _ := openIndex(t)
	ctx := t.Context()
	k, other := key("org1/kA", 1), key("org10", 2)
	commit(t, ix, k, 10)
	commit(t, ix, other, 20)
	// The first step of DeletePartition alone: its node "dies" after it.
	if _, err := ix.pool.Exec(ctx, `INSERT INTO sealcache_deleted_partitions (partition, started) VALUES ('org1', now())`); err != nil {
		t.Fatal(err)
	}
	_, parts, err := ix.unfinished(ctx, 0)
	if err != nil || len(parts) != 1 || parts[0].Partition != "org1" {
		t.Fatalf("unfinished = %+v, %v; want the partition delete", parts, err)
	}
	if got := present(t, ix, k, other); !slices.Equal(got, []bool{false, true}) {
		t.Fatalf("Present after listing the unfinished delete = %v; want the partition's row gone and the other org's kept", got)
	}
	if used, err := ix.OrgUsage(ctx, "org1"); err != nil || used != 0 {
		t.Fatalf("OrgUsage(org1) = %d, %v; want 0", used, err)
	}
}

// Nodes starting together migrate once; a restart applies nothing.
func TestConcurrentOpensMigrateOnce(t *testing.T) {
	url := pgtest.NewDatabase(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			ix, err := Open(context.Background(), Config{URL: url})
			if err != nil {
				t.Error(err)
				return
			}
			ix.Close()
		})
	}
	wg.Wait()
	ix, err := Open(t.Context(), Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	var versions int
	ix.pool.QueryRow(t.Context(), `SELECT count(*) FROM sealcache_index_migrations`).Scan(&versions)
	if versions != len(migrations) {
		t.Fatalf("%d migrations recorded; want %d", versions, len(migrations))
	}
}

func TestOpenNamesWhatIsWrong(t *testing.T) {
	_, err := Open(t.Context(), Config{URL: "postgres://nobody:secret-password@127.0.0.1:1/none?connect_timeout=5"})
	if err == nil {
		t.Fatal("Open of an unreachable database succeeded")
	}
	t.Logf("Open: %v", err)
	if msg := err.Error(); !strings.Contains(msg, "127.0.0.1") || !strings.Contains(msg, "--metadata_url") || strings.Contains(msg, "secret-password") {
		t.Fatalf("Open error %q: want the host and the flag named, and no password", msg)
	}
}
