#!/bin/sh
# Paired comparison of two sealcache binaries on a shared machine: start a
# fresh server of the old binary, take one run of the chosen measurements,
# stop it; then the same with the new binary (plain org, and a CMEK org);
# repeat ROUNDS times, alternating, so that a busy moment of the machine
# falls on both sides alike. Prints one table: medians and spreads over the
# rounds, the old binary's as the baseline column.
#
#   OLD_SEALCACHE=/tmp/old/sealcache server/bench/compare.sh
#
# Environment: SEALCACHE (new binary, default bin/sealcache), OLD_SEALCACHE
# (required), ROUNDS (default 5), ONLY (measurements, default mixed,batch),
# WARMUP (measurements run once, untimed, on each fresh server before the
# timed run, e.g. WARMUP=mixed for a server that has already stored
# something; default none),
# BENCH_DIR (parent of the data directories; /dev/shm for CPU-bound
# figures), BENCH_ARGS (more flags for `sealcache bench`), BENCH_OUT (keep
# the JSON samples there).
set -eu

SEALCACHE=${SEALCACHE:-bin/sealcache}
: "${OLD_SEALCACHE:?set OLD_SEALCACHE to the binary to compare with}"
ROUNDS=${ROUNDS:-5}
ONLY=${ONLY:-mixed,batch}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}}
BENCH_ARGS=${BENCH_ARGS:-}
work=$(mktemp -d "$BENCH_DIR/sealcache-compare-XXXXXX")
out=${BENCH_OUT:-$work}
mkdir -p "$out"
pid=""

. "$(dirname "$0")/server.sh"
trap cleanup EXIT INT TERM

# warmup CMEK_KEY: the WARMUP measurements, untimed, for the plain org
# and (when given) the CMEK org.
warmup() {
	[ -n "${WARMUP:-}" ] || return 0
	"$SEALCACHE" bench --server "grpc://$grpc" --api_key "$admin_key" ${1:+--cmek_api_key "$1"} --only "$WARMUP" --runs 1 >/dev/null 2>&1
}

round=1
while [ $round -le "$ROUNDS" ]; do
	echo "round $round of $ROUNDS, load average $(cut -d' ' -f1 /proc/loadavg)" >&2
	start_server old "$OLD_SEALCACHE"
	warmup ""
	# shellcheck disable=SC2086
	"$SEALCACHE" bench --server "grpc://$grpc" --api_key "$admin_key" --server_pid "$pid" \
		--only "$ONLY" --runs 1 --json "$out/old-$round.json" $BENCH_ARGS >/dev/null 2>&1
	stop_server
	rm -rf "$data"
	start_server new "$SEALCACHE"
	make_cmek_org
	warmup "$cmek_key"
	# shellcheck disable=SC2086
	"$SEALCACHE" bench --server "grpc://$grpc" --api_key "$admin_key" --cmek_api_key "$cmek_key" --server_pid "$pid" \
		--only "$ONLY" --runs 1 --json "$out/new-$round.json" $BENCH_ARGS >/dev/null 2>&1
	stop_server
	rm -rf "$data"
	round=$((round + 1))
done

"$SEALCACHE" bench --baseline "$(ls "$out"/old-*.json | tr '\n' ',')" --table "$(ls "$out"/new-*.json | tr '\n' ',')"
