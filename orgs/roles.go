package orgs

import "fmt"

// Role is what an API key may do. Admin, writer and reader keys belong to
// one org; an operator key belongs to no org (OrgID "") and manages orgs
// without being able to read any org's cache.
type Role string

const (
	RoleAdmin    Role = "admin"    // org settings, API keys, CMEK; plus read and write
	RoleWriter   Role = "writer"   // read and write the org's cache
	RoleReader   Role = "reader"   // read the org's cache
	RoleOperator Role = "operator" // create and delete orgs; no access to org data
)

// ParseRole accepts exactly the four role names.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleWriter, RoleReader, RoleOperator:
		return r, nil
	}
	return "", fmt.Errorf("%w: unknown role %q: use admin, writer, reader or operator", ErrInvalidArgument, s)
}

// CanRead reports whether the role may read the org's cache.
func (r Role) CanRead() bool { return r == RoleAdmin || r == RoleWriter || r == RoleReader }

// CanWrite reports whether the role may write the org's cache.
func (r Role) CanWrite() bool { return r == RoleAdmin || r == RoleWriter }

// CanAdmin reports whether the role may change the org's settings, API keys
// and encryption.
func (r Role) CanAdmin() bool { return r == RoleAdmin }

// IsOperator reports whether the role is the org-less operator role.
func (r Role) IsOperator() bool { return r == RoleOperator }
