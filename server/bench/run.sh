#!/bin/sh
# make bench: start a Sealcache server on 127.0.0.1 with a fresh data
# directory, create an org with CMEK on (a local KMS key), run the client
# bench against the plain org "default" and the CMEK org, and print the
# table of issue 12's targets. The server runs as its own process, as in
# production; the bench client is a second process on the same machine.
#
# Environment:
#   SEALCACHE        the binary (default bin/sealcache, built by make bench)
#   BENCH_DIR        parent of the temporary data directory (default $TMPDIR
#                    or /tmp: the disk). BENCH_DIR=/dev/shm puts the data on
#                    tmpfs, which takes the disk out: CPU-bound figures.
#   BENCH_ARGS       more flags for `sealcache bench` (--runs 5, --only large,...)
#   DROP_CACHES=1    sync and drop the page cache before starting (root only)
#   OLD_SEALCACHE    an older sealcache binary: it is benched first (plain
#                    org, same flags) and shown as the "old" column, the
#                    baseline of relative goals
#   BENCH_OUT        directory for the JSON samples and server logs (default:
#                    the temporary directory, removed at the end)
set -eu

SEALCACHE=${SEALCACHE:-bin/sealcache}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}}
BENCH_ARGS=${BENCH_ARGS:-}
work=$(mktemp -d "$BENCH_DIR/sealcache-bench-XXXXXX")
out=${BENCH_OUT:-$work}
mkdir -p "$out"
pid=""

. "$(dirname "$0")/server.sh"
trap cleanup EXIT INT TERM

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (measure on an idle machine)" >&2

drop_caches() {
	if [ "${DROP_CACHES:-0}" = 1 ]; then
		sync
		echo 3 > /proc/sys/vm/drop_caches || { echo "DROP_CACHES=1 needs root" >&2; exit 1; }
		echo "page cache dropped" >&2
	fi
}

baseline=""
if [ -n "${OLD_SEALCACHE:-}" ]; then
	drop_caches
	start_server old "$OLD_SEALCACHE"
	echo "old server: pid $pid, grpc $grpc" >&2
	# shellcheck disable=SC2086
	"$SEALCACHE" bench --server "grpc://$grpc" --api_key "$admin_key" --server_pid "$pid" \
		--json "$out/old.json" $BENCH_ARGS >"$out/old-table.md"
	stop_server
	rm -rf "$data" # on tmpfs its gigabytes would stay in memory
	baseline="--baseline $out/old.json"
fi

drop_caches
start_server new "$SEALCACHE"
echo "server: pid $pid, grpc $grpc, http $http, data $data" >&2
make_cmek_org

# shellcheck disable=SC2086
"$SEALCACHE" bench --server "grpc://$grpc" --api_key "$admin_key" --cmek_api_key "$cmek_key" \
	--server_pid "$pid" --json "$out/new.json" $baseline $BENCH_ARGS
stop_server
