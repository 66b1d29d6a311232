package encryption

import (
	"fmt"
	"strings"
)

// PermissionHint tells an admin what to grant so that principal (this
// server's identity at the provider) may use the key at uri.
func PermissionHint(provider, principal, uri string) string {
	if principal == "" {
		principal = "the cache server's service identity (ask the operator for its name)"
	}
	key := uri
	if _, rest, ok := strings.Cut(uri, "://"); ok {
		key = rest
	}
	switch provider {
	case "gcp-kms":
		return fmt.Sprintf("grant roles/cloudkms.cryptoKeyEncrypterDecrypter to %s on %s", principal, key)
	case "aws-kms":
		return fmt.Sprintf("allow kms:Encrypt, kms:Decrypt, kms:DescribeKey for %s in the key policy of %s", principal, key)
	case "local-kms":
		return fmt.Sprintf("make the key file %s readable by the server", key)
	}
	return fmt.Sprintf("allow %s to encrypt and decrypt with %s", principal, key)
}

// providerOf is the URI scheme ("gcp-kms", "aws-kms", "local-kms").
func providerOf(uri string) string {
	scheme, _, _ := strings.Cut(uri, "://")
	return scheme
}
