package s3

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	for raw, want := range map[string]Config{
		"s3://bucket":                  {Bucket: "bucket"},
		"s3://bucket/":                 {Bucket: "bucket"},
		"s3://bucket/cache":            {Bucket: "bucket", Prefix: "cache"},
		"s3://my.bucket-1/cache/prod/": {Bucket: "my.bucket-1", Prefix: "cache/prod"},
	} {
		got, err := ParseURL(raw)
		if err != nil {
			t.Fatalf("ParseURL(%q): %v", raw, err)
		}
		if got.Bucket != want.Bucket || got.Prefix != want.Prefix {
			t.Fatalf("ParseURL(%q) = bucket %q, prefix %q; want %q, %q", raw, got.Bucket, got.Prefix, want.Bucket, want.Prefix)
		}
	}
	for _, raw := range []string{
		"",
		"bucket/prefix",          // no scheme
		"gs://bucket/prefix",     // another scheme
		"s3:///prefix",           // no bucket
		"s3://b/prefix",          // bucket name too short
		"s3://bucket:9000/x",     // a port: that belongs in --s3_endpoint
		"s3://key:secret@bucket", // credentials: they belong in --s3_* flags
		"s3://bucket/a//b",       // empty prefix element
		"s3://bucket/a/../b",     // dot-dot prefix element
		"s3://bucket/x?region=us-east-1",
	} {
		if cfg, err := ParseURL(raw); err == nil {
			t.Fatalf("ParseURL(%q) = %v; want an error", raw, cfg)
		}
	}
	// A password in a bad URL does not end up in the message.
	if _, err := ParseURL("s3://key:hunter2@bucket"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("ParseURL with a password = %v; want an error without the password", err)
	}
}

func TestConfigDefaultsAndLimits(t *testing.T) {
	c, err := Config{Bucket: "bucket"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.PartSize != DefaultPartSize || c.PartConcurrency != DefaultPartConcurrency ||
		c.UploadMemory != DefaultUploadMemory || c.HeadConcurrency != DefaultHeadConcurrency {
		t.Fatalf("defaults: %+v", c)
	}
	for name, bad := range map[string]Config{
		"no bucket":                   {},
		"key id without secret":       {Bucket: "bucket", AccessKeyID: "id"},
		"secret without key id":       {Bucket: "bucket", SecretAccessKey: "secret"},
		"part under S3's minimum":     {Bucket: "bucket", PartSize: MinPartSize - 1},
		"part over S3's maximum":      {Bucket: "bucket", PartSize: MaxPartSize + 1},
		"memory for less than 1 part": {Bucket: "bucket", PartSize: 16 << 20, UploadMemory: 8 << 20},
		"negative concurrency":        {Bucket: "bucket", PartConcurrency: -1},
		"endpoint without scheme":     {Bucket: "bucket", Endpoint: "minio:9000"},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Fatalf("%s: withDefaults accepted %v", name, bad)
		}
	}
}

// However a Config is printed or logged, the secret key stays out.
func TestConfigNeverShowsTheSecret(t *testing.T) {
	const secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
	c := Config{Bucket: "bucket", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: secret}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("store", "config", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), logged.String()} {
		if strings.Contains(s, secret) {
			t.Fatalf("the secret shows in %q", s)
		}
		if !strings.Contains(s, "AKIDEXAMPLE") {
			t.Fatalf("%q does not name the access key id, which helps to check the setup", s)
		}
	}
}
