package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sealcache/sealcache/server"
)

// serverFlags binds every server setting to a flag. Each flag can also be
// set as SEALCACHE_<NAME> in the environment or as <name>: in the YAML file
// given by --config. A flag on the command line wins over the environment,
// which wins over the file, which wins over the embedded default.
func serverFlags(fs *flag.FlagSet, cfg *server.Config) (configFile, logLevel, logFormat *string) {
	fs.StringVar(&cfg.DataDir, "data_dir", cfg.DataDir, "directory for blobs, metadata and local KMS keys")
	fs.StringVar(&cfg.GRPCAddress, "grpc_address", cfg.GRPCAddress, "address of the REAPI gRPC port")
	fs.StringVar(&cfg.HTTPAddress, "http_address", cfg.HTTPAddress, "address of the HTTP port: cache protocol, admin API, settings page, /metrics")
	fs.Func("max_size", "disk budget, such as 20GiB; least recently used blobs are evicted beyond it (default 20GiB)", sizeFlag(&cfg.MaxSize))
	fs.Func("max_blob_size", "largest blob accepted, such as 4GiB (default: no limit beyond --max_size)", sizeFlag(&cfg.MaxBlobSize))
	fs.StringVar(&cfg.TLSCertFile, "tls_cert_file", "", "PEM certificate: serve TLS on both ports (grpcs://, https://)")
	fs.StringVar(&cfg.TLSKeyFile, "tls_key_file", "", "PEM private key for --tls_cert_file")
	fs.StringVar(&cfg.AnonymousAccess, "anonymous_access", cfg.AnonymousAccess, "what clients without an API key may do in org \"default\": none, read or write")
	fs.BoolVar(&cfg.HTTPACStrict, "http_ac_strict", cfg.HTTPACStrict, "refuse HTTP /ac/ bodies that are not ActionResult messages; by default they are stored as opaque entries, which ccache and other HTTP cache clients need")
	fs.StringVar(&cfg.AssetFetch, "asset_fetch", cfg.AssetFetch, "on or off: whether the Remote Asset API (Bazel's --experimental_remote_downloader) downloads a URI it has not cached, for writer keys")
	fs.Func("asset_fetch_allowed_hosts", "hosts the Remote Asset API may download from, separated by commas, such as github.com,*.example.com,127.0.0.1 (default: any host at a public address; loopback and private addresses only when listed)", func(s string) error {
		hosts, err := server.ParseHostList(s)
		cfg.AssetFetchAllowedHosts = hosts
		return err
	})
	fs.DurationVar(&cfg.AssetFetchTimeout, "asset_fetch_timeout", cfg.AssetFetchTimeout, "the longest one Remote Asset download may take")
	fs.DurationVar(&cfg.AuthCacheTTL, "auth_cache_ttl", cfg.AuthCacheTTL, "how long a checked API key is remembered; a key revoked on another node works here at most this long")
	fs.DurationVar(&cfg.KeyCacheTTL, "key_cache_ttl", cfg.KeyCacheTTL, "how long a derived CMEK key stays in memory (at most 10m): the bound on how long a disabled or revoked key keeps working")
	fs.DurationVar(&cfg.KeyRewrapInterval, "key_rewrap_interval", cfg.KeyRewrapInterval, "how often CMEK key halves are re-wrapped, picking up rotated KMS key versions (±10% jitter)")
	fs.StringVar(&cfg.LocalKMSDir, "local_kms_dir", "", "directory of local-kms:// key files (default DATA_DIR/kms)")
	fs.StringVar(&cfg.OperatorKeyURI, "operator_key_uri", cfg.OperatorKeyURI, "operator's KMS key that wraps the operator half of every CMEK key")
	fs.StringVar(&cfg.GCPKMSPrincipal, "gcp_kms_principal", "", "service account customers grant on their Cloud KMS keys (shown in errors and on the settings page)")
	fs.StringVar(&cfg.AWSKMSPrincipal, "aws_kms_principal", "", "IAM principal ARN customers allow in their AWS KMS key policies")
	fs.StringVar(&cfg.GCPKMSEndpoint, "gcp_kms_endpoint", "", "Cloud KMS endpoint override (host:port), for private endpoints and tests")
	fs.BoolVar(&cfg.GCPKMSInsecure, "gcp_kms_insecure", false, "talk plaintext and unauthenticated to --gcp_kms_endpoint (tests only)")
	fs.StringVar(&cfg.GCPCredentialsFile, "gcp_credentials_file", "", "service account key file for Cloud KMS (default: application default credentials)")
	fs.StringVar(&cfg.AWSKMSEndpoint, "aws_kms_endpoint", "", "AWS KMS endpoint URL override, for VPC endpoints and tests")
	fs.StringVar(&cfg.AWSRegion, "aws_region", "", "AWS region override (default: the region in the key ARN)")
	fs.StringVar(&cfg.AWSAccessKeyID, "aws_access_key_id", "", "static AWS access key id (default: the SDK's credential chain)")
	fs.StringVar(&cfg.AWSSecretAccessKey, "aws_secret_access_key", "", "static AWS secret access key, with --aws_access_key_id")
	fs.StringVar(&cfg.PublicCacheURL, "public_cache_url", "", "the --remote_cache URL users should paste, such as grpcs://cache.example.com (default: the admin request's host and --grpc_address's port)")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown_grace", cfg.ShutdownGrace, "how long in-flight requests may finish after SIGTERM")
	fs.DurationVar(&cfg.UploadIdleTimeout, "upload_idle_timeout", cfg.UploadIdleTimeout, "end a ByteStream upload stream or HTTP PUT body that sends nothing for this long, and drop its upload")
	fs.IntVar(&cfg.MaxConcurrentStreams, "grpc_max_concurrent_streams", cfg.MaxConcurrentStreams, "most gRPC calls in flight on one connection; clients queue the rest")
	fs.IntVar(&cfg.MaxConnectionsPerPort, "max_connections_per_port", cfg.MaxConnectionsPerPort, "most open connections on each port (gRPC and HTTP); further clients wait until one closes")
	scaleoutFlags(fs, cfg)
	configFile = fs.String("config", "", "YAML file with settings, keys named like the flags (data_dir: /var/lib/sealcache)")
	logLevel = fs.String("log_level", "info", "debug, info, warn or error")
	logFormat = fs.String("log_format", "text", "text or json")
	return
}

