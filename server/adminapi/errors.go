package adminapi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/sealcache/sealcache/encryption"
	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/orgs"
)

// fieldError is an error about one request field: the message is
// "field: cause" and a google.rpc.BadRequest detail names the field, so
// clients can place the message next to the field.
func fieldError(code connect.Code, field, cause string) *connect.Error {
	err := connect.NewError(code, fmt.Errorf("%s: %s", field, cause))
	detail, derr := connect.NewErrorDetail(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: cause}},
	})
	if derr == nil {
		err.AddDetail(detail)
	}
	return err
}

// contextError maps a cancelled or timed-out request to its status.
func contextError(err error) *connect.Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeCanceled, err)
}

// storeError maps an error of the orgs store to a status. field names the
// request field a validation error concerns ("" if none).
func (a *API) storeError(ctx context.Context, err error, field string) error {
	msg := err.Error()
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return contextError(err)
	case errors.Is(err, orgs.ErrInvalidArgument):
		msg = strings.Replace(msg, orgs.ErrInvalidArgument.Error()+": ", "", 1)
		if field == "" {
			return connect.NewError(connect.CodeInvalidArgument, errors.New(msg))
		}
		return fieldError(connect.CodeInvalidArgument, field, msg)
	case errors.Is(err, orgs.ErrLastAdminKey):
		return fieldError(connect.CodeFailedPrecondition, field, orgs.ErrLastAdminKey.Error())
	case errors.Is(err, orgs.ErrAlreadyExists):
		if field == "" {
			return connect.NewError(connect.CodeAlreadyExists, err)
		}
		return fieldError(connect.CodeAlreadyExists, field, msg)
	case errors.Is(err, orgs.ErrNotFound):
		if field == "" {
			return connect.NewError(connect.CodeNotFound, err)
		}
		return fieldError(connect.CodeNotFound, field, msg)
	}
	return a.internal(ctx, err)
}

// internal hides an unexpected error's details from the client (they may
// name tables or paths) and logs them for the operator.
func (a *API) internal(ctx context.Context, err error) error {
	a.log.ErrorContext(ctx, "admin API: internal error", "err", err)
	return connect.NewError(connect.CodeInternal, errors.New("internal error in the metadata store; the server log has the details"))
}

// encryptionError maps an error of encryption.Manager. Errors about the
// customer's key concern the customer_key_uri field; errors about the
// operator's key are the operator's to fix and name no field.
func (a *API) encryptionError(ctx context.Context, err error, customerKeyURI string) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return contextError(err)
	}
	var operatorsOwn *encryption.OperatorKeyError
	if errors.As(err, &operatorsOwn) {
		return fieldError(connect.CodeInvalidArgument, "customer_key_uri", err.Error())
	}
	var kerr *kms.Error
	if !errors.As(err, &kerr) {
		var unavailable *encryption.KeyUnavailableError
		if errors.As(err, &unavailable) {
			return connect.NewError(connect.CodeUnavailable, err)
		}
		return a.internal(ctx, err)
	}
	code := connect.CodeFailedPrecondition
	switch kerr.Kind {
	case kms.KindInvalidURI:
		code = connect.CodeInvalidArgument
	case kms.KindUnavailable:
		code = connect.CodeUnavailable
	}
	operatorsKey := false
	var enableErr *encryption.EnableError
	if errors.As(err, &enableErr) {
		operatorsKey = enableErr.KeyURI != customerKeyURI
	}
	var unavailable *encryption.KeyUnavailableError
	if errors.As(err, &unavailable) {
		operatorsKey = unavailable.Half == "operator"
	}
	if operatorsKey {
		// Not the admin's doing: the server's own key failed.
		if code == connect.CodeInvalidArgument {
			code = connect.CodeFailedPrecondition
		}
		return connect.NewError(code, fmt.Errorf("the operator's KMS key failed, not yours: %v; tell the server operator", err))
	}
	return fieldError(code, "customer_key_uri", err.Error())
}
