package e2etest

import (
	"regexp"
	"strings"
)

// API keys must never reach logs, not even a test's. These helpers cut the
// keys out of Bazel command lines and output before the harness prints them.

var (
	apiKeyHeader = regexp.MustCompile(`(?i)(x-api-key=)[^\s"']+`)
	urlPassword  = regexp.MustCompile(`(://[^:/@\s]+:)[^@\s]+@`)
)

// secretsIn returns the API keys that a Bazel command line carries, in
// --remote_header=x-api-key=KEY or in the password of a cache URL.
func secretsIn(args []string) []string {
	var secrets []string
	for _, a := range args {
		for _, m := range apiKeyHeader.FindAllStringSubmatchIndex(a, -1) {
			secrets = append(secrets, a[m[3]:m[1]])
		}
		for _, m := range urlPassword.FindAllStringSubmatchIndex(a, -1) {
			secrets = append(secrets, a[m[3]:m[1]-1])
		}
	}
	return secrets
}

// redact replaces every secret, and anything shaped like one, with REDACTED.
func redact(s string, secrets ...string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "REDACTED")
		}
	}
	s = apiKeyHeader.ReplaceAllString(s, "${1}REDACTED")
	return urlPassword.ReplaceAllString(s, "${1}REDACTED@")
}

// secretFlags are server flags whose values are secrets.
var secretFlags = map[string]bool{"--s3_secret_access_key": true, "--aws_secret_access_key": true}

// flagSecrets returns the values of secret flags on a server command line
// ("--flag VALUE" or "--flag=VALUE"); URL passwords (--metadata_url) are
// caught by redact itself.
func flagSecrets(args []string) []string {
	var secrets []string
	for i, a := range args {
		name, value, hasValue := strings.Cut(a, "=")
		switch {
		case secretFlags[name] && hasValue:
			secrets = append(secrets, value)
		case secretFlags[a] && i+1 < len(args):
			secrets = append(secrets, args[i+1])
		}
	}
	return secrets
}
