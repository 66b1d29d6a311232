// Package adminapi serves the admin API (proto/sealcache/admin/v1) with
// connect-go, so one handler answers gRPC, gRPC-Web and JSON over HTTP/1.1:
//
//   - OrgService and EncryptionService act on the caller's org and accept
//     only admin keys of that org;
//   - OperatorService accepts only the operator key.
//
// Every change is recorded in an audit log with the acting key id: API key
// and org changes here, CMEK changes by encryption.Manager.
//
// Validation errors are INVALID_ARGUMENT (or FAILED_PRECONDITION) with the
// message "field_name: cause" plus a google.rpc.BadRequest detail, so the
// settings page and scripts can tell which field is wrong.
package adminapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/sealcache/sealcache/encryption"
	"github.com/sealcache/sealcache/orgs"
	"github.com/sealcache/sealcache/proto/sealcache/admin/v1/adminv1connect"
)

// Metadata is the part of the metadata store the admin API uses (*orgs.DB).
type Metadata interface {
	GetOrg(ctx context.Context, id string) (orgs.Org, error)
	ListOrgs(ctx context.Context) ([]orgs.Org, error)
	CreateOrg(ctx context.Context, name string) (orgs.Org, error)
	DeleteOrg(ctx context.Context, id string) error
	CreateAPIKey(ctx context.Context, orgID string, role orgs.Role, label string) (orgs.APIKey, string, error)
	ListAPIKeys(ctx context.Context, orgID string) ([]orgs.APIKey, error)
	RevokeAPIKey(ctx context.Context, orgID, keyID string) error
	Audit(ctx context.Context, orgID, actorKeyID, action, details string) error
	ListAuditEvents(ctx context.Context, orgID string, pageSize int, pageToken string) ([]orgs.AuditEvent, string, error)
}

// Authenticator resolves an API key secret (*orgs.Authenticator). It
// returns orgs.ErrUnauthenticated for unknown, malformed or revoked keys.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (orgs.APIKey, error)
}

// Encryption changes an org's CMEK state (*encryption.Manager). It audits
// its own changes. EraseOrg deletes an org's key records and every object
// stored for it, for DeleteOrg.
type Encryption interface {
	Enable(ctx context.Context, orgID, actorKeyID, customerKeyURI string) (encryption.KeyRecord, error)
	Disable(ctx context.Context, orgID, actorKeyID string) error
	Check(ctx context.Context, orgID, actorKeyID string) error
	EraseOrg(ctx context.Context, orgID, actorKeyID string) error
}

// KeyRecords reads an org's CMEK key record and key health
// (encryption.KeyRecordStore, i.e. *orgs.DB).
type KeyRecords interface {
	CurrentKey(ctx context.Context, orgID string) (encryption.KeyRecord, error)
	KMSStatus(ctx context.Context, orgID string) (encryption.KMSStatus, error)
}

// Deps is everything the admin API needs. Metadata, Auth, Encryption and
// KeyRecords are required.
type Deps struct {
	Metadata   Metadata
	Auth       Authenticator
	Encryption Encryption
	KeyRecords KeyRecords

	// OrgStats reports an org's stored bytes and cache hits and misses for
	// the Overview. Nil reports zeros.
	OrgStats func(ctx context.Context, orgID string) (storedBytes int64, hits, misses uint64)

	// Providers lists the KMS providers customers may use ("gcp-kms",
	// "aws-kms", "local-kms"), in the order the page offers them. Empty
	// means gcp-kms and aws-kms.
	Providers []string
	// OperatorPrincipals names this server's identity at each provider, which
	// customers must grant encrypt/decrypt on their key (the same map as
	// encryption.ManagerConfig.OperatorPrincipals).
	OperatorPrincipals map[string]string
	// KeyCacheTTL is how long nodes keep using a derived key (shown with
	// "disable": data becomes unreadable within it). Zero means
	// encryption.DefaultKeyTTL.
	KeyCacheTTL time.Duration
	// RemoteCacheURL is what Bazel users pass as --remote_cache, e.g.
	// "grpcs://cache.example.com". Empty means grpc://<host of the admin
	// request>:1985.
	RemoteCacheURL string
	// GRPCPort and GRPCTLS describe this server's REAPI port, used with the
	// admin request's host when RemoteCacheURL is empty. Empty port means 1985.
	GRPCPort string
	GRPCTLS  bool

	Logger *slog.Logger // nil means slog.Default()
}

