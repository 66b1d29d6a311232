// Package pgindextest moves time in an object index for tests: instead of
// waiting an hour for objects to leave the minimum retention, a test ages
// their access times by an hour.
package pgindextest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// AgeObjects moves the last access of the objects of partitions (every
// object when none is given; "org1" includes "org1/kX") back by d, as if d
// had passed since each was last used.
func AgeObjects(t testing.TB, url string, d time.Duration, partitions ...string) {
	t.Helper()
	exec(t, url, `UPDATE sealcache_objects SET last_access = last_access - $1 * interval '1 second'
		WHERE coalesce(cardinality($2::text[]), 0) = 0 OR split_part(partition, '/', 1) = ANY($2) OR partition = ANY($2)`, d.Seconds(), partitions)
}

// AgeTombstones moves the start of every delete back by d, as if its node
// had died d ago.
func AgeTombstones(t testing.TB, url string, d time.Duration) {
	t.Helper()
	for _, table := range []string{"sealcache_deleted_objects", "sealcache_deleted_partitions"} {
		exec(t, url, `UPDATE `+table+` SET started = started - $1 * interval '1 second'`, d.Seconds())
	}
}

func exec(t testing.TB, url, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connecting to the object index: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("ageing the object index: %v", err)
	}
}
