// Command sealcache runs the Sealcache build cache server, and with
// "sealcache admin ..." talks to a running one.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "admin":
			return runAdmin(ctx, args[1:], os.Stdout, os.Stderr)
		case "bench":
			return runBench(ctx, args[1:], os.Stdout, os.Stderr)
		case "shred-check":
			return runShredCheck(ctx, args[1:], os.Stdout, os.Stderr)
		case "kms":
			return runKMS(ctx, args[1:], os.Stdout, os.Stderr)
		case "help", "-h", "--help", "-help":
			return runServer(ctx, []string{"-h"}, os.Stdout, os.Stderr)
		}
	}
	return runServer(ctx, args, os.Stdout, os.Stderr)
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `sealcache: a Bazel remote cache with customer managed encryption keys

Usage:
  sealcache [flags]                 run the server (see --help for flags)
  sealcache admin COMMAND ...       manage a running server (keys, encryption, orgs)
  sealcache bench --server ADDR     measure a REAPI server's throughput
  sealcache shred-check --org ID    check that a disabled org's data no longer opens
  sealcache kms create-local-key NAME   make a local-kms://NAME key file, for trying CMEK

Every server flag can also be set as SEALCACHE_<FLAG> in the environment
(SEALCACHE_DATA_DIR=/var/lib/sealcache) or in the YAML file given by --config.
"sealcache admin --help" lists the admin commands.

Server flags:
`)
}