// API implements the three admin services.
type API struct {
	deps Deps
	log  *slog.Logger
}

// New checks deps and returns the API. Mount it with Register.
func New(deps Deps) (*API, error) {
	if deps.Metadata == nil || deps.Auth == nil || deps.Encryption == nil || deps.KeyRecords == nil {
		return nil, errors.New("adminapi: Deps needs Metadata, Auth, Encryption and KeyRecords")
	}
	if len(deps.Providers) == 0 {
		deps.Providers = []string{"gcp-kms", "aws-kms"}
	}
	if deps.KeyCacheTTL <= 0 {
		deps.KeyCacheTTL = encryption.DefaultKeyTTL
	}
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	return &API{deps: deps, log: log}, nil
}

// maxRequestBytes bounds admin request bodies; the largest real request is
// a key URI.
const maxRequestBytes = 64 << 10

// Handlers returns the URL path prefix and handler of each service, e.g.
// "/sealcache.admin.v1.OrgService/". Register mounts them on a mux.
func (a *API) Handlers() map[string]http.Handler {
	common := []connect.HandlerOption{connect.WithReadMaxBytes(maxRequestBytes)}
	orgAdmin := connect.WithInterceptors(a.requireOrgAdmin())
	operator := connect.WithInterceptors(a.requireOperator())
	out := map[string]http.Handler{}
	add := func(path string, h http.Handler) { out[path] = withRequestHost(h) }
	add(adminv1connect.NewOrgServiceHandler(&orgService{a}, append(common, orgAdmin)...))
	add(adminv1connect.NewEncryptionServiceHandler(&encryptionService{a}, append(common, orgAdmin)...))
	add(adminv1connect.NewOperatorServiceHandler(&operatorService{a}, append(common, operator)...))
	return out
}

// Register mounts the three services on mux, at
// /sealcache.admin.v1.{Org,Encryption,Operator}Service/.
func (a *API) Register(mux *http.ServeMux) {
	for path, h := range a.Handlers() {
		mux.Handle(path, h)
	}
}

type requestHostKey struct{}

// withRequestHost remembers the Host the client used, for the Bazel flags
// shown with a new key when Deps.RemoteCacheURL is empty.
func withRequestHost(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestHostKey{}, r.Host)))
	})
}

// bazelFlags are the .bazelrc lines that make Bazel use secret.
func (a *API) bazelFlags(ctx context.Context, secret string) []string {
	url := a.deps.RemoteCacheURL
	if url == "" {
		host, _ := ctx.Value(requestHostKey{}).(string)
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" {
			host = "localhost"
		}
		port, scheme := a.deps.GRPCPort, "grpc://"
		if port == "" {
			port = "1985"
		}
		if a.deps.GRPCTLS {
			scheme = "grpcs://"
		}
		url = scheme + net.JoinHostPort(host, port)
	}
	return []string{
		"--remote_cache=" + url,
		"--remote_header=x-api-key=" + secret,
	}
}

func (a *API) stats(ctx context.Context, orgID string) (storedBytes uint64, hits, misses uint64) {
	if a.deps.OrgStats == nil {
		return 0, 0, 0
	}
	b, h, m := a.deps.OrgStats(ctx, orgID)
	return uint64(max(b, 0)), h, m
}

// audit records a change that already happened. A failure to record is
// logged, not returned: the change stands and the caller must not retry it.
func (a *API) audit(ctx context.Context, orgID, actorKeyID, action, details string) {
	if err := a.deps.Metadata.Audit(ctx, orgID, actorKeyID, action, details); err != nil {
		a.log.ErrorContext(ctx, "admin API: audit event not recorded", "org", orgID, "actor", actorKeyID, "action", action, "err", err)
	}
}
