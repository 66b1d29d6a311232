package server

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/fence"
	"github.com/sealcache/sealcache/cas/pgindex"
	"github.com/sealcache/sealcache/cas/verify"
	"github.com/sealcache/sealcache/encryption"
)

// storeError turns an error from the store into a gRPC status. Only a true
// miss becomes NOT_FOUND: key trouble is UNAVAILABLE so a revoked or
// unreachable customer key is never mistaken for an empty cache.
func storeError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var keyErr *encryption.KeyUnavailableError
	if errors.As(err, &keyErr) {
		// The full error can hold server paths; the provider logged it.
		return status.Error(codes.Unavailable, keyErr.ClientMessage())
	}
	return status.Error(storeCode(err), err.Error())
}

func storeCode(err error) codes.Code {
	var keyErr *encryption.KeyUnavailableError
	switch {
	case errors.As(err, &keyErr):
		return codes.Unavailable
	case errors.Is(err, cas.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, verify.ErrDigestMismatch): // plain and sealed uploads alike
		return codes.InvalidArgument
	case errors.Is(err, verify.ErrCorrupt), errors.Is(err, encryption.ErrCorrupt):
		// The object was removed when the corruption was found; to the
		// client it is a miss it can repair by uploading again.
		return codes.NotFound
	case errors.Is(err, cas.ErrTooLarge):
		// It can never fit: retrying would not help.
		return codes.InvalidArgument
	case errors.Is(err, cas.ErrFull):
		return codes.ResourceExhausted
	case errors.Is(err, fence.ErrFenced), errors.Is(err, pgindex.ErrDeletedWhileWriting):
		// The org's encryption state changed under the upload, or (many
		// nodes) a delete of the object raced it; a retry stores it.
		return codes.Unavailable
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

// httpStatus maps a gRPC code to the HTTP status the cache protocol uses.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.NotFound:
		return http.StatusNotFound
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.ResourceExhausted:
		return http.StatusInsufficientStorage
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.FailedPrecondition:
		return http.StatusPreconditionFailed
	case codes.Canceled:
		return 499
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Unimplemented:
		return http.StatusMethodNotAllowed
	}
	return http.StatusInternalServerError
}
