package e2etest

import (
	"strings"
	"testing"
)

func TestRedactRemovesKeysFromCommandLinesAndOutput(t *testing.T) {
	args := []string{
		"--remote_header=x-api-key=sck_header_secret",
		"--remote_cache=http://sealcache:sck_url_secret@127.0.0.1:8080",
		"//e2e/testdata/workspace/...",
	}
	secrets := secretsIn(args)
	if len(secrets) != 2 || secrets[0] != "sck_header_secret" || secrets[1] != "sck_url_secret" {
		t.Fatalf("secretsIn = %q", secrets)
	}
	text := strings.Join(args, " ") + "\nERROR: key sck_header_secret was refused; retry with sck_url_secret\n"
	got := redact(text, secrets...)
	for _, s := range secrets {
		if strings.Contains(got, s) {
			t.Errorf("redacted text still holds %q:\n%s", s, got)
		}
	}
	for _, want := range []string{"x-api-key=REDACTED", "http://sealcache:REDACTED@127.0.0.1:8080", "//e2e/testdata/workspace/..."} {
		if !strings.Contains(got, want) {
			t.Errorf("redacted text lacks %q:\n%s", want, got)
		}
	}
}

func TestRedactRemovesSecretsFromServerCommandLines(t *testing.T) {
	args := []string{"--metadata_url", "postgres://sealcache:pg_secret@127.0.0.1:5432/db", "--s3_secret_access_key", "s3_secret", "--aws_secret_access_key=aws_secret", "--s3_region", "us-east-1"}
	got := redact(strings.Join(args, " "), flagSecrets(args)...)
	for _, s := range []string{"pg_secret", "s3_secret", "aws_secret"} {
		if strings.Contains(got, s) {
			t.Errorf("redacted command line still holds %q: %s", s, got)
		}
	}
	if !strings.Contains(got, "--s3_region us-east-1") {
		t.Errorf("redacted command line lost a setting that is no secret: %s", got)
	}
}
