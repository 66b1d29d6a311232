package adminapi

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/sealcache/sealcache/orgs"
	adminv1 "github.com/sealcache/sealcache/proto/sealcache/admin/v1"
	"github.com/sealcache/sealcache/proto/sealcache/admin/v1/adminv1connect"
)

// operatorService implements OperatorService. requireOperator has admitted
// the caller. Its audit events go to the operator log (org id ""), which
// outlives deleted orgs.
type operatorService struct{ *API }

var _ adminv1connect.OperatorServiceHandler = (*operatorService)(nil)

// firstAdminLabel labels the admin key CreateOrg hands out.
const firstAdminLabel = "first admin"

func (s *operatorService) CreateOrg(ctx context.Context, req *connect.Request[adminv1.CreateOrgRequest]) (*connect.Response[adminv1.CreateOrgResponse], error) {
	actor := caller(ctx)
	org, err := s.deps.Metadata.CreateOrg(ctx, req.Msg.GetName())
	if err != nil {
		return nil, s.storeError(ctx, err, "name")
	}
	key, secret, err := s.deps.Metadata.CreateAPIKey(ctx, org.ID, orgs.RoleAdmin, firstAdminLabel)
	if err != nil {
		// An org nobody can administer is useless: take it back.
		if derr := s.deps.Metadata.DeleteOrg(ctx, org.ID); derr != nil {
			s.log.ErrorContext(ctx, "admin API: cannot remove org after failing to create its admin key", "org", org.ID, "err", derr)
		}
		return nil, s.storeError(ctx, err, "")
	}
	s.audit(ctx, "", actor.ID, "org_created", fmt.Sprintf("org_id=%s name=%s admin_key_id=%s", org.ID, org.Name, key.ID))
	s.audit(ctx, org.ID, actor.ID, "api_key_created", fmt.Sprintf("key_id=%s role=%s label=%q (by the operator, with the org)", key.ID, key.Role, key.Label))
	return connect.NewResponse(&adminv1.CreateOrgResponse{
		Org:            orgToProto(org),
		AdminKey:       apiKeyToProto(key),
		AdminKeySecret: secret,
		BazelFlags:     s.bazelFlags(ctx, secret),
	}), nil
}

func (s *operatorService) ListOrgs(ctx context.Context, _ *connect.Request[adminv1.ListOrgsRequest]) (*connect.Response[adminv1.ListOrgsResponse], error) {
	list, err := s.deps.Metadata.ListOrgs(ctx)
	if err != nil {
		return nil, s.storeError(ctx, err, "")
	}
	resp := &adminv1.ListOrgsResponse{}
	for _, o := range list {
		stored, _, _ := s.stats(ctx, o.ID)
		resp.Orgs = append(resp.Orgs, &adminv1.OrgSummary{Org: orgToProto(o), StoredBytes: stored})
	}
	return connect.NewResponse(resp), nil
}

// DeleteOrg removes the org in an order that fails safe: shred the CMEK
// keys first (sealed data is unreadable from then on, whatever happens
// next), then delete the stored objects, then the org's records. A failed
// call can be repeated.
func (s *operatorService) DeleteOrg(ctx context.Context, req *connect.Request[adminv1.DeleteOrgRequest]) (*connect.Response[adminv1.DeleteOrgResponse], error) {
	actor := caller(ctx)
	id := req.Msg.GetOrgId()
	if id == "" {
		return nil, fieldError(connect.CodeInvalidArgument, "org_id", "name the org to delete (its id, see ListOrgs)")
	}
	org, err := s.deps.Metadata.GetOrg(ctx, id)
	if err != nil {
		return nil, s.storeError(ctx, err, "org_id")
	}
	if req.Msg.GetConfirmName() != org.Name {
		return nil, fieldError(connect.CodeInvalidArgument, "confirm_name",
			fmt.Sprintf("does not match the name of org %s: type the org's name exactly to confirm the deletion", org.ID))
	}
	if err := s.deps.Encryption.EraseOrg(ctx, org.ID, actor.ID); err != nil {
		return nil, s.deleteFailed(ctx, actor, org, "shredding the encryption keys and deleting the stored objects", err)
	}
	if err := s.deps.Metadata.DeleteOrg(ctx, org.ID); err != nil && !errors.Is(err, orgs.ErrNotFound) {
		return nil, s.deleteFailed(ctx, actor, org, "deleting the org's records", err)
	}
	s.audit(ctx, "", actor.ID, "org_deleted", fmt.Sprintf("org_id=%s name=%s cmek_shredded=%t", org.ID, org.Name, org.EncryptionEnabled))
	return connect.NewResponse(&adminv1.DeleteOrgResponse{}), nil
}

func (s *operatorService) deleteFailed(ctx context.Context, actor orgs.APIKey, org orgs.Org, step string, err error) error {
	s.log.ErrorContext(ctx, "admin API: deleting org failed", "org", org.ID, "step", step, "err", err)
	s.audit(ctx, "", actor.ID, "org_delete_failed", fmt.Sprintf("org_id=%s name=%s step=%q", org.ID, org.Name, step))
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return contextError(err)
	}
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("deleting org %s stopped while %s: %v; run DeleteOrg again to finish", org.ID, step, err))
}
