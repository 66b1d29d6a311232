// Package kms wraps and unwraps 32-byte keys with a key held in a key
// management service. One small interface, one implementation per provider,
// chosen by the URI scheme:
//
//	gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K   Cloud KMS
//	aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID                AWS KMS
//	local-kms://NAME                                           key file in a local directory
package kms

import (
	"context"
	"fmt"
)

// Wrapper wraps and unwraps key material with one KMS key. Associated data
// (the org id) is bound to the ciphertext: unwrapping with other associated
// data fails.
type Wrapper interface {
	// URI is the key URI this wrapper was opened with.
	URI() string
	Wrap(ctx context.Context, plaintext, associatedData []byte) ([]byte, error)
	Unwrap(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error)
}

// ErrorKind classifies KMS failures so callers can pick the right status
// code and tell the user what to do.
type ErrorKind int

const (
	// KindInvalidURI: the key URI is malformed or names an unknown provider.
	KindInvalidURI ErrorKind = iota + 1
	// KindPermissionDenied: the caller's principal may not use the key.
	KindPermissionDenied
	// KindNotFound: the key (or key version) does not exist.
	KindNotFound
	// KindDisabled: the key or the key version needed is disabled or destroyed.
	KindDisabled
	// KindUnavailable: the KMS could not be reached or answered with a transient error.
	KindUnavailable
	// KindInvalidCiphertext: the ciphertext or associated data does not match.
	KindInvalidCiphertext
	// KindOther: anything else the KMS reported.
	KindOther
)

func (k ErrorKind) String() string {
	switch k {
	case KindInvalidURI:
		return "invalid key URI"
	case KindPermissionDenied:
		return "permission denied"
	case KindNotFound:
		return "key not found"
	case KindDisabled:
		return "key disabled"
	case KindUnavailable:
		return "KMS unavailable"
	case KindInvalidCiphertext:
		return "invalid ciphertext"
	}
	return "KMS error"
}

// Error is the error every Wrapper and Open returns for KMS trouble.
type Error struct {
	Kind     ErrorKind
	URI      string // the key URI concerned
	Op       string // "open", "wrap" or "unwrap"
	Provider string // "gcp-kms", "aws-kms" or "local-kms"
	Err      error  // the provider's own error, for its message
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s of key %s: %s: %v", e.Provider, e.Op, e.URI, e.Kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }
