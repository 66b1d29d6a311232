package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealcache/sealcache/server"
)

func parseServerFlags(t *testing.T, args []string, env map[string]string, yaml string) (server.Config, error) {
	t.Helper()
	cfg := server.Defaults()
	fs := flag.NewFlagSet("sealcache", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configFile, _, _ := serverFlags(fs, &cfg)
	if yaml != "" {
		path := filepath.Join(t.TempDir(), "sealcache.yaml")
		os.WriteFile(path, []byte(yaml), 0o600)
		args = append(args, "--config", path)
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	return cfg, applyFileAndEnv(fs, *configFile, lookup)
}

func TestFlagsBeatEnvironmentWhichBeatsTheConfigFile(t *testing.T) {
	cfg, err := parseServerFlags(t,
		[]string{"--data_dir", "/from/flag"},
		map[string]string{"SEALCACHE_DATA_DIR": "/from/env", "SEALCACHE_MAX_SIZE": "3GiB"},
		"data_dir: /from/file\nmax_size: 1GiB\ngrpc_address: 127.0.0.1:2000\nkey_cache_ttl: 2m\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/from/flag" || cfg.MaxSize != 3<<30 || cfg.GRPCAddress != "127.0.0.1:2000" || cfg.KeyCacheTTL.Minutes() != 2 {
		t.Errorf("got data_dir %s, max_size %d, grpc %s, ttl %s", cfg.DataDir, cfg.MaxSize, cfg.GRPCAddress, cfg.KeyCacheTTL)
	}
	if cfg.HTTPAddress != ":8080" {
		t.Errorf("unset settings keep their defaults: %s", cfg.HTTPAddress)
	}
}

func TestBadSettingsSayWhatIsWrong(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		yaml string
		want string
	}{
		{yaml: "no_such_setting: 1\n", want: `unknown setting "no_such_setting"`},
		{env: map[string]string{"SEALCACHE_MAX_SIZE": "lots"}, want: "SEALCACHE_MAX_SIZE"},
		{yaml: "max_size: [1, 2\n", want: "not valid YAML"},
	} {
		_, err := parseServerFlags(t, c.args, c.env, c.yaml)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an error containing %q", c, err, c.want)
		}
	}
	cfg := server.Defaults()
	cfg.KeyCacheTTL = 11 * 60e9
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "at most 10m") {
		t.Errorf("TTL above 10m: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"20GiB": 20 << 30, "512MB": 512e6, "1.5g": 3 << 29, "4096": 4096, "2TiB": 2 << 40} {
		if got, err := server.ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := server.ParseSize("12 parsecs"); err == nil {
		t.Error("unknown unit accepted")
	}
}
