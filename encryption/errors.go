package encryption

import (
	"errors"
	"fmt"

	"github.com/sealcache/sealcache/cas/verify"
	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/encryption/stream"
)

// ErrCorrupt is wrapped by errors for sealed objects that fail to open: a
// changed, truncated or misplaced chunk. The Store deletes such objects.
var ErrCorrupt = stream.ErrCorrupt

// ErrDigestMismatch is wrapped by Put errors when the bytes received do not
// hash to the blob's digest; nothing is stored. Sealed uploads are checked by
// the same reader as plain ones, so it is verify's error.
var ErrDigestMismatch = verify.ErrDigestMismatch

// ErrBadPartition is wrapped when a key's partition has no org id segment.
var ErrBadPartition = errors.New("partition does not start with an org id")

// KeyUnavailableError says an org's key could not be unwrapped, so its data
// can be neither read nor written. Servers map it to UNAVAILABLE: it is never
// a miss.
type KeyUnavailableError struct {
	OrgID  string
	KeyID  string
	Half   string // "customer" or "operator": whose KMS key failed
	KeyURI string
	Cause  error // usually a *kms.Error
}

func (e *KeyUnavailableError) Error() string {
	return e.message(fmt.Sprint(e.Cause))
}

// ClientMessage is the error for cache clients: it names the key and what
// to do, and gives only the kind of KMS failure, not the KMS's own words,
// which can name the server's files (local-kms) or internal endpoints.
// Error, with those words, is for the server log and the org's audit log.
func (e *KeyUnavailableError) ClientMessage() string {
	reason := "KMS error"
	var kerr *kms.Error
	if errors.As(e.Cause, &kerr) {
		reason = kerr.Kind.String()
	}
	return e.message(reason) + " (the org's audit log has the details)"
}

func (e *KeyUnavailableError) message(cause string) string {
	what := "the org's KMS key " + e.KeyURI
	next := "check that the key exists, is enabled and that the cache server may use it"
	if e.Half == "operator" {
		what = "the operator's KMS key " + e.KeyURI
		next = "the server operator must check the operator key"
	}
	return fmt.Sprintf("encryption key %s of org %s is unavailable: cannot unwrap with %s: %s; %s",
		e.KeyID, e.OrgID, what, cause, next)
}

func (e *KeyUnavailableError) Unwrap() error { return e.Cause }
