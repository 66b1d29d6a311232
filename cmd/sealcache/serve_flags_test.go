package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// Every bad server setting exits with status 2 before anything starts,
// printing a short usage line and then, last, one line that names the
// flag, instead of every flag's help.
func TestBadServerFlagsExit2NamingTheFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		flag string
	}{
		{args: []string{"--nope"}, flag: "-nope"},
		{args: []string{"--max_size", "lots"}, flag: "-max_size"},
		{args: []string{"--max_size", "0"}, flag: "--max_size"},
		{args: []string{"--max_blob_size", "30GiB"}, flag: "--max_blob_size"},
		{args: []string{"--key_cache_ttl", "11m"}, flag: "--key_cache_ttl"},
		{args: []string{"--key_cache_ttl", "soon"}, flag: "-key_cache_ttl"},
		{args: []string{"--key_rewrap_interval", "1s"}, flag: "--key_rewrap_interval"},
		{args: []string{"--anonymous_access", "maybe"}, flag: "--anonymous_access"},
		{args: []string{"--http_ac_strict=maybe"}, flag: "-http_ac_strict"},
		{args: []string{"--asset_fetch", "sometimes"}, flag: "--asset_fetch"},
		{args: []string{"--asset_fetch_allowed_hosts", "https://github.com"}, flag: "-asset_fetch_allowed_hosts"},
		{args: []string{"--asset_fetch_timeout", "-1s"}, flag: "--asset_fetch_timeout"},
		{args: []string{"--tls_cert_file", "cert.pem"}, flag: "--tls_key_file"},
		{args: []string{"--log_level", "chatty"}, flag: "--log_level"},
		{args: []string{"--log_format", "xml"}, flag: "--log_format"},
		{args: []string{"--data_dir", ""}, flag: "--data_dir"},
		{args: []string{"serve", "extra"}, flag: `"extra"`},
		{args: []string{"--blob_store", "s3://bucket/prefix"}, flag: "--metadata_url"},
		{args: []string{"--blob_store", "gs://bucket", "--metadata_url", "postgres://db/x"}, flag: "--blob_store"},
		{args: []string{"--metadata_url", "mysql://db/x"}, flag: "--metadata_url"},
		{args: []string{"--s3_endpoint", "http://127.0.0.1:9000"}, flag: "--s3_endpoint"},
		{args: []string{"--blob_store", "s3://bucket", "--metadata_url", "postgres://db/x", "--min_retention", "0s"}, flag: "--min_retention"},
		{args: []string{"--shared_max_size", "lots"}, flag: "-shared_max_size"},
		{env: map[string]string{"SEALCACHE_MAX_SIZE": "lots"}, flag: "SEALCACHE_MAX_SIZE"},
	} {
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		var stdout, stderr bytes.Buffer
		// A bound for a server that starts by mistake, not a speed check.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		code := runServer(ctx, c.args, &stdout, &stderr)
		cancel()
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if code != 2 || len(lines) != 2 || !strings.HasPrefix(lines[0], "Usage: sealcache [flags]") ||
			!strings.HasPrefix(lines[1], "sealcache: ") || !strings.Contains(lines[1], c.flag) {
			t.Errorf("%q %v: exit %d, stderr:\n%s\nwant exit 2, a usage line, then one line naming %s", c.args, c.env, code, stderr.String(), c.flag)
		}
		for k := range c.env {
			t.Setenv(k, "")
		}
	}
}

func TestHelpListsEveryFlagOnStdout(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runServer(t.Context(), []string{"--help"}, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
		t.Fatalf("--help: exit %d, stderr %q", code, stderr.String())
	}
	for _, want := range []string{"sealcache kms create-local-key", "-http_ac_strict", "-asset_fetch_allowed_hosts", "-max_blob_size"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}
