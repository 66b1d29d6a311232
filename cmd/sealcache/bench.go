package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sealcache/sealcache/server"
	"github.com/sealcache/sealcache/server/bench"
	apikeys "github.com/sealcache/sealcache/server/credentials"
)

// runBench measures any REAPI server from the client side and prints
// issue 12's targets as a table:
//
//	sealcache bench --server grpc://127.0.0.1:1985 --api_key KEY [--cmek_api_key KEY2]
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sealcache bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: sealcache bench --server grpc://HOST:PORT --api_key KEY [--cmek_api_key KEY] [flags]

Measures a REAPI cache server from this process and prints a Markdown table:
a mixed small-blob load (32 clients), one large blob over ByteStream,
FindMissingBlobs of 10,000 digests idle and under load, zstd transfers next
to zstd's own speed, and batch RPCs. With --cmek_api_key (a key of an org
with CMEK on) every figure is also taken for that org. Run it on an idle
machine; see "Tests and benchmarks" in README.md.

Flags:
`)
		fs.PrintDefaults()
	}
	o := bench.DefaultOptions()
	addr := fs.String("server", "grpc://127.0.0.1:1985", "REAPI server: grpc://HOST:PORT or grpcs://HOST:PORT")
	key := fs.String("api_key", os.Getenv("SEALCACHE_API_KEY"), "API key of the plain org, sent as x-api-key (default $SEALCACHE_API_KEY; empty for anonymous access)")
	cmekKey := fs.String("cmek_api_key", "", "API key of an org with CMEK on: measure it too")
	instance := fs.String("instance", "", "REAPI instance name")
	only := fs.String("only", "", "comma-separated measurements to run: "+strings.Join(bench.Measurements, ", ")+" (default all)")
	fs.IntVar(&o.Runs, "runs", o.Runs, "runs of each measurement; the table shows median and spread")
	large := fs.String("large_size", "1GiB", "size of the large blob")
	fs.IntVar(&o.Mixed.Clients, "clients", o.Mixed.Clients, "concurrent clients of the mixed load and of the load beside FindMissing")
	fs.IntVar(&o.Mixed.Blobs, "mixed_blobs", o.Mixed.Blobs, "blobs written by the mixed load")
	fs.IntVar(&o.FindMissing.Calls, "findmissing_calls", o.FindMissing.Calls, "timed FindMissingBlobs calls, idle and again under load")
	zstdSize := fs.String("zstd_size", "256MiB", "size of the blob sent and read with compressed ByteStream")
	fs.BoolVar(&o.Sync, "sync", o.Sync, "sync(2) this machine's disks before each run, so earlier runs' writeback does not compete (false: measure with whatever is pending)")
	serverPID := fs.Int("server_pid", 0, "pid of the server on this machine: sample its RSS from /proc during the large transfer")
	metricsURL := fs.String("metrics_url", "", "the server's /metrics URL: sample process_resident_memory_bytes during the large transfer (when --server_pid is not given)")
	jsonOut := fs.String("json", "", "also write every sample to this JSON file")
	baseline := fs.String("baseline", "", "JSON files (comma-separated) of earlier runs (--json), shown as the \"old\" column; their plain figures are the baseline of relative goals")
	table := fs.String("table", "", "measure nothing: print the table of these JSON files (comma-separated, merged) of earlier runs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	size, err := server.ParseSize(*large)
	if err != nil {
		fmt.Fprintf(stderr, "sealcache bench: --large_size: %v\n", err)
		return 2
	}
	o.Large.Size = size
	zsize, err := server.ParseSize(*zstdSize)
	if err != nil {
		fmt.Fprintf(stderr, "sealcache bench: --zstd_size: %v\n", err)
		return 2
	}
	o.Zstd.StreamSize = int(zsize)
	o.FindMissing.LoadClients = o.Mixed.Clients
	o.Mixed.Instance, o.Large.Instance, o.FindMissing.Instance, o.Zstd.Instance, o.Batch.Instance = *instance, *instance, *instance, *instance, *instance
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	switch {
	case *serverPID > 0:
		o.Large.RSS = bench.ProcRSS(*serverPID)
	case *metricsURL != "":
		o.Large.RSS = bench.MetricsRSS(*metricsURL)
		o.Large.RSSInterval = 100 * time.Millisecond
	}
	var base bench.Samples
	if *baseline != "" {
		old, err := bench.LoadSamples(strings.Split(*baseline, ",")...)
		if err != nil {
			fmt.Fprintf(stderr, "sealcache bench: --baseline: %v\n", err)
			return 2
		}
		base = old["plain"]
	}
	if *table != "" {
		results, err := bench.LoadSamples(strings.Split(*table, ",")...)
		if err != nil {
			fmt.Fprintf(stderr, "sealcache bench: --table: %v\n", err)
			return 2
		}
		bench.Table(stdout, results, base)
		return 0
	}
	target, creds := strings.TrimPrefix(*addr, "grpc://"), insecure.NewCredentials()
	if t, ok := strings.CutPrefix(*addr, "grpcs://"); ok {
		target, creds = t, credentials.NewClientTLSFromCert(nil, "")
	}
	dialer := func(key string) bench.Dialer {
		return func() (*grpc.ClientConn, error) {
			return grpc.NewClient(target, grpc.WithTransportCredentials(creds), grpc.WithPerRPCCredentials(apikeys.PerRPC(key)),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)))
		}
	}
	targets := []bench.Target{{Name: "plain", Dial: dialer(*key)}}
	if *cmekKey != "" {
		targets = append(targets, bench.Target{Name: "cmek", Dial: dialer(*cmekKey)})
	}
	o.Progress = stderr
	results, err := bench.Run(ctx, targets, o)
	if err != nil {
		fmt.Fprintf(stderr, "sealcache bench: %v\n", err)
		return 1
	}
	if *jsonOut != "" {
		if err := bench.SaveSamples(*jsonOut, results); err != nil {
			fmt.Fprintf(stderr, "sealcache bench: --json: %v\n", err)
			return 1
		}
	}
	bench.Table(stdout, results, base)
	return 0
}
