# Shell functions shared by run.sh and compare.sh (sourced, not run): start
# and stop a Sealcache server on free loopback ports, make an org with
# CMEK on, and clean up on exit. They expect $work (a temporary directory),
# $out (where logs go) and $pid (empty while no server runs) to be set.

# start_server NAME BINARY: run BINARY with a fresh data directory
# $work/NAME-data; sets pid, data, grpc, http, admin_key and operator_key.
start_server() {
	data="$work/$1-data"
	rm -rf "$data"
	log="$out/$1-server.log"
	"$2" --data_dir "$data" --grpc_address 127.0.0.1:0 --http_address 127.0.0.1:0 \
		>"$out/$1-server.out" 2>"$log" &
	pid=$!
	# The "serving" log line names the ports really bound, and comes
	# once both ports serve and the initial keys are written.
	i=0
	until grep -q 'msg=serving' "$log" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
			echo "the server did not start; its log:" >&2
			cat "$log" >&2
			exit 1
		fi
		sleep 0.1
	done
	grpc=$(sed -n 's/.*msg=serving.* grpc_address=\([^ ]*\).*/\1/p' "$log" | head -n1)
	http=$(sed -n 's/.*msg=serving.* http_address=\([^ ]*\).*/\1/p' "$log" | head -n1)
	admin_key=$(cat "$data/initial-admin-api-key")
	operator_key=$(cat "$data/initial-operator-api-key")
}

# stop_server: stop the server start_server started.
stop_server() {
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pid=""
}

# make_cmek_org: create the org bench-cmek with a new local KMS key and
# CMEK on, with $SEALCACHE against the running server; sets cmek_key to
# its admin API key.
make_cmek_org() {
	"$SEALCACHE" kms create-local-key bench --data_dir "$data" >/dev/null
	cmek_key=$(SEALCACHE_API_KEY=$operator_key "$SEALCACHE" admin --server "http://$http" --json orgs create bench-cmek |
		sed -n 's/.*"adminKeySecret": *"\([^"]*\)".*/\1/p')
	[ -n "$cmek_key" ] || { echo "creating the CMEK org failed" >&2; exit 1; }
	SEALCACHE_API_KEY=$cmek_key "$SEALCACHE" admin --server "http://$http" encryption enable --key_uri local-kms://bench >/dev/null
}

# cleanup: the exit trap of run.sh and compare.sh. Stops a server that
# still runs and waits for it, so that it writes nothing into $work while
# or after that is removed.
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
