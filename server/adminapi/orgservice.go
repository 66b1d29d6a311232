package adminapi

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/sealcache/sealcache/orgs"
	adminv1 "github.com/sealcache/sealcache/proto/sealcache/admin/v1"
	"github.com/sealcache/sealcache/proto/sealcache/admin/v1/adminv1connect"
)

// orgService implements OrgService for the caller's org. requireOrgAdmin
// has admitted the caller.
type orgService struct{ *API }

var _ adminv1connect.OrgServiceHandler = (*orgService)(nil)

func (s *orgService) GetOrg(ctx context.Context, _ *connect.Request[adminv1.GetOrgRequest]) (*connect.Response[adminv1.GetOrgResponse], error) {
	org, err := s.deps.Metadata.GetOrg(ctx, caller(ctx).OrgID)
	if err != nil {
		return nil, s.storeError(ctx, err, "")
	}
	stored, hits, misses := s.stats(ctx, org.ID)
	return connect.NewResponse(&adminv1.GetOrgResponse{Org: orgToProto(org), StoredBytes: stored, Hits: hits, Misses: misses}), nil
}

func (s *orgService) ListApiKeys(ctx context.Context, _ *connect.Request[adminv1.ListApiKeysRequest]) (*connect.Response[adminv1.ListApiKeysResponse], error) {
	keys, err := s.deps.Metadata.ListAPIKeys(ctx, caller(ctx).OrgID)
	if err != nil {
		return nil, s.storeError(ctx, err, "")
	}
	resp := &adminv1.ListApiKeysResponse{}
	for _, k := range keys {
		resp.Keys = append(resp.Keys, apiKeyToProto(k))
	}
	return connect.NewResponse(resp), nil
}

func (s *orgService) CreateApiKey(ctx context.Context, req *connect.Request[adminv1.CreateApiKeyRequest]) (*connect.Response[adminv1.CreateApiKeyResponse], error) {
	actor := caller(ctx)
	role := roleFromProto(req.Msg.GetRole())
	if role == "" || role == orgs.RoleOperator {
		return nil, fieldError(connect.CodeInvalidArgument, "role", "choose ROLE_ADMIN, ROLE_WRITER or ROLE_READER")
	}
	key, secret, err := s.deps.Metadata.CreateAPIKey(ctx, actor.OrgID, role, req.Msg.GetLabel())
	if err != nil {
		return nil, s.storeError(ctx, err, "label")
	}
	s.audit(ctx, actor.OrgID, actor.ID, "api_key_created", fmt.Sprintf("key_id=%s role=%s label=%q", key.ID, key.Role, key.Label))
	return connect.NewResponse(&adminv1.CreateApiKeyResponse{
		Key:        apiKeyToProto(key),
		Secret:     secret,
		BazelFlags: s.bazelFlags(ctx, secret),
	}), nil
}

func (s *orgService) RevokeApiKey(ctx context.Context, req *connect.Request[adminv1.RevokeApiKeyRequest]) (*connect.Response[adminv1.RevokeApiKeyResponse], error) {
	actor := caller(ctx)
	id := req.Msg.GetId()
	if id == "" {
		return nil, fieldError(connect.CodeInvalidArgument, "id", "name the API key to revoke")
	}
	// The store refuses to revoke the org's last admin key, checking and
	// deleting in one transaction (two admins revoking each other at once
	// leave one).
	if err := s.deps.Metadata.RevokeAPIKey(ctx, actor.OrgID, id); err != nil {
		return nil, s.storeError(ctx, err, "id")
	}
	s.audit(ctx, actor.OrgID, actor.ID, "api_key_revoked", "key_id="+id)
	return connect.NewResponse(&adminv1.RevokeApiKeyResponse{}), nil
}

func (s *orgService) ListAuditEvents(ctx context.Context, req *connect.Request[adminv1.ListAuditEventsRequest]) (*connect.Response[adminv1.ListAuditEventsResponse], error) {
	if req.Msg.GetPageSize() < 0 {
		return nil, fieldError(connect.CodeInvalidArgument, "page_size", "must not be negative")
	}
	events, next, err := s.deps.Metadata.ListAuditEvents(ctx, caller(ctx).OrgID, int(req.Msg.GetPageSize()), req.Msg.GetPageToken())
	if err != nil {
		return nil, s.storeError(ctx, err, "page_token")
	}
	resp := &adminv1.ListAuditEventsResponse{NextPageToken: next}
	for _, e := range events {
		resp.Events = append(resp.Events, auditEventToProto(e))
	}
	return connect.NewResponse(resp), nil
}
