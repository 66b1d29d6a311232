package orgs

import "errors"

// Sentinel errors. Callers test them with errors.Is; the returned errors wrap
// them with a message that names the org, key or field involved.
var (
	// ErrNotFound: the org, API key or key record does not exist (or does
	// not belong to the org named in the call).
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: an org with that name (or a record with that id)
	// exists already.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalidArgument: a name, role, label or page token is malformed.
	// The wrapping message says what is allowed.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnauthenticated: an API key is malformed, unknown or revoked. It
	// deliberately does not say which.
	ErrUnauthenticated = errors.New("invalid or revoked API key")
	// ErrLastAdminKey: the API key is the org's last admin key, which is
	// never revoked (nobody could manage the org, and the operator cannot
	// hand out keys).
	ErrLastAdminKey = errors.New("this is the org's last admin key: create another admin key first")
)
