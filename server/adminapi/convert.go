package adminapi

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sealcache/sealcache/orgs"
	adminv1 "github.com/sealcache/sealcache/proto/sealcache/admin/v1"
)

// timestamp leaves zero times unset, so clients see "never" rather than 1970.
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func orgToProto(o orgs.Org) *adminv1.Org {
	return &adminv1.Org{Id: o.ID, Name: o.Name, Created: timestamp(o.Created), EncryptionEnabled: o.EncryptionEnabled}
}

func apiKeyToProto(k orgs.APIKey) *adminv1.ApiKey {
	return &adminv1.ApiKey{Id: k.ID, Role: roleToProto(k.Role), Label: k.Label, Created: timestamp(k.Created), LastUsed: timestamp(k.LastUsed)}
}

func auditEventToProto(e orgs.AuditEvent) *adminv1.AuditEvent {
	return &adminv1.AuditEvent{Time: timestamp(e.Time), ActorKeyId: e.ActorKeyID, Action: e.Action, Details: e.Details, OrgId: e.OrgID}
}

var rolesToProto = map[orgs.Role]adminv1.Role{
	orgs.RoleAdmin:    adminv1.Role_ROLE_ADMIN,
	orgs.RoleWriter:   adminv1.Role_ROLE_WRITER,
	orgs.RoleReader:   adminv1.Role_ROLE_READER,
	orgs.RoleOperator: adminv1.Role_ROLE_OPERATOR,
}

func roleToProto(r orgs.Role) adminv1.Role { return rolesToProto[r] }

// roleFromProto returns the orgs role, or "" for ROLE_UNSPECIFIED and
// unknown values.
func roleFromProto(r adminv1.Role) orgs.Role {
	for role, p := range rolesToProto {
		if p == r {
			return role
		}
	}
	return ""
}
