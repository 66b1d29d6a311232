package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sealcache/sealcache/server"
	"github.com/sealcache/sealcache/server/bench"
	apikeys "github.com/sealcache/sealcache/server/credentials"
)

// runBench measures any REAPI server: sealcache bench --server grpc://127.0.0.1:1985.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sealcache bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := bench.DefaultOptions()
	addr := fs.String("server", "grpc://127.0.0.1:1985", "REAPI server: grpc://HOST:PORT or grpcs://HOST:PORT")
	key := fs.String("api_key", os.Getenv("SEALCACHE_API_KEY"), "API key sent as x-api-key (default $SEALCACHE_API_KEY)")
	fs.StringVar(&o.Instance, "instance", "", "REAPI instance name")
	large := fs.String("large_size", "256MiB", "size of the large blob (0 to skip)")
	fs.IntVar(&o.SmallCount, "small_count", o.SmallCount, "number of small blobs (1 KB to 100 KB)")
	fs.IntVar(&o.FindRounds, "find_rounds", o.FindRounds, "FindMissingBlobs calls of 1000 digests")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if o.LargeSize, err = server.ParseSize(*large); err != nil {
		fmt.Fprintf(stderr, "sealcache bench: --large_size: %v\n", err)
		return 2
	}
	target, creds := strings.TrimPrefix(*addr, "grpc://"), insecure.NewCredentials()
	if t, ok := strings.CutPrefix(*addr, "grpcs://"); ok {
		target, creds = t, credentials.NewClientTLSFromCert(nil, "")
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds), grpc.WithPerRPCCredentials(apikeys.PerRPC(*key)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(8<<20), grpc.MaxCallSendMsgSize(8<<20)))
	if err != nil {
		fmt.Fprintf(stderr, "sealcache bench: %v\n", err)
		return 1
	}
	defer conn.Close()
	report, err := bench.Run(ctx, conn, o)
	if err != nil {
		fmt.Fprintf(stderr, "sealcache bench: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, report)
	return 0
}
