package main

// "sealcache kms ..." are operator commands that work on the server's
// machine, not through its API: today only create-local-key, which makes a
// local-kms:// key file so that an org can try CMEK without a cloud KMS.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/server"
)

const kmsUsageLine = "Usage: sealcache kms create-local-key NAME [--data_dir DIR | --local_kms_dir DIR]"

const kmsUsage = kmsUsageLine + `

Creates the local KMS key local-kms://NAME: a file of 32 random bytes,
DATA_DIR/kms/NAME (or --local_kms_dir/NAME), readable only by you. Run it on
the server's machine, as the user the server runs as. It never overwrites a
key: an existing key of that name is kept and the command fails.

Local keys are for trying CMEK on one machine. Whoever can read the key
directory and the data directory can open the data, so use a cloud KMS key
(gcp-kms:// or aws-kms://) for data that matters. Then, as the org's admin:

  sealcache admin encryption enable --key_uri local-kms://NAME

Flags (also SEALCACHE_DATA_DIR and SEALCACHE_LOCAL_KMS_DIR, like the server):
  --data_dir DIR        the server's --data_dir (default ./sealcache-data)
  --local_kms_dir DIR   the server's --local_kms_dir (default DATA_DIR/kms)
`

func runKMS(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) == 0 {
			fmt.Fprint(stderr, kmsUsage)
			fmt.Fprintln(stderr, "\nsealcache kms: missing command")
			return 2
		}
		fmt.Fprint(stdout, kmsUsage)
		return 0
	}
	if args[0] != "create-local-key" {
		fmt.Fprintf(stderr, "%s\nsealcache kms: unknown command %q; the only one is create-local-key\n", kmsUsage, args[0])
		return 2
	}
	flags := flag.NewFlagSet("sealcache kms create-local-key", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	dataDir := flags.String("data_dir", envOr("SEALCACHE_DATA_DIR", server.Defaults().DataDir), "the server's data directory")
	keyDir := flags.String("local_kms_dir", envOr("SEALCACHE_LOCAL_KMS_DIR", ""), "the server's local key directory")
	names, err := parseInterspersed(flags, args[1:])
	if err == nil && len(names) != 1 {
		err = fmt.Errorf("create-local-key takes one key NAME, got %q", names)
	}
	if err != nil {
		return kmsBadUsage(stderr, err)
	}
	dir := server.Config{DataDir: *dataDir, LocalKMSDir: *keyDir}.LocalKeyDir()
	name := names[0]
	if err := kms.CreateLocalKey(dir, name); err != nil {
		if errors.Is(err, fs.ErrExist) {
			fmt.Fprintf(stderr, "sealcache kms: %v\nThe key was kept: overwriting it would make everything wrapped with it unreadable. Pick another NAME.\n", err)
			return 1
		}
		var kerr *kms.Error
		if errors.As(err, &kerr) && kerr.Kind == kms.KindInvalidURI {
			return kmsBadUsage(stderr, err)
		}
		fmt.Fprintf(stderr, "sealcache kms: creating local key %q in %s: %v\n", name, dir, err)
		return 1
	}
	fmt.Fprintf(stdout, `Created the local key local-kms://%s in %s (32 random bytes, mode 0600).
It is for trying CMEK: whoever can read %s and the data directory can open the data.
An org admin turns CMEK on with it:

  sealcache admin encryption enable --key_uri local-kms://%s
`, name, filepath.Join(dir, name), dir, name)
	return 0
}

// kmsBadUsage reports a mistake on the command line: the usage line, then
// the error. Exit status 2.
func kmsBadUsage(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "%s\nsealcache kms: %v\n", kmsUsageLine, err)
	return 2
}

// parseInterspersed parses flags that may come before or after positional
// arguments, and returns the positional ones.
func parseInterspersed(flags *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := flags.Parse(args); err != nil {
			return nil, err
		}
		if flags.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, flags.Arg(0))
		args = flags.Args()[1:]
	}
}
