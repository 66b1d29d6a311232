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
