package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"

	"github.com/sealcache/sealcache/orgs"
	"github.com/sealcache/sealcache/server/credentials"
)

type callerKey struct{}

// caller is the authenticated API key of the request. The interceptors put
// it in the context before any handler runs, so handlers never see an
// unauthenticated request.
func caller(ctx context.Context) orgs.APIKey {
	k, _ := ctx.Value(callerKey{}).(orgs.APIKey)
	return k
}

// requireOrgAdmin admits admin keys of an org (the org the key belongs to).
func (a *API) requireOrgAdmin() connect.UnaryInterceptorFunc {
	return a.requireRole(func(k orgs.APIKey) error {
		switch {
		case k.Role.CanAdmin() && k.OrgID != "":
			return nil
		case k.Role.IsOperator():
			return errors.New("this is the operator key, which belongs to no org: the org settings need an admin key of the org")
		default:
			return fmt.Errorf("this API key has role %s: the org settings need a key with role admin", k.Role)
		}
	})
}

// requireOperator admits only operator keys.
func (a *API) requireOperator() connect.UnaryInterceptorFunc {
	return a.requireRole(func(k orgs.APIKey) error {
		if k.Role.IsOperator() {
			return nil
		}
		return fmt.Errorf("this API key has role %s: managing orgs needs the operator key", k.Role)
	})
}

func (a *API) requireRole(allowed func(orgs.APIKey) error) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			key, err := a.authenticate(ctx, req.Header())
			if err != nil {
				return nil, err
			}
			if err := allowed(key); err != nil {
				return nil, connect.NewError(connect.CodePermissionDenied, err)
			}
			return next(context.WithValue(ctx, callerKey{}, key), req)
		}
	}
}

// authenticate finds the API key in the request headers, in any form
// credentials.FromHTTP accepts.
func (a *API) authenticate(ctx context.Context, header http.Header) (orgs.APIKey, error) {
	secret := credentials.FromHTTP(&http.Request{Header: header})
	if secret == "" {
		return orgs.APIKey{}, connect.NewError(connect.CodeUnauthenticated,
			errors.New("no API key: send it in the x-api-key header (or as Authorization: Bearer KEY)"))
	}
	key, err := a.deps.Auth.Authenticate(ctx, secret)
	switch {
	case errors.Is(err, orgs.ErrUnauthenticated):
		return orgs.APIKey{}, connect.NewError(connect.CodeUnauthenticated,
			errors.New("invalid or revoked API key: check the key, or ask an org admin for a new one"))
	case err != nil:
		a.log.ErrorContext(ctx, "admin API: cannot check API key", "err", err)
		return orgs.APIKey{}, connect.NewError(connect.CodeUnavailable,
			errors.New("cannot check the API key now: the metadata store is unavailable; try again"))
	}
	return key, nil
}
