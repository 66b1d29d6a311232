package pgindex

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sealcache/sealcache/cas"
)

// The benchmarks run against the test PostgreSQL (internal/pgtest: local,
// fsync off), on the machine that runs them: figures for comparing
// changes and for the order of magnitude, not for sizing a deployment.
//
//	go test -run '^$' -bench FindMissing10k -benchtime 200x ./cas/pgindex/
//	go test -run '^$' -bench BytesPerObject -benchtime 1x ./cas/pgindex/

// benchRows is how many objects the index holds while measuring.
const benchRows = 200_000

// fillIndex inserts n objects of one org, as a bulk load.
func fillIndex(b *testing.B, ix *Index, n int) []cas.Key {
	b.Helper()
	keys := make([]cas.Key, n)
	for start := 0; start < n; start += 10_000 {
		var cols keyCols
		for i := start; i < min(n, start+10_000); i++ {
			keys[i] = key("org1", uint64(i))
			cols.add(keys[i])
		}
		_, err := ix.pool.Exec(b.Context(), `INSERT INTO sealcache_objects (`+keyColumns+`, stored_size, created, last_access)
			SELECT partition, kind, instance, digest_fn, hash, size, 100000, now(), now() FROM `+unnestKeys, cols.args()...)
		if err != nil {
			b.Fatal(err)
		}
	}
	if _, err := ix.pool.Exec(b.Context(), `VACUUM ANALYZE sealcache_objects`); err != nil {
		b.Fatal(err)
	}
	return keys
}

// BenchmarkFindMissing10k asks for 10,000 digests per call, half of them
// present, in an index of benchRows objects: one statement per call.
// Reports p50 and p99 latency per call. "recent": the found objects were
// used lately, so the call writes nothing; "near-eviction": they were last
// used 50 minutes ago (retention 1h), so the call also writes their uses,
// as the first build of a morning does.
func BenchmarkFindMissing10k(b *testing.B) {
	ix, _ := openIndex(b)
	keys := fillIndex(b, ix, benchRows)
	query := make([]cas.Key, 10_000)
	var found keyCols
	for i := range query {
		if i%2 == 0 {
			query[i] = keys[(i*7919)%len(keys)]
			found.add(query[i])
		} else {
			query[i] = key("org1", uint64(benchRows+i)) // never stored
		}
	}
	for _, near := range []bool{false, true} {
		name := "recent"
		if near {
			name = "near-eviction"
		}
		b.Run(name, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				if near {
					b.StopTimer()
					if _, err := ix.pool.Exec(b.Context(), `UPDATE sealcache_objects o SET last_access = now() - interval '50 minutes'
						FROM `+unnestKeys+` WHERE `+matchKey("o", "k"), found.args()...); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				start := time.Now()
				got, err := ix.Present(b.Context(), query)
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				if !got[0] || got[1] {
					b.Fatal("wrong answer")
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkIndexBytesPerObject reports what one object costs in
// PostgreSQL: the table with its indexes and TOAST, per row, for typical
// CAS keys (SHA-256, a short org id, plain and sealed partitions).
func BenchmarkIndexBytesPerObject(b *testing.B) {
	for b.Loop() {
		ix, _ := openIndex(b)
		fillIndex(b, ix, benchRows)
		var total, rows int64
		err := ix.pool.QueryRow(b.Context(), `SELECT pg_total_relation_size('sealcache_objects'), (SELECT count(*) FROM sealcache_objects)`).Scan(&total, &rows)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(total)/float64(rows), "bytes/object")
		b.ReportMetric(0, "ns/op")
		if rows != benchRows {
			b.Fatal(fmt.Sprint(rows, " rows"))
		}
	}
}
