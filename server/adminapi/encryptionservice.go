package adminapi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	"github.com/sealcache/sealcache/encryption"
	adminv1 "github.com/sealcache/sealcache/proto/sealcache/admin/v1"
	"github.com/sealcache/sealcache/proto/sealcache/admin/v1/adminv1connect"
)

// encryptionService implements EncryptionService for the caller's org.
// encryption.Manager does the work and writes the audit events.
type encryptionService struct{ *API }

var _ adminv1connect.EncryptionServiceHandler = (*encryptionService)(nil)

// uriExamples are shown as placeholders and in "form:" hints.
var uriExamples = map[string]string{
	"gcp-kms":   "gcp-kms://projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY",
	"aws-kms":   "aws-kms://arn:aws:kms:REGION:ACCOUNT:key/KEY_ID",
	"local-kms": "local-kms://NAME",
}

func (s *encryptionService) GetEncryptionConfig(ctx context.Context, _ *connect.Request[adminv1.GetEncryptionConfigRequest]) (*connect.Response[adminv1.GetEncryptionConfigResponse], error) {
	cfg, err := s.config(ctx, caller(ctx).OrgID)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&adminv1.GetEncryptionConfigResponse{Config: cfg}), nil
}

// SetEncryptionConfig is idempotent: enabling with the URI in use, or
// disabling when off, changes nothing and records no event.
func (s *encryptionService) SetEncryptionConfig(ctx context.Context, req *connect.Request[adminv1.SetEncryptionConfigRequest]) (*connect.Response[adminv1.SetEncryptionConfigResponse], error) {
	actor := caller(ctx)
	current, enabled, err := s.currentKey(ctx, actor.OrgID)
	if err != nil {
		return nil, err
	}
	uri := strings.TrimSpace(req.Msg.GetCustomerKeyUri())
	switch {
	case req.Msg.GetEnabled() && uri == "":
		return nil, fieldError(connect.CodeInvalidArgument, "customer_key_uri", "required to enable CMEK: the URI of your KMS key, e.g. "+uriExamples[s.deps.Providers[0]])
	case req.Msg.GetEnabled() && !s.supported(uri):
		return nil, fieldError(connect.CodeInvalidArgument, "customer_key_uri",
			fmt.Sprintf("%q is not a key URI of a provider this server supports: use %s", uri, s.examples()))
	case req.Msg.GetEnabled() && enabled && current.CustomerKeyURI != uri:
		// Switching keys would shred the data under the current key; make
		// that an explicit disable first.
		return nil, fieldError(connect.CodeFailedPrecondition, "customer_key_uri",
			fmt.Sprintf("CMEK is already enabled with %s: to use another key, disable CMEK first (data stored under the current key becomes unreadable), then enable it with the new key", current.CustomerKeyURI))
	case req.Msg.GetEnabled() && !enabled:
		rec, err := s.deps.Encryption.Enable(ctx, actor.OrgID, actor.ID, uri)
		if err != nil {
			s.log.Warn("enabling CMEK failed", "org", actor.OrgID, "by_key", actor.ID, "key_uri", uri, "err", err)
			return nil, s.encryptionError(ctx, err, uri)
		}
		s.log.Info("CMEK enabled; the org's objects stored before were deleted", "org", actor.OrgID, "by_key", actor.ID, "key_id", rec.KeyID, "key_uri", uri)
	case !req.Msg.GetEnabled() && enabled:
		if err := s.deps.Encryption.Disable(ctx, actor.OrgID, actor.ID); err != nil {
			s.log.Warn("disabling CMEK failed", "org", actor.OrgID, "by_key", actor.ID, "key_uri", current.CustomerKeyURI, "err", err)
			return nil, s.encryptionError(ctx, err, "")
		}
		s.log.Info("CMEK disabled; the key records and the sealed objects were deleted", "org", actor.OrgID, "by_key", actor.ID, "key_id", current.KeyID, "key_uri", current.CustomerKeyURI)
	}
	cfg, err := s.config(ctx, actor.OrgID)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&adminv1.SetEncryptionConfigResponse{Config: cfg}), nil
}

func (s *encryptionService) CheckEncryptionKey(ctx context.Context, _ *connect.Request[adminv1.CheckEncryptionKeyRequest]) (*connect.Response[adminv1.CheckEncryptionKeyResponse], error) {
	actor := caller(ctx)
	if _, enabled, err := s.currentKey(ctx, actor.OrgID); err != nil {
		return nil, err
	} else if !enabled {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("CMEK is disabled for this org: there is no key to check; enable it first"))
	}
	if err := s.deps.Encryption.Check(ctx, actor.OrgID, actor.ID); err != nil {
		var kerr *encryption.KeyUnavailableError
		uri := ""
		if errors.As(err, &kerr) {
			uri = kerr.KeyURI
		}
		return nil, s.encryptionError(ctx, err, uri)
	}
	cfg, err := s.config(ctx, actor.OrgID)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&adminv1.CheckEncryptionKeyResponse{Config: cfg}), nil
}

// currentKey returns the org's key record and whether CMEK is on.
func (s *encryptionService) currentKey(ctx context.Context, orgID string) (encryption.KeyRecord, bool, error) {
	rec, err := s.deps.KeyRecords.CurrentKey(ctx, orgID)
	switch {
	case errors.Is(err, encryption.ErrNoKeyRecord):
		return encryption.KeyRecord{}, false, nil
	case err != nil:
		return encryption.KeyRecord{}, false, s.internal(ctx, err)
	}
	return rec, true, nil
}

func (s *encryptionService) config(ctx context.Context, orgID string) (*adminv1.EncryptionConfig, error) {
	rec, enabled, err := s.currentKey(ctx, orgID)
	if err != nil {
		return nil, err
	}
	health, err := s.deps.KeyRecords.KMSStatus(ctx, orgID)
	if err != nil {
		return nil, s.internal(ctx, err)
	}
	cfg := &adminv1.EncryptionConfig{
		Enabled:               enabled,
		LastKmsSuccess:        timestamp(health.LastSuccess),
		LastKmsFailure:        timestamp(health.LastFailure),
		LastKmsFailureMessage: health.LastFailureMessage,
		KeyCacheTtlSeconds:    int64(s.deps.KeyCacheTTL.Seconds()),
	}
	if enabled {
		cfg.CustomerKeyUri = rec.CustomerKeyURI
		cfg.Provider, _, _ = strings.Cut(rec.CustomerKeyURI, "://")
		cfg.KeyId = rec.KeyID
		cfg.Created = timestamp(rec.Created)
		cfg.LastRewrapped = timestamp(rec.LastRewrapped)
	}
	for _, p := range s.deps.Providers {
		cfg.SupportedProviders = append(cfg.SupportedProviders, &adminv1.KmsProvider{
			Name:              p,
			UriExample:        uriExamples[p],
			OperatorPrincipal: s.deps.OperatorPrincipals[p],
		})
	}
	return cfg, nil
}

func (s *encryptionService) supported(uri string) bool {
	scheme, _, ok := strings.Cut(uri, "://")
	if !ok {
		return false
	}
	for _, p := range s.deps.Providers {
		if p == scheme {
			return true
		}
	}
	return false
}

func (s *encryptionService) examples() string {
	var out []string
	for _, p := range s.deps.Providers {
		out = append(out, uriExamples[p])
	}
	return strings.Join(out, " or ")
}