func sizeFlag(dst *int64) func(string) error {
	return func(s string) error {
		v, err := server.ParseSize(s)
		if err != nil {
			return err
		}
		*dst = v
		return nil
	}
}

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	cfg := server.Defaults()
	fs := flag.NewFlagSet("sealcache", flag.ContinueOnError)
	// The flag package would print every flag's help before the error;
	// badUsage prints one usage line and then the error, last, instead.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	configFile, logLevel, logFormat := serverFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		return badUsage(stderr, err)
	}
	if fs.NArg() > 0 {
		return badUsage(stderr, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if err := applyFileAndEnv(fs, *configFile, os.LookupEnv); err != nil {
		return badUsage(stderr, err)
	}
	logger, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return badUsage(stderr, err)
	}
	// A bad value is a usage error (exit 2) found before anything starts.
	if err := cfg.Validate(); err != nil {
		return badUsage(stderr, err)
	}
	if err := server.Run(ctx, cfg, logger, stdout); err != nil {
		logger.Error("sealcache stopped", "err", err)
		return 1
	}
	return 0
}

// badUsage reports a command-line mistake: a short usage line, then the
// error, which names the flag, as the last line. Exit status 2.
func badUsage(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "Usage: sealcache [flags]   (sealcache --help lists the flags; sealcache admin|kms|bench|shred-check for the other commands)\nsealcache: %v\n", err)
	return 2
}

// applyFileAndEnv sets every flag not given on the command line from the
// environment (SEALCACHE_DATA_DIR) or, failing that, the YAML config file.
func applyFileAndEnv(fs *flag.FlagSet, configFile string, lookupEnv func(string) (string, bool)) error {
	if configFile == "" {
		configFile, _ = lookupEnv("SEALCACHE_CONFIG")
	}
	fileValues := map[string]any{}
	if configFile != "" {
		data, err := os.ReadFile(configFile)
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		if err := yaml.Unmarshal(data, &fileValues); err != nil {
			return fmt.Errorf("--config %s: not valid YAML: %w", configFile, err)
		}
		for name := range fileValues {
			if fs.Lookup(name) == nil || name == "config" {
				return fmt.Errorf("--config %s: unknown setting %q; settings are named like the flags (sealcache --help)", configFile, name)
			}
		}
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || onCommandLine[f.Name] || f.Name == "config" {
			return
		}
		envName := "SEALCACHE_" + strings.ToUpper(f.Name)
		if v, ok := lookupEnv(envName); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName, v, e)
			}
			return
		}
		if v, ok := fileValues[f.Name]; ok {
			if e := fs.Set(f.Name, fmt.Sprint(v)); e != nil {
				err = fmt.Errorf("--config %s: %s: %w", configFile, f.Name, e)
			}
		}
	})
	return err
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log_level=%q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log_format=%q: use text or json", format)
}
